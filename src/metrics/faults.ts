/**
 * Faults, told once with a count: {@linkcode Faults} keeps the first message of each cause
 * (credentials, TLS, endpoint, bucket, timeout, slow, breaker, upload, other) and how often it
 * happened, for the job summary, `stats`, the status page and `/metrics`
 * (`go_cache_plugin_faults_total{cause}`). {@linkcode collapsingLogger} feeds it from the lines
 * components already log, and keeps those lines readable: a line about one object (it names a
 * hex id, such as `not uploading <id>: remote tier paused or disabled`) is logged the first time its
 * shape is seen, the rest only counted, and {@linkcode CollapsingLogger.flush} says how many were
 * left out, in one line per shape.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";

/** Why something failed, as far as the message tells. */
export type FaultCause =
  | "credentials"
  | "bucket"
  | "tls"
  | "endpoint"
  | "timeout"
  | "slow"
  | "breaker"
  | "upload"
  | "other";

/** Every cause, in the order views list them. */
export const FAULT_CAUSES: readonly FaultCause[] = Object.freeze([
  "credentials",
  "bucket",
  "tls",
  "endpoint",
  "timeout",
  "slow",
  "breaker",
  "upload",
  "other",
]);

/** One cause's record. */
export interface Fault {
  /** The cause. */
  cause: FaultCause;
  /** How many times it happened. */
  count: number;
  /** The first message, as logged. */
  first: string;
  /** When it first happened (epoch ms). */
  firstAt: number;
}

/** What each cause means to a person, for the summary. */
export const FAULT_MEANING: Readonly<Record<FaultCause, string>> = Object.freeze({
  credentials: "the object store refused the credentials",
  bucket: "the bucket is missing or elsewhere",
  tls: "the TLS connection failed (certificate or protocol)",
  endpoint: "the endpoint could not be reached",
  timeout: "requests missed their deadline",
  slow: "transfers were slower than the throughput floor",
  breaker: "the circuit breaker paused the object store",
  upload: "uploads were not made",
  other: "the object store failed",
});

/**
 * Classifies a failure message.
 *
 * @param message What was logged or thrown.
 * @returns The cause.
 */
export function classifyFault(message: string): FaultCause {
  if (
    /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|ExpiredToken|InvalidToken|TokenRefreshRequired|CredentialsProviderError|AuthorizationHeaderMalformed|credential|access denied|HTTP 40[13]/i
      .test(message)
  ) return "credentials";
  if (/NoSuchBucket|InvalidBucketName|PermanentRedirect|AllAccessDisabled/.test(message)) {
    return "bucket";
  }
  if (/certificate|\bTLS\b|\bSSL\b|UnknownIssuer|self[- ]signed|x509|handshake/i.test(message)) {
    return "tls";
  }
  if (
    /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ECONNRESET|connection refused|Connection reset|dns error|failed to lookup|error sending request|unreachable|tcp connect/i
      .test(message)
  ) return "endpoint";
  if (/deadline exceeded|timed out|TimeoutError|timeout/i.test(message)) return "timeout";
  if (/too slow|slower than|throughput|\btook \d+ ?ms/i.test(message)) return "slow";
  return "other";
}

/** The first message and count of each cause. */
export class Faults {
  #byCause = new Map<FaultCause, Fault>();

  /**
   * Records one occurrence.
   *
   * @param cause The cause.
   * @param message What happened (kept when it is the cause's first).
   * @param count How many occurrences. @default {1}
   * @returns Whether it was the cause's first.
   */
  record(cause: FaultCause, message: string, count = 1): boolean {
    const known = this.#byCause.get(cause);
    if (known) {
      known.count += count;
      return false;
    }
    this.#byCause.set(cause, { cause, count, first: message, firstAt: Date.now() });
    return true;
  }

  /** How often a cause happened. */
  count(cause: FaultCause): number {
    return this.#byCause.get(cause)?.count ?? 0;
  }

  /** The faults seen, in {@linkcode FAULT_CAUSES} order (copies). */
  list(): Fault[] {
    return FAULT_CAUSES.flatMap((c) => {
      const f = this.#byCause.get(c);
      return f ? [{ ...f }] : [];
    });
  }

  /** Forgets everything (`stats --reset`). */
  reset(): void {
    this.#byCause.clear();
  }
}

/** A logger that records faults and logs a line about one object once per shape. */
export interface CollapsingLogger extends Logger {
  /** The faults recorded from the lines. */
  readonly faults: Faults;
  /** Logs one line per shape that was left out, with the count, and starts counting anew. */
  flush(): void;
}

/** A hex id (an action or output id, or a prefix of one), or a key naming one. */
const OBJECT_ID = /"?(?:[\w.-]+\/)*[0-9a-f]{12,}"?/g;
/** The breaker's per-failure line: `[modproxy: ]S3 failure N (kind): text` (or GCS, Azure). */
const FAILURE = /^(.*?)(S3|GCS|Azure) failure \d+ \((\w+)\): (.*)$/;
/** The breaker's pause and disable lines. */
const PAUSED =
  /^(.*?)(?:S3|GCS|Azure) tier (paused for \d+s after \d+ consecutive failures?|disabled): (.*)$/;

/**
 * Wraps a logger: records faults from the S3 tier's lines into `faults` and logs a line about one
 * object (one naming a hex id) only the first time its shape is seen; a failure line is logged
 * the first time its cause is seen.
 *
 * @param log Where lines go.
 * @param faults Where faults are recorded. @default a new registry
 * @returns The wrapper.
 */
export function collapsingLogger(log: Logger, faults: Faults = new Faults()): CollapsingLogger {
  // Per shape: how many lines were held back, and whether any was a warning (the closing count
  // is said at the level of what it stands for: info lines stay behind -v).
  const left = new Map<string, { count: number; warn: boolean }>();
  const pass = (warn: boolean, line: string) => {
    const emit = (l: string) => warn ? log.warn(l) : log.info(l);
    const failure = FAILURE.exec(line);
    if (failure) {
      const cause = classifyFault(failure[4]!);
      if (faults.record(cause, failure[4]!)) return emit(line);
      return hold(`${failure[1]}${failure[2]} failure (${cause})`, warn);
    }
    const paused = PAUSED.exec(line);
    if (paused) {
      const why = paused[3]!.replace(/; serving .*$/, "");
      faults.record("breaker", `${paused[2]!.replace(/ for \d+s/, "")}: ${why}`);
      return emit(line);
    }
    const shape = line.replace(OBJECT_ID, "<id>").replace(/\b\d+\b/g, "N");
    if (shape === line.replace(/\b\d+\b/g, "N")) return emit(line);
    if (/^not uploading /.test(line)) faults.record("upload", line.replace(OBJECT_ID, "<id>"));
    if (!left.has(shape)) {
      left.set(shape, { count: 0, warn: false });
      return emit(line);
    }
    hold(shape, warn);
  };
  const hold = (shape: string, warn: boolean) => {
    const entry = left.get(shape) ?? { count: 0, warn: false };
    entry.count++;
    entry.warn ||= warn;
    left.set(shape, entry);
  };
  return {
    faults,
    info: (line) => pass(false, line),
    warn: (line) => pass(true, line),
    trace: (bit) => log.trace(bit),
    flush: () => {
      for (const [shape, { count, warn }] of left) {
        if (count === 0) continue;
        const line = `${count} more line(s) like "${shape}" were not shown`;
        if (warn) log.warn(line);
        else log.info(line);
      }
      left.clear();
    },
  };
}
