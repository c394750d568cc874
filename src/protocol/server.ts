/**
 * Serves the GOCACHEPROG protocol over a pair of byte streams, so the same code runs on stdio
 * (direct mode) and on socket connections (server mode). Replies go through one writer
 * (`_replies.ts`); the session's deadlines are kept by one timer (`_watchdog.ts`).
 *
 * @module
 */

import type { ByteBudget } from "../util/byte_budget.ts";
import { type Frame, FrameParser } from "./framing.ts";
import { ReplyWriter } from "./_replies.ts";
import { Watchdog } from "./_watchdog.ts";
import {
  type CacheRequest,
  formatTime,
  HANDSHAKE_LINE,
  hexToBase64,
  ProtocolError,
  type WireResponse,
} from "./wire.ts";
import { errorMessage } from "../util/mod.ts";
import { type ByteSink, type ByteSource, InputPort } from "./io.ts";

/** A cache hit as a handler reports it. */
export interface CacheHit {
  /** Lower-case hex SHA-256 of the output. */
  outputId: string;
  /** Size in bytes of the file at `diskPath`. */
  size: number;
  /** Absolute, extension-less path of a file holding the output. */
  diskPath: string;
  /** When the entry was put; go compares it with `go clean -testcache`. */
  time?: Date;
  /** The same instant in nanoseconds since the epoch, when known precisely. */
  timeNanos?: bigint;
}

/** A verified put: the body's length and SHA-256 match the request. */
export interface PutObject {
  actionId: string;
  outputId: string;
  body: Uint8Array;
}

/**
 * What a lookup answers: at once (a hit or `undefined` for a miss) when the handler can tell
 * without waiting, as for a local hit, or a promise of the same when it must wait (a remote
 * tier). An answer at once costs no promise between reading the request and writing its reply.
 */
export type GetAnswer = CacheHit | undefined | Promise<CacheHit | undefined>;

/** What the protocol needs from a cache. */
export interface CacheHandler {
  /** Looks up an action; `undefined` is a miss. It may answer at once (see {@linkcode GetAnswer}). */
  get(actionId: string): GetAnswer;
  /** Stores an output; resolves to the absolute path of a file holding it. */
  put(object: PutObject): Promise<string>;
  /** Finishes pending work when go sends `close` (see {@linkcode ServeOptions.closeHandler}). */
  close?(): Promise<void>;
}

/** Counters the server bumps; every field is optional so callers pick what they track. */
export interface ProtocolMetrics {
  add(name: ProtocolCounter, value?: number): void;
}

