/**
 * The local tier: {@linkcode LocalCache}, a cache directory the go command reads outputs from by
 * path, in the layout described in `mod.ts` ("Cache layout"). This file holds lookups and writes;
 * the fallback for refused writes is `_write_fallback.ts`, pruning and the byte cap
 * `_upkeep.ts`, directory walks `_files.ts`, atomic writes `src/util/files.ts`.
 *
 * ## When the directory cannot take a write
 *
 * With a {@linkcode FallbackOptions} (see `fallback.ts`), a write the directory refuses (a full
 * disk, a read-only mount, no permission) goes to the fallback directory instead, so the put is
 * still answered with a file holding the bytes; the first such failure is logged once. Writes
 * then skip the directory for a minute before trying it again. Lookups that miss here look there
 * too, so a read-only warm directory keeps serving its hits and the fallback serves the rest. A
 * hit costs no extra system call.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { SILENT } from "../log/mod.ts";
import type { CacheHandler, CacheHit, PutObject } from "../protocol/mod.ts";
import { atomicWrite, isAbsolute, makeDirs } from "../util/files.ts";
import { HEX_ID } from "../util/mod.ts";
import { actionPath, outputPath } from "./dir_layout.ts";
import { sweepTemps, TEMP_MAX_AGE_MS, type TrimResult } from "./_files.ts";
import {
  BackgroundTrim,
  cleanCache,
  type CleanOptions,
  type CleanResult,
  pruneCache,
  type PruneResult,
  type TrimPolicy,
} from "./_upkeep.ts";
import { WriteFallback } from "./_write_fallback.ts";
import type { FallbackOptions } from "./fallback.ts";

export type { FallbackOptions } from "./fallback.ts";
export type { CleanOptions, CleanResult, PruneResult, TrimPolicy } from "./_upkeep.ts";
export type { TrimResult } from "./_files.ts";

/** Options for {@linkcode LocalCache}. */
export interface LocalCacheOptions {
  /**
   * How stale an output's mtime may get before a hit refreshes it (one `utime` per output per
   * period, not per hit). Keep it below `--expiry` so files in use are never pruned.
   * @default {3600000} (one hour)
   */
  touchAfterMs?: number;
  /**
   * Where writes go that this directory refuses (full disk, read-only mount, no permission).
   * @default none: a refused write fails the put
   */
  fallback?: FallbackOptions;
  /**
   * Keep this directory's outputs under about this many bytes: writes start a background trim
   * of the least recently used ones (see {@linkcode LocalCache.trim}).
   * @default {Infinity} (no cap)
   */
  maxBytes?: number;
  /**
   * How the cap is kept: whether action records count, whether writes start trims or only
   * {@linkcode LocalCache.trimIfDue} does, which outputs are in use.
   * @default outputs only, trims started by writes, nothing in use
   */
  trimPolicy?: TrimPolicy;
  /** Where the one warning about the fallback goes. @default silent */
  log?: Logger;
  /**
   * Remember up to this many action records in memory (a long-lived server): a hit then reads
   * no record file, only the `stat` of its output that shows it is still there with its size,
   * so a file moved or pruned behind this process's back is never handed out.
   * @default {0} (read the record file on every lookup)
   */
  rememberActions?: number;
}

/** A recorded action: which output it produced, how big, and when it was put. */
export interface ActionRecord {
  /** Hex id of the output. */
  outputId: string;
  /** Its size in bytes. */
  size: number;
  /** The put time (the record's mtime). */
  time: Date;
}

const decoder = new TextDecoder();
/** Touch interval of a fallback directory: its trim must see which files are in use. */
const FALLBACK_TOUCH_MS = 300_000;

