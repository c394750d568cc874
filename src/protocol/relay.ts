/**
 * What a byte bridge between go and a session server (`connect`) must know of the protocol to
 * finish a session elsewhere when the server goes away: which requests are unanswered, with
 * their bytes for a replay; which reply lines are whole and what their IDs are; whether `close`
 * was answered; and whether go has a handshake line yet.
 *
 * Requests are split with the session server's own line splitter and line cap, and their ID,
 * command and body size read by the same decoder, so the relay frames the stream as the server
 * does. It leaves the ids and put bodies undecoded: bodies pass as bytes, kept until answered.
 *
 * @module
 */

import { isBlank, isSpace, LineSplitter, NEWLINE, parseLine } from "./_lines.ts";
import { decodeRequestHeader, responseId } from "./wire.ts";

/** Options for {@linkcode Relay}. */
export interface RelayOptions {
  /**
   * True when go already has a handshake line (written before dialing, to save go the wait):
   * the server's own handshake is then dropped from the replies.
   * @default {false}
   */
  handshakeSent?: boolean;
}

/** Pieces smaller than this are copied when kept, so a kept request does not pin a read buffer. */
const COPY_BELOW = 16 * 1024;

/**
 * Follows one relayed session: request bytes on their way to the server, reply bytes on their
 * way to go. A request's bytes are kept until its reply passes, so that {@linkcode
 * Relay.unanswered} can be replayed to a local session. Synchronous and allocation-light: it
 * runs on every request's path.
 *
 * @example
 * ```ts
 * import { Relay } from "./relay.ts";
 * const bytes = (text: string) => new TextEncoder().encode(text);
 * const relay = new Relay();
 * relay.onRequests(bytes('{"ID":1,"Command":"get","ActionID":"AAAA"}\n\n'));
 * const lines = relay.onReplies(bytes('{"ID":0,"KnownCommands":["get"]}\n{"ID":1,"Miss":true}\n'));
 * if (!lines || relay.waiting) throw new Error("request 1 was answered");
 * ```
 */
export class Relay {
  #lines = new LineSplitter();
  #pending = new Map<number, Uint8Array[]>();
  /** The put whose body is being passed: its ID, its bytes so far, whether the body began. */
  #put: { id: number; parts: Uint8Array[]; inBody: boolean } | undefined;
  /** Every byte from the first that cannot be framed, for a replay that fails the same way. */
  #broken: Uint8Array[] | undefined;
  /** Set by the current {@linkcode Relay.onRequests} call when it keeps a view of its chunk. */
  #pinned = false;
  #closeId = -1;
  #closeAnswered = false;
  #dropHandshake: boolean;
  #handshakeSeen: boolean;
  /** The incomplete last reply line. */
  #replyCarry: Uint8Array | undefined;

  /** Creates a relay for one session. */
  constructor(options: RelayOptions = {}) {
    this.#dropHandshake = options.handshakeSent ?? false;
    this.#handshakeSeen = this.#dropHandshake;
  }

  /** True once go has a handshake line: sent before dialing, or the first reply passed. */
  get handshakeSeen(): boolean {
    return this.#handshakeSeen;
  }

  /** Whether any request (or the put whose body is arriving) awaits its reply. */
  get waiting(): boolean {
    return this.#pending.size > 0 || this.#put !== undefined || this.#broken !== undefined;
  }

  /**
   * Notes request bytes sent to the server. Input the server cannot frame is kept from there
   * on, verbatim, for the replay; it never throws.
   *
   * @param chunk The bytes, as read from go.
   * @returns True when a large piece of `chunk` is kept (the caller must not reuse its buffer).
   */
  onRequests(chunk: Uint8Array): boolean {
    this.#pinned = false;
    let position = 0;
    while (position < chunk.length) {
      if (this.#broken) {
        this.#broken.push(this.#keep(chunk.subarray(position)));
        break;
      }
      if (this.#put) {
        position = this.#body(chunk, position);
        continue;
      }
      let next: { line: Uint8Array; end: number } | undefined;
      try {
        next = this.#lines.next(chunk, position);
      } catch {
        // A line too long: the server ends the session.
        this.#broken = this.#lines.buffered > 0 ? [this.#lines.rest()] : [];
        continue;
      }
      if (!next) break;
      position = next.end;
      if (isBlank(next.line)) continue;
      try {
        this.#header(next.line);
      } catch {
        this.#broken = [withNewline(next.line)]; // not a request: the server ends the session
      }
    }
    return this.#pinned;
  }

