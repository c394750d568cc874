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
 * several plugin processes can share one directory.
 *
 * @module
 */

import type { CacheHandler, CacheHit, PutObject } from "../protocol/mod.ts";

/** Options for {@linkcode LocalCache}. */
export interface LocalCacheOptions {
  /**
   * How stale an output's mtime may get before a hit refreshes it (one `utime` per output per
   * period, not per hit). Keep it below `--expiry` so files in use are never pruned.
   * @default {3600000} (one hour)
   */
  touchAfterMs?: number;
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
}

const HEX_ID = /^[0-9a-f]{64}$/;
const decoder = new TextDecoder();
/** Bodies up to this size are written with synchronous calls (see `#atomicWriteNow`). */
const SYNC_WRITE_LIMIT = 1 << 20;

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

  private constructor(root: string, options: LocalCacheOptions) {
    this.root = root;
    this.#touchAfterMs = options.touchAfterMs ?? 3_600_000;
  }

  /**
   * Opens (creating if needed) a cache directory.
   *
   * @param root The directory; it must be absolute, since go is handed paths inside it.
   * @param options Touch interval.
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
    if (!record) return undefined;
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
    await this.#atomicWrite(path, new TextEncoder().encode(`${record.outputId} ${record.size}`), {
      mtime: record.time,
    });
  }

  /**
   * Writes an output atomically unless a file of the same size is already there.
   *
   * @param outputId Hex SHA-256 of the bytes (checked by the caller).
   * @param body The bytes, or a stream of exactly `size` bytes.
   * @param options `size` is required for a stream; `mtime` sets the file's time.
   * @returns The output's path.
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
    await this.#atomicWrite(path, body, { size, mtime: options.mtime });
    return path;
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
    const result: PruneResult = { actions: 0, outputs: 0, bytes: 0 };
    const kept = new Set<string>();
    for await (const path of walk(`${this.root}/action`)) {
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
        await writeStream(temp, body, options.size ?? 0);
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

function tempName(path: string): string {
  return `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
}

function sameSizeFileAt(path: string, size: number): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.size === size;
  } catch {
    return false;
  }
}

async function writeStream(path: string, body: ReadableStream<Uint8Array>, size: number) {
  const file = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o644 });
  let written = 0;
  try {
    for await (const chunk of body) {
      written += chunk.length;
      if (written > size) throw new RangeError(`Cannot store output: more than ${size} bytes`);
      let offset = 0;
      while (offset < chunk.length) offset += await file.write(chunk.subarray(offset));
    }
  } finally {
    file.close();
  }
  if (written !== size) {
    throw new RangeError(`Cannot store output: got ${written} bytes, expected ${size}`);
  }
}

async function* walk(dir: string): AsyncGenerator<string> {
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

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch {
    return undefined;
  }
}

async function removeQuietly(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
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
