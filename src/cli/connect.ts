/**
 * `connect PORT|PATH`: what go runs as GOCACHEPROG in server mode. It writes the handshake at
 * once, dials the server and bridges go to it (see `server/connect.ts`); when the server cannot
 * be reached, goes away, or stops answering, it serves the rest of the session from the local
 * tier in this process and prints one warning.
 *
 * @module
 */

import { DEBUG_BUILD_CACHE, type Logger } from "../log/mod.ts";
import { writeHandshake } from "../protocol/wire.ts";
import { errorMessage } from "../util/mod.ts";
import type { Config } from "./config.ts";

/**
 * Runs `connect`.
 *
 * @param config The parsed configuration.
 * @param log Where logs go (stderr).
 * @returns The exit status.
 */
export async function runConnect(config: Config, log: Logger): Promise<number> {
  // go sends nothing until it has this line: write it before loading the bridge and dialing.
  // The server's own handshake is then dropped by the bridge.
  await writeHandshake(Deno.stdout);
  const { bridge, dial } = await import("../server/connect.ts");
  const target = config.connectTarget;
  let warned = false;
  const fallback = async (
    input: ReadableStream<Uint8Array>,
    output: WritableStream<Uint8Array>,
    handshake: boolean,
    reason: unknown,
  ) => {
    if (!warned) {
      warned = true;
      log.warn(
        `Cannot use the server at ${/^\d+$/.test(target) ? `127.0.0.1:${target}` : target}: ${
          errorMessage(reason)
        }; serving the local tier in this process`,
      );
    }
    await serveLocally(config, log, { input, output, handshake });
  };
  let conn: Deno.Conn;
  try {
    conn = await dial(target);
  } catch (error) {
    const stdout = Deno.stdout.writable;
    await fallback(Deno.stdin.readable, stdout, false, error);
    await stdout.close().catch(() => {});
    return 0;
  }
  await bridge(conn, {
    read: (buffer) => Deno.stdin.read(buffer),
    // A direct system call: go reads its stdout all the time, and an async write would cost a
    // round trip through the runtime's thread pool on every reply.
    write: (bytes) => {
      let offset = 0;
      while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
      return Promise.resolve();
    },
    fallback,
    handshakeSent: true,
    replyTimeoutMs: config.replyTimeoutMs,
  });
  // go waits for stdout to close.
  try {
    Deno.stdout.close();
  } catch {
    // already closed
  }
  return 0;
}

async function serveLocally(
  config: Config,
  log: Logger,
  io: {
    input: ReadableStream<Uint8Array>;
    output: WritableStream<Uint8Array>;
    handshake: boolean;
  },
): Promise<void> {
  const [{ openCacheStack }, { serve }, { Metrics }] = await Promise.all([
    import("./stack.ts"),
    import("../protocol/mod.ts"),
    import("../metrics/mod.ts"),
  ]);
  const metrics = new Metrics();
  // The S3 tier belongs to the server; this process keeps the build going with the local tier.
  const stack = await openCacheStack({ ...config, bucket: "" }, { log, metrics });
  try {
    await serve(io.input, io.output, stack.handler, {
      handshake: io.handshake,
      maxRequests: config.concurrency,
      metrics,
      trace: log.trace(DEBUG_BUILD_CACHE),
    });
  } catch (error) {
    log.warn(`error: ${errorMessage(error)}`);
  } finally {
    await stack.shutdown();
  }
  if (config.metrics || config.verbose) log.warn(`metrics ${JSON.stringify(metrics.counters())}`);
}
