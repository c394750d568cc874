/**
 * File helpers every component that writes under the cache directory shares: private modes,
 * atomic writes (a temporary file next to the target, renamed into place), quiet removal,
 * temporary-file names, absolute paths, and an OS error's reason.
 *
 * @module
 */

import { errorMessage, writeAll } from "./mod.ts";

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

const TEMP_NAME = /\.[0-9a-f]{8}\.tmp$/;

/** A temporary name next to `path` (`<path>.<8 hex>.tmp`), renamed into place when complete. */
export function tempName(path: string): string {
  return `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
}

/** Whether a file name is one {@linkcode tempName} made. */
export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
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
  /** The file's mode (before the umask). @default {FILE_MODE} */
  mode?: number;
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
        await Deno.writeFile(temp, body, { mode: options.mode ?? FILE_MODE });
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
 * @param options mtime, known directories and mode.
 */
export function atomicWriteSync(
  path: string,
  body: Uint8Array,
  options: Pick<AtomicWriteOptions, "mtime" | "madeDirs" | "mode"> = {},
): void {
  const write = () => {
    const temp = tempName(path);
    try {
      Deno.writeFileSync(temp, body, { mode: options.mode ?? FILE_MODE });
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
  const dir = parentOf(path);
  if (madeDirs?.has(dir)) return;
  Deno.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  madeDirs?.add(dir);
}

/**
 * The target's directory went away after it was made (`clean`, or a trim that emptied it, in
 * another process): make it again, whatever `madeDirs` remembers.
 */
function remakeParent(path: string, madeDirs: Set<string> | undefined): void {
  madeDirs?.delete(parentOf(path));
  makeParent(path, madeDirs);
}

/** The directory part of a path, with `/` or (Windows) `\\` separators. */
function parentOf(path: string): string {
  return path.slice(0, Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")));
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

/**
 * Whether a path is absolute on POSIX (`/…`) or Windows (`C:\…`, `C:/…`, or a UNC path
 * `\\server\share\…`).
 *
 * @param path The path.
 * @returns True when absolute.
 */
export function isAbsolute(path: string): boolean {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
}

/** An OS error's text without the code and the path Deno appends. */
export function reason(error: unknown): string {
  return errorMessage(error).replace(/ \(os error \d+\).*$/s, "");
}
