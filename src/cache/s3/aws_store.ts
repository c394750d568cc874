/**
 * The {@linkcode ObjectStore} on a real S3 bucket, through `@aws-sdk/client-s3`. The SDK is
 * imported on first use, never at module load, so a plugin without `--bucket` (and the handshake
 * of one with it) never pays for it.
 *
 * @module
 */

import type { S3Client } from "@aws-sdk/client-s3";
import type { ObjectStore, StoreCallOptions, StoredObject } from "./object_store.ts";

/**
 * Why a remote call failed, so the tiered cache can tell a misconfiguration (stop for the
 * session) from an unreachable endpoint (pause) and from a one-off failure (count it).
 */
export type StoreErrorKind = "config" | "unreachable" | "timeout" | "other";

/** A failed store call, with its {@linkcode StoreErrorKind}. */
export class StoreError extends Error {
  override name = "StoreError";
  /** What kind of failure this is. */
  readonly kind: StoreErrorKind;

  /**
   * @param message One line: what failed and why.
   * @param kind The failure's kind.
   * @param options The underlying error as `cause`.
   */
  constructor(message: string, kind: StoreErrorKind, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** Options for {@linkcode AwsObjectStore}. */
export interface AwsObjectStoreOptions {
  /** The bucket. */
  bucket: string;
  /** Key prefix without slashes at either end; keys become `prefix/key`. @default {""} */
  prefix?: string;
  /** Region; when empty it is looked up with GetBucketLocation on first use. @default {""} */
  region?: string;
  /** S3-compatible endpoint URL. @default AWS */
  endpoint?: string;
  /** Path-style URLs (`endpoint/bucket/key`). @default {false} */
  pathStyle?: boolean;
  /**
   * Deadline for a call that passes no signal of its own, in milliseconds.
   * @default {30000}
   */
  timeoutMs?: number;
  /** Records request latency (`s3_request_seconds`). @default no recording */
  observe?: (name: string, seconds: number) => void;
  /** Per-call trace lines (`--debug=4`). @default no tracing */
  trace?: (line: string) => void;
}

type Sdk = typeof import("@aws-sdk/client-s3");

/** The lazily created client, shared by stores with different prefixes. */
class Connection {
  readonly options: AwsObjectStoreOptions;
  #client?: Promise<{ sdk: Sdk; client: S3Client }>;

  constructor(options: AwsObjectStoreOptions) {
    this.options = options;
  }

  /** The SDK and a client for the bucket's region; a failed lookup is retried next time. */
  client(signal?: AbortSignal): Promise<{ sdk: Sdk; client: S3Client }> {
    this.#client ??= this.#open(signal).catch((error) => {
      this.#client = undefined;
      throw error;
    });
    return this.#client;
  }

  async #open(signal?: AbortSignal): Promise<{ sdk: Sdk; client: S3Client }> {
    const sdk = await import("@aws-sdk/client-s3");
    let region = this.options.region ?? "";
    if (!region) {
      // GetBucketLocation answers from any region; "" means the historical us-east-1.
      const probe = this.#make(sdk, "us-east-1");
      try {
        const out = await probe.send(
          new sdk.GetBucketLocationCommand({ Bucket: this.options.bucket }),
          { abortSignal: signal },
        );
        region = out.LocationConstraint || "us-east-1";
      } catch (error) {
        throw classify(error, `Cannot find the region of bucket ${quote(this.options.bucket)}`);
      } finally {
        probe.destroy();
      }
    }
    return { sdk, client: this.#make(sdk, region) };
  }

  #make(sdk: Sdk, region: string): S3Client {
    return new sdk.S3Client({
      region,
      endpoint: this.options.endpoint || undefined,
      forcePathStyle: this.options.pathStyle ?? false,
      // Our own deadlines bound each call; one retry covers a dropped keep-alive connection.
      maxAttempts: 2,
      // Skip the SDK's default CRC trailers: they need aws-chunked uploads some S3-compatible
      // servers reject, and response validation would buffer bodies. go checks output ids.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: { connectionTimeout: 5_000 },
      // Without a logger the SDK writes some warnings with console.warn; ours go to --debug=4.
      logger: sdkLogger(this.options.trace),
    });
  }
}

