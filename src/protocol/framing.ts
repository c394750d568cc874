/**
 * Byte-level framing of the go command's request stream.
 *
 * go writes each request as a compact JSON object and `\n`, then an empty line, then, for a put
 * with a non-empty body, the body as one JSON string of padded standard base64 and `\n`. A body
 * may be tens of megabytes on one line. This decoder accepts any whitespace between values.
 *
 * @module
 */

import { type CacheRequest, decodeRequest, ProtocolError } from "./wire.ts";

/** One request with its body, as the decoder emits it. */
export interface Frame {
  request: CacheRequest;
  /** The put body (empty for a put without `BodySize`); undefined for other commands. */
  body?: Uint8Array;
}

/** Options for {@linkcode FrameDecoderStream}. */
export interface FrameDecoderOptions {
  /**
   * Largest put body accepted, in bytes. A larger `BodySize` ends the session.
   * @default {1073741824} (1 GiB)
   */
  maxBodySize?: number;
}

/** Longest header line accepted; go's are under 300 bytes. */
const MAX_HEADER_LINE = 64 * 1024;
const NEWLINE = 0x0a;
const decoder = new TextDecoder();

/**
 * Splits the request byte stream into {@linkcode Frame}s, checking each body against its
 * announced `BodySize`.
 *
 * @example
 * ```ts
 * import { FrameDecoderStream } from "./framing.ts";
 * const bytes = new TextEncoder().encode('{"ID":1,"Command":"close"}\n\n');
 * const frames = await Array.fromAsync(ReadableStream.from([bytes]).pipeThrough(new FrameDecoderStream()));
 * if (frames[0]?.request.command !== "close") throw new Error("unexpected frame");
 * ```
 */
export class FrameDecoderStream extends TransformStream<Uint8Array, Frame> {
  /** Creates a decoder. */
  constructor(options: FrameDecoderOptions = {}) {
    const lines = new LineSplitter();
    const maxBodySize = options.maxBodySize ?? 1 << 30;
    let awaitingBody: CacheRequest | undefined;

    const onLine = (line: Uint8Array, controller: TransformStreamDefaultController<Frame>) => {
      if (isBlank(line)) return;
      if (awaitingBody) {
        const request = awaitingBody;
        awaitingBody = undefined;
        controller.enqueue({ request, body: decodeBody(line, request) });
        return;
      }
      const request = parseHeader(line);
      if (request.command === "put" && request.bodySize > 0) {
        if (request.bodySize > maxBodySize) {
          throw new ProtocolError(
            `Cannot accept put ${request.id}: body of ${request.bodySize} bytes exceeds the limit of ${maxBodySize}`,
          );
        }
        awaitingBody = request;
        lines.limit = base64Length(request.bodySize) + 64;
        return;
      }
      lines.limit = MAX_HEADER_LINE;
      controller.enqueue(
        request.command === "put" ? { request, body: new Uint8Array(0) } : { request },
      );
    };

    lines.limit = MAX_HEADER_LINE;
    super({
      transform(chunk, controller) {
        lines.push(chunk, (line) => {
          onLine(line, controller);
          if (!awaitingBody) lines.limit = MAX_HEADER_LINE;
        });
      },
      flush(controller) {
        const rest = lines.rest();
        if (rest.length > 0) onLine(rest, controller);
        if (awaitingBody) {
          throw new ProtocolError(
            `Cannot read put ${awaitingBody.id}: input ended before its body`,
          );
        }
      },
    });
  }
}

/** Accumulates chunks and calls back once per complete line, without quadratic copying. */
class LineSplitter {
  /** Longest line allowed before the stream is rejected. */
  limit = MAX_HEADER_LINE;
  #parts: Uint8Array[] = [];
  #partsLength = 0;

  push(chunk: Uint8Array, onLine: (line: Uint8Array) => void): void {
    let start = 0;
    while (start < chunk.length) {
      const end = chunk.indexOf(NEWLINE, start);
      if (end === -1) {
        this.#keep(chunk.subarray(start));
        return;
      }
      let line = chunk.subarray(start, end);
      if (this.#partsLength > 0) {
        this.#keep(line);
        line = this.rest();
      } else if (line.length > this.limit) {
        this.#tooLong(line.length);
      }
      onLine(line);
      start = end + 1;
    }
  }

  /** Takes whatever has been kept since the last line. */
  rest(): Uint8Array {
    const parts = this.#parts;
    this.#parts = [];
    const length = this.#partsLength;
    this.#partsLength = 0;
    if (parts.length === 1) return parts[0]!;
    const line = new Uint8Array(length);
    let offset = 0;
    for (const part of parts) {
      line.set(part, offset);
      offset += part.length;
    }
    return line;
  }

  #keep(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#partsLength += bytes.length;
    if (this.#partsLength > this.limit) this.#tooLong(this.#partsLength);
    // Copy: the source chunk's buffer may be reused by the reader once transform returns.
    this.#parts.push(bytes.slice());
  }

  #tooLong(length: number): never {
    throw new ProtocolError(`Cannot read request: line of ${length}+ bytes exceeds ${this.limit}`);
  }
}

function parseHeader(line: Uint8Array): CacheRequest {
  const text = decoder.decode(line);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError(`Cannot parse request: ${quoteStart(text)} is not JSON`, {
      cause: error,
    });
  }
  return decodeRequest(value);
}

function decodeBody(line: Uint8Array, request: CacheRequest): Uint8Array {
  const text = decoder.decode(line).trim();
  let encoded: unknown = text.slice(1, -1);
  const quoted = text.length >= 2 && text.startsWith('"') && text.endsWith('"');
  if (!quoted || text.includes("\\")) {
    try {
      encoded = JSON.parse(text); // the rare escaped form, or a clear error for garbage
    } catch (error) {
      throw new ProtocolError(`Cannot read body of put ${request.id}: not a JSON string`, {
        cause: error,
      });
    }
  }
  if (typeof encoded !== "string") {
    throw new ProtocolError(`Cannot read body of put ${request.id}: not a JSON string`);
  }
  let body: Uint8Array;
  try {
    body = Uint8Array.fromBase64(encoded);
  } catch (error) {
    throw new ProtocolError(`Cannot read body of put ${request.id}: invalid base64`, {
      cause: error,
    });
  }
  if (body.length !== request.bodySize) {
    throw new ProtocolError(
      `Cannot read body of put ${request.id}: got ${body.length} bytes, expected ${request.bodySize}`,
    );
  }
  return body;
}

function base64Length(size: number): number {
  return 4 * Math.ceil(size / 3) + 2;
}

function isBlank(line: Uint8Array): boolean {
  for (const byte of line) {
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  }
  return true;
}

function quoteStart(text: string): string {
  return JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);
}
