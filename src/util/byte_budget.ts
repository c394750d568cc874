/**
 * A shared budget of bytes, so several users of one process (the sessions of a server, the
 * warm-up's fetches) cannot together hold more bytes in memory than the machine can spare.
 *
 * @module
 */

/**
 * Hands out bytes up to a capacity; a request that does not fit waits, first come first served.
 * A single request larger than the whole capacity is admitted once nothing else is held, so no
 * put is refused for its size alone (the frame parser has its own hard limit).
 *
 * @example
 * ```ts
 * import { ByteBudget } from "./byte_budget.ts";
 * const budget = new ByteBudget(100);
 * const release = await budget.acquire(60);
 * release();
 * if (budget.held !== 0) throw new Error("released bytes are free again");
 * ```
 */
export class ByteBudget {
  /** The capacity in bytes. */
  readonly capacity: number;
  #held = 0;
  #waiting: { size: number; admit: () => void }[] = [];

  /** @param capacity Bytes that may be held at once. */
  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /** Requests waiting for room. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Waits until `size` bytes fit, then holds them.
   *
   * @param size Bytes wanted.
   * @returns A function that gives them back; calling it more than once does nothing.
   */
  async acquire(size: number): Promise<() => void> {
    const now = this.tryAcquire(size);
    if (now) return now;
    // #admitWaiting counts the bytes as held when it lets this request in.
    await new Promise<void>((admit) => this.#waiting.push({ size, admit }));
    return this.#releaser(size);
  }

  /**
   * Holds `size` bytes at once if they fit and nobody is waiting, without a promise.
   *
   * @param size Bytes wanted.
   * @returns A function that gives them back (calling it more than once does nothing), or
   *   `undefined` when they do not fit now (nothing is held then; use
   *   {@linkcode ByteBudget.acquire} to wait).
   */
  tryAcquire(size: number): (() => void) | undefined {
    if (this.#waiting.length > 0 || !this.#fits(size)) return undefined;
    this.#held += size;
    return this.#releaser(size);
  }

  #releaser(size: number): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#held -= size;
      this.#admitWaiting();
    };
  }

  #fits(size: number): boolean {
    return this.#held === 0 || this.#held + size <= this.capacity;
  }

  #admitWaiting(): void {
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0]!.size)) {
      const next = this.#waiting.shift()!;
      this.#held += next.size;
      next.admit();
    }
  }
}
