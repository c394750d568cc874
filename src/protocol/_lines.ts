/**
 * Header lines of the go command's request stream, shared by the session server's frame parser
 * (`framing.ts`) and the relay behind `connect` (`relay.ts`), so both split lines, cap them and
 * skip blank ones the same way.
 *
 * @module
 */

import { ProtocolError } from "./wire.ts";

/** Longest header line accepted; go's are under 300 bytes. */
export const MAX_HEADER_LINE = 64 * 1024;
/** `\n`, the end of every request line. */
export const NEWLINE = 0x0a;
const decoder = new TextDecoder();

/**
 * Accumulates header bytes across chunks, without quadratic copying, and caps line length.
 * When it throws for a line that is too long, nothing of the current chunk has been kept, so a
 * caller can take the kept part with {@linkcode LineSplitter.rest} and the rest from the chunk.
 */
export class LineSplitter {
  #parts: Uint8Array[] = [];
  #partsLength = 0;

  /** Bytes of an incomplete line kept so far. */
  get buffered(): number {
    return this.#partsLength;
  }

  /** The kept pieces of the incomplete line, in order (not taken). */
  get kept(): readonly Uint8Array[] {
    return this.#parts;
  }

  /**
   * The next complete line starting at `start`, or undefined after keeping the rest.
   *
   * @param chunk The input bytes.
   * @param start Where the line starts in `chunk`.
   * @returns The line without its newline (a view of `chunk` unless it began in an earlier
   * chunk), and the index just past the newline.
   * @throws {ProtocolError} When the line exceeds {@linkcode MAX_HEADER_LINE}.
   */
  next(chunk: Uint8Array, start: number): { line: Uint8Array; end: number } | undefined {
    const newline = chunk.indexOf(NEWLINE, start);
    if (newline === -1) {
      this.#keep(chunk.subarray(start));
      return undefined;
    }
    let line = chunk.subarray(start, newline);
    if (this.#partsLength > 0) {
      this.#keep(line);
      line = this.rest();
    } else if (line.length > MAX_HEADER_LINE) {
      tooLong(line.length);
    }
    return { line, end: newline + 1 };
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
    const length = this.#partsLength + bytes.length;
    if (length > MAX_HEADER_LINE) tooLong(length);
    this.#partsLength = length;
    // Copy: the source chunk's buffer may be reused by the reader once transform returns.
    this.#parts.push(bytes.slice());
  }
}

/**
 * Parses one header line as JSON, for `decodeRequest` or `decodeRequestHeader` (`wire.ts`).
 *
 * @param line The line's bytes, without its newline.
 * @returns The parsed value.
 * @throws {ProtocolError} When the line is not JSON.
 */
export function parseLine(line: Uint8Array): unknown {
  const text = decoder.decode(line);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ProtocolError(`Cannot parse request: ${quoteStart(text)} is not JSON`, {
      cause: error,
    });
  }
}

/** Whether `byte` is JSON whitespace. */
export function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0d || byte === NEWLINE;
}

/** Whether a line (without its newline) holds only spaces, tabs and carriage returns. */
export function isBlank(line: Uint8Array): boolean {
  for (const byte of line) {
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  }
  return true;
}

function tooLong(length: number): never {
  throw new ProtocolError(
    `Cannot read request: line of ${length}+ bytes exceeds ${MAX_HEADER_LINE}`,
  );
}

function quoteStart(text: string): string {
  return JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);
}
