/**
 * Module-file storage for the proxy: a local directory in the module-cache download layout, plus
 * an optional {@linkcode ObjectStore} (the bucket tier) that holds the same keys.
 *
 * Local writes are atomic (`atomicWrite`, or for a body of unknown size a temporary file,
 * capped and checked, then renamed into place). The bucket behind the directory is a
 * {@linkcode BucketTier} (`store/bucket_tier.ts`): fills from the own prefix and then each read
 * prefix behind a breaker of its own (one missed deadline opens it: a module fill that waits
 * blocks a `go` command outright; while it is open, fills go to upstream at once), and uploads
 * through a bounded queue, which records what it could not send under `<dir>/.pending/` (one
 * file per key, named by the key's SHA-256 and holding the key) and sends it from the next
 * session. A module path element never starts with a dot, so `.pending` cannot collide with a
 * module. Read-only there is no upload queue at all: nothing is uploaded, and `.pending/` is
 * neither read nor written.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import {
  atomicWrite,
  FILE_MODE,
  makeDirs,
  readFullSync,
  removeQuietly,
  tempName,
} from "../util/files.ts";
import { BucketTier, type ObjectStore, type UploadEntry } from "../store/mod.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { HEX_ID } from "../util/mod.ts";
import { MemoryCache } from "./_memory_cache.ts";

/**
 * A local entry read for serving: a small one whole (`bytes`), a larger one as an open `file`
 * that the caller closes.
 */
export type LocalEntry =
  & {
    size: number;
    /** Modification time in ms since the epoch: when the entry was written. */
    mtimeMs: number;
  }
  & ({ bytes: Uint8Array<ArrayBuffer>; file?: undefined } | {
    file: Deno.FsFile;
    bytes?: undefined;
  });

/** Files up to this size are read whole; larger ones are streamed. */
const WHOLE_READ_MAX = 256 << 10;

/** Options for {@linkcode ModuleStore}. */
export interface ModuleStoreOptions {
  /**
   * The remote tier; keys are the same relative keys. A {@linkcode ReadThroughStore} adds read
   * prefixes and read-only mode.
   * @default {undefined} (local only)
   */
  store?: ObjectStore;
  /** Where warnings go. @default {SILENT} */
  log?: Logger;
  /** Counters `modproxy_store_*`. @default {undefined} */
  metrics?: Metrics;
  /** Deadline of a background upload, in ms. @default {60000} */
  uploadTimeoutMs?: number;
  /** Deadline of a remote lookup (until the object's headers), in ms. @default {10000} */
  getTimeoutMs?: number;
  /** Deadline of a whole remote fill, body included, in ms. @default {60000} */
  fillTimeoutMs?: number;
  /** Uploads running at once. @default {navigator.hardwareConcurrency} */
  uploadConcurrency?: number;
  /** How long `close()` waits for pending uploads, in ms. @default {60000} */
  closeTimeoutMs?: number;
  /** Where uploads still owed are recorded. @default {`${dir}/.pending`} */
  pendingDir?: string;
  /** How long the breaker stays open before one fill may try again, in ms. @default {30000} */
  breakerCooldownMs?: number;
  /**
   * Memory for small immutable entries, in bytes; 0 turns it off. A file larger than a sixteenth
   * of it, or than 64 KiB, is not held.
   * @default {16 MiB}
   */
  memoryBytes?: number;
}

/** Thrown when a body is larger than its cap; nothing is stored. */
export class TooLargeError extends RangeError {
  /**
   * @param key The entry.
   * @param max The cap in bytes.
   */
  constructor(key: string, max: number) {
    super(`Cannot store ${JSON.stringify(key)}: larger than ${max} bytes`);
    this.name = "TooLargeError";
  }
}

const MEMORY_DEFAULT = 16 << 20;
const MEMORY_ENTRY_MAX = 64 << 10;

/** How a write is bounded and checked. */
interface WriteOptions {
  maxBytes: number;
  check?: (path: string, size: number) => Promise<void>;
}

