/**
 * The bridge behind `connect PORT|PATH` (what go runs as GOCACHEPROG in server mode): it copies
 * go's requests to the server and the server's replies back, byte for byte, each chunk as soon
 * as it arrives.
 *
 * It only moves bytes; a protocol {@linkcode Relay} follows them, noting which requests are
 * still unanswered (their bytes are kept until the reply passes) and passing replies on only in
 * whole lines. So when the server cannot be reached, goes away mid-build, or stops answering,
 * this process answers the rest itself: unanswered requests are replayed to a local session,
 * then the rest of go's input follows. The build goes on; the caller's fallback decides what to
 * print.
 *
 * @module
 */

// relay.ts, not mod.ts: connect loads this on every go invocation; keep its graph small.
import { Relay } from "../protocol/relay.ts";
import { repeatEvery, writeAll } from "../util/mod.ts";

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
  const relay = new Relay({ handshakeSent: options.handshakeSent });
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
    const replay = relay.unanswered();
    const input = new ReadableStream<Uint8Array>({
      start(controller) {
        local = controller;
        for (const part of replay) controller.enqueue(part);
        if (inputEnded) controller.close();
      },
    });
    const sink = new WritableStream<Uint8Array>({ write: (chunk) => output(chunk) });
    localDone = options.fallback(input, sink, !relay.handshakeSeen, reason);
  };

  // The reply deadline: one timer for the whole session, checked against the last sign of life.
  const replyTimeoutMs = options.replyTimeoutMs ?? 60_000;
  let lastProgress = performance.now();
  // Not setInterval: its first call loads node:timers, a cost every go command would pay.
  const stopWatchdog = replyTimeoutMs <= 0
    ? undefined
    : repeatEvery(Math.max(10, Math.min(1000, replyTimeoutMs / 4)), () => {
      if (!remote || !relay.waiting) return;
      if (performance.now() - lastProgress > replyTimeoutMs) {
        failover(new Error(`no reply from the server for ${Math.round(replyTimeoutMs / 1000)}s`));
      }
    });

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
      if (!relay.waiting) lastProgress = performance.now(); // the clock starts with a request
      if (relay.onRequests(chunk)) buffer = new Uint8Array(CHUNK);
      try {
        await sent;
      } catch (error) {
        failover(error);
      }
    }
  };

  const pumpReplies = async (): Promise<void> => {
    const buffer = new Uint8Array(CHUNK);
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
      const lines = relay.onReplies(buffer.subarray(0, n));
      if (!lines) continue;
      await output(lines);
    }
    if (remote && !outputGone && !relay.settled(inputEnded)) failover(reason);
  };

  // go may keep its input open until it has read the last reply: never wait for its end here.
  pumpRequests();
  await pumpReplies();
  stopWatchdog?.();
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

function closeQuietly(controller: ReadableStreamDefaultController<Uint8Array> | undefined): void {
  try {
    controller?.close();
  } catch {
    // the local session has ended
  }
}
