/**
 * The advisory locks that let `clean` empty a cache directory safely while other processes may
 * use it. Both are files in the cache directory that are never removed (removing a locked file
 * would let a second lock on a new file succeed beside the first):
 *
 * - `.serve.pid`: a running `serve` holds a shared lock on it and writes its process id into it.
 *   `clean` takes it exclusively, so it refuses while a server runs, and a server that starts
 *   during a clean waits for it to finish.
 * - `.in-use`: every process serving go from the directory (direct mode, `connect`'s local
 *   fallback, `serve`) holds a shared lock on it while it runs. When `clean` can take it
 *   exclusively, no go command is using the directory and every entry goes; when it cannot, go
 *   commands are running and `clean` keeps what they may still read (recently used entries).
 *   A session that starts while `clean` holds it waits (bounded) for the clean to end.
 *
 * The operating system drops a lock when its process dies, so a crash leaves no stale lock.
 *
 * @module
 */

import { FILE_MODE } from "../util/files.ts";
import { settledWithin } from "../util/mod.ts";
import { SERVE_LOCK, SESSION_LOCK } from "./dir_layout.ts";

/** How long a session waits for a running `clean` before it goes on without the lock. */
const SESSION_WAIT_MS = 30_000;

/** Releases a lock (and closes its file); safe to call twice. */
export type Release = () => void;

/**
 * Takes the shared session lock of a cache directory for as long as this process serves go
 * from it. While a `clean` holds it, waits up to `waitMs`, then goes on without it. A directory
 * where the lock file cannot be opened (read-only, say) is served without it.
 *
 * @param root The cache directory.
 * @param options How long to wait for a running clean.
 * @returns The release.
 */
export async function holdSessionLock(
  root: string,
  options: { waitMs?: number } = {},
): Promise<Release> {
  const file = await openLockFile(`${root}/${SESSION_LOCK}`);
  if (!file) return () => {};
  if (!await file.tryLock(false).catch(() => true)) {
    await settledWithin(file.lock(false), options.waitMs ?? SESSION_WAIT_MS);
  }
  return releaseOf(file);
}

/**
 * Takes the shared serve lock of a cache directory and records this process's id in it. While a
 * `clean` holds it, waits for the clean to end.
 *
 * @param root The cache directory.
 * @param onWait Called once when a clean is running and the server waits for it.
 * @returns The release; `undefined` when the lock file cannot be opened.
 */
export async function holdServeLock(
  root: string,
  onWait?: () => void,
): Promise<Release | undefined> {
  const file = await openLockFile(`${root}/${SERVE_LOCK}`);
  if (!file) return undefined;
  if (!await file.tryLock(false)) {
    onWait?.();
    await file.lock(false);
  }
  try {
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  } catch {
    // another server holds it too and the platform refuses the write (Windows): the lock counts
  }
  return releaseOf(file);
}

/** What {@linkcode lockForClean} found. */
export type CleanLocks =
  | { state: "served"; pid: string }
  | { state: "busy" | "idle"; release: Release };

/**
 * Takes the locks `clean` needs: the serve lock exclusively (else a server is running: `served`,
 * with the pid it wrote), then the session lock exclusively if it can (`idle`: no go command is
 * using the directory), else `busy` (go commands are running).
 *
 * @param root The cache directory.
 * @returns What was found, with the release of what was taken.
 */
export async function lockForClean(root: string): Promise<CleanLocks> {
  const serve = await openLockFile(`${root}/${SERVE_LOCK}`);
  if (serve && !await serve.tryLock(true)) {
    const pid = await Deno.readTextFile(`${root}/${SERVE_LOCK}`).catch(() => "");
    serve.close();
    return { state: "served", pid: pid.trim() || "unknown" };
  }
  const releaseServe = serve ? releaseOf(serve) : () => {};
  const sessions = await openLockFile(`${root}/${SESSION_LOCK}`);
  if (sessions && await sessions.tryLock(true)) {
    const releaseSessions = releaseOf(sessions);
    return {
      state: "idle",
      release: () => {
        releaseSessions();
        releaseServe();
      },
    };
  }
  sessions?.close();
  // Without a lock file to ask, assume go commands are running: keep what they may read.
  return { state: "busy", release: releaseServe };
}

async function openLockFile(path: string): Promise<Deno.FsFile | undefined> {
  try {
    // Owner only, like every file in the cache directory, whatever the umask.
    return await Deno.open(path, { read: true, write: true, create: true, mode: FILE_MODE });
  } catch {
    return await Deno.open(path, { read: true }).catch(() => undefined);
  }
}

function releaseOf(file: Deno.FsFile): Release {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      file.unlockSync();
    } catch {
      // never locked
    }
    try {
      file.close();
    } catch {
      // closed
    }
  };
}