/** Names of the counters {@linkcode serve} reports. */
export type ProtocolCounter =
  | "get_requests"
  | "get_hits"
  | "get_misses"
  | "get_hit_bytes"
  | "get_errors"
  | "put_requests"
  | "put_bytes"
  | "put_errors";

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /**
   * Requests handled at once; reading stops while this many are pending.
   * @default {navigator.hardwareConcurrency}
   */
  maxRequests?: number;
  /**
   * Whether to write the handshake line first. Pass false only when the caller already wrote it.
   * @default {true}
   */
  handshake?: boolean;
  /**
   * Whether go's `close` calls the handler's `close`. A server whose sessions share one handler
   * passes false: one go command ending must not flush the whole server's cache.
   * @default {true}
   */
  closeHandler?: boolean;
  /** Largest put body accepted. @default {1073741824} */
  maxBodySize?: number;
  /** Counters to bump. @default no counting */
  metrics?: ProtocolMetrics;
  /** Per-request trace lines (`B GET R:1 A:…` / `E GET …`). @default no tracing */
  trace?: (line: string) => void;
  /**
   * Shared by the sessions of one server: every put body holds its `BodySize` in this budget from
   * before its first byte is buffered until its put has settled (or the session ends), and is
   * freed when it gives the bytes back (as with `freePutBodies`), so the budget is what put bodies
   * really hold in memory. A session whose next body does not fit stops reading until it does.
   * @default no limit beyond `maxBodySize`
   */
  bodyBudget?: ByteBudget;
  /**
   * Read with a blocking system call whenever no request is pending and every reply is written:
   * the lowest latency per request when nothing else runs in the process (direct mode with the
   * local tier alone). Never with background work such as uploads, which would stall meanwhile:
   * a function is asked before each such read and blocks only while it answers `true` (direct
   * mode with a bucket: no upload, lookup or warm-up under way). Needs a {@linkcode ByteSource}
   * with `readSync`.
   * @default {false}
   */
  blockingReads?: boolean | (() => boolean);
  /**
   * Ends the session when input stops inside a request (a partial header or body) for this long.
   * @default no deadline
   */
  stallTimeoutMs?: number;
  /** Ends the session when no request arrives for this long. @default no deadline */
  idleTimeoutMs?: number;
  /**
   * Frees each put body's memory as soon as its put has settled, rather than leaving it to the
   * garbage collector: bodies that lived through a few collections wait for a full one, and on a
   * cold build that is tens of MiB of dead bodies at a time. Only for a handler that keeps no
   * reference to {@linkcode PutObject.body} once `put()` has settled (the cache tiers copy
   * nothing; they write the bytes to disk before resolving).
   * @default {false}
   */
  freePutBodies?: boolean;
  /**
   * Gives up on the peer when one write of replies has not completed for this long (it stopped
   * reading); the session then ends without waiting for it.
   * @default no deadline
   */
  writeTimeoutMs?: number;
}

/** How a session ended. */
export interface ServeResult {
  /** True when go sent `close` (and got its reply); false when input simply ended. */
  closed: boolean;
}

/**
 * Runs one protocol session: writes the handshake, answers requests concurrently (replies may be
 * out of order, each written whole), and returns after `close` is answered or input ends.
 *
 * @param readable The bytes go writes (stdin or a connection): a stream, or a reader filled into a
 *   reused buffer.
 * @param writable Where replies go (stdout or the connection): a stream, or a sink of whole writes.
 * @param handler The cache.
 * @param options Concurrency, metrics and tracing.
 * @returns Whether the session ended with `close`.
 * @throws {ProtocolError} When the input cannot be framed; pending requests finish first.
 */
