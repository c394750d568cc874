/**
 * zstd for objects the store holds compressed (the warm-up's packs and manifests): compression
 * off the event loop (the runtime's `node:zlib`, on its thread pool), and decompression that is
 * streamed and bounded, so that a bucket object never decides how much memory it takes.
 *
 * A decompressed body that would pass `maxOutputBytes`, expands one input slice past
 * {@linkcode ZSTD_SLICE_OUTPUT}, needs a window above {@linkcode ZSTD_WINDOW_LOG_MAX}, or is not
 * zstd errors with a {@linkcode BoundError} or a {@linkcode CorruptError}; a frame cut short
 * errors too (zstd's decoder ends quietly on one; this stream checks that the frame was done).
 *
 * @module
 */

import zlib from "node:zlib";
import { BoundError, CorruptError } from "./streams.ts";

/** Compressed bytes handed to the decoder at a time. */
const SLICE = 16 << 10;

/**
 * What one input slice may expand to before the body is taken for a bomb (512× of
 * {@linkcode SLICE}; go's outputs compress about 4×, all-zero runs far more, and such a body
 * costs only a miss).
 */
export const ZSTD_SLICE_OUTPUT: number = 8 << 20;

/** The largest window a decoder accepts (2^23 = 8 MiB; levels 1–3 use at most 2 MiB). */
export const ZSTD_WINDOW_LOG_MAX = 23;

/** Options for {@linkcode zstdCompress}. */
export interface ZstdCompressOptions {
  /** The zstd level. @default {3} */
  level?: number;
}

/**
 * Compresses bytes with zstd (one frame, with its content size), on the runtime's thread pool.
 *
 * @param bytes The bytes.
 * @param options The level.
 * @returns The frame.
 */
export function zstdCompress(
  bytes: Uint8Array,
  options: ZstdCompressOptions = {},
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const settings = {
      // The content size goes in the frame header: a reader tells a frame cut short by it (the
      // runtime takes the option; its type declarations lack it).
      pledgedSrcSize: bytes.length,
      params: {
        [zlib.constants.ZSTD_c_compressionLevel]: options.level ?? 3,
        [zlib.constants.ZSTD_c_checksumFlag]: 1,
      },
    } as zlib.ZstdOptions;
    zlib.zstdCompress(bytes, settings, (error, result) => {
      if (error) reject(error);
      else resolve(new Uint8Array(result.buffer, result.byteOffset, result.byteLength));
    });
  });
}

/** Options for {@linkcode zstdDecompressed}. */
export interface ZstdDecompressOptions {
  /** Decompressed bytes at most; past them the stream errors with a {@linkcode BoundError}. */
  maxOutputBytes: number;
  /** The object's key, for messages. @default "" */
  key?: string;
}

/**
 * The decompressed bytes of a zstd body, pulled as they are read (one input slice at a time, so
 * a slow reader holds back the body), bounded by `maxOutputBytes` and
 * {@linkcode ZSTD_SLICE_OUTPUT}. Cancelling it cancels the body.
 *
 * @param body The compressed body; read to its end or cancelled.
 * @param options The bound.
 * @returns The decompressed stream; it errors with a {@linkcode BoundError} past a bound and a
 * {@linkcode CorruptError} when the body is not one whole zstd frame.
 */