  /**
   * Notes reply bytes from the server and picks what go may have now: whole lines only (the rest
   * waits for the next chunk), without the server's handshake when go has one already.
   *
   * @param chunk The bytes, as read from the server.
   * @returns The lines to write to go, or undefined for none. It may be a view of `chunk`: write
   * it before reusing that buffer.
   */
  onReplies(chunk: Uint8Array): Uint8Array | undefined {
    let data = chunk;
    const carry = this.#replyCarry;
    if (carry) {
      data = new Uint8Array(carry.length + chunk.length);
      data.set(carry);
      data.set(chunk, carry.length);
      this.#replyCarry = undefined;
    }
    const end = data.lastIndexOf(NEWLINE) + 1;
    if (end < data.length) this.#replyCarry = data.slice(end);
    if (end === 0) return undefined;
    let start = 0;
    if (this.#dropHandshake) {
      this.#dropHandshake = false;
      const first = data.indexOf(NEWLINE);
      if (responseId(data.subarray(0, first)) === 0) start = first + 1;
    }
    if (start === end) return undefined;
    this.#handshakeSeen = true;
    for (let line = start; line < end;) {
      const newline = data.indexOf(NEWLINE, line);
      const id = responseId(data.subarray(line, newline));
      if (id !== undefined) {
        this.#pending.delete(id);
        if (id === this.#closeId) this.#closeAnswered = true;
      }
      line = newline + 1;
    }
    return data.subarray(start, end);
  }

  /**
   * Whether the session is over on the server's side.
   *
   * @param inputEnded Whether go's input has ended.
   * @returns True once `close` was answered, or when input ended with nothing unanswered.
   */
  settled(inputEnded: boolean): boolean {
    return this.#closeAnswered || (inputEnded && this.#pending.size === 0);
  }

  /**
   * The bytes to replay to a local session, in order: the unanswered requests, then the put
   * whose body is arriving or the incomplete line, then any input that could not be framed.
   */
  unanswered(): Uint8Array[] {
    return [
      ...[...this.#pending.values()].flat(),
      ...this.#put?.parts ?? [],
      ...this.#lines.kept,
      ...this.#broken ?? [],
    ];
  }

  #header(line: Uint8Array): void {
    const request = decodeRequestHeader(parseLine(line));
    const bytes = withNewline(line);
    if (request.command === "put" && request.bodySize > 0) {
      this.#put = { id: request.id, parts: [bytes], inBody: false };
      return;
    }
    this.#pending.set(request.id, [bytes]);
    if (request.command === "close") this.#closeId = request.id;
  }

  /** Passes body bytes from `start`: whitespace before it, then up to its newline. */
  #body(chunk: Uint8Array, start: number): number {
    const put = this.#put!;
    let from = start;
    if (!put.inBody) {
      while (from < chunk.length && isSpace(chunk[from]!)) from++;
      if (from === chunk.length) return from;
      put.inBody = true;
    }
    const newline = chunk.indexOf(NEWLINE, from);
    const end = newline === -1 ? chunk.length : newline + 1;
    put.parts.push(this.#keep(chunk.subarray(from, end)));
    if (newline !== -1) {
      this.#pending.set(put.id, put.parts);
      this.#put = undefined;
    }
    return end;
  }

  #keep(piece: Uint8Array): Uint8Array {
    if (piece.length < COPY_BELOW) return piece.slice();
    this.#pinned = true;
    return piece;
  }
}

function withNewline(line: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(line.length + 1);
  bytes.set(line);
  bytes[line.length] = NEWLINE;
  return bytes;
}
