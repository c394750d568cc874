/**
 * The one writer of a session's replies (private to `server.ts`).
 *
 * @module
 */

import type { ByteSink } from "./io.ts";
import { encodeResponse, type WireResponse } from "./wire.ts";

/**
 * Serializes reply lines onto one writable. Each JSON value is written whole, in the order queued;
 * lines queued while a write is in flight go out together in the next one (fewer writes when
 * many requests finish at once, and no delay for a lone reply).
 *
 * States: idle (nothing in flight), writing (one drain loop running; `#idle` settles when it
 * stops), broken (the peer has gone or stopped reading: lines are dropped, nothing waits).
 */
export class ReplyWriter {
  #writer?: WritableStreamDefaultWriter<Uint8Array>;
  #sink: ByteSink;
  #queued: string[] = [];
  #state: "idle" | "writing" | "broken" = "idle";
  #idle: Promise<void> = Promise.resolve();
  #settle: () => void = () => {};
  /** When the write in flight started (0 when none), for the write deadline. */
  #writeStarted = 0;
  #encoder = new TextEncoder();

  /** Takes `output`'s writer (a stream's) until {@linkcode ReplyWriter.done}. */
  constructor(output: WritableStream<Uint8Array> | ByteSink) {
    if ("getWriter" in output) { // by shape: see InputPort in io.ts
      const writer = output.getWriter();
      this.#writer = writer;
      this.#sink = { write: (bytes) => writer.write(bytes), abort: () => void writer.abort() };
    } else {
      this.#sink = output;
    }
  }

  /** Queues one response. */
  write(response: WireResponse): void {
    this.writeLine(encodeResponse(response));
  }

  /** Queues one line, ending in `\n` (the handshake). */
  writeLine(line: string): void {
    if (this.#state === "broken") return;
    this.#queued.push(line);
    if (this.#state === "writing") return;
    this.#state = "writing";
    this.#idle = new Promise((resolve) => this.#settle = resolve);
    void this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queued.length > 0 && this.#state === "writing") {
        const batch = this.#queued.length === 1 ? this.#queued[0]! : this.#queued.join("");
        this.#queued = [];
        this.#writeStarted = performance.now();
        const writing = this.#sink.write(this.#encoder.encode(batch));
        if (writing) await writing;
        this.#writeStarted = 0;
      }
    } catch {
      // go has gone (EPIPE / BrokenPipe): nobody is left to read replies.
      this.#state = "broken";
    }
    this.#writeStarted = 0;
    if (this.#state === "writing") this.#state = "idle";
    else this.#queued = [];
    this.#settle();
  }

  /** How long the write in flight has been waiting, in ms (0 when none). */
  writingFor(now: number): number {
    return this.#writeStarted === 0 ? 0 : now - this.#writeStarted;
  }

  /** Gives up on the peer: drops queued lines and aborts the write in flight. */
  abandon(): void {
    if (this.#state === "broken") return;
    const wasWriting = this.#state === "writing";
    this.#state = "broken";
    this.#queued = [];
    try {
      this.#sink.abort?.();
    } catch {
      // already gone
    }
    if (!wasWriting) return;
    // The stuck write may never settle, even aborted: do not let anyone wait for it.
    this.#writeStarted = 0;
    this.#settle();
  }

  /** Waits until every queued reply has been written (or the peer has gone). */
  flushed(): Promise<void> {
    return this.#idle;
  }

  /** Waits for queued replies and releases a stream's writer (the stream is not closed). */
  async done(): Promise<void> {
    await this.#idle;
    if (this.#state === "broken") return; // an aborted writer stays locked; nothing uses it
    this.#writer?.releaseLock();
  }
}
