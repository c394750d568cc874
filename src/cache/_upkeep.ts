/**
 * The local tier's upkeep, off the request path: pruning by age (`--expiry`) and the background
 * trim that keeps a directory with a byte cap under it. The directory walks and the trim itself
 * are in `_files.ts`.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import {
  isTempName,
  reason,
  removeQuietly,
  removeTempIfStale,
  statOrUndefined,
  TEMP_MAX_AGE_MS,
  type TrimResult,
  trimToSize,
  walk,
} from "./_files.ts";

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
  for await (const path of walk(`${cache.root}/action`)) {
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
  for await (const path of walk(`${cache.root}/output`)) {
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
  return result;
}

/**
 * Starts trims of a capped cache directory as writes add bytes: on the first write of a process
 * (unless another process trimmed within ten minutes, as its `.last-trim` marker tells), then
 * each time an eighth of the cap was written. One trim at a time.
 */
export class BackgroundTrim {
  readonly #root: string;
  readonly #maxBytes: number;
  readonly #log: Logger;
  #writtenSinceTrim = 0;
  #trimStarted = false;
  #trimming?: Promise<void>;

  /**
   * @param root The cache directory.
   * @param maxBytes Its cap; `Infinity` never trims.
   * @param log Where a trim's result (or failure) is logged.
   */
  constructor(root: string, maxBytes: number, log: Logger) {
    this.#root = root;
    this.#maxBytes = maxBytes;
    this.#log = log;
  }

  /**
   * Trims the directory to `maxBytes` now (see {@linkcode trimToSize}).
   *
   * @param maxBytes The cap. @default the cap given to the constructor
   * @returns What was removed.
   */
  trim(maxBytes: number = this.#maxBytes): Promise<TrimResult> {
    return trimToSize(this.#root, { maxBytes, graceMs: TRIM_GRACE_MS });
  }

  /**
   * Counts bytes written; past an eighth of the cap (or on the first write) starts a trim.
   *
   * @param bytes The size of the write.
   */
  wrote(bytes: number): void {
    if (this.#maxBytes === Infinity) return;
    this.#writtenSinceTrim += bytes;
    if (this.#trimming) return;
    if (this.#trimStarted && this.#writtenSinceTrim < this.#maxBytes / 8) return;
    const first = !this.#trimStarted;
    this.#trimStarted = true;
    this.#writtenSinceTrim = 0;
    this.#trimming = this.#trimIfDue(first)
      .catch((error) =>
        this.#log.info(`Cannot trim ${JSON.stringify(this.#root)}: ${reason(error)}`)
      )
      .finally(() => this.#trimming = undefined);
  }

  /** Resolves when the running trim, if any, ends. */
  async idle(): Promise<void> {
    await this.#trimming;
  }

  async #trimIfDue(first: boolean): Promise<void> {
    const marker = `${this.#root}/.last-trim`;
    if (first) {
      const info = await statOrUndefined(marker);
      if (info && Date.now() - (info.mtime?.getTime() ?? 0) < TRIM_EVERY_MS) return;
    }
    await Deno.writeTextFile(marker, new Date().toISOString());
    const result = await this.trim();
    if (result.outputs > 0) {
      this.#log.info(
        `trimmed ${JSON.stringify(this.#root)} to its ${this.#maxBytes}-byte cap: removed ` +
          `${result.outputs} outputs (${result.bytes} bytes)`,
      );
    }
  }
}
