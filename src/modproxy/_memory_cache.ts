/**
 * A byte-bounded, least-recently-used memory of small cached files, so that a warm proxy answers
 * repeated `.info`/`.mod`/tile requests without touching the disk. It only holds what its owner
 * puts in (the store puts in immutable entries only) and forgets a key whenever the owner says the
 * file changed.
 *
 * @module
 */

/** What is remembered of one file. */
export interface RememberedFile {
  bytes: Uint8Array<ArrayBuffer>;
  /** Modification time in ms since the epoch, as read from disk. */
  mtimeMs: number;
}

/** Bookkeeping charged per entry on top of its bytes (key, map slot, object headers). */
const ENTRY_OVERHEAD = 128;

/** Small files by key, at most `maxBytes` in all (bytes, keys and overhead). */
export class MemoryCache {
  readonly #maxBytes: number;
  readonly #maxEntryBytes: number;
  /** Insertion order is recency order: the first entry is the least recently used. */
  readonly #entries = new Map<string, RememberedFile>();
  #bytes = 0;

  /**
   * @param maxBytes The bound on everything held; 0 holds nothing.
   * @param maxEntryBytes Larger files are not held. @default {maxBytes / 16}
   */
  constructor(maxBytes: number, maxEntryBytes = Math.floor(maxBytes / 16)) {
    this.#maxBytes = maxBytes;
    this.#maxEntryBytes = Math.min(maxEntryBytes, maxBytes);
  }

  /** The bytes charged now (never above the bound). */
  get bytes(): number {
    return this.#bytes;
  }

  /** The number of files held. */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether a file of this size may be held at all. */
  fits(size: number): boolean {
    return size <= this.#maxEntryBytes;
  }

  /**
   * The file under `key`, made the most recently used.
   *
   * @param key The store key.
   * @returns The remembered file, or `undefined`.
   */
  get(key: string): RememberedFile | undefined {
    const entry = this.#entries.get(key);
    if (entry) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    return entry;
  }

  /**
   * Remembers a file, evicting the least recently used ones to stay within the bound; a file too
   * large for {@linkcode fits} is not held.
   *
   * @param key The store key.
   * @param file Its bytes and mtime; the bytes must not be changed afterwards.
   */
  set(key: string, file: RememberedFile): void {
    this.delete(key);
    if (!this.fits(file.bytes.length)) return;
    const cost = costOf(key, file);
    while (this.#bytes + cost > this.#maxBytes) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) return;
      this.delete(oldest.value);
    }
    this.#entries.set(key, file);
    this.#bytes += cost;
  }

  /**
   * Forgets a key (its file was replaced, removed or touched).
   *
   * @param key The store key.
   */
  delete(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= costOf(key, entry);
  }
}

function costOf(key: string, file: RememberedFile): number {
  return file.bytes.length + key.length * 2 + ENTRY_OVERHEAD;
}
