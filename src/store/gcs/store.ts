/**
 * The {@linkcode ObjectStore} on a Google Cloud Storage bucket, through the JSON API (which also
 * serves a bucket's zonal Anywhere Cache): objects are read and written with `fetch`;
 * `google-auth-library` supplies credentials and refreshes tokens, imported on the first remote
 * call only, so a plugin's handshake never pays for it. `STORAGE_EMULATOR_HOST` points the store
 * at an emulator (such as fake-gcs-server), without credentials.
 *
 * This file is the adapter's face: keys, prefixes, deadlines, tracing and latency. Its parts:
 *
 * - `_connection.ts`: the lazily opened connection (endpoint, credentials, CA bundle), shared by
 *   stores on one bucket.
 * - `_request.ts`: the data path, one request with `fetch`, with its one retry.
 * - `_errors.ts`: GCS's error answers, and their classification into {@linkcode StoreError}
 *   kinds.
 *
 * @module
 */

import { joinPrefix, storedObject, trimSlashes } from "../_adapter.ts";
import { Connection, type GcsObjectStoreOptions } from "./_connection.ts";
import { classifyGcs } from "./_errors.ts";
import { sendRequest } from "./_request.ts";
import { putPayload } from "../_body.ts";
import type { BucketStore } from "../open.ts";
import type { StoreCallOptions, StoredObject } from "../object_store.ts";

export type { GcsObjectStoreOptions };

/** The latency histogram every GCS request is recorded in. */
export const GCS_REQUEST_SECONDS = "gcs_request_seconds";

/**
 * An {@linkcode ObjectStore} on a GCS bucket under a key prefix, with the same key layout as on
 * S3 (`[prefix/]action/<xx>/<id>`, …).
 *
 * @example
 * ```ts ignore
 * import { GcsObjectStore } from "./store.ts";
 * const store = new GcsObjectStore({ bucket: "my-bucket", prefix: "ci" });
 * const object = await store.get("action/00/00…");
 * ```
 */
export class GcsObjectStore implements BucketStore {
  /** This store's kind. */
  readonly kind = "gcs";
  #connection: Connection;
  #prefix: string;

  /**
   * Creates a store; nothing is imported or contacted until the first call.
   *
   * @param options Bucket, prefix, key file, emulator endpoint and hooks.
   */
  constructor(options: GcsObjectStoreOptions) {
    this.#connection = new Connection(options);
    this.#prefix = trimSlashes(options.prefix ?? "");
  }

  /**
   * A store on the same bucket and connection whose keys live under `sub/` within this one's
   * prefix.
   *
   * @param sub The extra prefix, such as `module`.
   * @returns The store.
   */
  withPrefix(sub: string): GcsObjectStore {
    const store = new GcsObjectStore({ bucket: this.#connection.options.bucket });
    store.#connection = this.#connection;
    store.#prefix = joinPrefix(this.#prefix, sub);
    return store;
  }

  /** The full name of `key` in the bucket. */
  key(key: string): string {
    return this.#prefix ? `${this.#prefix}/${key}` : key;
  }

  /** Reads an object; `undefined` when it does not exist. */
  get(key: string, options: StoreCallOptions = {}): Promise<StoredObject | undefined> {
    return this.#call("GET", key, options, async (response) => {
      if (!response) return undefined;
      return await storedObject(
        response,
        response.headers.get("content-length") ??
          response.headers.get("x-goog-stored-content-length"),
      );
    });
  }

  /** Whether an object exists (its metadata). */
  has(key: string, options: StoreCallOptions = {}): Promise<boolean> {
    return this.#call("HEAD", key, options, async (response) => {
      // The metadata is a few bytes of JSON: read to the end, the connection is kept for reuse
      // (a cancelled body may close it).
      await response?.arrayBuffer();
      return response !== undefined;
    });
  }

  /**
   * Writes an object of known size in one upload request, sent from the caller's memory (the
   * bytes must not change until the call settles). A stream of up to 4 MiB is read into one
   * buffer first, so that a failed attempt can be sent again; a bigger one is sent as it is
   * read.
   */
  put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    return this.#call("PUT", key, options, async (response) => {
      await response?.arrayBuffer(); // the new object's size, in JSON
    }, { body, size: options.size });
  }

  async #call<T>(
    op: "GET" | "HEAD" | "PUT",
    key: string,
    options: StoreCallOptions,
    done: (response: Response | undefined) => Promise<T>,
    upload?: { body: Uint8Array | ReadableStream<Uint8Array>; size: number },
  ): Promise<T> {
    const { trace, observe, timeoutMs, bucket } = this.#connection.options;
    const signal = options.signal ?? AbortSignal.timeout(timeoutMs ?? 30_000);
    const fullKey = this.key(key);
    trace?.(`B GCS ${op} ${fullKey}`);
    const started = performance.now();
    let release: (() => void) | undefined;
    try {
      signal.throwIfAborted();
      const session = await this.#connection.session();
      const payload = upload && await putPayload(upload.body, upload.size);
      release = payload?.release;
      const response = await sendRequest(session, {
        op,
        bucket,
        fullKey,
        signal,
        body: payload?.body,
        size: upload?.size,
      });
      const result = await done(response);
      const miss = op !== "PUT" && response === undefined;
      trace?.(
        `E GCS ${op} ${fullKey}${miss ? " M:1" : ""} ${(performance.now() - started).toFixed(1)}ms`,
      );
      return result;
    } catch (error) {
      const failure = classifyGcs(error, `Cannot ${op} ${JSON.stringify(fullKey)}`, signal);
      trace?.(
        `E GCS ${op} ${fullKey} err=${JSON.stringify(failure.message)} ${
          (performance.now() - started).toFixed(1)
        }ms`,
      );
      throw failure;
    } finally {
      release?.();
      observe?.(GCS_REQUEST_SECONDS, (performance.now() - started) / 1000);
    }
  }
}
