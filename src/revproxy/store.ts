/**
 * The proxy's storage: objects (see `entry.ts`) under `<cache-dir>/revproxy/<xx>/<key>` and, with
 * a bucket, under `[prefix/]revproxy/<xx>/<key>` (a {@linkcode ReadThroughStore}: read prefixes
 * are looked up after the own one, and read-only there is no upload at all).
 *
 * Writes stream to a temporary file next to the object (`<key>.<8 hex>.tmp`) while the body's
 * SHA-256 is computed; the digest is written into the header section in place, then the file is
 * renamed into place. A body is never held in memory. A local object is checked against its digest
 * the first time this process serves it (then remembered by inode and size); a fill from the
 * bucket is checked as it arrives. A mismatch removes the local file and counts as a miss.
 *
 * The bucket behind the directory is a {@linkcode BucketTier} (`store/bucket_tier.ts`): reads
 * and uploads share its breaker; uploads go through its bounded queue (own deadline each), and
 * what it could not send is recorded under `revproxy/.pending/` for the next start.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { join } from "node:path";
import {
  BucketTier,
  type ObjectStore,
  type StoredObject,
  StoreError,
  type UploadEntry,
} from "../store/mod.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { HEX_ID } from "../util/mod.ts";
import {
  digestOffset,
  encodeHead,
  type EntryHead,
  MAX_HEAD_BYTES,
  parseHead,
  ZERO_DIGEST,
} from "./entry.ts";

/** Bodies up to this size are read whole for serving; larger ones are streamed. */
export const WHOLE_READ_MAX = 256 << 10;

/** A local object opened for serving. */
export interface LocalObject {
  /** Its header section. */
  head: EntryHead;
  /** The body's size in bytes. */
  size: number;
  /** The file's path, size and mtime (ms) when it was opened. */
  path: string;
  fileSize: number;
  mtimeMs: number;
  /** The body, for a small object. */
  bytes?: Uint8Array<ArrayBuffer>;
  /** The open file positioned at the body, for a larger one; the caller closes it. */
  file?: Deno.FsFile;
}

/** Options for {@linkcode RevproxyStore}. */
export interface RevproxyStoreOptions {
  /** The bucket under `[prefix/]revproxy/`; a {@linkcode ReadThroughStore} adds its rules. @default none */
  store?: ObjectStore;
  /** Warnings. @default {SILENT} */
  log?: Logger;
  /** Counters `revproxy_store_*`. @default none */
  metrics?: Metrics;
  /** Deadline of one upload, ms. @default {300000} */
  uploadTimeoutMs?: number;
  /** Deadline of a bucket lookup (until the object's headers), ms. @default {10000} */
  getTimeoutMs?: number;
  /** Deadline of a whole fill from the bucket, ms. @default {600000} */
  fillTimeoutMs?: number;
  /** How long the breaker stays open, ms. @default {30000} */
  breakerCooldownMs?: number;
  /** Uploads at once. @default {navigator.hardwareConcurrency} */
  uploadConcurrency?: number;
}

/** Writes one object: header section, then the body in chunks, then {@linkcode commit}. */
export class EntryWriter {
  /** The temporary file's path; after a commit, the object's. */
  path: string;
  /** Where the body starts in the file. */
  readonly bodyOffset: number;
  /** Body bytes written so far. */
  written = 0;
  readonly #final: string;
  readonly #file: Deno.FsFile;
  readonly #hash: Hash = createHash("sha256");
  readonly #digestAt: number;
  #closed = false;

  private constructor(temp: string, final: string, file: Deno.FsFile, head: Uint8Array) {
    this.path = temp;
    this.#final = final;
    this.#file = file;
    this.bodyOffset = head.length;
    this.#digestAt = digestOffset(head);
  }

