/**
 * The build cache's storage: the local tier (a cache directory go reads outputs from by path)
 * and, in `remote/`, the remote tier behind it. Both implement the protocol's `CacheHandler`, so
 * the session server does not know which one it talks to. This folder is the one owner of the
 * cache directory: its layout, its locks and its upkeep.
 *
 * ## Files
 *
 * Start reading at `local.ts`: {@linkcode LocalCache}, lookups (`get`, synchronous on purpose)
 * and writes (`put`, `writeObject`, `writeAction`). Then:
 *
 * - `dir_layout.ts`: the name of every directory and marker in the cache directory, entry paths,
 *   and the list of the plugin's own files `clean` removes.
 * - `local_tier.ts`: {@linkcode openLocalTier} (the directory or its fallback, the session lock,
 *   sweeps) and the schedules of pruning by age, sweeping and trimming ({@linkcode pruneIfDue},
 *   {@linkcode schedulePrunes}).
 * - `dir_locks.ts`: the locks that tell `clean` who uses the directory. `clean_dir.ts`:
 *   {@linkcode cleanCacheDir}, `clean`'s policy. `dir_usage.ts`: what `stats` counts on disk.
 * - `fallback.ts`: where a directory's refused writes go (one directory per user and cache
 *   directory in the system temp directory) and the checks that make it safe to use.
 * - `_write_fallback.ts`: routing of refused writes to it (retry after a minute, one warning per
 *   session, lookups that miss look there too).
 * - `_upkeep.ts`: pruning by age (`--expiry`), the background trim of a byte cap, emptying.
 * - `_files.ts`: directory walks, stale temporary files, the trim itself (atomic writes and
 *   modes are shared, in `src/util/files.ts`).
 * - `remote/`: the remote tier ({@linkcode TieredCache} over a store of `src/store/`) and the
 *   warm-up; its bucket layout is in `remote/mod.ts`.
 *
 * Imports point down only: to `store/` (from `remote/`, through `store/mod.ts`), `protocol/`
 * (the handler interface), `log/` and `util/`.
 *
 * ## Cache layout
 *
 * The layout of creachadair/gocache's `cachedir`, which tailscale's plugin also uses, so either
 * program can take over the other's directory:
 *
 * - `action/<xx>/<actionHex>` holds `"<outputHex> <size>"`; its mtime is the put time, which go
 *   gets back as `Time` (it compares it with `go clean -testcache`).
 * - `output/<xx>/<outputHex>` holds the output's bytes; no extension (x/tools drops cached files
 *   with one). Its mtime is refreshed when a hit hands it out, so `--expiry` prunes by last use.
 *
 * `<xx>` is the first two hex digits. Every write goes to a temporary file in the target's own
 * directory and is renamed into place, so readers (and go's mmaps) never see a partial file and
 * several plugin processes can share one directory. A temporary file is named
 * `<target>.<8 hex>.tmp`; one a killed writer left behind is removed by {@linkcode LocalCache.prune}
 * and {@linkcode LocalCache.sweepTemps} once nothing has written to it for an hour.
 *
 * The plugin's other files there (named in `dir_layout.ts`):
 *
 * - `.last-trim`, `.last-prune`, `.last-sweep`: markers whose mtime tells when a process last
 *   trimmed (to `--max-size`; held locked while one trims), pruned (`--expiry`) or swept stale
 *   temporary files.
 * - `.in-use` (a shared lock held by every process serving go from the directory) and
 *   `.serve.pid` (a shared lock held by `serve`, with its pid), so that `clean` can tell; neither
 *   is ever removed.
 * - `s3-pending/<outputHex>`: uploads still owed; `s3-breaker`: the remote tier's breaker state;
 *   `warm/`: local copies of warm-up manifests (see `remote/mod.ts`).
 * - `module/`: the module proxy's files (see `modproxy/mod.ts`); `revproxy/`: the caching
 *   proxy's objects, owed uploads and CA (see `revproxy/mod.ts`).
 *
 * @example Open a cache directory and look up an action
 * ```ts
 * import { LocalCache } from "./mod.ts";
 * const dir = await Deno.makeTempDir();
 * const cache = await LocalCache.open(dir);
 * const hit = await cache.get("00".repeat(32));
 * if (hit !== undefined) throw new Error("an empty cache has no entries");
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */

export {
  type ActionRecord,
  LocalCache,
  type LocalCacheOptions,
  type PruneResult,
  type TrimResult,
} from "./local.ts";
export {
  FALLBACK_MAX_BYTES,
  fallbackDir,
  type FallbackOptions,
  fallbackPath,
  systemFallback,
} from "./fallback.ts";
export * from "./dir_layout.ts";
export { holdServeLock, holdSessionLock, lockForClean, type Release } from "./dir_locks.ts";
export {
  type LocalTier,
  type LocalTierOptions,
  openLocalTier,
  pruneIfDue,
  schedulePrunes,
  sweepIfDue,
  type UpkeepPolicy,
} from "./local_tier.ts";
export { cleanCacheDir, type CleanOutcome } from "./clean_dir.ts";
export { type CacheDirUsage, cacheDirUsage } from "./dir_usage.ts";
export * from "./remote/mod.ts";