export async function serve(
  readable: ReadableStream<Uint8Array> | ByteSource,
  writable: WritableStream<Uint8Array> | ByteSink,
  handler: CacheHandler,
  options: ServeOptions = {},
): Promise<ServeResult> {
  const replies = new ReplyWriter(writable);
  if (options.handshake ?? true) replies.writeLine(HANDSHAKE_LINE);
  const limit = Math.max(1, options.maxRequests ?? navigator.hardwareConcurrency ?? 4);
  const pending = new Set<Promise<void>>();
  const session = new Session(handler, replies, options);
  const budget = options.bodyBudget;
  const parser = new FrameParser({
    maxBodySize: options.maxBodySize,
    reserve: budget && ((size) => budget.tryAcquire(size)),
  });
  const input = new InputPort(readable);
  const canBlock = input.canBlock ? options.blockingReads ?? false : false;
  const blocking = typeof canBlock === "function" ? canBlock : () => canBlock;
  const watchdog = Watchdog.start(options, parser, replies, input);
  const free = budget !== undefined || (options.freePutBodies ?? false);
  /** Bodies parsed and not yet settled: each is freed and its budget given back exactly once. */
  const owned = new Set<Frame>();
  const settle = (frame: Frame) => {
    if (!owned.delete(frame)) return;
    if (free) freeBytes(frame.body!);
    frame.release?.();
  };
  try {
    for (;;) {
      watchdog?.startedReading();
      let block = pending.size === 0 && blocking();
      if (block) {
        // Nothing is left to do until go writes again: every reply must be out first, and
        // background work may have started during that wait.
        await replies.flushed();
        block = blocking();
      }
      const value = block ? input.nextSync() : await input.next();
      const done = value === null;
      watchdog?.stoppedReading();
      if (watchdog?.expired) throw watchdog.expired;
      let frames = done ? parser.end() : parser.push(value!);
      for (;;) {
        for (const frame of frames) if (frame.body) owned.add(frame);
        for (const frame of frames) {
          const { request, body } = frame;
          if (request.command === "close") {
            await Promise.all(pending);
            await session.close(request);
            // Cancelling `readable` closes a socket, so the replies must be written first.
            await replies.flushed();
            await input.cancel();
            return { closed: true };
          }
          // A get the handler answers at once is done here: a local hit waits for nothing.
          const work = request.command === "get"
            ? session.get(request)
            : session.handle(request, body);
          if (!work) continue;
          const task = work.finally(() => {
            pending.delete(task);
            if (body) settle(frame);
          });
          pending.add(task);
          while (pending.size >= limit) await Promise.race(pending);
        }
        if (parser.error) throw parser.error;
        // A body that did not fit the budget: wait for room (the client's bytes wait in the
        // socket meanwhile), then parse the rest of the chunk.
        const wanted = parser.wanted;
        if (!wanted) break;
        frames = parser.resume(await budget!.acquire(wanted.size));
      }
      if (done) break;
    }
    await Promise.all(pending);
    return { closed: false };
  } catch (error) {
    await Promise.allSettled(pending);
    await input.cancel();
    throw error instanceof ProtocolError ? error : new ProtocolError(
      `Cannot read requests: ${errorMessage(error)}`,
      { cause: error },
    );
  } finally {
    // Every put has settled by now: what is left was never handed to the cache.
    for (const frame of owned) settle(frame);
    parser.discard();
    input.release();
    await replies.done();
    watchdog?.stop();
  }
}

/** Handles the requests of one session and writes their replies. */
class Session {
  #handler: CacheHandler;
  #replies: ReplyWriter;
  #metrics?: ProtocolMetrics;
  #trace?: (line: string) => void;
  #closeHandler: boolean;

  constructor(handler: CacheHandler, replies: ReplyWriter, options: ServeOptions) {
    this.#closeHandler = options.closeHandler ?? true;
    this.#handler = handler;
    this.#replies = replies;
    this.#metrics = options.metrics;
    this.#trace = options.trace;
  }

  /**
   * Answers a get: at once when the handler answers without a promise (see
   * {@linkcode GetAnswer}), else in the task returned.
   *
   * @returns `undefined` when the reply is written; else the task that writes it.
   */
  get(request: CacheRequest): Promise<void> | undefined {
    const trace = this.#trace;
    const started = trace ? performance.now() : 0;
    trace?.(`B GET R:${request.id} A:${request.actionId}`);
    this.#metrics?.add("get_requests");
    if (request.actionId.length !== 64) {
      this.#metrics?.add("get_errors");
      this.#finish(request, { ID: request.id, Err: "get: invalid ActionID" }, started);
      return undefined;
    }
    let answer: GetAnswer;
    try {
      answer = this.#handler.get(request.actionId);
    } catch (error) {
      this.#finish(request, this.#getError(request, error), started);
      return undefined;
    }
    if (!(answer instanceof Promise)) {
      this.#finish(request, this.#getResponse(request, answer), started);
      return undefined;
    }
    return answer.then(
      (hit) => this.#finish(request, this.#getResponse(request, hit), started),
      (error) => this.#finish(request, this.#getError(request, error), started),
    );
  }