  /** Creates the temporary file and writes the header section. */
  static async create(final: string, head: Uint8Array): Promise<EntryWriter> {
    await Deno.mkdir(final.slice(0, final.lastIndexOf("/")), { recursive: true });
    const temp = `${final}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    const file = await Deno.open(temp, { write: true, read: true, createNew: true });
    const writer = new EntryWriter(temp, final, file, head);
    try {
      await writeAll(file, head);
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return writer;
  }

  /** The final path. */
  get finalPath(): string {
    return this.#final;
  }

  /** Appends body bytes. */
  async write(chunk: Uint8Array): Promise<void> {
    this.#hash.update(chunk);
    await writeAll(this.#file, chunk);
    this.written += chunk.byteLength;
  }

  /**
   * Writes the digest into the header section and renames the file into place.
   *
   * @param expected The digest the body must have (a fill from the bucket). @default none
   * @returns The body's digest.
   * @throws {RangeError} When `expected` does not match. A failure leaves the temporary file for
   * the caller to {@linkcode abort} (clients may still be reading it).
   */
  async commit(expected?: string): Promise<string> {
    const digest = this.#hash.digest("hex");
    try {
      if (expected !== undefined && expected !== digest) {
        throw new RangeError(
          `body digest ${digest.slice(0, 12)}, expected ${expected.slice(0, 12)}`,
        );
      }
      await this.#file.seek(this.#digestAt, Deno.SeekMode.Start);
      await writeAll(this.#file, new TextEncoder().encode(digest));
      this.#file.close();
      this.#closed = true;
      await Deno.rename(this.path, this.#final);
      this.path = this.#final;
      return digest;
    } catch (error) {
      this.#close();
      throw error;
    }
  }

  /** Closes the file, keeping it (readers may still open it by path); {@linkcode abort} removes it. */
  closeFile(): void {
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.close();
    } catch {
      // closed
    }
  }

  /** Closes and removes the temporary file. */
  async abort(): Promise<void> {
    this.#close();
    if (this.path !== this.#final) await Deno.remove(this.path).catch(() => {});
  }
}

/** Local objects and the bucket behind them. */
export class RevproxyStore {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #metrics?: Metrics;
  /** The bucket behind the directory: fills, uploads, their breaker. */
  readonly #bucket: BucketTier;
  /** Objects checked against their digest: path → `inode:size`. */
  readonly #verified = new Map<string, string>();

  /**
   * @param dir The local directory (`<cache-dir>/revproxy`).
   * @param options Bucket, logger, metrics, deadlines.
   */
  constructor(dir: string, options: RevproxyStoreOptions = {}) {
    this.#dir = dir;
    this.#log = options.log ?? SILENT;
    this.#metrics = options.metrics;
    this.#bucket = new BucketTier(options.store, {
      name: "revproxy_store",
      logPrefix: "revproxy: ",
      serving: "the local proxy cache and upstream",
      noun: "proxy uploads",
      pendingDir: join(dir, ".pending"),
      markerPattern: HEX_ID,
      rebuild: (marker) => this.#rebuild(marker),
      describeUpload: (entry) => `proxy object ${entry.marker.slice(0, 12)}`,
      getTimeoutMs: options.getTimeoutMs,
      fillTimeoutMs: options.fillTimeoutMs ?? 600_000,
      breakerCooldownMs: options.breakerCooldownMs,
      uploadConcurrency: options.uploadConcurrency,
      uploadTimeoutMs: options.uploadTimeoutMs ?? 300_000,
      log: this.#log,
      metrics: this.#metrics,
    });
  }

  /** Whether a bucket is configured. */
  get hasRemote(): boolean {
    return this.#bucket.hasRemote;
  }

  /** The local directory. */
  get dir(): string {
    return this.#dir;
  }

  /**
   * The local path of a key.
   *
   * @param key The key (64 hex digits).
   * @returns `<dir>/<xx>/<key>`.
   */
  path(key: string): string {
    return `${this.#dir}/${key.slice(0, 2)}/${key}`;
  }

  /**
   * Opens a local object for serving. One that is malformed, for another URL, or whose body
   * does not match its digest is removed and counted in `revproxy_corrupt`.
   *
   * @param key The key.
   * @param url The keyed URL the object must hold.
   * @returns The object, or `undefined` on a miss.
   */
  async open(key: string, url: string): Promise<LocalObject | undefined> {
    const path = this.path(key);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return undefined;
      }
      throw error;
    }
    let handed = false;
    try {
      const info = await file.stat();
      if (!info.isFile) return undefined;
      const start = new Uint8Array(Math.min(info.size, WHOLE_READ_MAX + MAX_HEAD_BYTES));
      const got = await readFull(file, start);
      const head = parseHead(start.subarray(0, got));
      if (!head || head.url !== url) {
        await this.#reject(path, "malformed or for another URL");
        return undefined;
      }
      const size = info.size - head.bodyOffset;
      const identity = `${info.ino ?? info.mtime?.getTime()}:${info.size}`;
      if (this.#verified.get(path) !== identity) {
        if (!await this.#check(file, head, start.subarray(0, got))) {
          await this.#reject(path, "body does not match its digest");
          return undefined;
        }
        this.#verified.set(path, identity);
      }
      this.#touch(path, info.mtime);
      const facts = { head, size, path, fileSize: info.size, mtimeMs: info.mtime?.getTime() ?? 0 };
      if (got === info.size && size <= WHOLE_READ_MAX) {
        return { ...facts, bytes: start.slice(head.bodyOffset, got) };
      }
      await file.seek(head.bodyOffset, Deno.SeekMode.Start);
      handed = true;
      return { ...facts, file };
    } finally {
      if (!handed) file.close();
    }
  }

  /**
   * Starts writing a local object.
   *
   * @param key The key.
   * @param url The keyed URL.
   * @param headers The response's headers.
   * @returns The writer; commit it with {@linkcode commitLocal}.
   */
  create(key: string, url: string, headers: Headers): Promise<EntryWriter> {
    return EntryWriter.create(this.path(key), encodeHead(headers, url, ZERO_DIGEST));
  }

  /**
   * Commits a writer from {@linkcode create} and uploads the object in the background.
   *
   * @param key The key.
   * @param writer The writer.
   */
  async commitLocal(key: string, writer: EntryWriter): Promise<void> {
    await writer.commit();
    await this.#remember(writer.path);
    this.upload(key);
  }

  /**
   * Copies an object from the bucket (own prefix, then read prefixes) into the local directory,
   * checking the URL and the body's digest as it arrives. Skipped while the breaker is open; a
   * failure is logged, counted and answered as a miss.
   *
   * @param key The key.
   * @param url The keyed URL the object must hold.
   * @returns Whether the object is now local.
   */
  fill(key: string, url: string): Promise<boolean> {
    return this.#bucket.fill(bucketKey(key), {
      what: `proxy object ${key.slice(0, 12)}`,
      write: (object) => this.#fill(object, key, url),
    });
  }

  /**
   * Uploads a local object in the background (nothing when read-only or without a bucket).
   *
   * @param key The key.
   */
  upload(key: string): void {
    this.#bucket.upload(this.#entry(key));
  }

  /** Waits for pending uploads (bounded; the rest is recorded as owed). */
  close(): Promise<void> {
    return this.#bucket.close();
  }

  /** Writes an object from the bucket, checking its URL and digest as it arrives. */
  async #fill(object: StoredObject, key: string, url: string): Promise<number> {
    const reader = object.body.getReader();
    let writer: EntryWriter | undefined;
    let head: EntryHead | undefined;
    let pending: Uint8Array = new Uint8Array(0);
    try {
      while (true) {
        const result = await reader.read(); // the bucket's failures are StoreErrors
        if (result.done) break;
        if (writer) {
          await writer.write(result.value);
          continue;
        }
        pending = concat(pending, result.value);
        head = parseHead(pending);
        if (!head) {
          if (pending.length > MAX_HEAD_BYTES) throw new RangeError("no header section");
          continue;
        }
        if (head.url !== url) throw new RangeError(`holds ${JSON.stringify(head.url)}`);
        writer = await EntryWriter.create(
          this.path(key),
          encodeHead(head.headers, head.url, ZERO_DIGEST),
        );
        await writer.write(pending.subarray(head.bodyOffset));
      }
      if (!writer || !head) throw new RangeError("no header section");
      await writer.commit(head.digest);
      await this.#remember(writer.path);
      return writer.written;
    } catch (error) {
      await writer?.abort();
      await reader.cancel().catch(() => {});
      if (!(error instanceof StoreError)) this.#metrics?.add("revproxy_corrupt");
      throw error;
    }
  }

  async #check(file: Deno.FsFile, head: EntryHead, start: Uint8Array): Promise<boolean> {
    const hash = createHash("sha256");
    hash.update(start.subarray(head.bodyOffset));
    const buffer = new Uint8Array(1 << 20);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
    }
    return hash.digest("hex") === head.digest;
  }

  async #reject(path: string, why: string): Promise<void> {
    this.#metrics?.add("revproxy_corrupt");
    this.#verified.delete(path);
    this.#log.warn(`revproxy: removed local object ${path}: ${why}`);
    await Deno.remove(path).catch(() => {});
  }

  async #remember(path: string): Promise<void> {
    const info = await Deno.stat(path).catch(() => undefined);
    if (info) this.#verified.set(path, `${info.ino ?? info.mtime?.getTime()}:${info.size}`);
  }

  /**
   * Refreshes an object's mtime when it is older than an hour, so `--expiry` and `--max-size`
   * count use.
   *
   * @param path The object's path.
   * @param mtime Its mtime.
   */
  touch(path: string, mtime: Date | null): void {
    this.#touch(path, mtime);
  }

  #touch(path: string, mtime: Date | null): void {
    const now = Date.now();
    if (mtime && now - mtime.getTime() < 3_600_000) return;
    Deno.utime(path, now / 1000, now / 1000).catch(() => {});
  }

  #entry(key: string): UploadEntry {
    return { marker: key, key: bucketKey(key), path: this.path(key), skipIfPresent: true };
  }

  async #rebuild(marker: string): Promise<UploadEntry | undefined> {
    const info = await Deno.stat(this.path(marker)).catch(() => undefined);
    return info?.isFile ? this.#entry(marker) : undefined;
  }
}

/** The bucket key of a key, under the proxy's prefix: `<xx>/<key>`. */
export function bucketKey(key: string): string {
  return `${key.slice(0, 2)}/${key}`;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

async function readFull(file: Deno.FsFile, into: Uint8Array): Promise<number> {
  let got = 0;
  while (got < into.length) {
    const n = await file.read(into.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
