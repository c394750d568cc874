/**
 * Module-file storage for the proxy: a local directory in the module-cache download layout, plus
 * an optional {@linkcode ObjectStore} (the S3 tier) that holds the same keys.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { ObjectStore } from "../cache/s3/object_store.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";

/** A local file opened for serving. */
export interface OpenedFile {
  file: Deno.FsFile;
  size: number;
  /** Modification time in ms since the epoch: when the entry was written. */
  mtimeMs: number;
}

/** Options for {@linkcode ModuleStore}. */
export interface ModuleStoreOptions {
  /** The remote tier; keys are the same relative keys. @default {undefined} (local only) */
  store?: ObjectStore;
  /** Where warnings go. @default {SILENT} */
  log?: Logger;
  /** Counters `modproxy_store_*`. @default {undefined} */
  metrics?: Metrics;
  /** Deadline of a background upload, in ms. @default {60000} */
  uploadTimeoutMs?: number;
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

/**
 * Keys are validated relative paths such as `example.com/!hello/@v/v1.0.0.zip` or
 * `sumdb/sum.golang.org/tile/8/0/000`; the caller builds them from validated parts only.
 */
export class ModuleStore {
  readonly #dir: string;
  readonly #remote?: ObjectStore;
  readonly #log: Logger;
  readonly #metrics?: Metrics;
  readonly #uploadTimeoutMs: number;
  readonly #uploads = new Set<Promise<void>>();

  /**
   * @param dir The local root directory (created on demand).
   * @param options Remote tier, logger, metrics.
   */
  constructor(dir: string, options: ModuleStoreOptions = {}) {
    this.#dir = dir;
    this.#remote = options.store;
    this.#log = options.log ?? SILENT;
    this.#metrics = options.metrics;
    this.#uploadTimeoutMs = options.uploadTimeoutMs ?? 60_000;
  }

  /** Whether a remote tier is configured. */
  get hasRemote(): boolean {
    return this.#remote !== undefined;
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
   * Opens a local entry.
   *
   * @param key A validated key.
   * @returns The open file with size and time, or `undefined` when missing.
   */
  async open(key: string): Promise<OpenedFile | undefined> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.localPath(key));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return undefined;
      }
      throw error;
    }
    try {
      const info = await file.stat();
      if (!info.isFile) {
        file.close();
        return undefined;
      }
      return { file, size: info.size, mtimeMs: info.mtime?.getTime() ?? 0 };
    } catch (error) {
      file.close();
      throw error;
    }
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
    options: { maxBytes: number; check?: (path: string, size: number) => Promise<void> },
  ): Promise<number> {
    const target = this.localPath(key);
    await Deno.mkdir(dirname(target), { recursive: true });
    const temp = `${dirname(target)}/.tmp-${crypto.randomUUID()}`;
    let size = 0;
    try {
      const file = await Deno.open(temp, { write: true, createNew: true });
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
      return size;
    } catch (error) {
      await Deno.remove(temp).catch(() => {});
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
    await this.writeStream(key, ReadableStream.from([bytes]), { maxBytes: bytes.length });
  }

  /**
   * Removes a local entry (after a failed verification); a missing entry is fine.
   *
   * @param key A validated key.
   */
  async removeLocal(key: string): Promise<void> {
    await Deno.remove(this.localPath(key)).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }

  /**
   * Copies an entry from the remote tier into the local directory.
   *
   * @param key A validated key.
   * @param options `maxBytes` cap and an optional check, as in {@linkcode writeStream}.
   * @returns `true` when the entry now exists locally, `false` when the remote has no copy or
   * cannot be read (a warning is logged).
   */
  async fillFromRemote(
    key: string,
    options: { maxBytes: number; check?: (path: string, size: number) => Promise<void> },
  ): Promise<boolean> {
    if (!this.#remote) return false;
    try {
      const object = await this.#remote.get(key, { signal: AbortSignal.timeout(60_000) });
      if (!object) return false;
      if (object.size > options.maxBytes) {
        await object.body.cancel();
        throw new TooLargeError(key, options.maxBytes);
      }
      const size = await this.writeStream(key, object.body, {
        maxBytes: options.maxBytes,
        check: async (path, size) => {
          if (size !== object.size) {
            throw new RangeError(`got ${size} bytes, expected ${object.size}`);
          }
          await options.check?.(path, size);
        },
      });
      this.#metrics?.add("modproxy_store_fills");
      this.#metrics?.add("modproxy_store_fill_bytes", size);
      return true;
    } catch (error) {
      this.#metrics?.add("modproxy_store_errors");
      this.#log.warn(
        `Cannot read module file ${JSON.stringify(key)} from the object store: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
      return false;
    }
  }

  /**
   * Uploads a local entry to the remote tier in the background (own deadline); failures are
   * logged and counted. {@linkcode close} waits for pending uploads.
   *
   * @param key A validated key whose local file exists.
   */
  upload(key: string): void {
    const remote = this.#remote;
    if (!remote) return;
    const task = (async () => {
      const opened = await this.open(key);
      if (!opened) return;
      await remote.put(key, opened.file.readable, {
        size: opened.size,
        signal: AbortSignal.timeout(this.#uploadTimeoutMs),
      });
      this.#metrics?.add("modproxy_store_puts");
    })().catch((error) => {
      this.#metrics?.add("modproxy_store_errors");
      this.#log.warn(
        `Cannot upload module file ${JSON.stringify(key)} to the object store: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    });
    this.#uploads.add(task);
    task.finally(() => this.#uploads.delete(task));
  }

  /** Waits for pending background uploads. */
  async close(): Promise<void> {
    while (this.#uploads.size > 0) await Promise.all([...this.#uploads]);
  }
}
