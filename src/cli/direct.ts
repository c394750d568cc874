/**
 * Direct mode: one plugin process per go command, speaking the protocol on stdin/stdout.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { Metrics } from "../metrics/mod.ts";
import { serve } from "../protocol/mod.ts";
import { DEBUG_BUILD_CACHE } from "../log/mod.ts";
import type { Config } from "./config.ts";
import { openCacheStack, pruneIfDue } from "./stack.ts";

/**
 * Serves one go command. The caller has already written the handshake line.
 *
 * @param config The parsed configuration.
 * @param log Where logs go (stderr).
 * @returns The exit status.
 */
export async function runDirect(config: Config, log: Logger): Promise<number> {
  const metrics = new Metrics();
  const stack = await openCacheStack(config, { log, metrics });
  const stdout = stdoutWritable();
  let status = 0;
  try {
    const result = await serve(Deno.stdin.readable, stdout, stack.handler, {
      handshake: false,
      maxRequests: config.concurrency,
      metrics,
      trace: log.trace(DEBUG_BUILD_CACHE),
    });
    log.info(result.closed ? "go sent close" : "input ended without close");
  } catch (error) {
    log.warn(`error: ${error instanceof Error ? error.message : String(error)}`);
    status = 1;
  }
  await stack.shutdown();
  // go waits for stdout to close, not for this process: release it before pruning.
  await stdout.close().catch(() => {});
  if (status === 0) await pruneIfDue(stack.local, config, log).catch(() => {});
  if (config.metrics || config.verbose) log.warn(`metrics ${JSON.stringify(metrics.counters())}`);
  return status;
}

/**
 * Standard output as a stream whose writes are direct system calls. go waits for every reply, and
 * `Deno.stdout.writable` sends each write through the runtime's blocking thread pool; a reply is
 * a few hundred bytes that a pipe takes at once. Closing it closes file descriptor 1, which is
 * what tells go the session is over.
 */
function stdoutWritable(): WritableStream<Uint8Array> {
  return new WritableStream({
    write(chunk) {
      let offset = 0;
      while (offset < chunk.length) offset += Deno.stdout.writeSync(chunk.subarray(offset));
    },
    close() {
      Deno.stdout.close();
    },
  });
}
