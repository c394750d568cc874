/**
 * The build cache's storage: the local tier (a cache directory go reads outputs from by path)
 * and, in `remote/`, the remote tier behind it. Both implement the protocol's `CacheHandler`, so the
 * session server does not know which one it talks to.
 *
 * ## Files
 *
 * Start reading at `local.ts`: {@linkcode LocalCache}, lookups (`get`, synchronous on purpose)
 * and writes (`put`, `writeObject`, `writeAction`). Then:
 *
 * - `fallback.ts`: where a directory's refused writes go (one directory per user and cache
 *   directory in the system temp directory) and the checks that make it safe to use.
 * - `_write_fallback.ts`: routing of refused writes to it (retry after a minute, one warning per
 *   session, lookups that miss look there too).
 * - `_upkeep.ts`: pruning by age (`--expiry`) and the background trim of a byte cap.
 * - `_files.ts`: directory walks, stale temporary files, the trim itself (atomic writes and
 *   modes are shared, in `src/util/files.ts`).
 * - `remote/`: the remote tier ({@linkcode TieredCache} over a store of `src/store/`); its
 *   bucket layout is in `remote/mod.ts`.
 *
 * Imports point down only: to `protocol/` (the handler interface), `log/`, `metrics/` and
 * `util/`.
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
 * A directory with a byte cap also holds `.last-trim` (its mtime: when a process last trimmed
 * it; held locked while one trims, so two never trim at once). Processes serving go from the
 * directory hold a shared lock on `.in-use`, and `serve` one on `.serve.pid` (its pid), so that
 * `clean` can tell; neither file is ever removed. The remote tier keeps `s3-pending/` and `s3-breaker` in the directory (see `remote/mod.ts`); the
 * module proxy keeps its files under `module/` (see `modproxy/mod.ts`).
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
export * from "./remote/mod.ts";
