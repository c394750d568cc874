/**
 * zstd for objects the store holds compressed (the warm-up's packs and manifests): compression
 * off the event loop (the runtime's `node:zlib`, on its thread pool), and decompression that is
 * bounded, so that a bucket object never decides how much memory it takes: the caller reads at
 * most the compressed size it expects, and the output stops at the size it expects.
 *
 * A frame whose output would pass `maxOutputBytes`, that needs a window above
 * {@linkcode ZSTD_WINDOW_LOG_MAX}, or that is not zstd is a {@linkcode BoundError} or a
 * {@linkcode CorruptError}; so is a frame cut short (zstd's decoder ends quietly on one: the
 * frame's declared content size tells, and every frame this module writes declares it).
 *
 * @module
 */

import zlib from "node:zlib";
import { BoundError, CorruptError } from "./streams.ts";

/** Decompressed bytes handed on at a time by {@linkcode zstdDecompressed}. */
const SLICE = 64 << 10;

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

/** Options for {@linkcode zstdDecompress}. */
export interface ZstdDecompressOptions {
  /** Decompressed bytes at most; past them a {@linkcode BoundError}. */
  maxOutputBytes: number;
  /** The object's key, for messages. @default "" */
  key?: string;
}

/**
 * Decompresses one zstd frame held in memory, bounded: a frame declaring more than
 * `maxOutputBytes` is refused before it is decoded, and decoding stops as soon as its output
 * would pass them (the runtime's `maxOutputLength`), so a bomb costs at most `maxOutputBytes`.
 *
 * Synchronous on purpose: the pinned runtime's asynchronous zstd decoder throws some errors on
 * corrupt input (a bad checksum, "data corruption detected") outside any handler, which would
 * end the process; the synchronous call throws them to its caller. It runs on the event loop
 * (about 1 GB/s: a 4 MiB pack in a few ms).
 *
 * @param compressed The frame.
 * @param options The bound and the key for messages.
 * @returns The decompressed bytes.
 * @throws {BoundError} Past the bound.
 * @throws {CorruptError} When it is not one whole zstd frame (cut short: fewer bytes than the
 * frame declares).
 */
export function zstdDecompress(compressed: Uint8Array, options: ZstdDecompressOptions): Uint8Array {
  const name = JSON.stringify(options.key ?? "");
  const header = frameHeader(compressed);
  if (header === "bad" || header === "short") {
    throw new CorruptError(`Ignoring object ${name}: not a whole zstd frame`);
  }
  if (header.contentSize !== undefined && header.contentSize > options.maxOutputBytes) {
    throw new BoundError(
      `it declares ${header.contentSize} bytes once decompressed, above ${options.maxOutputBytes}`,
    );
  }
  let output: Uint8Array;
  try {
    output = zlib.zstdDecompressSync(compressed, {
      params: { [zlib.constants.ZSTD_d_windowLogMax]: ZSTD_WINDOW_LOG_MAX },
      maxOutputLength: Math.max(1, options.maxOutputBytes),
    });
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    if (/larger than/i.test(text)) {
      throw new BoundError(`more than ${options.maxOutputBytes} bytes once decompressed`);
    }
    throw new CorruptError(`Ignoring object ${name}: not zstd (${text})`);
  }
  if (output.length > options.maxOutputBytes) {
    throw new BoundError(`more than ${options.maxOutputBytes} bytes once decompressed`);
  }
  // The decoder ends quietly on a frame cut short: its declared size tells.
  if (header.contentSize !== undefined && output.length !== header.contentSize) {
    throw new CorruptError(`Ignoring object ${name}: its zstd frame is cut short`);
  }
  return new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
}

/** Options for {@linkcode zstdDecompressed}. */
export interface ZstdStreamOptions extends ZstdDecompressOptions {
  /** Compressed bytes read at most; past them a {@linkcode BoundError}. */
  maxInputBytes: number;
}

/**
 * {@linkcode zstdDecompress} of a body: read (at most `maxInputBytes`, whatever its declared
 * size), then decompressed at once (bounded) and handed on in slices.
 *
 * @param body The compressed body; read to its end or cancelled.
 * @param options The bounds.
 * @returns The decompressed bytes as a stream; it errors as {@linkcode zstdDecompress} throws.
 */
export function zstdDecompressed(
  body: ReadableStream<Uint8Array>,
  options: ZstdStreamOptions,
): ReadableStream<Uint8Array> {
  let output: Uint8Array | undefined;
  let at = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!output) {
        const parts: Uint8Array[] = [];
        let size = 0;
        const reader = body.getReader();
        try {
          while (true) {
            const { done, value } = await reader.read();
            if (done) break;
            size += value.length;
            if (size > options.maxInputBytes) {
              throw new BoundError(`more than ${options.maxInputBytes} compressed bytes`);
            }
            parts.push(value);
          }
        } catch (error) {
          await reader.cancel().catch(() => {});
          throw error;
        }
        output = zstdDecompress(concat(...parts), options);
      }
      if (at >= output.length) return controller.close();
      controller.enqueue(output.subarray(at, at + SLICE));
      at += SLICE;
    },
    cancel: (reason) => body.cancel(reason).catch(() => {}),
  }, { highWaterMark: 0 });
}

function concat(...parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
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
