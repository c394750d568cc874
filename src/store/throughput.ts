/**
 * The throughput floor of remote downloads: a body arriving slower than the floor is given up
 * on, since compiling the output again would be faster than waiting for it.
 *
 * @module
 */

/** A download given up on because it arrived below the throughput floor. */
export class TooSlowError extends Error {
  override name = "TooSlowError";
}

/** Options for {@linkcode ThroughputFloorStream}. */
export interface ThroughputFloorOptions {
  /**
   * Bytes per second the body must average; 0 turns the floor off. A function is asked at each
   * check (a floor shared by the downloads running at that moment).
   */
  minBytesPerSecond: number | (() => number);
  /** Time before the rate is judged, in ms (covers connection warm-up and slow start). */
  graceMs: number;
  /** The object's key, for the message. */
  key: string;
  /** How often the rate is checked, in ms. @default {250} */
  checkEveryMs?: number;
}

/** Bodies of at most this many bytes are judged by their deadline only. */
export const FLOOR_MIN_SIZE = 1 << 16;

/**
 * Passes a body through, erroring it with a {@linkcode TooSlowError} when, once the grace period
 * is over, its average rate since the stream started is below the floor and the rest would not
 * arrive within another grace period at that rate. Bodies of {@linkcode FLOOR_MIN_SIZE} bytes or
 * less pass unchecked.
 */
export class ThroughputFloorStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * @param size The body's announced size.
   * @param options Floor, grace period and key.
   */
  constructor(size: number, options: ThroughputFloorOptions) {
    const { minBytesPerSecond, graceMs, key } = options;
    const floorNow = typeof minBytesPerSecond === "function"
      ? minBytesPerSecond
      : () => minBytesPerSecond;
    let seen = 0;
    let started = 0;
    let timer: ReturnType<typeof setInterval> | undefined;
    const stop = () => {
      clearInterval(timer);
      timer = undefined;
    };
    const verdict = (): TooSlowError | undefined => {
      const elapsedMs = performance.now() - started;
      const left = size - seen;
      if (elapsedMs < graceMs || left <= 0) return undefined;
      const rate = seen / (elapsedMs / 1000);
      const floor = floorNow();
      if (rate >= floor) return undefined;
      if (rate > 0 && (left / rate) * 1000 <= graceMs) return undefined; // nearly there
      return new TooSlowError(
        `Giving up on bucket object ${JSON.stringify(key)}: ${kib(rate)} KiB/s over ` +
          `${(elapsedMs / 1000).toFixed(1)}s (${seen} of ${size} bytes), below the floor of ` +
          `${kib(floor)} KiB/s`,
      );
    };
    super({
      start(controller) {
        started = performance.now();
        if (floorNow() <= 0 || size <= FLOOR_MIN_SIZE) return;
        timer = setInterval(() => {
          const error = verdict();
          if (!error) return;
          stop();
          controller.error(error);
        }, options.checkEveryMs ?? 250);
      },
      transform(chunk, controller) {
        seen += chunk.length;
        controller.enqueue(chunk);
      },
      flush() {
        stop();
      },
      cancel() {
        stop();
      },
    });
  }
}

/**
 * One throughput floor for all the downloads arriving at once (the warm-up's and go's lookups):
 * each body is judged by its share, the floor divided by the bodies arriving now. Bodies that
 * share a link are not crawling for sharing it; a link slower than the floor in all still is.
 */
export class SharedFloor {
  readonly #bytesPerSecond: number;
  #arriving = 0;

  /** @param bytesPerSecond The floor of all the bodies together; 0 turns it off. */
  constructor(bytesPerSecond: number) {
    this.#bytesPerSecond = bytesPerSecond;
  }

  /** One body's share of the floor now. */
  share(): number {
    return this.#bytesPerSecond / Math.max(1, this.#arriving);
  }

  /**
   * Counts a body as arriving while `read` runs.
   *
   * @param read Reads (and writes) the body.
   * @returns What `read` returns.
   */
  async arriving<T>(read: () => Promise<T>): Promise<T> {
    this.#arriving++;
    try {
      return await read();
    } finally {
      this.#arriving--;
    }
  }
}

function kib(bytesPerSecond: number): string {
  return (bytesPerSecond / 1024).toFixed(0);
}
