/**
 * Module-file storage for the proxy: a local directory in the module-cache download layout, plus
 * an optional {@linkcode ObjectStore} (the S3 tier) that holds the same keys.
 *
 * It runs on the build cache's store core: local writes are atomic (the local tier's
 * `atomicWrite`, or for a body of unknown size a temporary file named as the local tier names
 * them, capped and checked, then renamed into place); remote fills and uploads go
 * through a {@linkcode CircuitBreaker}, and uploads through the bounded {@linkcode UploadQueue},
 * which records what it could not send under `<dir>/.pending/` (one file per key, named by the
 * key's SHA-256 and holding the key) and sends it from the next session. A module path element
 * never starts with a dot, so `.pending` cannot collide with a module.
 *
 * The breaker is the store's own, not the build cache's: a bucket policy may allow one prefix
 * and not the other, and a module fill that waits blocks a `go` command outright (there is no
 * compiling instead), so one missed deadline opens it. While it is open, fills skip the bucket
 * and go to upstream at once, and uploads are recorded as owed.
 *
 * Given a {@linkcode ReadThroughStore}, the trust tiers apply as in the build cache: a fill that
 * misses under the own prefix tries each read prefix in order (every copy is checked the same
 * way), uploads go to the own prefix only, and read-only there is no upload queue at all:
 * nothing is uploaded, and `.pending/` is neither read nor written.
 *
 * Why one file of this size: `ModuleStore` is one class (local files, the bucket's read
 * prefixes, its breaker and upload queue wired together); the shared core it is built on lives in
 * `cache/`.
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
import { CircuitBreaker } from "../store/mod.ts";
import { type ObjectStore, StoreError } from "../store/mod.ts";
import { ReadThroughStore } from "../store/mod.ts";
import { type UploadEntry, UploadQueue } from "../store/mod.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { errorMessage } from "../util/mod.ts";
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
  /** The own prefix first, then the read prefixes; empty without a remote tier. */
  readonly #remotes: readonly ObjectStore[];
  readonly #log: Logger;
  readonly #metrics?: Metrics;
  readonly #getTimeoutMs: number;
  readonly #fillTimeoutMs: number;
  readonly #breaker: CircuitBreaker;
  readonly #uploads?: UploadQueue;
  readonly #resuming: Promise<unknown>;
  readonly #memory: MemoryCache;

  /**
   * @param dir The local root directory (created on demand).
   * @param options Remote tier, logger, metrics, deadlines.
   */
  constructor(dir: string, options: ModuleStoreOptions = {}) {
    this.#dir = dir;
    const view = options.store && ReadThroughStore.of(options.store);
    this.#remotes = view?.lookupOrder ?? [];
    this.#log = options.log ?? SILENT;
    this.#metrics = options.metrics;
    this.#getTimeoutMs = options.getTimeoutMs ?? 10_000;
    this.#fillTimeoutMs = options.fillTimeoutMs ?? 60_000;
    const memoryBytes = options.memoryBytes ?? MEMORY_DEFAULT;
    this.#memory = new MemoryCache(memoryBytes, Math.min(MEMORY_ENTRY_MAX, memoryBytes / 16));
    this.#breaker = new CircuitBreaker({
      stallThreshold: 1,
      cooldownMs: options.breakerCooldownMs,
      probeMs: this.#getTimeoutMs,
      log: this.#log,
      logPrefix: "modproxy: ",
      serving: "the local module cache and upstream",
      metrics: view ? this.#metrics : undefined,
      metricPrefix: "modproxy_store_breaker",
    });
    if (view && !view.readOnly) {
      this.#uploads = new UploadQueue(view.own, {
        breaker: this.#breaker,
        pendingDir: options.pendingDir ?? join(dir, ".pending"),
        concurrency: options.uploadConcurrency,
        uploadTimeoutMs: options.uploadTimeoutMs,
        headTimeoutMs: this.#getTimeoutMs,
        closeTimeoutMs: options.closeTimeoutMs,
        markerPattern: /^[0-9a-f]{64}$/,
        noun: "module uploads",
        onFailed: (entry, error) =>
          this.#log.warn(
            `Cannot upload module file ${JSON.stringify(entry.key)} to the object store: ${
              errorMessage(error)
            }`,
          ),
        log: this.#log,
        metrics: this.#metrics,
        names: {
          done: "modproxy_store_puts",
          skipped: "modproxy_store_put_skips",
          failed: "modproxy_store_errors",
          left: "modproxy_store_uploads_left",
          resumed: "modproxy_store_uploads_resumed",
          bytesUp: "modproxy_store_bytes_up",
        },
      });
    }
    // Uploads an earlier session owed; close() waits for this to have queued them.
    this.#resuming = this.#uploads?.resume((marker, text) => this.#rebuild(marker, text))
      .catch(() => 0) ?? Promise.resolve();
  }

  /** Whether a remote tier is configured. */
  get hasRemote(): boolean {
    return this.#remotes.length > 0;
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
  async fillFromRemote(key: string, options: WriteOptions): Promise<boolean> {
    if (this.#remotes.length === 0) return false;
    await this.#breaker.ready();
    if (!this.#breaker.allow()) {
      this.#metrics?.add("modproxy_store_skipped");
      return false;
    }
    const started = performance.now();
    const trip = this.#breaker.signal;
    try {
      let size: number | undefined;
      for (const [index, remote] of this.#remotes.entries()) {
        size = await this.#fill(remote, key, options, trip);
        if (size === undefined) continue;
        if (index > 0) this.#metrics?.add("modproxy_store_read_prefix_hits");
        break;
      }
      if (size === undefined) return false;
      this.#metrics?.add("modproxy_store_fills");
      this.#metrics?.add("modproxy_store_fill_bytes", size);
      return true;
    } catch (error) {
      this.#metrics?.add("modproxy_store_errors");
      // Only the bucket's failures are evidence about it (not a check, a cap or the disk); one
      // cut short by the breaker is not new evidence.
      if (error instanceof StoreError && !trip.aborted) {
        this.#breaker.failed(error, performance.now() - started);
      }
      this.#log.warn(
        `Cannot read module file ${JSON.stringify(key)} from the object store: ${
          errorMessage(error)
        }`,
      );
      return false;
    }
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
    if (this.#uploads) this.#uploads.enqueue(this.#entry(key));
    else if (this.hasRemote) this.#metrics?.add("modproxy_store_uploads_skipped_read_only");
  }

  /** Waits for pending background uploads (bounded; what is left is recorded as owed). */
  async close(): Promise<void> {
    await this.#resuming;
    await this.#uploads?.close();
  }

  /** The fill itself: the size written, or `undefined` when the bucket has no copy. */
  async #fill(
    remote: ObjectStore,
    key: string,
    options: WriteOptions,
    trip: AbortSignal,
  ): Promise<number | undefined> {
    // The lookup gets a lookup's deadline, the body the rest of the fill's.
    const lookup = new AbortController();
    const signal = AbortSignal.any([AbortSignal.timeout(this.#fillTimeoutMs), trip, lookup.signal]);
    const timer = setTimeout(
      () => lookup.abort(new DOMException("lookup deadline exceeded", "TimeoutError")),
      this.#getTimeoutMs,
    );
    const object = await remote.get(key, { signal }).finally(() => clearTimeout(timer));
    this.#breaker.succeeded(); // the bucket answered
    if (!object) return undefined;
    if (object.size > options.maxBytes) {
      await object.body.cancel();
      throw new TooLargeError(key, options.maxBytes);
    }
    return await this.writeStream(key, remoteBody(object.body, key, signal), {
      maxBytes: options.maxBytes,
      check: async (path, size) => {
        if (size !== object.size) {
          throw new RangeError(`got ${size} bytes, expected ${object.size}`);
        }
        await options.check?.(path, size);
      },
    });
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

/**
 * A remote body whose read failures are the bucket's ({@linkcode StoreError}), so that the
 * breaker counts them and not a failed check or a full disk.
 */
function remoteBody(
  body: ReadableStream<Uint8Array>,
  key: string,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        const reason = signal.aborted ? "deadline exceeded" : errorMessage(error);
        throw new StoreError(
          `Cannot read S3 object ${JSON.stringify(key)}: ${reason}`,
          signal.aborted ? "timeout" : "other",
          { cause: error },
        );
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
