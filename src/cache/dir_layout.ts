/**
 * The one owner of the cache directory's layout: the name of every directory and marker the
 * plugin keeps in `--cache-dir`, the paths of entries, and the list of the plugin's own files that
 * `clean` removes. Every other file names these through the constants here; the layout itself is
 * described in `mod.ts` under "Cache layout". It imports only `util/`, so anything may use it.
 *
 * @module
 */

import { HEX_ID } from "../util/mod.ts";

/** Action records: `action/<xx>/<actionHex>` holding `"<outputHex> <size>"`. */
export const ACTION_DIR = "action";
/** Outputs: `output/<xx>/<outputHex>` holding the output's bytes. */
export const OUTPUT_DIR = "output";
/** Its mtime: when a process last trimmed the directory to its cap; locked while one trims. */
export const TRIM_MARKER = ".last-trim";
/** Its mtime: when a process last pruned entries older than `--expiry`. */
export const PRUNE_MARKER = ".last-prune";
/** Its mtime: when a process last removed the temporary files killed writers left. */
export const SWEEP_MARKER = ".last-sweep";
/** Every process serving go from the directory holds a shared lock on it (see `dir_locks.ts`). */
export const SESSION_LOCK = ".in-use";
/** A running `serve` holds a shared lock on it and writes its pid to it (see `dir_locks.ts`). */
export const SERVE_LOCK = ".serve.pid";
/** Uploads to the bucket still owed: one empty marker per output id (see `remote/mod.ts`). */
export const PENDING_DIR = "s3-pending";
/** The remote tier's breaker state, shared by the processes using the directory. */
export const BREAKER_FILE = "s3-breaker";
/** Local copies of warm-up manifests: `warm/<keyHash>.<scope>.json.gz`. */
export const WARM_DIR = "warm";
/** The module proxy's files (see `modproxy/mod.ts`). */
export const MODULE_DIR = "module";
/** The caching proxy's objects, owed uploads and CA (see `revproxy/mod.ts`). */
export const REVPROXY_DIR = "revproxy";

/** An entry in a sharded directory: `<xx>/<64 hex>`, or its temporary file. */
export const SHARD_ENTRY: RegExp = /^[0-9a-f]{2}\/[0-9a-f]{64}(\.[0-9a-f]{8}\.tmp)?$/;
/** A caching-proxy object under `revproxy/`: `<xx>/<64 hex>`. */
export const REVPROXY_OBJECT: RegExp = /^[0-9a-f]{2}\/[0-9a-f]{64}$/;

/**
 * The path of an action record.
 *
 * @param root The cache directory.
 * @param actionId The action's hex id.
 * @returns `<root>/action/<xx>/<actionId>`.
 */
export function actionPath(root: string, actionId: string): string {
  return `${root}/${ACTION_DIR}/${actionId.slice(0, 2)}/${actionId}`;
}

/**
 * The path an output is (or would be) stored at.
 *
 * @param root The cache directory.
 * @param outputId The output's hex id.
 * @returns `<root>/output/<xx>/<outputId>`.
 */
export function outputPath(root: string, outputId: string): string {
  return `${root}/${OUTPUT_DIR}/${outputId.slice(0, 2)}/${outputId}`;
}

/** A part of the directory other components keep, and which files under it are theirs. */
export interface OwnPart {
  /** The directory, relative to the cache directory. */
  readonly dir: string;
  /** Whether a path relative to `dir` is one of the plugin's files. */
  match(relative: string): boolean;
}

/**
 * The markers besides `.last-trim` (which the cache's own clean removes) that `clean` removes.
 * The lock files stay: removing a locked file would let a second lock on a new file succeed.
 */
export const OWN_MARKERS: readonly string[] = [PRUNE_MARKER, SWEEP_MARKER, BREAKER_FILE];

/**
 * The parts other components keep in the cache directory, with their own files there, for
 * `clean`; anything else found there stays.
 */
export const OWN_PARTS: readonly OwnPart[] = [
  { dir: PENDING_DIR, match: (relative) => HEX_ID.test(relative) },
  { dir: MODULE_DIR, match: isModuleFile },
  // The caching proxy's objects and owed uploads; its CA (ca.pem, private/) stays trusted.
  {
    dir: REVPROXY_DIR,
    match: (relative) => SHARD_ENTRY.test(relative) || isPendingMarker(relative),
  },
];

/**
 * Whether a path under `module/` is one of the module proxy's files: the go download-cache
 * layout (`…/@v/…`, `…/@latest`), checksum-database files (`sumdb/…`), and owed uploads
 * (`.pending/…`). Module path elements never contain `@` or start with a dot.
 */
function isModuleFile(relative: string): boolean {
  const parts = relative.split("/");
  const last = parts.at(-1) ?? "";
  return parts[0] === "sumdb" || parts[0] === ".pending" || parts.includes("@v") ||
    last.startsWith("@latest");
}

/** An owed upload of the caching proxy: `.pending/<64 hex>`. */
function isPendingMarker(relative: string): boolean {
  return relative.startsWith(".pending/") && HEX_ID.test(relative.slice(".pending/".length));
}
