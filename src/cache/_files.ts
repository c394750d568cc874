/**
 * File helpers of the local tier: atomic writes (a temporary file next to the target, renamed
 * into place), walking a cache directory, quiet removal, temporary-file names, and the upkeep
 * that runs off the request path (stale temporary files, a byte cap).
 *
 * @module
 */

import { errorMessage, writeAll } from "../util/mod.ts";

/**
 * Mode of every directory the plugin makes under a cache directory (and the directory itself):
 * its owner's only. Whoever can write there decides what later builds link in. `mkdir` and `open`
 * apply the umask by taking bits away, never adding any, so the result is private whatever the
 * umask (with `umask 000` too) and no `chmod` is needed after creation.
 */
export const DIR_MODE = 0o700;

/** Mode of every file the plugin writes: read and written by its owner only (see {@linkcode DIR_MODE}). */
export const FILE_MODE = 0o600;

/**
 * Makes a directory and its missing parents with {@linkcode DIR_MODE}; existing ones are left as
 * they are.
 *
 * @param path The directory.
 */
export async function makeDirs(path: string): Promise<void> {
  await Deno.mkdir(path, { recursive: true, mode: DIR_MODE });
}

/** How old a temporary file must be before a sweep removes it: no live writer is that slow. */
export const TEMP_MAX_AGE_MS = 3_600_000;

const TEMP_NAME = /\.[0-9a-f]{8}\.tmp$/;

