/**
 * The {@linkcode ObjectStore} on a real S3 bucket: objects are read and written with `fetch` and
 * a small SigV4 signer; `@aws-sdk/client-s3` supplies credentials, the endpoint and the region.
 * The SDK is imported on first use, never at module load, so a plugin without `--bucket` (and the
 * handshake of one with it) never pays for it. A private CA named by `AWS_CA_BUNDLE` or the
 * profile's `ca_bundle` is read on first use too and trusted on every request path.
 *
 * This file is the adapter's face: keys, prefixes, deadlines, tracing and latency. Its parts:
 *
 * - `_connection.ts`: the lazily opened connection (CA bundle, credentials, region, endpoint;
 *   SDK or not), shared by stores on one bucket.
 * - `_signed_fetch.ts`: the data path, one signed request with `fetch` (a PUT body streamed with
 *   its Content-Length), with its one retry.
 * - `_errors.ts`: error classification into {@linkcode StoreError} kinds (`classify`).
 * - `_sigv4.ts` (the signer) and `_tls.ts` (the CA bundle).
 *
 * @module
 */

import { joinPrefix, storedObject, trimSlashes } from "../_adapter.ts";
import { type AwsObjectStoreOptions, Connection } from "./_connection.ts";
import { classify } from "../_errors.ts";
import { type PutPayload, putPayload, sendSigned } from "./_signed_fetch.ts";
import type { BucketStore } from "../open.ts";
import { type StoreCallOptions, type StoredObject, StoreError } from "../object_store.ts";

export type { AwsObjectStoreOptions };

/**
 * An {@linkcode ObjectStore} on an S3 bucket under a key prefix.
 *
 * GET, HEAD and PUT go straight through `fetch`, signed by a small SigV4 signer: the SDK's
 * middleware stack and its node:http handler cost several times the CPU per request. The SDK
 * still resolves credentials (the whole provider chain, with refresh), the endpoint and, when no
 * region is given, the bucket's region.
 *
 * @example
 * ```ts ignore
 * import { AwsObjectStore } from "./store.ts";
 * const store = new AwsObjectStore({ bucket: "my-bucket", prefix: "ci", region: "us-east-1" });
 * const object = await store.get("action/00/00…");
 * ```
 */
export class AwsObjectStore implements BucketStore {
  /** This store's kind. */
  readonly kind = "s3";
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
    store.#prefix = joinPrefix(this.#prefix, sub);
    return store;
  }

  /** The full key of `key` in the bucket. */
  key(key: string): string {
    return this.#prefix ? `${this.#prefix}/${key}` : key;
  }

  /** Reads an object; `undefined` for NoSuchKey/NotFound. */
  get(key: string, options: StoreCallOptions = {}): Promise<StoredObject | undefined> {
    return this.#call("GET", key, options, async (response) => {
      if (!response) return undefined;
      return await storedObject(response);
    });
  }

  /** Whether an object exists (HEAD). */
  has(key: string, options: StoreCallOptions = {}): Promise<boolean> {
    return this.#call("HEAD", key, options, async (response) => {
      await response?.body?.cancel();
      return response !== undefined;
    });
  }

  /**
   * Writes an object of known size, sent from the caller's memory (no copy: the bytes must not
   * change until the call settles). A stream of up to 4 MiB is read into one buffer first, so
   * that a failed attempt can be sent again; a bigger one is sent as it is read, never buffered
   * whole (see `putPayload` and `SizedBody` in `_signed_fetch.ts`).
   */
  put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    const { size } = options;
    return this.#call(
      "PUT",
      key,
      options,
      async (response) => {
        await response?.body?.cancel();
      },
      { body, size },
    );
  }

  async #call<T>(
    op: "GET" | "HEAD" | "PUT",
    key: string,
    options: StoreCallOptions,
    done: (response: Response | undefined) => Promise<T>,
    upload?: { body: Uint8Array | ReadableStream<Uint8Array>; size: number },
  ): Promise<T> {
    const { trace, observe, timeoutMs } = this.#connection.options;
    const signal = options.signal ?? AbortSignal.timeout(timeoutMs ?? 30_000);
    const fullKey = this.key(key);
    trace?.(`B S3 ${op} ${fullKey}`);
    const started = performance.now();
    let payload: PutPayload | undefined;
    try {
      signal.throwIfAborted();
      const session = await this.#connection.session(signal);
      payload = upload && await putPayload(upload.body, upload.size);
      const response = await sendSigned(this.#connection, session, {
        op,
        fullKey,
        signal,
        body: payload?.body,
        size: upload?.size,
      });
      const result = await done(response);
      const miss = op !== "PUT" && response === undefined;
      trace?.(
        `E S3 ${op} ${fullKey}${miss ? " M:1" : ""} ${(performance.now() - started).toFixed(1)}ms`,
      );
      return result;
    } catch (error) {
      const failure = error instanceof StoreError
        ? error
        : classify(error, `Cannot ${op} ${JSON.stringify(fullKey)}`, signal);
      trace?.(
        `E S3 ${op} ${fullKey} err=${JSON.stringify(failure.message)} ${
          (performance.now() - started).toFixed(1)
        }ms`,
      );
      throw failure;
    } finally {
      payload?.release();
      observe?.("s3_request_seconds", (performance.now() - started) / 1000);
    }
  }
}
