/**
 * The one writer of a session's replies (private to `server.ts`).
 *
 * @module
 */

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
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queued: string[] = [];
  #state: "idle" | "writing" | "broken" = "idle";
  #idle: Promise<void> = Promise.resolve();
  #settle: () => void = () => {};
  /** When the write in flight started (0 when none), for the write deadline. */
  #writeStarted = 0;
  #encoder = new TextEncoder();

  /** Takes `writable`'s writer until {@linkcode ReplyWriter.done}. */
  constructor(writable: WritableStream<Uint8Array>) {
    this.#writer = writable.getWriter();
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
        await this.#writer.write(this.#encoder.encode(batch));
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
    this.#writer.abort().catch(() => {});
    if (!wasWriting) return;
    // The stuck write may never settle, even aborted: do not let anyone wait for it.
    this.#writeStarted = 0;
    this.#settle();
  }

  /** Waits until every queued reply has been written (or the peer has gone). */
  flushed(): Promise<void> {
    return this.#idle;
  }

  /** Waits for queued replies and releases the writable (it is not closed). */
  async done(): Promise<void> {
    await this.#idle;
    if (this.#state === "broken") return; // an aborted writer stays locked; nothing uses it
    this.#writer.releaseLock();
  }
}
