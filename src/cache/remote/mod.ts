/**
 * The remote tier: a bucket (any store of `src/store/`) behind the local cache directory,
 * bucket-compatible with tailscale's go-cache-plugin, so either program reads what the other
 * wrote.
 *
 * ## Where to start reading
 *
 * - `tiered.ts`: {@linkcode TieredCache}, the build cache's local-first policy: a local hit is
 *   answered at once (no promise), a miss goes on to the warm-up or the remote lookup; puts are
 *   written locally and uploaded in the background.
 * - `lookup.ts`: {@linkcode RemoteLookup}, the remote lookup (action record, then output, under
 *   the own prefix and then each read prefix) through the breaker's guarded call.
 * - `fill.ts`: {@linkcode fillFromObject}, the one remote fill both the lookup and the warm-up
 *   use: throughput floor, hash check, small bodies read whole and large ones streamed, the
 *   object written, then its action record.
 * - `layout.ts`: the bucket's keys and action record format (below).
 * - `warm.ts`: the warm-up, which fetches a working set named by a manifest (`manifest.ts`) in
 *   packs (`packs.ts`); `warm_session.ts` records what a session used and writes the next
 *   manifest and packs under `warm/`.
 *
 * Imports: `src/store/mod.ts` (the store, its breaker, upload queue and trust tiers), the local
 * tier (`../local.ts`) and the names in its directory (`../dir_layout.ts`: `s3-pending/`,
 * `warm/`), `src/protocol/`, `src/log/` and `src/util/`.
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
 * ## Trust tiers
 *
 * Whoever can write an action record decides what later builds link in, so writes are limited
 * by prefix. `--read-prefixes=a,b` adds prefixes looked up, in order and in the same layout
 * (`a/action/<xx>/<id>`, then `a/output/<xx>/<id>`), after a miss under `--prefix`; the record
 * and the object of a hit come from the same prefix, and a hit is verified and stored locally like
 * any other. Nothing is ever written under a read prefix: uploads, and the HEAD that may skip
 * one, go to `--prefix` alone, so an object a read prefix holds is still uploaded to the own one.
 * A miss under the own prefix costs one more lookup (one GET of an action record) per read
 * prefix; a hit under the own prefix costs nothing extra. `--read-only` writes nothing at all:
 * no PUT, no HEAD before one, and `s3-pending/` is neither read nor written (puts are counted in
 * `uploads_skipped_read_only`). The module proxy's files follow the same rules under
 * `<prefix>/module/`.
 *
 * In the local cache directory the tier keeps `s3-pending/` (one empty file per action whose
 * upload is still owed, sent by a later session; see `uploads.ts`) and `s3-breaker` (the circuit
 * breaker's state, shared between processes; see `breaker.ts`). The module proxy keeps its own
 * owed uploads in `module/.pending/` (see `src/modproxy/store.ts`).
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

export * from "./tiered.ts";
export * from "./lookup.ts";
export * from "./fill.ts";
export { actionKey, outputKey, parseActionRecord } from "./layout.ts";
export * from "./manifest.ts";
export * from "./packs.ts";
export * from "./warm.ts";
export * from "./warm_session.ts";