/**
 * An {@linkcode ObjectStore} on an S3 bucket under a key prefix.
 *
 * @example
 * ```ts ignore
 * import { AwsObjectStore } from "./aws_store.ts";
 * const store = new AwsObjectStore({ bucket: "my-bucket", prefix: "ci", region: "us-east-1" });
 * const object = await store.get("action/00/00…");
 * ```
 */
export class AwsObjectStore implements ObjectStore {
  #connection: Connection;
  #prefix: string;

  /**
   * Creates a store; nothing is imported or contacted until the first call.
   *
   * @param options Bucket, prefix, region, endpoint and hooks.
   */
  constructor(options: AwsObjectStoreOptions) {
    this.#connection = new Connection(options);
    this.#prefix = trimSlashes(options.prefix ?? "");
  }

  /**
   * A store on the same bucket and client whose keys live under `sub/` within this one's prefix.
   *
   * @param sub The extra prefix, such as `module`.
   * @returns The store.
   */
  withPrefix(sub: string): AwsObjectStore {
    const store = new AwsObjectStore({ bucket: this.#connection.options.bucket });
    store.#connection = this.#connection;
    store.#prefix = [this.#prefix, trimSlashes(sub)].filter((p) => p !== "").join("/");
    return store;
  }

  /** The full key of `key` in the bucket. */
  key(key: string): string {
    return this.#prefix ? `${this.#prefix}/${key}` : key;
  }

  /** Reads an object; `undefined` for NoSuchKey/NotFound. */
  get(key: string, options: StoreCallOptions = {}): Promise<StoredObject | undefined> {
    return this.#call("GET", key, options, async ({ sdk, client }, signal) => {
      try {
        const out = await client.send(
          new sdk.GetObjectCommand({ Bucket: this.#connection.options.bucket, Key: this.key(key) }),
          { abortSignal: signal },
        );
        if (!out.Body) throw new Error("response has no body");
        return {
          size: out.ContentLength ?? 0,
          body: out.Body.transformToWebStream() as ReadableStream<Uint8Array>,
        };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  /** Whether an object exists (HEAD). */
  has(key: string, options: StoreCallOptions = {}): Promise<boolean> {
    return this.#call("HEAD", key, options, async ({ sdk, client }, signal) => {
      try {
        await client.send(
          new sdk.HeadObjectCommand({
            Bucket: this.#connection.options.bucket,
            Key: this.key(key),
          }),
          { abortSignal: signal },
        );
        return true;
      } catch (error) {
        if (isNotFound(error)) return false;
        throw error;
      }
    });
  }

  /** Writes an object of known size; a stream is sent as it is read, never buffered whole. */
  put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    return this.#call("PUT", key, options, async ({ sdk, client }, signal) => {
      let payload: Uint8Array | import("node:stream").Readable;
      if (body instanceof Uint8Array) {
        payload = body;
      } else {
        const { Readable } = await import("node:stream");
        // deno-lint-ignore no-explicit-any
        payload = Readable.fromWeb(body as any);
      }
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.#connection.options.bucket,
          Key: this.key(key),
          Body: payload,
          ContentLength: options.size,
        }),
        { abortSignal: signal },
      );
    });
  }

  async #call<T>(
    op: string,
    key: string,
    options: StoreCallOptions,
    run: (sdk: { sdk: Sdk; client: S3Client }, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const { trace, observe, timeoutMs } = this.#connection.options;
    const signal = options.signal ?? AbortSignal.timeout(timeoutMs ?? 30_000);
    const fullKey = this.key(key);
    trace?.(`B S3 ${op} ${fullKey}`);
    const started = performance.now();
    try {
      signal.throwIfAborted();
      const client = await this.#connection.client(signal);
      const result = await run(client, signal);
      const miss = op !== "PUT" && (result === undefined || result === false);
      trace?.(
        `E S3 ${op} ${fullKey}${miss ? " M:1" : ""} ${(performance.now() - started).toFixed(1)}ms`,
      );
      return result;
    } catch (error) {
      const failure = error instanceof StoreError
        ? error
        : classify(error, `Cannot ${op} ${quote(fullKey)}`, signal);
      trace?.(
        `E S3 ${op} ${fullKey} err=${JSON.stringify(failure.message)} ${
          (performance.now() - started).toFixed(1)
        }ms`,
      );
      throw failure;
    } finally {
      observe?.("s3_request_seconds", (performance.now() - started) / 1000);
    }
  }
}

