/**
 * `clean`'s policy: empties a cache directory of the plugin's own files (build cache entries,
 * and the parts and markers `dir_layout.ts` lists: the module proxy's files, owed uploads, the
 * caching proxy's objects, the markers) and of its fallback directory's entries; anything else in
 * the directory stays. The bucket is never touched.
 *
 * It refuses while a `serve` process uses the directory (the lock in `.serve.pid`). go commands
 * using it in direct mode (or through `connect`'s fallback) may run meanwhile: then the entries
 * they may still read (used within the last hour and five minutes, the longest a hit leaves an
 * output's mtime unrefreshed, plus a margin) are kept and counted.
 *
 * @module
 */

import { OWN_MARKERS, OWN_PARTS } from "./dir_layout.ts";
import { lockForClean } from "./dir_locks.ts";
import { fallbackDir } from "./fallback.ts";
import { LocalCache } from "./local.ts";

/** With go commands running, entries used within this period are kept. */
const KEEP_WHILE_BUSY_MS = 3_900_000;

/** What {@linkcode cleanCacheDir} did. */
export type CleanOutcome =
  | { state: "missing" }
  | { state: "served"; pid: string }
  | {
    state: "cleaned";
    /** Whether go commands were using the directory (recently used entries were kept). */
    busy: boolean;
    /** Files removed from the directory, and their bytes. */
    files: number;
    bytes: number;
    /** Entries kept: recently used ones when busy, else temporary files being written. */
    kept: number;
    /** The fallback directory, when it exists, and how many files were removed there. */
    spill?: { dir: string; files: number };
  };

/**
 * Empties a cache directory of the plugin's own files, unless a server uses it.
 *
 * @param dir The cache directory.
 * @returns What was found and removed.
 * @throws When the directory cannot be read or emptied.
 */
export async function cleanCacheDir(dir: string): Promise<CleanOutcome> {
  const info = await Deno.stat(dir).catch(() => undefined);
  if (!info?.isDirectory) return { state: "missing" };
  const locks = await lockForClean(dir);
  if (locks.state === "served") return locks;
  try {
    const busy = locks.state === "busy";
    const keep = busy ? KEEP_WHILE_BUSY_MS : 0;
    const local = await LocalCache.open(dir);
    const result = await local.clean({
      keepUsedWithinMs: keep,
      also: OWN_PARTS,
      files: OWN_MARKERS,
    });
    const outcome: CleanOutcome = { state: "cleaned", busy, ...result };
    const spill = fallbackOf(dir);
    if (spill) {
      const spilled = await (await LocalCache.open(spill)).clean({ keepUsedWithinMs: keep });
      outcome.kept += spilled.kept;
      outcome.spill = { dir: spill, files: spilled.files };
    }
    return outcome;
  } finally {
    locks.release();
  }
}

/** The fallback directory of a cache directory, if it exists and is safe to use. */
function fallbackOf(dir: string): string | undefined {
  try {
    return fallbackDir(dir);
  } catch {
    return undefined; // someone else's, or not a directory: not ours to clean
  }
}
