/**
 * The local tier: a cache directory the go command reads outputs from by path.
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
import {
  isBodyError,
  isTempName,
  reason,
  removeQuietly,
  removeTempIfStale,
  statOrUndefined,
  sweepTemps,
  TEMP_MAX_AGE_MS,
  tempName,
  type TrimResult,
  trimToSize,
  walk,
  writeStream,
} from "./_files.ts";

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
  /** Where the one warning about the fallback goes. @default silent */
  log?: Logger;
}

/** A fallback for the writes a cache directory refuses (see `fallback.ts` for the usual one). */
export interface FallbackOptions {
  /**
   * The fallback directory, looked up once on the first miss (`create` false: `undefined` when
   * it does not exist) and made on the first refused write (`create` true).
   *
   * @throws {Error} When it cannot be made or used.
   */
  dir(create: boolean): string | undefined;
  /** Byte cap of its outputs (see {@linkcode LocalCacheOptions.maxBytes}). @default {Infinity} */
  maxBytes?: number;
}

/** A recorded action: which output it produced, how big, and when it was put. */
export interface ActionRecord {
  outputId: string;
  size: number;
  time: Date;
}

/** What {@linkcode LocalCache.prune} removed. */
export interface PruneResult {
  actions: number;
  outputs: number;
  bytes: number;
  /** Temporary files a killed writer left. */
  temps: number;
}

const HEX_ID = /^[0-9a-f]{64}$/;
const decoder = new TextDecoder();
/** Bodies up to this size are written with synchronous calls (see `#atomicWriteNow`). */
const SYNC_WRITE_LIMIT = 1 << 20;
/** After a refused write, writes go to the fallback for this long before this directory is retried. */
const RETRY_AFTER_MS = 60_000;
/** Touch interval of a fallback directory: its trim must see which files are in use. */
const FALLBACK_TOUCH_MS = 300_000;
/** A trim keeps files used within this period, over the cap if need be. */
const TRIM_GRACE_MS = 3_600_000;
/** The first write of a process trims only when no process has within this period. */
const TRIM_EVERY_MS = 600_000;

