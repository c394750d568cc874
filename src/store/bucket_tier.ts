/**
 * A bucket tier behind a local directory of files, as the module proxy and the caching proxy
 * have one: fills from the bucket (the own prefix, then each read prefix) through a circuit
 * breaker of the tier's own, and background uploads through an {@linkcode UploadQueue} that
 * records what it could not send and resends it from the next session. Read-only (see
 * {@linkcode ReadThroughStore}) there is no upload queue at all. The caller owns the local
 * files: it says how a fill is written and how an owed upload is rebuilt.
 *
 * The breaker is the tier's own, not the build cache's: a bucket policy may allow one prefix and
 * not the other, and a fill that waits blocks its client outright (there is no compiling
 * instead), so one missed deadline opens it. While it is open, fills skip the bucket at once and
 * uploads are recorded as owed.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { errorMessage } from "../util/mod.ts";
import { CircuitBreaker } from "./breaker.ts";
import { type ObjectStore, type StoredObject, StoreError } from "./object_store.ts";
import { ReadThroughStore } from "./read_through.ts";
import { type UploadEntry, UploadQueue } from "./uploads.ts";

/** The counters a {@linkcode BucketTier} reports. */
export interface BucketTierMetrics {
  add(name: string, value?: number): void;
  set(name: string, value: number): void;
}

/** Options for {@linkcode BucketTier}. */
export interface BucketTierOptions {
  /**
   * Starts every counter's name: `<name>_fills`, `_fill_bytes`, `_skipped`, `_errors`,
   * `_read_prefix_hits`, `_puts`, `_put_skips`, `_uploads_left`, `_uploads_resumed`,
   * `_uploads_skipped_read_only`, `_bytes_up` and the breaker's `_breaker_trips`, `_breaker_open`.
   */
  name: string;
  /** Starts the breaker's log lines, such as `"modproxy: "`. */
  logPrefix: string;
  /** What the breaker's log lines say is served while the bucket is paused. */
  serving: string;
  /** What upload log lines call the entries, such as `"module uploads"`. */
  noun: string;
  /** Where uploads still owed are recorded (created on demand). */
  pendingDir: string;
  /** Marker names in `pendingDir`; other files there are left alone. */
  markerPattern: RegExp;
  /**
   * Turns the marker of an upload an earlier session owed back into its entry; `undefined` when
   * there is nothing left to send.
   */
  rebuild: (marker: string, text: () => Promise<string>) => Promise<UploadEntry | undefined>;
  /** Says which upload failed, for the warning. */
  describeUpload: (entry: UploadEntry) => string;
  /** Deadline of a remote lookup (until the object's headers), in ms. @default {10000} */
  getTimeoutMs?: number;
  /** Deadline of a whole fill, body included, in ms. @default {60000} */
  fillTimeoutMs?: number;
  /** How long the breaker stays open before one fill may try again, in ms. @default {30000} */
  breakerCooldownMs?: number;
  /** Uploads running at once. @default {navigator.hardwareConcurrency} */
  uploadConcurrency?: number;
  /** Deadline of a background upload, in ms. @default {60000} */
  uploadTimeoutMs?: number;
  /** How long `close()` waits for pending uploads, in ms. @default {60000} */
  closeTimeoutMs?: number;
  /** Warnings and lifecycle lines. @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: BucketTierMetrics;
}

/** What {@linkcode BucketTier.fill} copies and how. */
export interface BucketFill {
  /** Names the object in the warning, such as `module file "k"`. */
  what: string;
  /** Writes the object locally (checking it); resolves to the bytes written. */
  write: (object: StoredObject, signal: AbortSignal) => Promise<number>;
}

/** Fills a local directory from a bucket and uploads its new files, behind a breaker. */
export class BucketTier {
  /** The own prefix first, then the read prefixes; empty without a bucket. */
  readonly #remotes: readonly ObjectStore[];
  readonly #options: BucketTierOptions;
  readonly #breaker: CircuitBreaker;
  readonly #uploads?: UploadQueue;
  readonly #resuming: Promise<unknown>;
  readonly #getTimeoutMs: number;
  readonly #fillTimeoutMs: number;

