/**
 * Stream helpers of the S3 tier: verifying a download while it is written, bounding a stalled
 * body, reading a file for upload (the upload queue), reading a small record.
 *
 * @module
 */

import { sha256 } from "./hash.ts";
import { StoreError } from "./object_store.ts";

/** A remote entry that must not be served: counted as `s3_corrupt`, not as a failure. */
export class CorruptError extends Error {
  override name = "CorruptError";
}

/** Passes bytes through while hashing them; errors at the end when size or SHA-256 differ. */
export class VerifyStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * @param outputId The expected SHA-256, hex.
   * @param size The expected length.
   * @param key The object's key, for messages.
   */
  constructor(outputId: string, size: number, key: string) {
    const hash = sha256();
    let seen = 0;
    super({
      transform(chunk, controller) {
        seen += chunk.length;
        if (seen > size) {
          throw new CorruptError(
            `Ignoring bucket object ${JSON.stringify(key)}: more than the ${size} bytes announced`,
          );
        }
        hash.update(chunk);
        controller.enqueue(chunk);
      },
      flush() {
        if (seen !== size) {
          throw new StoreError(
            `Cannot read bucket object ${JSON.stringify(key)}: got ${seen} bytes, expected ${size}`,
            "other",
          );
        }
        const digest = hash.digest("hex");
        if (digest !== outputId) {
          throw new CorruptError(
            `Ignoring bucket object ${JSON.stringify(key)}: its SHA-256 is ${digest}`,
          );
        }
      },
    });
  }
}

/** Errors the stream when the signal aborts (a stalled body download). */
export class AbortOnStream extends TransformStream<Uint8Array, Uint8Array> {
  /** @param signal Errors the stream when it aborts. */
  constructor(signal: AbortSignal) {
    let onAbort: (() => void) | undefined;
    super({
      start(controller) {
        onAbort = () =>
          controller.error(
            new StoreError("Cannot read bucket object: deadline exceeded", "timeout"),
          );
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort, { once: true });
      },
      transform(chunk, controller) {
        controller.enqueue(chunk);
      },
      flush() {
        signal.removeEventListener("abort", onAbort!);
      },
    });
  }
}

/**
 * Streams exactly `size` bytes of a file. `close()` is safe at any time: a read in flight
 * finishes first, so no stream ever sees its file closed under it.
 *
 * @param path The local file.
 * @param size Bytes to send; `undefined` for the size of the file as opened (a file that may be
 * replaced by a rename meanwhile: the opened one is sent whole).
 * @returns The stream, its size and its idempotent `close`.
 * @throws {Deno.errors.NotFound} When the file is gone.
 */
export async function fileBody(
  path: string,
  size?: number,
): Promise<{ stream: ReadableStream<Uint8Array>; size: number; close(): void }> {
  const file = await Deno.open(path, { read: true });
  let total: number;
  try {
    total = size ?? (await file.stat()).size;
  } catch (error) {
    file.close();
    throw error;
  }
  let left = total;
  let reading = false;
  let closed = false;
  let closeRequested = false;
  const close = () => {
    closeRequested = true;
    if (reading || closed) return;
    closed = true;
    try {
      file.close();
    } catch {
      // already closed
    }
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (left === 0 || closeRequested) {
        close();
        controller.close();
        return;
      }
      const buffer = new Uint8Array(Math.min(left, 64 * 1024));
      let n: number | null;
      reading = true;
      try {
        n = await file.read(buffer);
      } finally {
        reading = false;
      }
      if (closeRequested) {
        close();
        controller.close();
        return;
      }
      if (n === null) {
        close();
        controller.error(
          new RangeError(`Cannot upload ${JSON.stringify(path)}: file is shorter than ${total}`),
        );
        return;
      }
      left -= n;
      controller.enqueue(buffer.subarray(0, n));
      if (left === 0) {
        close();
        controller.close();
      }
    },
    cancel() {
      close();
    },
  }, { highWaterMark: 0 });
  return { stream, size: total, close };
}

/**
 * Reads a small body (an action record) as text; "" when it is larger than `max` bytes.
 *
 * @param body The body.
 * @param size Its announced size.
 * @param signal Cancels the read when it aborts.
 * @param max Largest size read. @default {256}
 * @returns The text.
 */
