/**
 * The bridge behind `connect PORT|PATH` (what go runs as GOCACHEPROG in server mode): it copies
 * go's requests to the server and the server's replies back, byte for byte, each chunk as soon
 * as it arrives.
 *
 * While copying it notes which requests are still unanswered (their bytes are kept until the
 * reply passes) and forwards replies only in whole lines. So when the server cannot be reached,
 * or goes away mid-build, this process answers the rest itself from the local tier: unanswered
 * requests are replayed to a local session, then the rest of go's input follows. The build goes
 * on; the caller's fallback decides what to print.
 *
 * @module
 */

import { writeAll } from "../util/mod.ts";

/** Options for {@linkcode bridge}. */
export interface BridgeOptions {
  /** Reads go's next request bytes into `buffer`; `null` at end of input. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes reply bytes to go; calls are serialized by the bridge. */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * Serves the session locally after the server went away: `input` replays the unanswered
   * requests, then the rest of go's input; `output` goes to go. `handshake` is true when the
   * server's handshake never reached go.
   */
  fallback(
    input: ReadableStream<Uint8Array>,
    output: WritableStream<Uint8Array>,
    handshake: boolean,
    reason: unknown,
  ): Promise<void>;
  /**
   * True when go already has a handshake line (written before dialing, to save go the wait):
   * the server's own handshake is then dropped.
   * @default {false}
   */
  handshakeSent?: boolean;
  /**
   * How long the server may stay silent while requests wait for replies before the session is
   * finished locally (a wedged or overloaded server must not hang the build); 0 waits forever.
   * @default {60000}
   */
  replyTimeoutMs?: number;
}

/** How a bridged session ended. */
export interface BridgeResult {
  /** True when the session was finished locally. */
  fellBack: boolean;
}

const CHUNK = 64 * 1024;
/** Pieces smaller than this are copied when kept, so a kept reply does not pin a whole buffer. */
const COPY_BELOW = 16 * 1024;

/**
 * Opens a connection to a server.
 *
 * @param target A port on 127.0.0.1, or a Unix socket path.
 * @returns The connection, with Nagle's algorithm off for TCP.
 */
export async function dial(target: string): Promise<Deno.Conn> {
  if (/^\d+$/.test(target)) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(target) });
    conn.setNoDelay(true);
    return conn;
  }
  return await Deno.connect({ transport: "unix", path: target });
}

/**
 * Copies requests to `conn` and replies back until the session ends, falling back to
 * `options.fallback` if the server goes away with requests unanswered or input still open.
 * Does not close go's output.
 *
 * @param conn The connection to the server; closed on return.
 * @param options go's side and the fallback.
 * @returns Whether the session was finished locally.
 */
