/**
 * Tests of `src/store/object_store.ts`: the in-memory store passes the store conformance suite
 * (wrapped with prefixes and error kinds, as every `BucketStore` has them).
 *
 * @module
 */

import {
  classify,
  MemoryObjectStore,
  type StoreCallOptions,
  type StoredObject,
} from "../../src/store/mod.ts";
import { type ConformanceStore, storeConformance } from "./_conformance.ts";

/** A {@linkcode MemoryObjectStore} under a prefix, whose failures are `StoreError`s. */
class MemoryBucket implements ConformanceStore {
  #memory: MemoryObjectStore;
  #prefix: string;

  constructor(memory: MemoryObjectStore, prefix = "") {
    this.#memory = memory;
    this.#prefix = prefix;
  }

  withPrefix(sub: string): MemoryBucket {
    const trimmed = sub.replace(/^\/+|\/+$/g, "");
    return new MemoryBucket(
      this.#memory,
      [this.#prefix, trimmed].filter((part) => part !== "").join("/"),
    );
  }

  get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    return this.#guard("GET", key, options, () => this.#memory.get(this.#key(key), options));
  }

  has(key: string, options?: StoreCallOptions): Promise<boolean> {
    return this.#guard("HEAD", key, options, () => this.#memory.has(this.#key(key), options));
  }

  put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    return this.#guard("PUT", key, options, () => this.#memory.put(this.#key(key), body, options));
  }

  #key(key: string): string {
    return this.#prefix ? `${this.#prefix}/${key}` : key;
  }

  async #guard<T>(
    op: string,
    key: string,
    options: StoreCallOptions | undefined,
    call: () => Promise<T>,
  ): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw classify(error, `Cannot ${op} ${JSON.stringify(this.#key(key))}`, options?.signal);
    }
  }
}

storeConformance("in-memory store", () => {
  const store = new MemoryBucket(new MemoryObjectStore());
  return Promise.resolve({ store, [Symbol.asyncDispose]: () => Promise.resolve() });
});