/**
 * Keys are validated relative paths such as `example.com/!hello/@v/v1.0.0.zip` or
 * `sumdb/sum.golang.org/tile/8/0/000`; the caller builds them from validated parts only.
 *
 * @example
 * ```ts
 * import { MemoryObjectStore } from "../store/mod.ts";
 * import { ModuleStore } from "./store.ts";
 * const dir = await Deno.makeTempDir();
 * const remote = new MemoryObjectStore();
 * const store = new ModuleStore(dir, { store: remote });
 * await store.writeBytes("example.com/@v/list", new TextEncoder().encode("v1.0.0\n"));
 * store.upload("example.com/@v/list");
 * await store.close();
 * if (!remote.objects.has("example.com/@v/list")) throw new Error("expected the upload");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ModuleStore {
  readonly #dir: string;
  /** The bucket behind the directory: fills, uploads, their breaker. */
  readonly #bucket: BucketTier;
  readonly #memory: MemoryCache;

  /**
   * @param dir The local root directory (created on demand).
   * @param options Remote tier, logger, metrics, deadlines.
   */
  constructor(dir: string, options: ModuleStoreOptions = {}) {
    this.#dir = dir;
    const memoryBytes = options.memoryBytes ?? MEMORY_DEFAULT;
    this.#memory = new MemoryCache(memoryBytes, Math.min(MEMORY_ENTRY_MAX, memoryBytes / 16));
    this.#bucket = new BucketTier(options.store, {
      name: "modproxy_store",
      logPrefix: "modproxy: ",
      serving: "the local module cache and upstream",
      noun: "module uploads",
      pendingDir: options.pendingDir ?? join(dir, ".pending"),
      markerPattern: HEX_ID,
      rebuild: (marker, text) => this.#rebuild(marker, text),
      describeUpload: (entry) => `module file ${JSON.stringify(entry.key)}`,
      getTimeoutMs: options.getTimeoutMs,
      fillTimeoutMs: options.fillTimeoutMs ?? 60_000,
      breakerCooldownMs: options.breakerCooldownMs,
      uploadConcurrency: options.uploadConcurrency,
      uploadTimeoutMs: options.uploadTimeoutMs,
      closeTimeoutMs: options.closeTimeoutMs,
      log: options.log ?? SILENT,
      metrics: options.metrics,
    });
  }

  /** Whether a remote tier is configured. */
  get hasRemote(): boolean {
    return this.#bucket.hasRemote;
  }

  /**
   * The local file path of a key.
   *
   * @param key A validated key.
   * @returns The absolute path under the root.
   */
  localPath(key: string): string {
    return join(this.#dir, key);
  }

  /**
   * Reads a local entry for serving, synchronously (a local open, stat and read cost less than
   * the thread hand-offs of their async forms): a small file whole, a larger one as an open file
   * the caller closes. With `immutable`, small files are also kept in memory (bounded by
   * `memoryBytes`), which saves the open, read and close; the disk stays the truth: a stat checks
   * each time that the file is still there with the remembered size and mtime, and any write or
   * removal through this store forgets the key.
   *
   * @param key A validated key.
   * @param options `immutable`: the entry never changes once written, so memory may hold it.
   * @returns The entry with size and mtime, or `undefined` when missing.
   */
  read(key: string, options: { immutable: boolean }): LocalEntry | undefined {
    const path = this.localPath(key);
    if (options.immutable) {
      const remembered = this.#memory.get(key);
      if (remembered && sameFileSync(path, remembered.bytes.length, remembered.mtimeMs)) {
        return {
          bytes: remembered.bytes,
          size: remembered.bytes.length,
          mtimeMs: remembered.mtimeMs,
        };
      }
      if (remembered) this.#memory.delete(key);
    }
    const entry = readEntrySync(path);
    if (entry?.bytes && options.immutable) {
      this.#memory.set(key, { bytes: entry.bytes, mtimeMs: entry.mtimeMs });
    }
    return entry;
  }

  /**
   * Makes a local entry stale at once (mtime 0): for a copy of unknown age. Best effort.
   *
   * @param key A validated key.
   */
  async markStale(key: string): Promise<void> {
    await Deno.utime(this.localPath(key), 0, 0).catch(() => {});
    this.#memory.delete(key);
  }

  /**
   * Reads a small local entry whole.
   *
   * @param key A validated key.
   * @returns The bytes, or `undefined` when missing.
   */
  async readLocal(key: string): Promise<Uint8Array | undefined> {
    try {
      return await Deno.readFile(this.localPath(key));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return undefined;
      }
      throw error;
    }
  }

  /**
   * Streams a body into a temp file next to the entry, checks it, then renames it into place.
   * Nothing is left behind when the body is too large, fails, or the check throws.
   *
   * @param key A validated key.
   * @param body The bytes.
   * @param options `maxBytes` cap and an optional `check(tempPath, size)` run before the rename.
   * @returns The size written.
   */
  async writeStream(
    key: string,
    body: ReadableStream<Uint8Array>,
    options: WriteOptions,
  ): Promise<number> {
    const target = this.localPath(key);
    await makeDirs(dirname(target));
    const temp = tempName(target);
    let size = 0;
    try {
      const file = await Deno.open(temp, { write: true, createNew: true, mode: FILE_MODE });
      const counter = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          size += chunk.byteLength;
          if (size > options.maxBytes) throw new TooLargeError(key, options.maxBytes);
          controller.enqueue(chunk);
        },
      });
      await body.pipeThrough(counter).pipeTo(file.writable);
      await options.check?.(temp, size);
      await Deno.rename(temp, target);
      this.#memory.delete(key);
      return size;
    } catch (error) {
      await removeQuietly(temp);
      throw error;
    }
  }

  /**
   * Writes a small entry atomically (temp file and rename), replacing any old one.
   *
   * @param key A validated key.
   * @param bytes The content.
   */
  async writeBytes(key: string, bytes: Uint8Array): Promise<void> {
    await atomicWrite(this.localPath(key), bytes);
    this.#memory.delete(key);
  }

  /**
   * Removes a local entry (after a failed verification); a missing entry is fine.
   *
   * @param key A validated key.
   */
  async removeLocal(key: string): Promise<void> {
    try {
      await Deno.remove(this.localPath(key)).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    } finally {
      this.#memory.delete(key);
    }
  }

  /**
   * Copies an entry from the remote tier into the local directory: the own prefix, then each
   * read prefix in turn (counted in `modproxy_store_read_prefix_hits`). Skipped at once while
   * the breaker is open; a remote failure counts toward it.
   *
   * @param key A validated key.
   * @param options `maxBytes` cap and an optional check, as in {@linkcode writeStream}.
   * @returns `true` when the entry now exists locally, `false` when the remote has no copy, is
   * paused, or cannot be read (a warning is logged).
   */
  fillFromRemote(key: string, options: WriteOptions): Promise<boolean> {
    const what = `module file ${JSON.stringify(key)}`;
    return this.#bucket.fill(key, {
      what,
      write: async (object) => {
        if (object.size > options.maxBytes) {
          await object.body.cancel();
          throw new TooLargeError(key, options.maxBytes);
        }
        return await this.writeStream(key, object.body, {
          maxBytes: options.maxBytes,
          check: async (path, size) => {
            if (size !== object.size) {
              throw new RangeError(`got ${size} bytes, expected ${object.size}`);
            }
            await options.check?.(path, size);
          },
        });
      },
    });
  }

  /**
   * Uploads a local entry to the remote tier in the background (bounded queue, own deadline);
   * failures are logged and counted, and recorded for the next session. {@linkcode close} waits
   * for pending uploads, bounded. Read-only, nothing is sent (counted in
   * `modproxy_store_uploads_skipped_read_only`).
   *
   * @param key A validated key whose local file exists.
   */
  upload(key: string): void {
    this.#bucket.upload(this.#entry(key));
  }

  /** Waits for pending background uploads (bounded; what is left is recorded as owed). */
  close(): Promise<void> {
    return this.#bucket.close();
  }

  /** The upload of a key: its file as it is when the upload starts. */
  #entry(key: string): UploadEntry {
    return { marker: markerOf(key), markerText: key, key, path: this.localPath(key) };
  }

  /** The entry a marker of an earlier session names; `undefined` when nothing is left to send. */
  async #rebuild(marker: string, text: () => Promise<string>): Promise<UploadEntry | undefined> {
    const key = await text();
    if (markerOf(key) !== marker || !isRelativeKey(key)) return undefined;
    const info = await Deno.stat(this.localPath(key)).catch(() => undefined);
    return info?.isFile ? this.#entry(key) : undefined;
  }
}