  /**
   * Opens the tier; uploads an earlier session owed are queued in the background.
   *
   * @param store The bucket under the tier's prefix (a {@linkcode ReadThroughStore} adds its
   * rules), or `undefined` for none: fills then find nothing and uploads are dropped.
   * @param options Names, deadlines, the pending directory, logging and metrics.
   */
  constructor(store: ObjectStore | undefined, options: BucketTierOptions) {
    const view = store && ReadThroughStore.of(store);
    this.#remotes = view?.lookupOrder ?? [];
    this.#options = options;
    this.#getTimeoutMs = options.getTimeoutMs ?? 10_000;
    this.#fillTimeoutMs = options.fillTimeoutMs ?? 60_000;
    const { name, log, metrics } = options;
    this.#breaker = new CircuitBreaker({
      stallThreshold: 1,
      cooldownMs: options.breakerCooldownMs,
      probeMs: this.#getTimeoutMs,
      log,
      logPrefix: options.logPrefix,
      serving: options.serving,
      metrics: view ? metrics : undefined,
      metricPrefix: `${name}_breaker`,
    });
    if (view && !view.readOnly) {
      this.#uploads = new UploadQueue(view.own, {
        breaker: this.#breaker,
        pendingDir: options.pendingDir,
        concurrency: options.uploadConcurrency,
        uploadTimeoutMs: options.uploadTimeoutMs,
        headTimeoutMs: this.#getTimeoutMs,
        closeTimeoutMs: options.closeTimeoutMs,
        markerPattern: options.markerPattern,
        noun: options.noun,
        onFailed: (entry, error) =>
          log?.warn(
            `Cannot upload ${options.describeUpload(entry)} to the object store: ${
              errorMessage(error)
            }`,
          ),
        log,
        metrics,
        names: {
          done: `${name}_puts`,
          skipped: `${name}_put_skips`,
          failed: `${name}_errors`,
          left: `${name}_uploads_left`,
          resumed: `${name}_uploads_resumed`,
          bytesUp: `${name}_bytes_up`,
        },
      });
    }
    // close() waits for this to have queued them.
    this.#resuming = this.#uploads?.resume(options.rebuild).catch(() => 0) ?? Promise.resolve();
  }

  /** Whether a bucket is configured. */
  get hasRemote(): boolean {
    return this.#remotes.length > 0;
  }

  /**
   * Copies an object from the bucket into the local directory: the own prefix, then each read
   * prefix in turn (counted in `<name>_read_prefix_hits`). Skipped at once while the breaker is
   * open. The lookup gets a lookup's deadline, the body the rest of the fill's; the body handed
   * to `write` fails with a {@linkcode StoreError} when the bucket does, and only those failures
   * count toward the breaker (not a failed check, a cap or a full disk). A failure is logged,
   * counted in `<name>_errors` and answered `false`.
   *
   * @param key The object's key in the bucket.
   * @param fill What to call it and how to write it.
   * @returns Whether the object is now local.
   */
  async fill(key: string, fill: BucketFill): Promise<boolean> {
    const { what, write } = fill;
    if (this.#remotes.length === 0) return false;
    const { name, metrics } = this.#options;
    let skipped = false;
    try {
      const size = await this.#breaker.call(
        (trip, answered) => this.#fillFrom(key, write, trip, answered),
        {
          whenPaused: () => {
            skipped = true;
            return undefined;
          },
          evidence: (error) => error instanceof StoreError ? "failed" : "nothing",
        },
      );
      if (skipped) metrics?.add(`${name}_skipped`);
      if (size === undefined) return false;
      metrics?.add(`${name}_fills`);
      metrics?.add(`${name}_fill_bytes`, size);
      return true;
    } catch (error) {
      metrics?.add(`${name}_errors`);
      this.#options.log?.warn(`Cannot read ${what} from the object store: ${errorMessage(error)}`);
      return false;
    }
  }

  /**
   * Uploads a local file in the background (bounded queue, own deadline); failures are logged,
   * counted and recorded for the next session. Read-only, nothing is sent (counted in
   * `<name>_uploads_skipped_read_only`).
   *
   * @param entry The upload.
   */
  upload(entry: UploadEntry): void {
    if (this.#uploads) this.#uploads.enqueue(entry);
    else if (this.hasRemote) {
      this.#options.metrics?.add(`${this.#options.name}_uploads_skipped_read_only`);
    }
  }

  /** Waits for pending uploads (bounded; what is left is recorded as owed). */
  async close(): Promise<void> {
    await this.#resuming;
    await this.#uploads?.close();
  }

  async #fillFrom(
    key: string,
    write: (object: StoredObject, signal: AbortSignal) => Promise<number>,
    trip: AbortSignal,
    answered: () => void,
  ): Promise<number | undefined> {
    for (const [index, remote] of this.#remotes.entries()) {
      const lookup = new AbortController();
      const signal = AbortSignal.any([
        AbortSignal.timeout(this.#fillTimeoutMs),
        trip,
        lookup.signal,
      ]);
      const timer = setTimeout(
        () => lookup.abort(new DOMException("lookup deadline exceeded", "TimeoutError")),
        this.#getTimeoutMs,
      );
      const object = await remote.get(key, { signal }).finally(() => clearTimeout(timer));
      answered();
      if (!object) continue;
      const size = await write(
        { size: object.size, body: storeBody(object.body, key, signal) },
        signal,
      );
      if (index > 0) this.#options.metrics?.add(`${this.#options.name}_read_prefix_hits`);
      return size;
    }
    return undefined;
  }
}

/**
 * A remote body whose read failures are the bucket's ({@linkcode StoreError}), so that the
 * breaker counts them and not a failed check or a full disk.
 */
function storeBody(
  body: ReadableStream<Uint8Array>,
  key: string,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        const reason = signal.aborted ? "deadline exceeded" : errorMessage(error);
        throw new StoreError(
          `Cannot read bucket object ${JSON.stringify(key)}: ${reason}`,
          signal.aborted ? "timeout" : "other",
          { cause: error },
        );
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
