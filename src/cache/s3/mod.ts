/**
 * The S3 tier: a bucket behind the local cache directory, bucket-compatible with tailscale's
 * go-cache-plugin, so either program reads what the other wrote.
 *
 * ## Cache layout
 *
 * Keys, under an optional `--prefix` followed by a slash:
 *
 * - `[prefix/]action/<xx>/<actionHex>` holds `"<outputHex> <unixNanos>"`: the output id in
 *   lower-case hex, one space, the put time in nanoseconds since the Unix epoch, no newline. The
 *   time comes back to go as `Time` on a remote hit.
 * - `[prefix/]output/<xx>/<outputHex>` holds the output's raw bytes (an empty output is an empty
 *   object).
 * - `[prefix/]module/...` belongs to the module proxy.
 *
 * `<xx>` is the first two hex digits of the id. Ids are the protocol's base64 ids in lower-case
 * hex. An upload writes the object first (skipped when a HEAD finds it) and the action record
 * second, so a reader that sees a record almost always finds its object.
 *
 * A remote hit is verified before go sees it: the object's SHA-256 must equal the output id. It
 * is then written to the local tier (object, then action record with the recorded time as its
 * mtime), which is the path go is handed.
 *
 * In the local cache directory the tier keeps `s3-pending/` (one empty file per action whose
 * upload is still owed, sent by a later session) and `s3-breaker` (the circuit breaker's state,
 * shared between processes; see `breaker.ts`).
 *
 * @example
 * ```ts ignore
 * import { AwsObjectStore, TieredCache } from "./mod.ts";
 * import { LocalCache } from "../local.ts";
 * const local = await LocalCache.open("/tmp/gocache");
 * const store = new AwsObjectStore({ bucket: "my-bucket", prefix: "ci" });
 * const cache = new TieredCache(local, store, { minUploadSize: 1024 });
 * ```
 *
 * @module
 */

export * from "./object_store.ts";
export * from "./aws_store.ts";
export * from "./tiered.ts";
export { actionKey, outputKey, parseActionRecord } from "./layout.ts";
export * from "./breaker.ts";
export { TooSlowError } from "./_throughput.ts";
