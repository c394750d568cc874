/**
 * The {@linkcode ObjectStore} on an Azure Blob Storage container: blobs are read and written with
 * `fetch`, authorized by a small Shared Key signer, a SAS token or a bearer token from
 * `@azure/identity` (imported on the first call that needs one, never at module load). Keys keep
 * the layout they have in an S3 bucket (`PREFIX/action/xx/ID`, `PREFIX/output/xx/ID`, …), as
 * block blobs in the container.
 *
 * This file is the adapter's face: keys, prefixes, deadlines, tracing and latency. Its parts:
 *
 * - `_connection.ts`: the lazily opened connection (account, endpoint, credentials).
 * - `_connection_string.ts`: connection strings, Azurite's included.
 * - `_shared_key.ts`: the Shared Key signer.
 * - `_request.ts`: the data path, one request with `fetch`, with its one retry.
 * - `_errors.ts`: Blob Storage's error answers and their classification into
 *   {@linkcode StoreError} kinds.
 *
 * @module
 */

import { joinPrefix, storedObject, trimSlashes } from "../_adapter.ts";
import { type AzureBlobStoreOptions, Connection } from "./_connection.ts";
import { classifyAzure } from "./_errors.ts";
import { sendBlobRequest } from "./_request.ts";
import { type PutPayload, putPayload } from "../_body.ts";
import type { BucketStore } from "../open.ts";
import { type StoreCallOptions, type StoredObject, StoreError } from "../object_store.ts";

export type { AzureBlobStoreOptions };

/** The latency histogram of Azure requests. */
export const AZURE_REQUEST_METRIC = "azure_request_seconds";

/**
 * An {@linkcode ObjectStore} on an Azure Blob Storage container under a key prefix.
 *
 * Get Blob, Get Blob Properties and Put Blob go straight through `fetch`: Microsoft's
 * `@azure/storage-blob` pipeline costs more CPU per request and its modules take long to load.
 * `@azure/identity` supplies Entra tokens (managed identity, workload identity federation, a
 * service principal) when no key or SAS is given.
 *
 * @example
 * ```ts ignore
 * import { AzureBlobStore } from "./store.ts";
 * const store = new AzureBlobStore({ container: "gocache", account: "myaccount" });
 * const object = await store.get("action/00/00…");
 * ```
 */
export class AzureBlobStore implements BucketStore {
  /** This store's kind. */
  readonly kind = "azure";
  #connection: Connection;
  #prefix: string;

  /**
   * Creates a store; nothing is imported, read or contacted until the first call.
   *
   * @param options Container, account, credentials, prefix and hooks.
   */
  constructor(options: AzureBlobStoreOptions) {
    this.#connection = new Connection(options);
    this.#prefix = trimSlashes(options.prefix ?? "");
  }

  /**
   * A store on the same container and connection whose keys live under `sub/` within this one's
   * prefix.
   *
   * @param sub The extra prefix, such as `module`.
   * @returns The store.
   */
  withPrefix(sub: string): AzureBlobStore {
    const store = new AzureBlobStore({ container: this.#connection.options.container });
    store.#connection = this.#connection;
    store.#prefix = joinPrefix(this.#prefix, sub);
    return store;
  }

  /** The full name of `key` in the container. */
  key(key: string): string {
    return this.#prefix ? `${this.#prefix}/${key}` : key;
  }

  /** Reads a blob; `undefined` for BlobNotFound. */
  get(key: string, options: StoreCallOptions = {}): Promise<StoredObject | undefined> {
    return this.#call("GET", key, options, async (response) => {
      if (!response) return undefined;
      return await storedObject(response);
    });
  }

  /** Whether a blob exists (Get Blob Properties). */
  has(key: string, options: StoreCallOptions = {}): Promise<boolean> {
    return this.#call("HEAD", key, options, async (response) => {
      await response?.body?.cancel();
      return response !== undefined;
    });
  }

  /**
   * Writes a blob of known size with one Put Blob, sent from the caller's memory (no copy: the
   * bytes must not change until the call settles). A stream of up to 4 MiB is read into one
   * buffer first, so that a failed attempt can be sent again; a bigger one is sent as it is read.
   */
  put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    return this.#call("PUT", key, options, async (response) => {
      await response?.body?.cancel();
    }, { body, size: options.size });
  }

  async #call<T>(
    method: "GET" | "HEAD" | "PUT",
    key: string,
    options: StoreCallOptions,
    done: (response: Response | undefined) => Promise<T>,
    upload?: { body: Uint8Array | ReadableStream<Uint8Array>; size: number },
  ): Promise<T> {
    const { trace, observe, timeoutMs } = this.#connection.options;
    const signal = options.signal ?? AbortSignal.timeout(timeoutMs ?? 30_000);
    const name = this.key(key);
    trace?.(`B AZURE ${method} ${name}`);
    const started = performance.now();
    let payload: PutPayload | undefined;
    try {
      signal.throwIfAborted();
      const session = await this.#connection.session();
      payload = upload && await putPayload(upload.body, upload.size);
      const response = await sendBlobRequest(this.#connection, session, {
        method,
        name,
        signal,
        body: payload?.body,
        size: upload?.size,
      });
      const result = await done(response);
      const miss = method !== "PUT" && response === undefined;
      trace?.(
        `E AZURE ${method} ${name}${miss ? " M:1" : ""} ${
          (performance.now() - started).toFixed(1)
        }ms`,
      );
      return result;
    } catch (error) {
      const failure = error instanceof StoreError
        ? error
        : classifyAzure(error, `Cannot ${method} ${JSON.stringify(name)}`, signal);
      trace?.(
        `E AZURE ${method} ${name} err=${JSON.stringify(failure.message)} ${
          (performance.now() - started).toFixed(1)
        }ms`,
      );
      throw failure;
    } finally {
      payload?.release();
      observe?.(AZURE_REQUEST_METRIC, (performance.now() - started) / 1000);
    }
  }
}
