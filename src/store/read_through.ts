/**
 * Trust tiers on a plain bucket: one prefix of the bucket is the session's own, where writes go
 * (none at all when read-only); other prefixes are read after a miss under it, in order, and
 * never written. Main builds run with `--prefix=main`; a pull request runs with
 * `--prefix=pr/123 --read-prefixes=main` (it reads main's entries and writes a scratch area of
 * its own) or with `--read-only --prefix=main`.
 *
 * A {@linkcode ReadThroughStore} carries these rules as an {@linkcode ObjectStore}, so one value
 * hands them from the wiring to the build cache (`tiered.ts`) and the module proxy's store
 * (`src/modproxy/store.ts`). Both look inside it ({@linkcode ReadThroughStore.of}): they look up
 * each store in turn themselves (an action record and its object must come from the same
 * prefix), and when it is read-only they never build an upload queue, so no PUT, no HEAD before
 * one, and no owed upload is even attempted. Used as a plain store, it enforces the same rules:
 * `get` reads through, `has` asks the own prefix only, and `put` goes to the own prefix or, when
 * read-only, rejects without a request.
 *
 * @module
 */

import {
  type ObjectStore,
  type StoreCallOptions,
  type StoredObject,
  StoreError,
} from "./object_store.ts";

/** Options for {@linkcode ReadThroughStore}. */
export interface ReadThroughOptions {
  /**
   * Stores under other prefixes of the bucket, looked up in this order after a miss under the
   * own prefix (`--read-prefixes`); never written to.
   * @default none
   */
  readStores?: readonly ObjectStore[];
  /**
   * Never write to the bucket (`--read-only`): no uploads of any kind, and no owed uploads sent
   * or recorded.
   * @default {false}
   */
  readOnly?: boolean;
}

/**
 * The session's own store plus read-only stores behind it.
 *
 * @example
 * ```ts
 * import { MemoryObjectStore } from "./object_store.ts";
 * import { ReadThroughStore } from "./read_through.ts";
 * const main = new MemoryObjectStore();
 * main.objects.set("k", new Uint8Array([1]));
 * const view = new ReadThroughStore(new MemoryObjectStore(), { readStores: [main] });
 * if ((await view.get("k"))?.size !== 1) throw new Error("expected a hit from the read prefix");
 * if (await view.has("k")) throw new Error("has() asks the own prefix only");
 * ```
 */
export class ReadThroughStore implements ObjectStore {
  /** The own prefix: looked up first, and the only one ever written. */
  readonly own: ObjectStore;
  /** The read prefixes, in lookup order. */
  readonly readStores: readonly ObjectStore[];
  /** Nothing is written, not even to the own prefix. */
  readonly readOnly: boolean;

  /**
   * @param own The store under the own prefix.
   * @param options Read prefixes and read-only mode.
   */
  constructor(own: ObjectStore, options: ReadThroughOptions = {}) {
    this.own = own;
    this.readStores = Object.freeze([...(options.readStores ?? [])]);
    this.readOnly = options.readOnly ?? false;
  }

  /**
   * The trust rules of a store: itself when it is a {@linkcode ReadThroughStore}, else the store
   * alone, writable.
   *
   * @param store Any store.
   * @returns A view on it.
   */
  static of(store: ObjectStore): ReadThroughStore {
    return store instanceof ReadThroughStore ? store : new ReadThroughStore(store);
  }

  /** The stores a lookup asks, in order: the own one, then the read prefixes. */
  get lookupOrder(): readonly ObjectStore[] {
    return [this.own, ...this.readStores];
  }

  /** Reads an object from the first store in {@linkcode lookupOrder} that has it. */
  async get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    for (const store of this.lookupOrder) {
      const object = await store.get(key, options);
      if (object) return object;
    }
    return undefined;
  }

  /**
   * Whether the own prefix has an object. Read prefixes are not asked: this decides whether an
   * upload may be skipped, and each prefix must hold its own copies.
   */
  has(key: string, options?: StoreCallOptions): Promise<boolean> {
    return this.own.has(key, options);
  }

  /** Writes to the own prefix; read-only, it rejects without sending anything. */
  async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    if (this.readOnly) {
      if (body instanceof ReadableStream) await body.cancel();
      throw new StoreError(
        `Cannot put ${JSON.stringify(key)}: the remote tier is read-only`,
        "config",
      );
    }
    await this.own.put(key, body, options);
  }
}
