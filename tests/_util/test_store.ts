/**
 * An in-memory bucket for unit tests of the S3 tier whose calls can be made to fail, stall or
 * crawl, and are counted.
 *
 * @module
 */

import {
  MemoryObjectStore,
  type StoreCallOptions,
  type StoredObject,
  StoreError,
} from "../../src/store/mod.ts";

/**
 * A body that arrives at `bytesPerSecond`, in 16 KiB chunks; cancelling it stops its timer.
 */
export function paced(bytes: Uint8Array, bytesPerSecond: number): ReadableStream<Uint8Array> {
  const chunk = 16 << 10;
  let offset = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake: (() => void) | undefined;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const n = Math.min(chunk, bytes.length - offset);
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, (n / bytesPerSecond) * 1000);
      });
      if (cancelled) return;
      controller.enqueue(bytes.slice(offset, offset + n));
      offset += n;
      if (offset >= bytes.length) controller.close();
    },
    cancel() {
      cancelled = true;
      clearTimeout(timer);
      wake?.();
    },
  }, { highWaterMark: 0 });
}

/** A store whose calls can be made to fail, stall, crawl or be counted. */
export class TestStore extends MemoryObjectStore {
  calls: string[] = [];
  fail?: StoreError;
  delayMs = 0;
  /** Calls running now, and the most at once. */
  running = 0;
  peak = 0;
  /** Objects' bodies arrive at this many bytes per second (action records at once). */
  bodyRate = 0;

  async #before(op: string, key: string, options?: StoreCallOptions): Promise<void> {
    this.calls.push(`${op} ${key}`);
    this.running++;
    this.peak = Math.max(this.peak, this.running);
    try {
      if (this.delayMs) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, this.delayMs);
          options?.signal?.addEventListener("abort", () => {
            clearTimeout(timer);
            reject(new StoreError(`Cannot ${op} ${key}: deadline exceeded`, "timeout"));
          }, { once: true });
        });
      }
      if (this.fail) throw this.fail;
    } finally {
      this.running--;
    }
  }

  override async get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    await this.#before("GET", key, options);
    const object = await super.get(key, options);
    if (!object || !this.bodyRate || !key.startsWith("output/")) return object;
    await object.body.cancel();
    return { size: object.size, body: paced(this.objects.get(key)!, this.bodyRate) };
  }

  override async has(key: string, options?: StoreCallOptions): Promise<boolean> {
    await this.#before("HEAD", key, options);
    return super.has(key, options);
  }

  override async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    await this.#before("PUT", key, options);
    return super.put(key, body, options);
  }
}
