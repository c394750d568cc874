/**
 * The local tier's upkeep, off the request path: pruning by age (`--expiry`), the trim that
 * keeps a directory with a byte cap under it (in the background as writes add bytes, or when
 * asked), and emptying the directory (`clean`). The directory walks and the trim itself are in
 * `_files.ts`.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { FILE_MODE, isTempName, reason, removeQuietly, statOrUndefined } from "../util/files.ts";
import {
  ACTION_DIR,
  OUTPUT_DIR,
  REVPROXY_DIR,
  REVPROXY_OBJECT,
  SHARD_ENTRY,
  TRIM_MARKER,
} from "./dir_layout.ts";
import { removeTempIfStale, TEMP_MAX_AGE_MS, type TrimResult, trimToSize, walk } from "./_files.ts";

/** A trim keeps files used within this period, over the cap if need be. */
export const TRIM_GRACE_MS = 3_600_000;
/** The first write of a process trims only when no process has within this period. */
const TRIM_EVERY_MS = 600_000;

/** What {@linkcode LocalCache.prune} removed. */
export interface PruneResult {
  /** Action records removed. */
  actions: number;
  /** Outputs removed. */
  outputs: number;
  /** Their bytes. */
  bytes: number;
  /** Temporary files a killed writer left. */
  temps: number;
}

/** The parts of a cache directory {@linkcode pruneCache} reads. */
export interface PruneTarget {
  /** The cache directory. */
  readonly root: string;
  /** Reads an action record; a missing or malformed one is `undefined`. */
  readAction(actionId: string): Promise<{ outputId: string; time: Date } | undefined>;
  /** The path of an output. */
  outputPath(outputId: string): string;
}

/**
 * Removes entries not used within `maxAgeMs`: actions put and outputs handed out before the
 * cut-off, actions whose output is gone, and outputs no action names; and temporary files older
 * than the period or an hour, whichever is shorter.
 *
 * @param cache The cache directory.
 * @param maxAgeMs The expiry period.
 * @returns Counts of what was removed.
 */
export async function pruneCache(cache: PruneTarget, maxAgeMs: number): Promise<PruneResult> {
  const cutoff = Date.now() - maxAgeMs;
  // A temporary file is stale after an hour, whatever the period: a live writer's is younger.
  const tempCutoff = Math.min(cutoff, Date.now() - TEMP_MAX_AGE_MS);
  const result: PruneResult = { actions: 0, outputs: 0, bytes: 0, temps: 0 };
  const kept = new Set<string>();
  for await (const path of walk(`${cache.root}/${ACTION_DIR}`)) {
    if (isTempName(path)) {
      if (await removeTempIfStale(path, tempCutoff)) result.temps++;
      continue;
    }
    const actionId = path.slice(path.lastIndexOf("/") + 1);
    const record = await cache.readAction(actionId);
    const output = record ? await statOrUndefined(cache.outputPath(record.outputId)) : undefined;
    const used = Math.max(record?.time.getTime() ?? 0, output?.mtime?.getTime() ?? 0);
    if (record && output && used >= cutoff) {
      kept.add(record.outputId);
      continue;
    }
    if (await removeQuietly(path)) result.actions++;
  }
  for await (const path of walk(`${cache.root}/${OUTPUT_DIR}`)) {
    if (isTempName(path)) {
      if (await removeTempIfStale(path, tempCutoff)) result.temps++;
      continue;
    }
    const name = path.slice(path.lastIndexOf("/") + 1);
    if (kept.has(name)) continue;
    const info = await statOrUndefined(path);
    if (!info || (info.mtime?.getTime() ?? 0) >= cutoff) continue;
    if (await removeQuietly(path)) {
      result.outputs++;
      result.bytes += info.size;
    }
  }
  // The caching proxy's objects: their mtime is their last use (refreshed hourly on hits).
  for await (const path of walk(`${cache.root}/${REVPROXY_DIR}`)) {
    if (isTempName(path)) {
      if (await removeTempIfStale(path, tempCutoff)) result.temps++;
      continue;
    }
    if (!REVPROXY_OBJECT.test(path.slice(cache.root.length + REVPROXY_DIR.length + 2))) continue;
    const info = await statOrUndefined(path);
    if (!info || (info.mtime?.getTime() ?? 0) >= cutoff) continue;
    if (await removeQuietly(path)) {
      result.outputs++;
      result.bytes += info.size;
    }
  }
  return result;
}