export async function bridge(conn: Deno.Conn, options: BridgeOptions): Promise<BridgeResult> {
  const tracker = new RequestTracker();
  let dropHandshake = options.handshakeSent ?? false;
  tracker.handshakeSeen = dropHandshake;
  let remote = true;
  let inputEnded = false;
  let local: ReadableStreamDefaultController<Uint8Array> | undefined;
  let localDone: Promise<void> | undefined;
  let outputGone = false;
  let outputChain: Promise<void> = Promise.resolve();
  // One chain keeps reply lines whole when the local session starts writing; a failed write
  // means go has gone, and nobody is left to answer.
  const output = (bytes: Uint8Array): Promise<void> =>
    outputChain = outputChain.then(() => outputGone ? undefined : options.write(bytes)).catch(
      () => {
        outputGone = true;
      },
    );

  const failover = (reason: unknown): void => {
    if (!remote) return;
    remote = false;
    try {
      conn.close();
    } catch {
      // already closed
    }
    const replay = tracker.unanswered();
    const input = new ReadableStream<Uint8Array>({
      start(controller) {
        local = controller;
        for (const part of replay) controller.enqueue(part);
        if (inputEnded) controller.close();
      },
    });
    const sink = new WritableStream<Uint8Array>({ write: (chunk) => output(chunk) });
    localDone = options.fallback(input, sink, !tracker.handshakeSeen, reason);
  };

  // The reply deadline: one timer for the whole session, checked against the last sign of life.
  const replyTimeoutMs = options.replyTimeoutMs ?? 60_000;
  let lastProgress = performance.now();
  const watchdog = replyTimeoutMs <= 0 ? undefined : setInterval(() => {
    if (!remote || !tracker.waiting) return;
    if (performance.now() - lastProgress > replyTimeoutMs) {
      failover(new Error(`no reply from the server for ${Math.round(replyTimeoutMs / 1000)}s`));
    }
  }, Math.max(10, Math.min(1000, replyTimeoutMs / 4)));
  if (watchdog !== undefined) Deno.unrefTimer(watchdog);

  const pumpRequests = async (): Promise<void> => {
    let buffer = new Uint8Array(CHUNK);
    while (true) {
      let n: number | null;
      try {
        n = await options.read(buffer);
      } catch {
        n = null; // go's side is gone: nothing more will come
      }
      if (n === null) {
        inputEnded = true;
        if (remote) await conn.closeWrite().catch(() => {});
        else closeQuietly(local);
        return;
      }
      const chunk = buffer.subarray(0, n);
      if (!remote) {
        try {
          local?.enqueue(chunk);
        } catch {
          return; // the local session has ended
        }
        buffer = new Uint8Array(CHUNK);
        continue;
      }
      // Send first, then note the request while the bytes travel; no failover can run in
      // between, so every byte sent is either answered or replayed.
      const sent = writeAll(conn, chunk);
      if (!tracker.waiting) lastProgress = performance.now(); // the clock starts with a request
      if (tracker.onRequests(chunk)) buffer = new Uint8Array(CHUNK);
      try {
        await sent;
      } catch (error) {
        failover(error);
      }
    }
  };

  const pumpReplies = async (): Promise<void> => {
    const buffer = new Uint8Array(CHUNK);
    let carry: Uint8Array | undefined;
    let reason: unknown = new Error("the server closed the connection");
    while (remote) {
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch (error) {
        reason = error;
        break;
      }
      if (n === null || !remote || outputGone) break;
      lastProgress = performance.now();
      let data = buffer.subarray(0, n);
      if (carry) {
        const joined = new Uint8Array(carry.length + n);
        joined.set(carry);
        joined.set(data, carry.length);
        data = joined;
        carry = undefined;
      }
      const end = data.lastIndexOf(0x0a) + 1;
      if (end < data.length) carry = data.slice(end);
      if (end === 0) continue;
      let start = 0;
      if (dropHandshake) {
        dropHandshake = false;
        const first = data.indexOf(0x0a);
        if (replyId(data, 0, first) === 0) start = first + 1;
      }
      if (start === end) continue;
      const lines = data.subarray(start, end);
      tracker.onReplies(lines, lines.length);
      await output(lines);
    }
    if (remote && !outputGone && !tracker.settled(inputEnded)) failover(reason);
  };

  // go may keep its input open until it has read the last reply: never wait for its end here.
  pumpRequests();
  await pumpReplies();
  clearInterval(watchdog);
  if (remote) {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
  await localDone;
  await outputChain;
  return { fellBack: localDone !== undefined };
}

/**
 * Follows the request stream just enough to replay what is unanswered: it splits lines, reads
 * each header's ID, command and body size, and keeps a request's bytes until its reply passes.
 */
export class RequestTracker {
  #pending = new Map<number, Uint8Array[]>();
  /** Complete lines of the request being read (its header while the body is awaited). */
  #frame: Uint8Array[] = [];
  /** Pieces of the incomplete line. */
  #carry: Uint8Array[] = [];
  #awaitingBody: number | undefined;
  #closeId = -1;
  #closeAnswered = false;
  /** True once any reply line (the handshake comes first) reached go. */
  handshakeSeen = false;

  /**
   * Notes request bytes sent to the server.
   *
   * @param chunk The bytes.
   * @returns True when a large piece of `chunk` is kept (the caller must not reuse its buffer).
   */
  onRequests(chunk: Uint8Array): boolean {
    let pinned = false;
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const piece = keep(chunk.subarray(start, newline < 0 ? chunk.length : newline + 1));
      if (piece.buffer === chunk.buffer) pinned = true;
      if (newline < 0) {
        this.#carry.push(piece);
        break;
      }
      start = newline + 1;
      if (this.#carry.length === 0) {
        this.#line([piece]);
      } else {
        this.#carry.push(piece);
        const line = this.#carry;
        this.#carry = [];
        this.#line(line);
      }
    }
    return pinned;
  }

  /**
   * Notes complete reply lines going to go.
   *
   * @param data Bytes holding whole lines up to `end`.
   * @param end Index just past the last newline.
   */
  onReplies(data: Uint8Array, end: number): void {
    this.handshakeSeen = true;
    let start = 0;
    while (start < end) {
      const newline = data.indexOf(0x0a, start);
      const id = replyId(data, start, newline);
      if (id !== undefined) {
        this.#pending.delete(id);
        if (id === this.#closeId) this.#closeAnswered = true;
      }
      start = newline + 1;
    }
  }

  /** Whether any request (or a partial one) awaits its reply. */
  get waiting(): boolean {
    return this.#pending.size > 0 || this.#frame.length > 0 || this.#awaitingBody !== undefined;
  }

  /** Whether the session is over: `close` answered, or input ended with nothing unanswered. */
  settled(inputEnded: boolean): boolean {
    return this.#closeAnswered || (inputEnded && this.#pending.size === 0);
  }

  /** Requests not answered yet, then the partial request, as bytes to replay in order. */
  unanswered(): Uint8Array[] {
    return [...[...this.#pending.values()].flat(), ...this.#frame, ...this.#carry];
  }

  #line(parts: Uint8Array[]): void {
    if (isBlank(parts)) return;
    if (this.#awaitingBody !== undefined) {
      this.#frame.push(...parts);
      this.#pending.set(this.#awaitingBody, this.#frame);
      this.#frame = [];
      this.#awaitingBody = undefined;
      return;
    }
    const header = parseHeader(parts);
    if (!header) return; // not a request: the server will end the session
    if (header.command === "put" && header.bodySize > 0) {
      this.#frame = parts;
      this.#awaitingBody = header.id;
      return;
    }
    this.#pending.set(header.id, parts);
    if (header.command === "close") this.#closeId = header.id;
  }
}

const decoder = new TextDecoder();
/** `{"ID":` */
const ID_PREFIX = [0x7b, 0x22, 0x49, 0x44, 0x22, 0x3a];

function replyId(data: Uint8Array, start: number, newline: number): number | undefined {
  // Our server writes `{"ID":<n>,...`: read the digits without a JSON parse.
  let i = start;
  while (i < newline && (data[i] === 0x20 || data[i] === 0x09 || data[i] === 0x0d)) i++;
  if (newline - i < 7) return undefined;
  let prefix = true;
  for (let k = 0; k < ID_PREFIX.length; k++) {
    if (data[i + k] !== ID_PREFIX[k]) {
      prefix = false;
      break;
    }
  }
  if (prefix) {
    let id = 0;
    let digits = 0;
    for (let k = i + ID_PREFIX.length; k < newline; k++) {
      const c = data[k]!;
      if (c < 0x30 || c > 0x39) break;
      id = id * 10 + (c - 0x30);
      digits++;
    }
    if (digits > 0) return id;
  }
  try {
    const value = JSON.parse(decoder.decode(data.subarray(i, newline)));
    return typeof value?.ID === "number" ? value.ID : 0;
  } catch {
    return undefined;
  }
}

function parseHeader(
  parts: Uint8Array[],
): { id: number; command: string; bodySize: number } | undefined {
  const text = parts.length === 1
    ? decoder.decode(parts[0])
    : parts.map((p) => decoder.decode(p, { stream: true })).join("") + decoder.decode();
  try {
    const value = JSON.parse(text);
    if (typeof value?.ID !== "number" || typeof value.Command !== "string") return undefined;
    return {
      id: value.ID,
      command: value.Command,
      bodySize: typeof value.BodySize === "number" ? value.BodySize : 0,
    };
  } catch {
    return undefined;
  }
}

function isBlank(parts: Uint8Array[]): boolean {
  let length = 0;
  for (const part of parts) {
    length += part.length;
    if (length > 8) return false;
    for (const byte of part) {
      if (byte !== 0x0a && byte !== 0x0d && byte !== 0x20 && byte !== 0x09) return false;
    }
  }
  return true;
}

function closeQuietly(controller: ReadableStreamDefaultController<Uint8Array> | undefined): void {
  try {
    controller?.close();
  } catch {
    // the local session has ended
  }
}

function keep(piece: Uint8Array): Uint8Array {
  return piece.length < COPY_BELOW ? piece.slice() : piece;
}