/** A temporary name next to `path` (`<path>.<8 hex>.tmp`), renamed into place when complete. */
export function tempName(path: string): string {
  return `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
}

/** Whether a file name is one {@linkcode tempName} made. */
export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

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

/** `Deno.stat`, with `undefined` for a file that cannot be stat'ed. */
export async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch {
    return undefined;
  }
}

/** Removes a file; resolves to whether it did. */
export async function removeQuietly(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch {
    return false;
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
  for (const part of ["action", "output"]) {
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

/** A caching-proxy object under `revproxy/`: `<xx>/<64 hex>`. */
export const REVPROXY_OBJECT = /^[0-9a-f]{2}\/[0-9a-f]{64}$/;

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
  for await (const path of walk(`${root}/output`)) {
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
  for await (const path of walk(`${root}/revproxy`)) {
    const relative = path.slice(root.length + "/revproxy/".length);
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
    for await (const path of walk(`${root}/action`)) {
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
  for await (const path of walk(`${root}/action`)) {
    if (isTempName(path)) {
      if (await removeTempIfStale(path, tempCutoff)) result.temps++;
      continue;
    }
    if (removed.size === 0 && !present) continue;
    const text = await Deno.readTextFile(path).catch(() => "");
    const outputId = text.split(" ")[0]!;
    const dead = removed.has(outputId) ||
      (present !== undefined && !present.has(outputId) &&
        !await statOrUndefined(`${root}/output/${outputId.slice(0, 2)}/${outputId}`));
    if (dead && await removeQuietly(path)) result.actions++;
  }
  return result;
}

/** Bodies up to this size are written with synchronous calls (see {@linkcode atomicWriteSync}). */
export const SYNC_WRITE_LIMIT = 1 << 20;

/** Options for {@linkcode atomicWrite}. */
export interface AtomicWriteOptions {
  /** The exact size of a streamed body; required for a stream. */
  size?: number;
  /** The file's mtime (and atime). @default the time of the write */
  mtime?: Date;
  /** Set to `started: true` once a streamed body is read (it cannot be written elsewhere then). */
  progress?: { started: boolean };
  /** Directories known to exist; parents are made once and added here. @default none: made every time */
  madeDirs?: Set<string>;
}

/**
 * Writes a file atomically: a temporary file next to `path` ({@linkcode tempName}), its mtime
 * set, then renamed into place, so readers never see a partial file; the temporary file is
 * removed on failure. Bodies up to {@linkcode SYNC_WRITE_LIMIT} bytes go through
 * {@linkcode atomicWriteSync}.
 *
 * @param path The target.
 * @param body The bytes, or a stream of exactly `options.size` bytes.
 * @param options Size, mtime, progress flag, known directories.
 * @throws {RangeError} When a stream yields a different number of bytes than `size` (a body
 * error: see {@linkcode isBodyError}).
 */
export async function atomicWrite(
  path: string,
  body: Uint8Array | ReadableStream<Uint8Array>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  if (body instanceof Uint8Array && body.length <= SYNC_WRITE_LIMIT) {
    atomicWriteSync(path, body, options);
    return;
  }
  const progress = options.progress ?? { started: false };
  const write = async () => {
    const temp = tempName(path);
    try {
      if (body instanceof Uint8Array) {
        await Deno.writeFile(temp, body, { mode: FILE_MODE });
      } else {
        await writeStream(temp, body, options.size ?? 0, progress);
      }
      if (options.mtime) await Deno.utime(temp, options.mtime, options.mtime);
      await Deno.rename(temp, path);
    } catch (error) {
      await removeQuietly(temp);
      throw error;
    }
  };
  makeParent(path, options.madeDirs);
  try {
    await write();
  } catch (error) {
    // A stream read in part cannot be written again.
    if (!vanished(error) || progress.started) throw error;
    remakeParent(path, options.madeDirs);
    await write();
  }
}

/**
 * {@linkcode atomicWrite} with synchronous calls, for small files (most outputs and every action
 * record): four quick syscalls cost less than four round trips through the runtime's thread pool.
 *
 * @param path The target.
 * @param body The bytes.
 * @param options mtime and known directories.
 */
export function atomicWriteSync(
  path: string,
  body: Uint8Array,
  options: Pick<AtomicWriteOptions, "mtime" | "madeDirs"> = {},
): void {
  const write = () => {
    const temp = tempName(path);
    try {
      Deno.writeFileSync(temp, body, { mode: FILE_MODE });
      if (options.mtime) Deno.utimeSync(temp, options.mtime, options.mtime);
      Deno.renameSync(temp, path);
    } catch (error) {
      try {
        Deno.removeSync(temp);
      } catch {
        // never created
      }
      throw error;
    }
  };
  makeParent(path, options.madeDirs);
  try {
    write();
  } catch (error) {
    if (!vanished(error)) throw error;
    remakeParent(path, options.madeDirs);
    write();
  }
}

function makeParent(path: string, madeDirs: Set<string> | undefined): void {
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (madeDirs?.has(dir)) return;
  Deno.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  madeDirs?.add(dir);
}

/**
 * The target's directory went away after it was made (`clean`, or a trim that emptied it, in
 * another process): make it again, whatever `madeDirs` remembers.
 */
function remakeParent(path: string, madeDirs: Set<string> | undefined): void {
  madeDirs?.delete(path.slice(0, path.lastIndexOf("/")));
  makeParent(path, madeDirs);
}

function vanished(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

/** Errors that came from a streamed body rather than the disk: never a reason to fall back. */
const bodyErrors = new WeakSet<object>();

/**
 * Fills `target` from an open file with synchronous reads.
 *
 * @param file The file, at the position to read from.
 * @param target Exactly the bytes wanted.
 * @returns False when the file ended first.
 */
export function readFullSync(file: Deno.FsFile, target: Uint8Array): boolean {
  let done = 0;
  while (done < target.length) {
    const n = file.readSync(target.subarray(done));
    if (n === null || n === 0) return false;
    done += n;
  }
  return true;
}

/** Whether an error came from a streamed body (or its length) rather than the filesystem. */
export function isBodyError(error: unknown): boolean {
  return typeof error === "object" && error !== null && bodyErrors.has(error);
}

/** Writes a stream of exactly `size` bytes to `path`; `progress.started` once it is read. */
export async function writeStream(
  path: string,
  body: ReadableStream<Uint8Array>,
  size: number,
  progress: { started: boolean },
): Promise<void> {
  const file = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
    mode: FILE_MODE,
  });
  let written = 0;
  try {
    for await (const chunk of read(body, progress)) {
      written += chunk.length;
      if (written > size) {
        throw bodyError(new RangeError(`Cannot store output: more than ${size} bytes`));
      }
      await writeAll(file, chunk);
    }
  } finally {
    file.close();
  }
  if (written !== size) {
    throw bodyError(new RangeError(`Cannot store output: got ${written} bytes, expected ${size}`));
  }
}

/** The chunks of `body`, with its own errors marked as not the disk's. */
async function* read(
  body: ReadableStream<Uint8Array>,
  progress: { started: boolean },
): AsyncGenerator<Uint8Array> {
  progress.started = true;
  try {
    yield* body;
  } catch (error) {
    throw bodyError(error);
  }
}

function bodyError(error: unknown): unknown {
  if (typeof error === "object" && error !== null) bodyErrors.add(error);
  return error;
}

/** An OS error's text without the code and the path Deno appends. */
export function reason(error: unknown): string {
  return errorMessage(error).replace(/ \(os error \d+\).*$/s, "");
}
