/**
 * Byte-level framing of the go command's request stream.
 *
 * go writes each request as a compact JSON object and `\n`, then an empty line, then, for a put
 * with a non-empty body, the body as one JSON string of padded standard base64 and `\n`. A body
 * may be tens of megabytes on one line. This decoder accepts any whitespace between values.
 *
 * @module
 */

import { isBlank, isSpace, LineSplitter, NEWLINE, parseLine } from "./_lines.ts";
import { type CacheRequest, decodeRequest, ProtocolError } from "./wire.ts";

/** One request with its body, as the decoder emits it. */
export interface Frame {
  request: CacheRequest;
  /** The put body (empty for a put without `BodySize`); undefined for other commands. */
  body?: Uint8Array;
  /**
   * Gives back what {@linkcode FrameDecoderOptions.reserve} held for the body; the consumer calls
   * it once done with the body. Undefined without `reserve` or without a body.
   */
  release?: () => void;
}

/** Options for {@linkcode FrameDecoderStream}. */
export interface FrameDecoderOptions {
  /**
   * Largest put body accepted, in bytes. A larger `BodySize` ends the session.
   * @default {1073741824} (1 GiB)
   */
  maxBodySize?: number;
  /**
   * Asked for room before a put body is buffered, with its `BodySize`: returns a function that
   * gives the room back, or `undefined` when there is none now. The parser then stops in front of
   * the body (see {@linkcode FrameParser.wanted}) until {@linkcode FrameParser.resume} hands it
   * the room, so no byte of a body is buffered without it.
   * @default bodies are buffered without asking
   */
  reserve?: (size: number) => (() => void) | undefined;
}

const QUOTE = 0x22;
// Base64 is ASCII: decode bytes one-to-one into a string for setFromBase64.
const latin1 = new TextDecoder("latin1");

/**
 * Splits the request byte stream into {@linkcode Frame}s, checking each body against its
 * announced `BodySize`. Bodies are decoded from base64 as their bytes arrive, straight into a
 * buffer of the announced size, so a put costs one copy of its body in memory. Push-based and
 * synchronous, so a read loop can use it without a stream pipeline per chunk.
 *
 * @example
 * ```ts
 * import { FrameParser } from "./framing.ts";
 * const parser = new FrameParser();
 * const frames = parser.push(new TextEncoder().encode('{"ID":1,"Command":"close"}\n\n'));
 * if (frames[0]?.request.command !== "close") throw new Error("unexpected frame");
 * ```
 */
export class FrameParser {
  /** A failure found after frames that {@linkcode FrameParser.push} returned; check it after them. */
  error: Error | undefined;
  #lines = new LineSplitter();
  #maxBodySize: number;
  #reserve: FrameDecoderOptions["reserve"];
  #body: BodyDecoder | undefined;
  /** A put whose body found no room, and the input after its header (a copy). */
  #wanted: { request: CacheRequest; rest: Uint8Array } | undefined;

  /** Creates a parser. */
  constructor(options: FrameDecoderOptions = {}) {
    this.#maxBodySize = options.maxBodySize ?? 1 << 30;
    this.#reserve = options.reserve;
  }

  /**
   * The put whose body waits for room (`reserve` had none): its id and `BodySize`. Get the room,
   * then call {@linkcode FrameParser.resume} before pushing more input.
   */
  get wanted(): { id: number; size: number } | undefined {
    const request = this.#wanted?.request;
    return request && { id: request.id, size: request.bodySize };
  }

  /** The put whose body is being read, if any: its id and announced size. */
  get bodyInProgress(): { id: number; size: number } | undefined {
    const body = this.#body;
    return body && { id: body.request.id, size: body.request.bodySize };
  }

  /** Whether input stopped inside a request (a partial header line or body). */
  get midFrame(): boolean {
    return this.#body !== undefined || this.#lines.buffered > 0;
  }