/** Whether `path` is still a regular file of this size and mtime. */
function sameFileSync(path: string, size: number, mtimeMs: number): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.size === size && (info.mtime?.getTime() ?? 0) === mtimeMs;
  } catch {
    return false;
  }
}

/** Reads a file for serving; `undefined` when it is missing or not a regular file. */
function readEntrySync(path: string): LocalEntry | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw error;
  }
  let handedOver = false;
  try {
    const info = file.statSync();
    if (!info.isFile) return undefined;
    const mtimeMs = info.mtime?.getTime() ?? 0;
    if (info.size > WHOLE_READ_MAX) {
      handedOver = true;
      return { file, size: info.size, mtimeMs };
    }
    const bytes = new Uint8Array(info.size);
    if (!readFullSync(file, bytes)) {
      throw new RangeError(`Cannot read cached file: shorter than its ${bytes.length} bytes`);
    }
    return { bytes, size: bytes.length, mtimeMs };
  } finally {
    if (!handedOver) file.close();
  }
}

/** The marker of a key's owed upload: its SHA-256, hex. */
function markerOf(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** A key read back from disk: relative, no empty, `.` or `..` segments, no backslashes. */
function isRelativeKey(key: string): boolean {
  return key !== "" && !key.includes("\\") &&
    key.split("/").every((part) => part !== "" && part !== "." && part !== "..");
}