const CONFIG_ERRORS = new Set([
  "NoSuchBucket",
  "InvalidBucketName",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "AccessDenied",
  "AllAccessDisabled",
  "AuthorizationHeaderMalformed",
  "PermanentRedirect",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "CredentialsProviderError",
]);

const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "TimeoutError", // the SDK's name for a connection timeout
]);

/**
 * Wraps an SDK error in a one-line {@linkcode StoreError} of the right kind.
 *
 * @param error What the SDK threw.
 * @param action What was being done, for the message.
 * @param signal The call's signal, to recognise its deadline.
 * @returns The wrapped error.
 */
export function classify(error: unknown, action: string, signal?: AbortSignal): StoreError {
  if (error instanceof StoreError) return error;
  const e = (error ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const name = e.name ?? "Error";
  const status = e.$metadata?.httpStatusCode;
  const text = firstLine(e.message || name);
  if (signal?.aborted || name === "AbortError") {
    const reason = signal?.reason instanceof Error && signal.reason.name === "TimeoutError"
      ? "deadline exceeded"
      : "aborted";
    return new StoreError(`${action}: ${reason}`, "timeout", { cause: error });
  }
  if (CONFIG_ERRORS.has(name)) {
    return new StoreError(`${action}: ${name}: ${text}`, "config", { cause: error });
  }
  if (status === 401 || status === 403) {
    // HEAD answers carry no error code: say what the status means.
    const detail = name === "Unknown" || name === "UnknownError" || name === String(status)
      ? `access denied (HTTP ${status}): check the credentials and the bucket's policy`
      : `${name} (HTTP ${status}): ${text}`;
    return new StoreError(`${action}: ${detail}`, "config", { cause: error });
  }
  const code = e.code ?? errorCode(error);
  if ((code && UNREACHABLE_CODES.has(code)) || UNREACHABLE_CODES.has(name)) {
    return new StoreError(`${action}: ${text}`, "unreachable", { cause: error });
  }
  const detail = status ? `${name} (HTTP ${status}): ${text}` : `${name}: ${text}`;
  return new StoreError(`${action}: ${detail}`, "other", { cause: error });
}

function sdkLogger(trace?: (line: string) => void) {
  const emit = (...args: unknown[]) => trace?.(`S3 SDK: ${args.map(show).join(" ")}`);
  return { trace() {}, debug() {}, info() {}, warn: emit, error: emit };
}

function show(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function errorCode(error: unknown): string | undefined {
  // Node errors carry `code`; AggregateError (happy eyeballs) hides it in `errors`.
  let e: unknown = error;
  for (let depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const inner = (e as { errors?: unknown[] }).errors?.[0];
    e = inner ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function isNotFound(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === "NoSuchKey" || name === "NotFound";
}

function trimSlashes(text: string): string {
  return text.replace(/^\/+|\/+$/g, "");
}

function quote(text: string): string {
  return JSON.stringify(text);
}

function firstLine(text: string): string {
  return text.split("\n")[0]!.trim();
}
