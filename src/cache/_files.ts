/**
 * Upkeep of the local tier that runs off the request path: walking a cache directory, stale
 * temporary files, a byte cap. The shared file helpers (atomic writes, modes) are in
 * `src/util/files.ts`.
 *
 * @module
 */

import { isTempName, removeQuietly, statOrUndefined } from "../util/files.ts";
import { ACTION_DIR, OUTPUT_DIR, outputPath, REVPROXY_DIR, REVPROXY_OBJECT } from "./dir_layout.ts";

/** How old a temporary file must be before a sweep removes it: no live writer is that slow. */
export const TEMP_MAX_AGE_MS = 3_600_000;

/** Every regular file under `dir`, depth first; an unreadable directory yields nothing. */
export async function* walk(dir: string): AsyncGenerator<string> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* walk(path);
    else if (entry.isFile) yield path;
  }
}

/**
 * Removes a temporary file if it was last written before `cutoff` (epoch ms).
 *
 * @returns Whether it was removed.
 */
export async function removeTempIfStale(path: string, cutoff: number): Promise<boolean> {
  const info = await statOrUndefined(path);
  if (!info || (info.mtime?.getTime() ?? 0) >= cutoff) return false;
  return await removeQuietly(path);
}

/**
 * Removes the temporary files under `root/action` and `root/output` that nothing has written to
 * for `olderThanMs`: what a killed writer left behind. A live writer's file is never that old.
 *
 * @param root The cache directory.
 * @param olderThanMs Minimum age. @default {TEMP_MAX_AGE_MS}
 * @returns How many were removed.
 */
export async function sweepTemps(root: string, olderThanMs = TEMP_MAX_AGE_MS): Promise<number> {
  const cutoff = Date.now() - olderThanMs;
  let removed = 0;
  for (const part of [ACTION_DIR, OUTPUT_DIR]) {
    for await (const path of walk(`${root}/${part}`)) {
      if (isTempName(path) && await removeTempIfStale(path, cutoff)) removed++;
    }
  }
  return removed;
}

/** What {@linkcode trimToSize} removed. */
export interface TrimResult {
  /** Outputs removed (oldest first). */
  outputs: number;
  /** Their bytes. */
  bytes: number;
  /** Action records naming a removed output (or, counting records, a missing one). */
  actions: number;
  /** Stale temporary files. */
  temps: number;
}

/** Options for {@linkcode trimToSize}. */
export interface TrimOptions {
  /** The cap in bytes. */
  maxBytes: number;
  /** Files used (mtime) within this period are kept even over the cap. */
  graceMs: number;
  /**
   * Count action records toward the cap as well as outputs (and remove records whose output is
   * gone). @default {false}: outputs only
   */
  countRecords?: boolean;
  /** Outputs kept whatever their age: handed out in a session still running. @default none */
  inUse?: (outputId: string) => boolean;
}

/**
 * Keeps a cache directory's outputs (and, with `countRecords`, its action records) under
 * `maxBytes` by removing the least recently used outputs (oldest mtime: a hit refreshes it) and
 * the action records that name them. Files used within `graceMs`, and outputs `inUse` names, are
 * kept even over the cap: a go command still running may be reading them. Each candidate is
 * stat'ed again just before it goes, so a hit that refreshed it meanwhile keeps it.
 *
 * @param root The cache directory.
 * @param options The cap, the grace period, what counts and what is in use.
 * @returns What was removed.
 */
export async function trimToSize(root: string, options: TrimOptions): Promise<TrimResult> {
  const result: TrimResult = { outputs: 0, bytes: 0, actions: 0, temps: 0 };
  const tempCutoff = Date.now() - TEMP_MAX_AGE_MS;
  const outputs: { path: string; id: string; size: number; mtime: number }[] = [];
  let total = 0;
  for await (const path of walk(`${root}/${OUTPUT_DIR}`)) {
    if (isTempName(path)) {
      if (await removeTempIfStale(path, tempCutoff)) result.temps++;
      continue;
    }
    const info = await statOrUndefined(path);
    if (!info) continue;
    const id = path.slice(path.lastIndexOf("/") + 1);
    outputs.push({ path, id, size: info.size, mtime: info.mtime?.getTime() ?? 0 });
    total += info.size;
  }
  // The caching proxy's objects (`revproxy/<xx>/<key>`, mtime refreshed by use) count and go by
  // the same LRU order; their ids never match an output's, so `inUse` and records pass them by.
  for await (const path of walk(`${root}/${REVPROXY_DIR}`)) {
    const relative = path.slice(root.length + REVPROXY_DIR.length + 2);
    if (isTempName(path)) {
      if (await removeTempIfStale(path, tempCutoff)) result.temps++;
      continue;
    }
    if (!REVPROXY_OBJECT.test(relative)) continue;
    const info = await statOrUndefined(path);
    if (!info) continue;
    outputs.push({
      path,
      id: `revproxy/${relative}`,
      size: info.size,
      mtime: info.mtime?.getTime() ?? 0,
    });
    total += info.size;
  }
  // With countRecords, the bytes of the records naming each output go with it.
  const recordBytes = new Map<string, number>();
  if (options.countRecords) {
    for await (const path of walk(`${root}/${ACTION_DIR}`)) {
      if (isTempName(path)) continue;
      const text = await Deno.readTextFile(path).catch(() => undefined);
      if (text === undefined) continue;
      const outputId = text.split(" ")[0]!;
      recordBytes.set(outputId, (recordBytes.get(outputId) ?? 0) + text.length);
      total += text.length;
    }
  }
  const removed = new Set<string>();
  const over = total > options.maxBytes;
  if (over) {
    const graceCutoff = Date.now() - options.graceMs;
    outputs.sort((a, b) => a.mtime - b.mtime);
    for (const output of outputs) {
      if (total <= options.maxBytes || output.mtime >= graceCutoff) break;
      if (options.inUse?.(output.id)) continue;
      const now = await statOrUndefined(output.path);
      if (now && (now.mtime?.getTime() ?? 0) >= graceCutoff) continue; // a hit just used it
      if (now && !await removeQuietly(output.path)) continue;
      total -= output.size + (recordBytes.get(output.id) ?? 0);
      if (now) {
        result.outputs++;
        result.bytes += output.size;
      }
      removed.add(output.id);
    }
  }
  // Over the cap and counting records, records whose output is gone (a miss for ever) go too.
  const present = options.countRecords && over ? new Set(outputs.map((o) => o.id)) : undefined;
  for await (const path of walk(`${root}/${ACTION_DIR}`)) {
    if (isTempName(path)) {
      if (await removeTempIfStale(path, tempCutoff)) result.temps++;
      continue;
    }
    if (removed.size === 0 && !present) continue;
    const text = await Deno.readTextFile(path).catch(() => "");
    const outputId = text.split(" ")[0]!;
    const dead = removed.has(outputId) ||
      (present !== undefined && !present.has(outputId) &&
        !await statOrUndefined(outputPath(root, outputId)));
    if (dead && await removeQuietly(path)) result.actions++;
  }
  return result;
}