  #getError(request: CacheRequest, error: unknown): WireResponse {
    this.#metrics?.add("get_errors");
    return { ID: request.id, Err: `get ${request.actionId}: ${errorMessage(error)}` };
  }

  async handle(request: CacheRequest, body: Uint8Array | undefined): Promise<void> {
    const trace = this.#trace;
    const started = trace ? performance.now() : 0;
    const op = trace ? request.command.toUpperCase() : "";
    trace?.(`B ${op} R:${request.id} A:${request.actionId}`);
    let response: WireResponse;
    try {
      switch (request.command) {
        case "put":
          response = await this.#put(request, body ?? new Uint8Array(0));
          break;
        default:
          response = { ID: request.id, Err: `unknown command ${JSON.stringify(request.command)}` };
      }
    } catch (error) {
      this.#metrics?.add(request.command === "put" ? "put_errors" : "get_errors");
      response = {
        ID: request.id,
        Err: `${request.command} ${request.actionId}: ${errorMessage(error)}`,
      };
    }
    this.#finish(request, response, started);
  }

  #finish(request: CacheRequest, response: WireResponse, started: number): void {
    this.#trace?.(
      `E ${request.command.toUpperCase()} R:${request.id} A:${request.actionId}` +
        (response.Miss ? " M:1" : "") +
        (response.Err ? ` err=${JSON.stringify(response.Err)}` : "") +
        (response.DiskPath ? ` DP:${JSON.stringify(response.DiskPath)}` : "") +
        ` ${(performance.now() - started).toFixed(1)}ms`,
    );
    this.#replies.write(response);
  }

  async close(request: CacheRequest): Promise<void> {
    this.#trace?.(`B CLOSE R:${request.id}`);
    try {
      if (this.#closeHandler) await this.#handler.close?.();
      this.#trace?.(`E CLOSE R:${request.id}`);
    } catch (error) {
      // A close Err makes go fail a build that succeeded ("failed to trim cache"); log instead.
      this.#trace?.(`E CLOSE R:${request.id} err=${JSON.stringify(errorMessage(error))}`);
    }
    this.#replies.write({ ID: request.id });
  }

  #getResponse(request: CacheRequest, hit: CacheHit | undefined): WireResponse {
    if (!hit) {
      this.#metrics?.add("get_misses");
      return { ID: request.id, Miss: true };
    }
    this.#metrics?.add("get_hits");
    this.#metrics?.add("get_hit_bytes", hit.size);
    const response: WireResponse = {
      ID: request.id,
      OutputID: hexToBase64(hit.outputId),
      Size: hit.size,
      DiskPath: hit.diskPath,
    };
    if (hit.time) response.Time = formatTime(hit.time, hit.timeNanos);
    return response;
  }

  async #put(request: CacheRequest, body: Uint8Array): Promise<WireResponse> {
    this.#metrics?.add("put_requests");
    if (request.actionId.length !== 64 || request.outputId.length !== 64) {
      this.#metrics?.add("put_errors");
      return { ID: request.id, Err: "put: invalid ActionID or OutputID" };
    }
    // node:crypto hashes the bytes where they are; crypto.subtle.digest copies the body first.
    const { createHash } = await (nodeCrypto ??= import("node:crypto"));
    if (createHash("sha256").update(body).digest("hex") !== request.outputId) {
      this.#metrics?.add("put_errors");
      return {
        ID: request.id,
        Err: `put: body of ${body.length} bytes does not hash to OutputID ${request.outputId}`,
      };
    }
    const diskPath = await this.#handler.put({
      actionId: request.actionId,
      outputId: request.outputId,
      body,
    });
    this.#metrics?.add("put_bytes", body.length);
    return { ID: request.id, DiskPath: diskPath };
  }
}

/** node:crypto, imported by the first put: a session of gets only never loads it. */
let nodeCrypto: Promise<typeof import("node:crypto")> | undefined;

/** Frees a buffer's memory now (detaching it), when `bytes` is the whole of it. */
function freeBytes(bytes: Uint8Array): void {
  const buffer = bytes.buffer;
  if (!(buffer instanceof ArrayBuffer) || bytes.byteLength !== buffer.byteLength) return;
  if (buffer.byteLength > 0 && !buffer.detached) buffer.transfer(0);
}