/** How a capped directory is trimmed (see {@linkcode BackgroundTrim}). */
export interface TrimPolicy {
  /** Count action records toward the cap, not only outputs. @default {false} */
  countRecords?: boolean;
  /**
   * Start trims as writes add bytes. When false, writes are only counted and trims run when
   * {@linkcode BackgroundTrim.trimIfDue} is called (direct mode: after go has its last reply).
   * @default {true}
   */
  onWrite?: boolean;
  /** Outputs kept whatever their age: handed out in a session still running. @default none */
  inUse?: (outputId: string) => boolean;
}

/**
 * Trims a capped cache directory as writes add bytes: on the first write of a process (unless
 * another process trimmed within ten minutes, as its `.last-trim` marker tells), then each time
 * an eighth of the cap was written; or, with `onWrite` false, only when asked. One trim at a time
 * per directory, across processes: a trim holds an exclusive lock on `.last-trim`, and a process
 * that finds it held leaves the trim to its holder.
 */
export class BackgroundTrim {
  readonly #root: string;
  readonly #maxBytes: number;
  readonly #log: Logger;
  readonly #policy: TrimPolicy;
  #writtenSinceTrim = 0;
  #trimStarted = false;
  #trimming?: Promise<TrimResult | undefined>;

  /**
   * @param root The cache directory.
   * @param maxBytes Its cap; `Infinity` never trims.
   * @param log Where a trim's result (or failure) is logged.
   * @param policy What counts, when to trim, what is in use.
   */
  constructor(root: string, maxBytes: number, log: Logger, policy: TrimPolicy = {}) {
    this.#root = root;
    this.#maxBytes = maxBytes;
    this.#log = log;
    this.#policy = policy;
  }