export async function readSmall(
  body: ReadableStream<Uint8Array>,
  size: number,
  signal: AbortSignal,
  max = 256,
): Promise<string> {
  if (size > max) {
    await body.cancel();
    return "";
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (true) {
      const { done, value } = await reader.read();
      signal.throwIfAborted();
      if (done) break;
      total += value.length;
      if (total > max) {
        await reader.cancel();
        return "";
      }
      chunks.push(value);
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(bytes);
}

/** Options for {@linkcode TurnPacer}. */
export interface TurnPacerOptions {
  /** Work between turns of the event loop, in ms. @default {4} */
  ms?: number;
  /** Calls of `pace()` between turns, at most. @default {Infinity} */
  perTurn?: number;
  /**
   * Rest after each slice as long as it took, so that other work gets at least half the time
   * (work that can wait, such as the warm-up's); otherwise the next slice starts on the next
   * turn.
   * @default {false}
   */
  rest?: boolean;
}

/**
 * Hands the event loop back once a slice of synchronous work is used up (`ms`, or `perTurn`
 * calls): for loops whose awaits resolve without a turn of the event loop (inflating, checking
 * entries, synchronous file calls). Shared by several workers, all of them wait for the next
 * turn together, so none keeps the loop to itself meanwhile.
 */
export class TurnPacer {
  readonly #ms: number;
  readonly #perTurn: number;
  #since = performance.now();
  readonly #rest: boolean;
  #calls = 0;
  #gate?: Promise<void>;

  /** @param options The slice. */
  constructor(options: TurnPacerOptions = {}) {
    this.#ms = options.ms ?? 4;
    this.#perTurn = Math.max(1, options.perTurn ?? Infinity);
    this.#rest = options.rest ?? false;
  }

  /** Waits for the next turn of the event loop when this slice has been used up. */
  async pace(): Promise<void> {
    while (this.#gate) await this.#gate;
    const used = performance.now() - this.#since;
    if (++this.#calls < this.#perTurn && used < this.#ms) return;
    const rest = this.#rest ? Math.min(used, 4 * this.#ms) : 0;
    this.#gate = new Promise<void>((resolve) => setTimeout(resolve, rest)).then(() => {
      this.#gate = undefined;
      this.#calls = 0;
      this.#since = performance.now();
    });
    await this.#gate;
  }
}

/**
 * Reads a body of exactly `size` bytes into one buffer, never grown past the declared size.
 *
 * @param body The body.
 * @param size Its declared size.
 * @param key The object's key, for messages.
 * @returns The bytes.
 * @throws {CorruptError} When more arrives.
 * @throws {StoreError} When less arrives.
 */
export async function readExactly(
  body: ReadableStream<Uint8Array>,
  size: number,
  key: string,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(size);
  let at = 0;
  const reader = body.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (at + value.length > size) {
        throw new CorruptError(
          `Ignoring bucket object ${JSON.stringify(key)}: more than the ${size} bytes announced`,
        );
      }
      bytes.set(value, at);
      at += value.length;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  }
  if (at !== size) {
    throw new StoreError(
      `Cannot read bucket object ${JSON.stringify(key)}: got ${at} bytes, expected ${size}`,
      "other",
    );
  }
  return bytes;
}

/** Bounds of {@linkcode readGzipJson}. */
export interface GzipJsonBounds {
  /** Compressed bytes read at most. */
  maxInputBytes: number;
  /** Decompressed bytes kept at most (the JSON text). */
  maxOutputBytes: number;
  /** Arrays and objects nested at most this deep. */
  maxDepth: number;
}

/** A body past one of its bounds: abandoned, whatever its declared size said. */
export class BoundError extends RangeError {
  override name = "BoundError";
}

/**
 * Compressed bytes handed to the decompressor at a time: it expands one input chunk in one go, so
 * this bounds its output chunk (deflate expands at most about 1032:1, so about 2 MiB).
 */
const INFLATE_SLICE = 2048;

/**
 * Reads gzip-compressed JSON, streamed and bounded: the compressed bytes, the decompressed
 * bytes, and the nesting of arrays and objects (checked on the text before `JSON.parse` sees
 * it). Past a bound the body is cancelled and a {@linkcode BoundError} thrown, so a
 * decompression or nesting bomb costs at most about `maxOutputBytes` of memory.
 *
 * @param body The compressed body.
 * @param bounds The bounds.
 * @param decompress Another decompressor (such as zstd's): given the sliced compressed bytes, the
 * decompressed ones. @default gzip
 * @returns The parsed JSON value.
 * @throws {BoundError} Past a bound.
 * @throws {SyntaxError|TypeError} When it is not gzip or not JSON.
 */
export async function readGzipJson(
  body: ReadableStream<Uint8Array>,
  bounds: GzipJsonBounds,
  decompress?: (compressed: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>,
): Promise<unknown> {
  let input = 0;
  const slicer = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      input += chunk.length;
      if (input > bounds.maxInputBytes) {
        throw new BoundError(`more than ${bounds.maxInputBytes} compressed bytes`);
      }
      for (let at = 0; at < chunk.length; at += INFLATE_SLICE) {
        controller.enqueue(chunk.subarray(at, at + INFLATE_SLICE));
      }
    },
  });
  const sliced = body.pipeThrough(slicer);
  const inflated = decompress ? decompress(sliced) : sliced.pipeThrough(
    new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
  const reader = inflated.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const depth = new DepthScan();
  const pacer = new TurnPacer();
  let output = 0;
  try {
    while (true) {
      await pacer.pace();
      const { done, value } = await reader.read();
      if (done) break;
      output += value.length;
      if (output > bounds.maxOutputBytes) {
        throw new BoundError(`more than ${bounds.maxOutputBytes} bytes once decompressed`);
      }
      if (depth.scan(value) > bounds.maxDepth) {
        throw new BoundError(`JSON nested more than ${bounds.maxDepth} deep`);
      }
      text += decoder.decode(value, { stream: true });
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  }
  return JSON.parse(text + decoder.decode());
}

/** Tracks the nesting depth of JSON text across chunks (brackets outside strings). */
class DepthScan {
  #depth = 0;
  #inString = false;
  #escaped = false;

  /** Scans a chunk; returns the deepest nesting seen in it. */
  scan(bytes: Uint8Array): number {
    let deepest = this.#depth;
    let depth = this.#depth;
    let inString = this.#inString;
    let escaped = this.#escaped;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (byte === 0x5c) escaped = true; // \
        else if (byte === 0x22) inString = false; // "
      } else if (byte === 0x22) inString = true;
      else if (byte === 0x5b || byte === 0x7b) { // [ {
        if (++depth > deepest) deepest = depth;
      } else if (byte === 0x5d || byte === 0x7d) depth--; // ] }
    }
    this.#depth = depth;
    this.#inString = inString;
    this.#escaped = escaped;
    return deepest;
  }
}
