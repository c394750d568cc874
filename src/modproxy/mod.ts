/**
 * A caching Go module proxy and checksum-database proxy, served under `/mod/` by
 * `serve --http --modproxy`. Point the go command at it with
 *
 * ```sh
 * GOPROXY=http://localhost:5970/mod
 * GOSUMDB='sum.golang.org http://localhost:5970/mod/sumdb/sum.golang.org'
 * ```
 *
 * (or leave GOSUMDB alone: the go command then probes `/mod/sumdb/<name>/supported`).
 *
 * ## Files
 *
 * Start reading at `handler.ts`: {@linkcode createModuleProxy} and the routes, which turn each
 * request into a cached resource (key, caching class, cap, upstream, check). Then:
 *
 * - `_cache_core.ts`: serving a resource: freshness per caching class, stale copies when upstream
 *   fails, remembered 404s, one upstream fetch per key at a time.
 * - `_guard.ts`: the checksum-database guard: files that contradict a cached sumdb lookup are
 *   refused, and evicted when a fresh lookup arrives. `_verify.ts`: the checks it and the routes
 *   use (zip structure, `.info` files, `h1:` hashes).
 * - `paths.ts`: request paths (raw-path checks, `!` case encoding, x/mod's path and version
 *   rules). `sumdb.ts`: the checksum-database allow-list and routes. `upstream.ts`: the GOPROXY
 *   list and upstream fetches.
 * - `store.ts`: module files on disk and in the object store; `_memory_cache.ts`: the bounded
 *   memory of small immutable files in front of the disk.
 *
 * Imports point down only: to `store/` (the object store and its `BucketTier`), `log/`,
 * `metrics/` and `util/`;
 * `cli/serve.ts` wires the proxy in.
 *
 * ## Routes
 *
 * - `/mod/<module>/@v/list`, `/mod/<module>/@latest`, `/mod/<module>/@v/<version>.{info,mod,zip}`
 *   (case-encoded with `!`, percent-decoded once, validated with x/mod's rules).
 * - `/mod/sumdb/<name>/{supported,latest,lookup/<module>@<version>,tile/…}` for allow-listed
 *   names only. The upstream of a name is the first upstream proxy whose `/sumdb/<name>/supported`
 *   answers 200, else `https://<name>` (or an explicit URL: `--sumdb "<name> <URL>"`). Bodies
 *   pass through byte for byte.
 * - Only GET and HEAD (405 otherwise). Raw paths with `..`, `%2e`, `//`, `\`, a trailing `/` or
 *   unexpected escapes get 400 before anything touches disk or network; invalid module paths and
 *   versions get 404, so `,`-separated GOPROXY lists fall through. Errors are one-line
 *   `text/plain; charset=utf-8` bodies. Upstream failures are 502 (504 on timeout).
 *
 * ## Caching classes
 *
 * - **immutable**: `.info`, `.mod`, `.zip` of canonical versions (pseudo-versions and
 *   `+incompatible` included), and sumdb tiles. Cache first (local dir, then object store), kept
 *   forever; a miss fetches only the file asked for, streamed to a temp file, checked, renamed.
 * - **mutable**: `list`, `@latest`, query `.info` (`master`, hashes), sumdb `latest` (60 s) and
 *   `lookup` (1 h). Served from cache while fresh, then fetched upstream first; when upstream fails
 *   the stale copy is served (local, else the object store's copy).
 * - **negative**: upstream 404/410 answers are remembered in memory for 60 s.
 *
 * The warm path: cached files are read synchronously (small ones whole, larger ones streamed),
 * and small immutable ones (at most 64 KiB each, 16 MiB in all, least recently used out first)
 * are also kept in memory, checked with one stat per request (still there, same size and mtime:
 * the disk stays the truth); any write or eviction through the store forgets the key. Mutable
 * files are never held in memory, so their freshness is always their file's mtime. Accepted
 * request paths are remembered (4096 at most) with what serves them, so a repeated request skips
 * the path checks.
 *
 * Concurrent misses of one key share one upstream fetch. Only complete 200 bodies are cached;
 * caps: zip 500 MiB, go.mod 16 MiB, other files 10 MiB, tiles `width×32` bytes. Upstream: 30 s to
 * response headers, 10 min per zip, 2 min per other file. Redirects are followed only to the same
 * origin; no client header is ever forwarded. `direct` and `off` in the upstream list end it and
 * are never fetched (logged at start).
 *
 * ## Verification (tampered zips)
 *
 * Every zip is checked structurally before it is cached (all entries under `<module>@<version>/`,
 * no case-folding duplicates, ≤ 500 MiB uncompressed). Lookups that pass through the sumdb proxy
 * teach the proxy the go.sum hashes of that version: a `.mod`/`.zip` fetched (from upstream or the
 * object store) after that is hashed (`h1:`) and refused with 502 on mismatch, and when a fresh
 * lookup arrives for a version already cached locally, the cached files are re-hashed and evicted
 * on mismatch. The signature on the lookup is not checked by the proxy (the go command does); a
 * forged lookup can only make the proxy refuse or evict files, never serve different ones. Copies
 * in the object store are not deleted, but every fill from it is checked the same way.
 *
 * ## Cache layout
 *
 * Local root `<cache-dir>/module/` (and the object store under `[prefix/]module/`) use the go
 * command's download-cache layout, so the directory also works as `GOPROXY=file://…`:
 *
 * ```
 * <escaped module>/@v/<escaped version>.info|.mod|.zip   immutable
 * <escaped module>/@v/list                               mutable (mtime = fetch time)
 * <escaped module>/@v/<escaped query>.info               mutable
 * <escaped module>/@latest                               mutable
 * sumdb/<name>/tile/<H>/<L>/<K>[.p/<W>]                  immutable
 * sumdb/<name>/lookup/<escaped module>@<escaped version> mutable (1 h)
 * sumdb/<name>/latest                                    mutable
 * ```
 *
 * Temp files are `<name>.<8 hex>.tmp` next to their target. Mutable entries are uploaded to the
 * object store only when their content changed; uploads owed when a session ended are marked under
 * `.pending/` (a name no module path element can have) and sent by the next session.
 *
 * ## Debug lines (`--debug=2`)
 *
 * `B mod R:<n> <kind> <module>@<version>` when a request starts and
 * `E mod R:<n> <kind> <module>@<version> <status> <ms>ms` when it ends.
 *
 * ## Metrics
 *
 * `modproxy_requests`, `modproxy_errors`, per class `immutable`/`mutable`/`sumdb`:
 * `modproxy_<class>_hits`, `_misses`, `_stale`, `_negative_hits`, `_store_hits`,
 * `_upstream_errors`, `_bytes_served`; totals `modproxy_upstream_fetches`,
 * `modproxy_upstream_bytes`, `modproxy_upstream_errors`, `modproxy_bytes_served`,
 * `modproxy_verify_failures`, `modproxy_evictions`, `modproxy_store_fills`, `modproxy_store_puts`,
 * `modproxy_store_errors`; the store's bucket: `modproxy_store_skipped`, `modproxy_store_bytes_up`,
 * `modproxy_store_breaker_trips`, `modproxy_store_breaker_open`, `modproxy_store_uploads_left`,
 * `modproxy_store_uploads_resumed`, `modproxy_store_read_prefix_hits`,
 * `modproxy_store_uploads_skipped_read_only`. A 404 or 410 from the upstream is an answer, counted
 * in `modproxy_not_found`, `modproxy_<class>_not_found` and `modproxy_upstream_not_found`, never in
 * `modproxy_errors` or `_upstream_errors`.
 *
 * @example Serve the proxy on a loopback port
 * ```ts ignore
 * import { createModuleProxy, resolveUpstream } from "./mod.ts";
 *
 * const upstream = await resolveUpstream("", (name) => Deno.env.get(name));
 * const proxy = await createModuleProxy({ cacheDir: "/tmp/gcp/module", upstream, sumdbs: ["sum.golang.org"] });
 * Deno.serve({ hostname: "127.0.0.1", port: 5970 }, (req) => proxy.handle(req));
 * ```
 *
 * @module
 */

export { createModuleProxy, type ModuleProxy, type ModuleProxyOptions } from "./handler.ts";
export { HttpError } from "./paths.ts";
export { parseProxyList, type ProxyList, resolveUpstream } from "./upstream.ts";