export function zstdDecompressed(
  body: ReadableStream<Uint8Array>,
  options: ZstdDecompressOptions,
): ReadableStream<Uint8Array> {
  const name = JSON.stringify(options.key ?? "");
  const reader = body.getReader();
  const decoder = zlib.createZstdDecompress({
    params: { [zlib.constants.ZSTD_d_windowLogMax]: ZSTD_WINDOW_LOG_MAX },
  });
  const pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let output = 0;
  let failure: Error | undefined;
  let ended = false;
  let settle: (() => void) | undefined;
  const fail = (error: Error) => {
    failure ??= error;
    decoder.destroy();
    settle?.();
  };
  decoder.on("data", (chunk: Uint8Array) => {
    output += chunk.length;
    pendingBytes += chunk.length;
    if (output > options.maxOutputBytes) {
      fail(new BoundError(`more than ${options.maxOutputBytes} bytes once decompressed`));
    } else if (pendingBytes > ZSTD_SLICE_OUTPUT) {
      fail(new BoundError(`a ${SLICE}-byte slice expands past ${ZSTD_SLICE_OUTPUT} bytes`));
    } else pending.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
  decoder.on("error", (error: Error) => {
    fail(new CorruptError(`Ignoring object ${name}: not zstd (${error.message})`));
  });
  decoder.on("end", () => {
    ended = true;
    settle?.();
  });
  let input: Uint8Array | undefined;
  let at = 0;
  let inputDone = false;
  /** The first bytes of the body, until its frame header is read. */
  let head: Uint8Array | undefined = new Uint8Array(0);
  let contentSize: number | undefined;
  const cleanUp = async () => {
    decoder.destroy();
    await reader.cancel().catch(() => {});
  };
  const step = async (): Promise<void> => {
    if (!input || at >= input.length) {
      const read = await reader.read();
      if (read.done) {
        inputDone = true;
        await new Promise<void>((resolve) => {
          settle = resolve;
          if (ended || failure) resolve();
          else decoder.end();
        });
        return;
      }
      input = read.value;
      at = 0;
      if (head) {
        head = concat(head, input.subarray(0, 32));
        const header = frameHeader(head);
        if (header === "short") {
          if (head.length >= 32) throw new CorruptError(`Ignoring object ${name}: not zstd`);
        } else {
          if (header === "bad") throw new CorruptError(`Ignoring object ${name}: not zstd`);
          contentSize = header.contentSize;
          if (contentSize !== undefined && contentSize > options.maxOutputBytes) {
            throw new BoundError(
              `it declares ${contentSize} bytes once decompressed, above ${options.maxOutputBytes}`,
            );
          }
          head = undefined;
        }
      }
    }
    const slice = input.subarray(at, at + SLICE);
    at += slice.length;
    await new Promise<void>((resolve) => {
      settle = resolve;
      decoder.write(slice, () => resolve());
    });
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        while (true) {
          if (failure) throw failure;
          const chunk = pending.shift();
          if (chunk) {
            pendingBytes -= chunk.length;
            controller.enqueue(chunk);
            return;
          }
          if (inputDone) {
            // zstd's decoder ends quietly on a frame cut short: its declared size tells.
            if (!ended || head || (contentSize !== undefined && output !== contentSize)) {
              throw new CorruptError(`Ignoring object ${name}: its zstd frame is cut short`);
            }
            controller.close();
            return;
          }
          await step();
        }
      } catch (error) {
        await cleanUp();
        throw error;
      }
    },
    async cancel() {
      await cleanUp();
    },
  }, { highWaterMark: 0 });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * A zstd frame header: its declared content size, if any; `"short"` when more bytes are needed,
 * `"bad"` when it is not a zstd frame.
 */
function frameHeader(bytes: Uint8Array): { contentSize?: number } | "short" | "bad" {
  if (bytes.length < 5) return "short";
  if (!isZstd(bytes)) return "bad";
  const descriptor = bytes[4]!;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictIdBytes = [0, 1, 2, 4][descriptor & 3]!;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  const at = 5 + (singleSegment ? 0 : 1) + dictIdBytes;
  if (bytes.length < at + fcsBytes) return "short";
  if (fcsBytes === 0) return {};
  let size = 0;
  for (let i = fcsBytes - 1; i >= 0; i--) size = size * 256 + bytes[at + i]!;
  return { contentSize: fcsBytes === 2 ? size + 256 : size };
}

/**
 * Whether bytes start with zstd's frame magic (little-endian `0xFD2FB528`).
 *
 * @param bytes The first bytes of an object.
 * @returns True for a zstd frame.
 */
export function isZstd(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f &&
    bytes[3] === 0xfd;
}