/**
 * A cache directory implementing the protocol's {@linkcode CacheHandler}.
 *
 * @example
 * ```ts
 * import { LocalCache } from "./local.ts";
 * const dir = await Deno.makeTempDir();
 * const cache = await LocalCache.open(dir);
 * const hit = cache.get("00".repeat(32));
 * if (hit !== undefined) throw new Error("an empty cache has no entries");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class LocalCache implements CacheHandler {
  /** The absolute cache directory. */
  readonly root: string;
  #touchAfterMs: number;
  #madeDirs = new Set<string>();
  #fallback?: WriteFallback<LocalCache>;
  #trim: BackgroundTrim;
  #actions: ActionMemory;

  private constructor(root: string, options: LocalCacheOptions) {
    this.root = root;
    this.#touchAfterMs = options.touchAfterMs ?? 3_600_000;
    const log = options.log ?? SILENT;
    const fallback = options.fallback;
    if (fallback) {
      this.#fallback = new WriteFallback(root, fallback, {
        log,
        open: (dir) =>
          new LocalCache(dir.replace(/[\\/]+$/, "") || "/", {
            touchAfterMs: Math.min(this.#touchAfterMs, FALLBACK_TOUCH_MS),
            maxBytes: fallback.maxBytes,
            log,
          }),
      });
    }
    this.#trim = new BackgroundTrim(root, options.maxBytes ?? Infinity, log, options.trimPolicy);
    this.#actions = new ActionMemory(options.rememberActions ?? 0);
  }

  /**
   * Opens (creating if needed) a cache directory.
   *
   * @param root The directory; it must be absolute, since go is handed paths inside it.
   * @param options Touch interval, fallback, byte cap, logger.
   * @returns The cache.
   * @throws {TypeError} When `root` is relative.
   */
  static async open(root: string, options: LocalCacheOptions = {}): Promise<LocalCache> {
    if (!isAbsolute(root)) {
      throw new TypeError(
        `Cannot open cache directory ${JSON.stringify(root)}: path is not absolute`,
      );
    }
    await makeDirs(root); // private to the user whatever the umask: see DIR_MODE
    return new LocalCache(root.replace(/[\\/]+$/, "") || "/", options);
  }

  /** The path of an action record. */
  actionPath(actionId: string): string {
    return actionPath(this.root, actionId);
  }

  /** The path an output is (or would be) stored at. */
  outputPath(outputId: string): string {
    return outputPath(this.root, outputId);
  }

  /**
   * Looks up an action, at once (no promise: the protocol answers a local hit without waiting).
   * A hit needs the output file to exist with the recorded size: go renames cache files it
   * installs with `go build -o` when they live outside `$GOCACHE`.
   *
   * Lookups use synchronous file calls on purpose: go waits for every get, the files are tiny
   * and local, and a sync stat costs a fifth of a round trip through the runtime's thread pool.
   */
  get(actionId: string): CacheHit | undefined {
    const remembered = this.#actions.get(actionId);
    if (remembered) {
      const hit = this.#hitFor(remembered);
      if (hit) return hit;
      this.#actions.forget(actionId); // gone or changed: ask the disk again
    }
    const record = this.#readActionNow(actionId);
    const hit = record && this.#hitFor(record);
    if (hit) this.#actions.remember(actionId, record!);
    if (hit || !this.#fallback) return hit;
    return this.#getFromFallback(this.#fallback, actionId, record);
  }

  #hitFor(record: ActionRecord): CacheHit | undefined {
    const diskPath = this.outputPath(record.outputId);
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(diskPath);
    } catch {
      return undefined;
    }
    if (!info.isFile || info.size !== record.size) return undefined;
    this.#touchIfStale(diskPath, info);
    return { outputId: record.outputId, size: record.size, diskPath, time: record.time };
  }

  /**
   * Refreshes an output's mtime (its last use) once it is older than the touch interval: one
   * `utime` per output per period, not per use. Synchronous, before the reply, so a trim or
   * `clean` in another process sees the file in use before go reads it. Best effort: it only
   * steers pruning.
   */
  #touchIfStale(path: string, info: Deno.FileInfo): void {
    if (Date.now() - (info.mtime?.getTime() ?? 0) <= this.#touchAfterMs) return;
    const now = new Date();
    try {
      Deno.utimeSync(path, now, now);
    } catch {
      // read-only, or gone: go re-checks the file
    }
  }

  // A miss here: the fallback may hold the action, the output, or both (a read-only directory
  // has the output, the fallback the action record a later put wrote).
  #getFromFallback(
    fallback: WriteFallback<LocalCache>,
    actionId: string,
    record: ActionRecord | undefined,
  ): CacheHit | undefined {
    const spill = fallback.forReads();
    if (!spill) return undefined;
    const hit = record && spill.#hitFor(record);
    if (hit) return hit;
    const other = spill.#readActionNow(actionId);
    return other && (this.#hitFor(other) ?? spill.#hitFor(other));
  }

  /** Stores a verified output and its action record; resolves to the output's path. */
  async put(object: PutObject): Promise<string> {
    const diskPath = await this.writeObject(object.outputId, object.body);
    await this.writeAction(object.actionId, {
      outputId: object.outputId,
      size: object.body.length,
      time: new Date(),
    });
    return diskPath;
  }

  /** Reads an action record; a missing or malformed record is `undefined`. */
  readAction(actionId: string): Promise<ActionRecord | undefined> {
    return Promise.resolve(this.#readActionNow(actionId));
  }

  #readActionNow(actionId: string): ActionRecord | undefined {
    if (!HEX_ID.test(actionId)) return undefined;
    let text: string;
    let info: Deno.FileInfo;
    try {
      using file = Deno.openSync(this.actionPath(actionId));
      info = file.statSync();
      const buffer = new Uint8Array(Math.min(info.size, 256));
      const read = file.readSync(buffer) ?? 0;
      text = decoder.decode(buffer.subarray(0, read));
    } catch {
      return undefined;
    }
    const [outputId, sizeText] = text.trim().split(" ");
    const size = Number(sizeText);
    if (!outputId || !HEX_ID.test(outputId) || !Number.isSafeInteger(size) || size < 0) {
      return undefined;
    }
    return { outputId, size, time: info.mtime ?? new Date() };
  }

  /**
   * Writes an action record atomically, with its mtime set to the put time.
   *
   * @param actionId Hex action id.
   * @param record The output it names and the put time.
   */
  async writeAction(actionId: string, record: ActionRecord): Promise<void> {
    checkId(actionId, "action");
    checkId(record.outputId, "output");
    const path = this.actionPath(actionId);
    const bytes = new TextEncoder().encode(`${record.outputId} ${record.size}`);
    await this.#store(
      `action ${JSON.stringify(actionId.slice(0, 6))}`,
      () => atomicWrite(path, bytes, { mtime: record.time, madeDirs: this.#madeDirs }),
      (spill) => spill.writeAction(actionId, record),
      () => true,
    );
    this.#actions.remember(actionId, record);
  }

  /**
   * Writes an output atomically unless a file of the same size is already there.
   *
   * @param outputId Hex SHA-256 of the bytes (checked by the caller).
   * @param body The bytes, or a stream of exactly `size` bytes.
   * @param options `size` is required for a stream; `mtime` sets the file's time.
   * @returns The output's path (in the fallback directory when this one refused the write).
   * @throws {RangeError} When a stream yields a different number of bytes than `size`.
   */
  async writeObject(
    outputId: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: { size?: number; mtime?: Date } = {},
  ): Promise<string> {
    checkId(outputId, "output");
    const path = this.outputPath(outputId);
    const size = body instanceof Uint8Array ? body.length : options.size;
    if (size === undefined) throw new TypeError("Cannot write a streamed output: size is required");
    const existing = sameSizeFileAt(path, size);
    if (existing) {
      if (!(body instanceof Uint8Array)) await body.cancel();
      // Put again now (the output of another action, such as the empty one): a use, like a hit.
      if (!options.mtime) this.#touchIfStale(path, existing);
      return path;
    }
    const progress = { started: false };
    return await this.#store(
      `output ${JSON.stringify(outputId.slice(0, 6))}`,
      async () => {
        await atomicWrite(path, body, {
          size,
          mtime: options.mtime,
          progress,
          madeDirs: this.#madeDirs,
        });
        this.#trim.wrote(size);
        return path;
      },
      (spill) => spill.writeObject(outputId, body, { size, mtime: options.mtime }),
      () => !progress.started, // a stream can go to the fallback only if none of it was read
    );
  }

  /** Runs a write here, or through the fallback when there is one (see `_write_fallback.ts`). */
  async #store<T>(
    what: string,
    here: () => Promise<T>,
    there: (spill: LocalCache) => Promise<T>,
    restartable: () => boolean,
  ): Promise<T> {
    if (!this.#fallback) return await here();
    return await this.#fallback.store(what, here, there, restartable);
  }

  /**
   * Removes the least recently used outputs (and their action records) until the outputs total
   * at most `maxBytes`, keeping any used within the last hour; removes stale temporary files.
   * Writes run it in the background when the cache has a cap.
   *
   * @param maxBytes The cap. @default {LocalCacheOptions.maxBytes}
   * @returns What was removed.
   */
  trim(maxBytes?: number): Promise<TrimResult> {
    return this.#trim.trim(maxBytes);
  }

  /**
   * Removes the temporary files killed writers left behind: those nothing has written to for an
   * hour, so never one a live writer may still be writing.
   *
   * @returns How many were removed.
   */
  sweepTemps(): Promise<number> {
    return sweepTemps(this.root, TEMP_MAX_AGE_MS);
  }

  /**
   * Trims to the cap when this process wrote an eighth of it since its last trim, or no process
   * trimmed the directory within ten minutes (see `_upkeep.ts`); one trim at a time across
   * processes.
   *
   * @returns What was removed; `undefined` without a cap, when no trim was due, or when another
   * process is trimming.
   */
  trimIfDue(): Promise<TrimResult | undefined> {
    return this.#trim.trimIfDue();
  }

  /**
   * Empties the directory of its entries (`action/`, `output/` in the cache layout, and what
   * `options` adds), leaving anything else in it alone; see `_upkeep.ts` for what is kept.
   *
   * @param options Other parts to empty, and whether running go commands keep recent entries.
   * @returns What was removed and kept.
   */
  clean(options?: CleanOptions): Promise<CleanResult> {
    return cleanCache(this.root, options);
  }

  /** Resolves when the background trims started by earlier writes (here and in the fallback) end. */
  async idle(): Promise<void> {
    await this.#trim.idle();
    await this.#fallback?.opened?.idle();
  }

  /**
   * Removes entries not used within `maxAgeMs`: actions put and outputs handed out before the
   * cut-off, actions whose output is gone, and outputs no action names.
   *
   * @param maxAgeMs The expiry period.
   * @returns Counts of what was removed.
   */
  prune(maxAgeMs: number): Promise<PruneResult> {
    return pruneCache(this, maxAgeMs);
  }
}

function sameSizeFileAt(path: string, size: number): Deno.FileInfo | undefined {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.size === size ? info : undefined;
  } catch {
    return undefined;
  }
}

function checkId(id: string, kind: string): void {
  if (!HEX_ID.test(id)) {
    throw new TypeError(`Cannot use ${kind} id ${JSON.stringify(id)}: not 64 hex digits`);
  }
}

/**
 * Action records kept in memory, at most `capacity`, the least recently remembered dropped
 * first. Only a cache: the output's `stat` on every hit is what makes an entry true.
 */
class ActionMemory {
  #records = new Map<string, ActionRecord>();
  #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get(actionId: string): ActionRecord | undefined {
    return this.#capacity > 0 ? this.#records.get(actionId) : undefined;
  }

  remember(actionId: string, record: ActionRecord): void {
    if (this.#capacity <= 0) return;
    this.#records.delete(actionId);
    this.#records.set(actionId, record);
    if (this.#records.size > this.#capacity) {
      this.#records.delete(this.#records.keys().next().value!);
    }
  }

  forget(actionId: string): void {
    this.#records.delete(actionId);
  }
}