/**
 * A cache directory implementing the protocol's {@linkcode CacheHandler}.
 *
 * @example
 * ```ts
 * import { LocalCache } from "./local.ts";
 * const dir = await Deno.makeTempDir();
 * const cache = await LocalCache.open(dir);
 * const hit = await cache.get("00".repeat(32));
 * if (hit !== undefined) throw new Error("an empty cache has no entries");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class LocalCache implements CacheHandler {
  /** The absolute cache directory. */
  readonly root: string;
  #touchAfterMs: number;
  #madeDirs = new Set<string>();
  #log: Logger;
  #fallback?: FallbackOptions;
  /** The fallback, once found or made. */
  #spill?: LocalCache;
  #lookedForSpill = false;
  /** Writes skip this directory until then (epoch ms). */
  #refusedUntil = 0;
  #refusal?: { what: string; error: unknown };
  #warned = false;
  #maxBytes: number;
  #writtenSinceTrim = 0;
  #trimStarted = false;
  #trimming?: Promise<void>;

  private constructor(root: string, options: LocalCacheOptions) {
    this.root = root;
    this.#touchAfterMs = options.touchAfterMs ?? 3_600_000;
    this.#log = options.log ?? SILENT;
    this.#fallback = options.fallback;
    this.#maxBytes = options.maxBytes ?? Infinity;
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
    await Deno.mkdir(root, { recursive: true });
    return new LocalCache(root.replace(/[\\/]+$/, "") || "/", options);
  }

  /** The path of an action record. */
  actionPath(actionId: string): string {
    return `${this.root}/action/${actionId.slice(0, 2)}/${actionId}`;
  }

  /** The path an output is (or would be) stored at. */
  outputPath(outputId: string): string {
    return `${this.root}/output/${outputId.slice(0, 2)}/${outputId}`;
  }

  /**
   * Looks up an action. A hit needs the output file to exist with the recorded size: go renames
   * cache files it installs with `go build -o` when they live outside `$GOCACHE`.
   */
  get(actionId: string): Promise<CacheHit | undefined> {
    return Promise.resolve(this.#getNow(actionId));
  }

  // Lookups use synchronous file calls on purpose: go waits for every get, the files are tiny and
  // local, and a sync stat costs a fifth of a round trip through the runtime's thread pool.
  #getNow(actionId: string): CacheHit | undefined {
    const record = this.#readActionNow(actionId);
    const hit = record && this.#hitFor(record);
    if (hit || !this.#fallback) return hit;
    return this.#getFromFallback(actionId, record);
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
    const mtime = info.mtime?.getTime() ?? 0;
    if (Date.now() - mtime > this.#touchAfterMs) {
      const now = new Date();
      Deno.utime(diskPath, now, now).catch(() => {}); // best effort: it only steers pruning
    }
    return { outputId: record.outputId, size: record.size, diskPath, time: record.time };
  }

  // A miss here: the fallback may hold the action, the output, or both (a read-only directory
  // has the output, the fallback the action record a later put wrote).
  #getFromFallback(actionId: string, record: ActionRecord | undefined): CacheHit | undefined {
    const spill = this.#spillForReads();
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
      () => this.#atomicWrite(path, bytes, { mtime: record.time }),
      (spill) => spill.writeAction(actionId, record),
      () => true,
    );
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
    if (sameSizeFileAt(path, size)) {
      if (body instanceof ReadableStream) await body.cancel();
      return path;
    }
    const progress = { started: false };
    return await this.#store(
      `output ${JSON.stringify(outputId.slice(0, 6))}`,
      async () => {
        await this.#atomicWrite(path, body, { size, mtime: options.mtime }, progress);
        this.#wrote(size);
        return path;
      },
      (spill) => spill.writeObject(outputId, body, { size, mtime: options.mtime }),
      () => !progress.started, // a stream can go to the fallback only if none of it was read
    );
  }

  /**
   * Runs a write here, or in the fallback when this directory refuses it (or refused one less
   * than a minute ago).
   */
  async #store<T>(
    what: string,
    here: () => Promise<T>,
    there: (spill: LocalCache) => Promise<T>,
    restartable: () => boolean,
  ): Promise<T> {
    if (!this.#fallback) return await here();
    if (Date.now() >= this.#refusedUntil) {
      try {
        const result = await here();
        this.#refusedUntil = 0;
        return result;
      } catch (error) {
        if (isBodyError(error)) throw error;
        this.#refusedUntil = Date.now() + RETRY_AFTER_MS;
        this.#refusal = { what, error };
        if (!restartable()) throw error;
      }
    }
    const spill = this.#spillForWrites();
    try {
      return await there(spill);
    } catch (error) {
      if (isBodyError(error)) throw error;
      throw new Error(
        `Cannot store ${what} in ${JSON.stringify(this.root)} or in ` +
          `${JSON.stringify(spill.root)}: ${reason(error)}`,
        { cause: error },
      );
    }
  }

  #spillForReads(): LocalCache | undefined {
    if (this.#spill || this.#lookedForSpill) return this.#spill;
    this.#lookedForSpill = true;
    try {
      const dir = this.#fallback!.dir(false);
      if (dir !== undefined) this.#spill = this.#openSpill(dir);
    } catch {
      // unusable: lookups miss, and the first refused write says why
    }
    return this.#spill;
  }

  #spillForWrites(): LocalCache {
    const { what, error } = this.#refusal!;
    const refused = `Cannot store ${what} in ${JSON.stringify(this.root)}: ${reason(error)}`;
    if (!this.#spill) {
      let dir: string | undefined;
      try {
        dir = this.#fallback!.dir(true);
        if (dir === undefined) throw new Error("no fallback directory");
      } catch (cause) {
        const text = reason(cause);
        throw new Error(`${refused}; ${text.charAt(0).toLowerCase()}${text.slice(1)}`, {
          cause: error,
        });
      }
      this.#spill = this.#openSpill(dir);
    }
    if (!this.#warned) {
      this.#warned = true;
      this.#log.warn(`${refused}; storing puts in ${JSON.stringify(this.#spill.root)} instead`);
    }
    return this.#spill;
  }

  #openSpill(dir: string): LocalCache {
    return new LocalCache(dir.replace(/[\\/]+$/, "") || "/", {
      touchAfterMs: Math.min(this.#touchAfterMs, FALLBACK_TOUCH_MS),
      maxBytes: this.#fallback?.maxBytes,
      log: this.#log,
    });
  }

  /** Counts bytes written; past an eighth of the cap (or on the first write) starts a trim. */
  #wrote(bytes: number): void {
    if (this.#maxBytes === Infinity) return;
    this.#writtenSinceTrim += bytes;
    if (this.#trimming) return;
    if (this.#trimStarted && this.#writtenSinceTrim < this.#maxBytes / 8) return;
    const first = !this.#trimStarted;
    this.#trimStarted = true;
    this.#writtenSinceTrim = 0;
    this.#trimming = this.#trimIfDue(first)
      .catch((error) =>
        this.#log.info(`Cannot trim ${JSON.stringify(this.root)}: ${reason(error)}`)
      )
      .finally(() => this.#trimming = undefined);
  }

  async #trimIfDue(first: boolean): Promise<void> {
    const marker = `${this.root}/.last-trim`;
    if (first) {
      const info = await statOrUndefined(marker);
      if (info && Date.now() - (info.mtime?.getTime() ?? 0) < TRIM_EVERY_MS) return;
    }
    await Deno.writeTextFile(marker, new Date().toISOString());
    const result = await this.trim();
    if (result.outputs > 0) {
      this.#log.info(
        `trimmed ${JSON.stringify(this.root)} to its ${this.#maxBytes}-byte cap: removed ` +
          `${result.outputs} outputs (${result.bytes} bytes)`,
      );
    }
  }

  /**
   * Removes the least recently used outputs (and their action records) until the outputs total
   * at most `maxBytes`, keeping any used within the last hour; removes stale temporary files.
   * Writes run it in the background when the cache has a cap.
   *
   * @param maxBytes The cap. @default {LocalCacheOptions.maxBytes}
   * @returns What was removed.
   */
  trim(maxBytes: number = this.#maxBytes): Promise<TrimResult> {
    return trimToSize(this.root, { maxBytes, graceMs: TRIM_GRACE_MS });
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

  /** Resolves when the background trims started by earlier writes (here and in the fallback) end. */
  async idle(): Promise<void> {
    await this.#trimming;
    await this.#spill?.idle();
  }

  /**
   * Removes entries not used within `maxAgeMs`: actions put and outputs handed out before the
   * cut-off, actions whose output is gone, and outputs no action names.
   *
   * @param maxAgeMs The expiry period.
   * @returns Counts of what was removed.
   */
  async prune(maxAgeMs: number): Promise<PruneResult> {
    const cutoff = Date.now() - maxAgeMs;
    // A temporary file is stale after an hour, whatever the period: a live writer's is younger.
    const tempCutoff = Math.min(cutoff, Date.now() - TEMP_MAX_AGE_MS);
    const result: PruneResult = { actions: 0, outputs: 0, bytes: 0, temps: 0 };
    const kept = new Set<string>();
    for await (const path of walk(`${this.root}/action`)) {
      if (isTempName(path)) {
        if (await removeTempIfStale(path, tempCutoff)) result.temps++;
        continue;
      }
      const actionId = path.slice(path.lastIndexOf("/") + 1);
      const record = await this.readAction(actionId);
      const output = record ? await statOrUndefined(this.outputPath(record.outputId)) : undefined;
      const used = Math.max(record?.time.getTime() ?? 0, output?.mtime?.getTime() ?? 0);
      if (record && output && used >= cutoff) {
        kept.add(record.outputId);
        continue;
      }
      if (await removeQuietly(path)) result.actions++;
    }
    for await (const path of walk(`${this.root}/output`)) {
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

  async #atomicWrite(
    path: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: { size?: number; mtime?: Date },
    progress?: { started: boolean },
  ): Promise<void> {
    if (body instanceof Uint8Array && body.length <= SYNC_WRITE_LIMIT) {
      this.#atomicWriteNow(path, body, options.mtime);
      return;
    }
    this.#makeParent(path);
    const temp = tempName(path);
    try {
      if (body instanceof Uint8Array) {
        await Deno.writeFile(temp, body, { mode: 0o644 });
      } else {
        await writeStream(temp, body, options.size ?? 0, progress ?? { started: false });
      }
      if (options.mtime) await Deno.utime(temp, options.mtime, options.mtime);
      await Deno.rename(temp, path);
    } catch (error) {
      await removeQuietly(temp);
      throw error;
    }
  }

  // Small files (most outputs and every action record) are written with synchronous calls: four
  // quick syscalls cost less than four round trips through the runtime's thread pool.
  #atomicWriteNow(path: string, body: Uint8Array, mtime: Date | undefined): void {
    this.#makeParent(path);
    const temp = tempName(path);
    try {
      Deno.writeFileSync(temp, body, { mode: 0o644 });
      if (mtime) Deno.utimeSync(temp, mtime, mtime);
      Deno.renameSync(temp, path);
    } catch (error) {
      try {
        Deno.removeSync(temp);
      } catch {
        // never created
      }
      throw error;
    }
  }

  #makeParent(path: string): void {
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (!this.#madeDirs.has(dir)) {
      Deno.mkdirSync(dir, { recursive: true });
      this.#madeDirs.add(dir);
    }
  }
}

function sameSizeFileAt(path: string, size: number): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.size === size;
  } catch {
    return false;
  }
}

function checkId(id: string, kind: string): void {
  if (!HEX_ID.test(id)) {
    throw new TypeError(`Cannot use ${kind} id ${JSON.stringify(id)}: not 64 hex digits`);
  }
}

function isAbsolute(path: string): boolean {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
}
