/**
 * The remote store: the narrow interface the build cache, the module proxy and the caching proxy
 * need from a bucket, the stores behind it, and what guards every call to one. Nothing above this
 * folder knows which store it talks to; they import this file only.
 *
 * ## Where to start reading
 *
 * - `object_store.ts`: {@linkcode ObjectStore} (get, has, put), its {@linkcode StoreError} (with
 *   the failure's kind, which the breaker reads) and {@linkcode MemoryObjectStore} for tests.
 * - `spec.ts`: {@linkcode parseBucketName} (`s3://`, `gs://`, `azblob://` or a plain S3 name)
 *   and {@linkcode StoreSpec}, which store and its settings; imports nothing.
 * - `open.ts`: {@linkcode openStore} and {@linkcode BucketStore}, a store under a prefix.
 * - `breaker.ts`: {@linkcode CircuitBreaker}, which stops calls to a failing store (state
 *   optionally shared between processes through a file). Every remote call goes through its
 *   one guarded call, {@linkcode CircuitBreaker.call}: skipped while the breaker is open, cut
 *   short at its deadline or when the breaker opens, its outcome recorded.
 * - `uploads.ts`: {@linkcode UploadQueue}, bounded background uploads with a pending directory
 *   for a later session.
 * - `read_through.ts`: {@linkcode ReadThroughStore}, the trust tiers: the own prefix, read
 *   prefixes looked up after a miss under it, and read-only mode.
 * - `bucket_tier.ts`: {@linkcode BucketTier}, a bucket behind a local directory of files as the
 *   module proxy and the caching proxy have one (fills in read-through order behind a breaker
 *   of its own, uploads, owed uploads resumed). The build cache's tiers are in
 *   `src/cache/remote/`.
 * - `streams.ts`, `throughput.ts`, `hash.ts`: verifying and bounded stream helpers, the download
 *   throughput floor, SHA-256 loaded on first need.
 * - `s3/`: the S3 adapter (`store.ts`, with its connection, signer and signed fetch);
 * - `gcs/`: the Google Cloud Storage adapter (`store.ts`, with its connection, requests on the
 *   JSON API and error answers);
 *   `_errors.ts` and `_tls.ts` classify failures and read a private CA bundle for every adapter.
 * - `azure/`: the Azure Blob Storage adapter (`store.ts`: fetch with Shared Key, SAS or an Entra
 *   token; `@azure/identity` loaded on the first call that needs a token).
 *
 * Imports: this folder imports `src/util/` and `src/log/` only.
 *
 * @module
 */

export * from "./object_store.ts";
export * from "./spec.ts";
export * from "./open.ts";
export * from "./breaker.ts";
export * from "./uploads.ts";
export * from "./read_through.ts";
export * from "./bucket_tier.ts";
export * from "./streams.ts";
export * from "./throughput.ts";
export * from "./hash.ts";
export * from "./zstd.ts";
export { classify } from "./_errors.ts";
export { AwsObjectStore, type AwsObjectStoreOptions } from "./s3/store.ts";
export { AzureBlobStore, type AzureBlobStoreOptions } from "./azure/store.ts";
export { GCS_REQUEST_SECONDS, GcsObjectStore, type GcsObjectStoreOptions } from "./gcs/store.ts";
