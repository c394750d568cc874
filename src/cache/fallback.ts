/**
 * The fallback directory: where a cache directory's puts go when it cannot take them (a full
 * disk, a read-only mount, no write permission), and what replaces a cache directory that cannot
 * be created. go treats a failed put as fatal, so a put must always be answered with a file that
 * holds the bytes.
 *
 * ## Fallback layout
 *
 * One directory per user and cache directory in the system temp directory (`$TMPDIR`, else
 * `/tmp`): `go-cache-plugin-<uid>-<hash>`, where `<hash>` is 8 hex digits of FNV-1a over the
 * cache directory's path. Every process using that cache directory reuses it, so entries put
 * there by one go command are hits for the next. Inside, the layout of the cache directory
 * (`action/<xx>/<id>`, `output/<xx>/<id>`); {@linkcode LocalCache} keeps it under
 * {@linkcode FALLBACK_MAX_BYTES} by removing the oldest outputs. It is created with mode 0700 and
 * used only while it is a real directory owned by the user and writable by nobody else, so other
 * users of a shared temp directory cannot plant entries in it.
 *
 * @module
 */

import { reason } from "../util/files.ts";

/** The byte cap of a fallback directory's outputs. */
export const FALLBACK_MAX_BYTES = 512 * 1024 * 1024;

/**
 * A fallback for the writes a cache directory refuses, given to {@linkcode LocalCache.open} as
 * `fallback` ({@linkcode systemFallback} makes the usual one).
 */
export interface FallbackOptions {
  /**
   * The fallback directory, looked up once on the first miss (`create` false: `undefined` when
   * it does not exist) and made on the first refused write (`create` true).
   *
   * @param options Whether to make it when it does not exist.
   * @throws {Error} When it cannot be made or used.
   */
  dir(options: { create: boolean }): string | undefined;
  /** Byte cap of its outputs (see `LocalCacheOptions.maxBytes`). @default {Infinity} */
  maxBytes?: number;
}

/** The system temp directory and the user's id, found once per process. */
let probed: { tempDir: string; uid: number | null } | undefined;

/**
 * The fallback directory's path for a cache directory; the same in every process of one user.
 *
 * @param cacheDir The (absolute) cache directory.
 * @returns A path in the system temp directory.
 */
export function fallbackPath(cacheDir: string): string {
  const { tempDir, uid } = probe();
  const user = uid === null ? "" : `${uid}-`;
  return `${tempDir}/go-cache-plugin-${user}${fnv1a(cacheDir.replace(/[\\/]+$/, ""))}`;
}

/**
 * Finds or creates the fallback directory of a cache directory and checks that it is safe to
 * read from and write to.
 *
 * @param cacheDir The (absolute) cache directory.
 * @param options `create`: make the directory when it does not exist (default false).
 * @returns The directory, or `undefined` when it does not exist and `create` is false.
 * @throws {Error} When it cannot be created, or is not a directory of the user's alone.
 */
export function fallbackDir(
  cacheDir: string,
  options: { create?: boolean } = {},
): string | undefined {
  const dir = fallbackPath(cacheDir);
  if (options.create) {
    try {
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) {
        throw new Error(
          `Cannot create fallback directory ${JSON.stringify(dir)}: ${reason(error)}`,
          {
            cause: error,
          },
        );
      }
    }
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(dir);
  } catch (error) {
    if (!options.create && error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot use fallback directory ${JSON.stringify(dir)}: ${reason(error)}`, {
      cause: error,
    });
  }
  const problem = unsafe(info, probe().uid);
  if (problem) {
    throw new Error(`Cannot use fallback directory ${JSON.stringify(dir)}: ${problem}`);
  }
  return dir;
}

/**
 * The {@linkcode FallbackOptions} that send a cache directory's failed writes to its fallback
 * directory.
 *
 * @param cacheDir The (absolute) cache directory.
 * @param options `maxBytes`: the fallback's byte cap (default {@linkcode FALLBACK_MAX_BYTES}).
 * @returns Options for {@linkcode LocalCache.open}.
 */
export function systemFallback(
  cacheDir: string,
  options: { maxBytes?: number } = {},
): FallbackOptions {
  return {
    dir: ({ create }) => fallbackDir(cacheDir, { create }),
    maxBytes: options.maxBytes ?? FALLBACK_MAX_BYTES,
  };
}

function unsafe(info: Deno.FileInfo, uid: number | null): string | undefined {
  if (info.isSymlink) return "it is a symbolic link";
  if (!info.isDirectory) return "not a directory";
  if (uid === null || info.uid === null) return undefined; // Windows: per-user temp directories
  if (info.uid !== uid) return `owned by uid ${info.uid}, not ${uid}`;
  if (((info.mode ?? 0) & 0o022) !== 0) {
    return `writable by others (mode ${((info.mode ?? 0) & 0o777).toString(8)})`;
  }
  return undefined;
}

// The temp directory and the uid need environment and system permissions the plugin does not
// have; a directory made (and removed) in the temp directory tells both.
function probe(): { tempDir: string; uid: number | null } {
  if (probed) return probed;
  const made = Deno.makeTempDirSync({ prefix: "go-cache-plugin-probe-" });
  try {
    const uid = Deno.statSync(made).uid;
    probed = {
      tempDir: made.slice(0, Math.max(made.lastIndexOf("/"), made.lastIndexOf("\\"))),
      uid,
    };
  } finally {
    Deno.removeSync(made);
  }
  return probed;
}

function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}