  /**
   * Trims the directory to `maxBytes` now (see {@linkcode trimToSize}), without the lock.
   *
   * @param maxBytes The cap. @default the cap given to the constructor
   * @returns What was removed.
   */
  trim(maxBytes: number = this.#maxBytes): Promise<TrimResult> {
    return trimToSize(this.#root, {
      maxBytes,
      graceMs: TRIM_GRACE_MS,
      countRecords: this.#policy.countRecords,
      inUse: this.#policy.inUse,
    });
  }

  /**
   * Counts bytes written; with `onWrite`, past an eighth of the cap (or on the first write)
   * starts a trim.
   *
   * @param bytes The size of the write.
   */
  wrote(bytes: number): void {
    if (this.#maxBytes === Infinity) return;
    this.#writtenSinceTrim += bytes;
    if (this.#policy.onWrite === false || this.#trimming) return;
    if (this.#trimStarted && this.#writtenSinceTrim < this.#maxBytes / 8) return;
    const first = !this.#trimStarted;
    this.#trimStarted = true;
    this.#start(first);
  }

  /**
   * Trims when this process wrote an eighth of the cap since its last trim, or no process
   * trimmed within ten minutes; at most one trim at a time (joins a running one).
   *
   * @returns What was removed; `undefined` when no trim was due or another process holds it.
   */
  trimIfDue(): Promise<TrimResult | undefined> {
    if (this.#maxBytes === Infinity) return Promise.resolve(undefined);
    if (this.#trimming) return this.#trimming;
    return this.#start(this.#writtenSinceTrim < this.#maxBytes / 8);
  }

  /** Resolves when the running trim, if any, ends. */
  async idle(): Promise<void> {
    await this.#trimming;
  }

  #start(onlyIfStale: boolean): Promise<TrimResult | undefined> {
    this.#writtenSinceTrim = 0;
    const trimming = this.#trimLocked(onlyIfStale)
      .catch((error) => {
        this.#log.info(`Cannot trim ${JSON.stringify(this.#root)}: ${reason(error)}`);
        return undefined;
      })
      .finally(() => this.#trimming = undefined);
    this.#trimming = trimming;
    return trimming;
  }

  async #trimLocked(onlyIfStale: boolean): Promise<TrimResult | undefined> {
    const marker = `${this.#root}/${TRIM_MARKER}`;
    if (onlyIfStale) {
      const info = await statOrUndefined(marker);
      if (info && Date.now() - (info.mtime?.getTime() ?? 0) < TRIM_EVERY_MS) return undefined;
    }
    using file = await Deno.open(marker, {
      read: true,
      write: true,
      create: true,
      mode: FILE_MODE,
    });
    if (!await file.tryLock(true)) return undefined; // another process is trimming
    try {
      await file.truncate(0);
      await file.write(new TextEncoder().encode(new Date().toISOString()));
      const result = await this.trim();
      if (result.outputs > 0) {
        this.#log.info(
          `trimmed ${JSON.stringify(this.#root)} to its ${this.#maxBytes}-byte cap: removed ` +
            `${result.outputs} outputs (${result.bytes} bytes)`,
        );
      }
      return result;
    } finally {
      await file.unlock().catch(() => {});
    }
  }
}

/** What {@linkcode cleanCache} removed and kept. */
export interface CleanResult {
  /** Files removed. */
  files: number;
  /** Their bytes. */
  bytes: number;
  /** Entries kept: in use by a running go command, or a temporary file still being written. */
  kept: number;
}

/** Options for {@linkcode cleanCache}. */
export interface CleanOptions {
  /**
   * Keep entries used within this period (and the action records naming kept outputs): go
   * commands that may still read them are running.
   * @default {0}: remove every entry
   */
  keepUsedWithinMs?: number;
  /**
   * Other parts of the directory to empty: the files under `dir` (relative to the cache
   * directory) whose path relative to `dir` `match` accepts; nothing else there is touched.
   * @default none
   */
  also?: readonly { dir: string; match(relative: string): boolean }[];
  /** Files directly in the cache directory to remove as well (markers). @default none */
  files?: readonly string[];
}

/**
 * Empties a cache directory of its entries: the files of `action/` and `output/` in the cache
 * layout (nothing else found there), `.last-trim`, and what `options` adds; then the directories
 * that became empty. A temporary file written to within the hour is kept (a writer may be about
 * to rename it), and with `keepUsedWithinMs` so are recently used entries.
 *
 * @param root The cache directory.
 * @param options What else to remove, and what to keep.
 * @returns What was removed and kept.
 */
export async function cleanCache(root: string, options: CleanOptions = {}): Promise<CleanResult> {
  const result: CleanResult = { files: 0, bytes: 0, kept: 0 };
  const keepCutoff = (options.keepUsedWithinMs ?? 0) > 0
    ? Date.now() - options.keepUsedWithinMs!
    : Infinity;
  const tempCutoff = Date.now() - TEMP_MAX_AGE_MS;
  const keptOutputs = new Set<string>();
  /** Removes one file unless it is a live temporary file or used since the cut-off. */
  const clean = async (path: string, keep?: () => Promise<boolean>): Promise<boolean> => {
    const info = await statOrUndefined(path);
    if (!info) return false;
    const mtime = info.mtime?.getTime() ?? 0;
    if (
      (isTempName(path) && mtime >= tempCutoff) || mtime >= keepCutoff || await keep?.()
    ) {
      result.kept++;
      return true;
    }
    if (await removeQuietly(path)) {
      result.files++;
      result.bytes += info.size;
    }
    return false;
  };
  const inLayout = (base: string, path: string) => SHARD_ENTRY.test(path.slice(base.length + 1));
  for await (const path of walk(`${root}/${OUTPUT_DIR}`)) {
    if (inLayout(`${root}/${OUTPUT_DIR}`, path) && await clean(path) && !isTempName(path)) {
      keptOutputs.add(path.slice(path.lastIndexOf("/") + 1));
    }
  }
  const records = keepCutoff === Infinity ? undefined : keptOutputs;
  for await (const path of walk(`${root}/${ACTION_DIR}`)) {
    if (!inLayout(`${root}/${ACTION_DIR}`, path)) continue;
    await clean(path, async () => {
      if (!records || records.size === 0 || isTempName(path)) return false;
      const text = await Deno.readTextFile(path).catch(() => "");
      return records.has(text.split(" ")[0]!);
    });
  }
  for (const { dir, match } of options.also ?? []) {
    const base = `${root}/${dir}`;
    for await (const path of walk(base)) {
      if (match(path.slice(base.length + 1))) await clean(path);
    }
  }
  for (const name of [TRIM_MARKER, ...options.files ?? []]) {
    const info = await statOrUndefined(`${root}/${name}`);
    if (info?.isFile && await removeQuietly(`${root}/${name}`)) result.files++;
  }
  for (const dir of [ACTION_DIR, OUTPUT_DIR, ...(options.also ?? []).map((a) => a.dir)]) {
    await removeEmptyDirs(`${root}/${dir}`);
  }
  return result;
}

/** Removes `dir` and the directories under it that are empty (or become so); never a file. */
async function removeEmptyDirs(dir: string): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return;
  }
  for (const entry of entries) {
    if (entry.isDirectory) await removeEmptyDirs(`${dir}/${entry.name}`);
  }
  await Deno.remove(dir).catch(() => {}); // not empty: something else lives there
}