  /**
   * Consumes a chunk.
   *
   * @param chunk The next bytes of input; they may end anywhere.
   * @returns The frames the chunk completed, in order. When the chunk also holds bad input
   * after them, they are returned and the failure is left in {@linkcode FrameParser.error}.
   * @throws {ProtocolError} For input that cannot be a request stream.
   */
  push(chunk: Uint8Array): Frame[] {
    if (this.error) throw this.error;
    if (this.#wanted) throw new TypeError("Cannot push input: a body waits for room (resume)");
    return this.#run(chunk);
  }

  /**
   * Goes on after {@linkcode FrameParser.wanted}: the waiting body is buffered under `release`,
   * and the input kept after its header is parsed (it may stop again at the next body).
   *
   * @param release Gives the room back; it becomes that frame's {@linkcode Frame.release}.
   * @returns The frames the kept input completed, as {@linkcode FrameParser.push} returns them.
   */
  resume(release: () => void): Frame[] {
    const wanted = this.#wanted;
    if (!wanted) {
      release();
      return [];
    }
    this.#wanted = undefined;
    this.#body = new BodyDecoder(wanted.request, release);
    return this.#run(wanted.rest);
  }

  /**
   * Drops a body read in part, or waiting for room, at the end of a session: its memory is freed
   * at once (not left to the garbage collector) and its room given back. Idempotent.
   */
  discard(): void {
    this.#body?.discard();
    this.#body = undefined;
    this.#wanted = undefined;
  }

  #run(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    try {
      let position = 0;
      while (position < chunk.length) {
        const body = this.#body;
        if (body) {
          position = body.consume(chunk, position);
          if (body.done) {
            frames.push({ request: body.request, body: body.bytes, release: body.release });
            this.#body = undefined;
          }
          continue;
        }
        const next = this.#lines.next(chunk, position);
        if (!next) break;
        position = next.end;
        if (this.#onHeader(next.line, frames)) {
          // No room for this body: keep the rest of the chunk (a caller reuses its buffer).
          this.#wanted!.rest = chunk.slice(position);
          break;
        }
      }
    } catch (error) {
      if (frames.length === 0) throw error;
      this.error = error as Error; // hand out the good frames first; `error` reports the rest
    }
    return frames;
  }

  /**
   * Ends the input.
   *
   * @returns A last frame whose line had no newline, if any.
   * @throws {ProtocolError} When input ended inside a request.
   */
  end(): Frame[] {
    if (this.error) throw this.error;
    if (this.#wanted) throw new TypeError("Cannot end input: a body waits for room (resume)");
    const frames: Frame[] = [];
    const body = this.#body;
    if (body?.finish()) {
      frames.push({ request: body.request, body: body.bytes, release: body.release });
      this.#body = undefined;
    } else if (body) {
      throw new ProtocolError(`Cannot read put ${body.request.id}: input ended before its body`);
    }
    const rest = this.#lines.rest();
    if (rest.length > 0) this.#onHeader(rest, frames, true);
    return frames;
  }

  /**
   * Handles a header line.
   *
   * @returns True when it announced a body that found no room (then in `#wanted`).
   */
  #onHeader(line: Uint8Array, frames: Frame[], atEnd = false): boolean {
    if (isBlank(line)) return false;
    const request = decodeRequest(parseLine(line));
    if (request.command !== "put") {
      frames.push({ request });
    } else if (request.bodySize === 0) {
      frames.push({ request, body: new Uint8Array(0) });
    } else if (request.bodySize > this.#maxBodySize) {
      throw new ProtocolError(
        `Cannot accept put ${request.id}: body of ${request.bodySize} bytes exceeds the limit of ${this.#maxBodySize}`,
      );
    } else if (atEnd) {
      throw new ProtocolError(`Cannot read put ${request.id}: input ended before its body`);
    } else {
      const release = this.#reserve?.(request.bodySize);
      if (this.#reserve && !release) {
        this.#wanted = { request, rest: new Uint8Array(0) };
        return true;
      }
      this.#body = new BodyDecoder(request, release);
    }
    return false;
  }
}

/**
 * Decodes one put body, a JSON string of standard base64, as its bytes arrive: whitespace, the
 * opening quote, base64 (decoded in 4-character groups into the final buffer), the closing quote,
 * then the rest of the line.
 */
class BodyDecoder {
  readonly request: CacheRequest;
  readonly bytes: Uint8Array;
  /** Gives back the room reserved for the body, if any. */
  readonly release: (() => void) | undefined;
  done = false;
  #phase: "before" | "inside" | "after" = "before";
  #carry = "";
  #written = 0;

  constructor(request: CacheRequest, release: (() => void) | undefined) {
    this.request = request;
    this.release = release;
    this.bytes = new Uint8Array(request.bodySize);
  }

  /** Frees the buffer now (detaching it) and gives back its room: the body will not be used. */
  discard(): void {
    const buffer = this.bytes.buffer;
    if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0);
    this.release?.();
  }

  /** Consumes bytes from `start`; returns where it stopped (the chunk's end, or past the line). */
  consume(chunk: Uint8Array, start: number): number {
    let position = start;
    while (position < chunk.length && !this.done) {
      if (this.#phase === "before") {
        const byte = chunk[position++]!;
        if (byte === QUOTE) this.#phase = "inside";
        else if (!isSpace(byte)) this.#fail("not a JSON string");
      } else if (this.#phase === "inside") {
        const quote = chunk.indexOf(QUOTE, position);
        const end = quote === -1 ? chunk.length : quote;
        this.#decode(latin1.decode(chunk.subarray(position, end)), false);
        position = end;
        if (quote !== -1) {
          this.#decode("", true);
          this.#phase = "after";
          position++;
        }
      } else {
        const byte = chunk[position++]!;
        if (byte === NEWLINE) this.#complete();
        else if (!isSpace(byte)) this.#fail("unexpected bytes after the body");
      }
    }
    return position;
  }

  /** At end of input: true when the body was complete (its line just lacked a newline). */
  finish(): boolean {
    if (this.#phase !== "after") return false;
    this.#complete();
    return true;
  }

  #decode(text: string, final: boolean): void {
    let input = this.#carry + text;
    if (input.includes("\\")) {
      // JSON may escape "/" as "\/"; go never does, but a JSON string allows it.
      if (!final && input.endsWith("\\")) {
        this.#carry = input;
        return;
      }
      input = input.replaceAll("\\/", "/");
      if (input.includes("\\")) this.#fail("unsupported escape in base64");
    }
    const usable = final ? input.length : input.length - (input.length % 4);
    this.#carry = input.slice(usable);
    if (usable === 0) return;
    let result: { read: number; written: number };
    try {
      result = this.bytes.subarray(this.#written).setFromBase64(input.slice(0, usable));
    } catch (error) {
      this.#fail("invalid base64", error);
    }
    this.#written += result.written;
    if (result.read < usable) {
      this.#fail(`more than the ${this.request.bodySize} bytes announced`);
    }
  }

  #complete(): void {
    if (this.#written !== this.request.bodySize) {
      this.#fail(`got ${this.#written} bytes, expected ${this.request.bodySize}`);
    }
    this.done = true;
  }

  #fail(reason: string, cause?: unknown): never {
    throw new ProtocolError(`Cannot read body of put ${this.request.id}: ${reason}`, { cause });
  }
}
