/**
 * A session's deadlines (private to `server.ts`).
 *
 * @module
 */

import type { FrameParser } from "./framing.ts";
import type { ReplyWriter } from "./_replies.ts";
import { ProtocolError } from "./wire.ts";
import type { InputPort } from "./io.ts";

/** The deadlines of `ServeOptions`, documented there; 0 or absent means none. */
export interface WatchdogOptions {
  stallTimeoutMs?: number;
  idleTimeoutMs?: number;
  writeTimeoutMs?: number;
}

/**
 * Enforces the session's deadlines with one timer: input stalled mid-request, no request for too
 * long, a reply write the peer does not take. One interval per session costs nothing per request.
 */
export class Watchdog {
  /** Why the session was ended, once a deadline passed. */
  expired: ProtocolError | undefined;
  #options: WatchdogOptions;
  #parser: FrameParser;
  #replies: ReplyWriter;
  #input: InputPort;
  #readSince = 0;
  #timer: ReturnType<typeof setInterval>;

  private constructor(
    options: WatchdogOptions,
    parser: FrameParser,
    replies: ReplyWriter,
    input: InputPort,
  ) {
    this.#options = options;
    this.#parser = parser;
    this.#replies = replies;
    this.#input = input;
    const shortest = Math.min(
      options.stallTimeoutMs ?? Infinity,
      options.idleTimeoutMs ?? Infinity,
      options.writeTimeoutMs ?? Infinity,
    );
    this.#timer = setInterval(() => this.#check(), Math.max(10, Math.min(1000, shortest / 4)));
    Deno.unrefTimer(this.#timer);
  }

  /** A watchdog when any deadline is set. */
  static start(
    options: WatchdogOptions,
    parser: FrameParser,
    replies: ReplyWriter,
    input: InputPort,
  ): Watchdog | undefined {
    if (!options.stallTimeoutMs && !options.idleTimeoutMs && !options.writeTimeoutMs) {
      return undefined;
    }
    return new Watchdog(options, parser, replies, input);
  }

  /** Marks the start of a wait for input. */
  startedReading(): void {
    this.#readSince = performance.now();
  }

  /** Marks the end of a wait for input. */
  stoppedReading(): void {
    this.#readSince = 0;
  }

  /** Stops the timer. */
  stop(): void {
    clearInterval(this.#timer);
  }

  #check(): void {
    const now = performance.now();
    const { stallTimeoutMs, idleTimeoutMs, writeTimeoutMs } = this.#options;
    if (writeTimeoutMs && this.#replies.writingFor(now) > writeTimeoutMs) {
      this.#expire(`the peer took no replies for ${seconds(writeTimeoutMs)}`);
      this.#replies.abandon();
      return;
    }
    if (this.#readSince === 0) return;
    const waited = now - this.#readSince;
    const midFrame = this.#parser.midFrame;
    const deadline = midFrame ? stallTimeoutMs : idleTimeoutMs;
    if (deadline && waited > deadline) {
      this.#expire(
        midFrame
          ? `input stopped inside a request for ${seconds(deadline)}`
          : `no request for ${seconds(deadline)}`,
      );
    }
  }

  #expire(reason: string): void {
    if (this.expired) return;
    this.expired = new ProtocolError(`Ending the session: ${reason}`);
    void this.#input.abort();
  }
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)}s` : `${ms}ms`;
}
