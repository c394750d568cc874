/**
 * Direct mode: one plugin process per go command, speaking the protocol on stdin/stdout.
 *
 * @module
 */

import { DEBUG_BUILD_CACHE, type Logger } from "../log/mod.ts";
import { Metrics } from "../metrics/mod.ts";
import type { ByteSink, ByteSource } from "../protocol/io.ts";
import { serve } from "../protocol/server.ts";
import { errorMessage } from "../util/mod.ts";
import type { Config } from "./config.ts";
import { pruneIfDue } from "../cache/local_tier.ts";
import { openCacheStack } from "./stack.ts";

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
  let status = 0;
  try {
    const result = await serve(STDIN, STDOUT, stack.handler, {
      handshake: false,
      maxRequests: config.concurrency,
      metrics,
      trace: log.trace(DEBUG_BUILD_CACHE),
      // While nothing runs in the background, waiting for go's next request may block the
      // process: the fastest way back to a request once it is written.
      blockingReads: stack.idle ? () => stack.idle!() : true,
      // The cache tiers keep no put body once put() settles: free each at once.
      freePutBodies: true,
    });
    log.info(result.closed ? "go sent close" : "input ended without close");
  } catch (error) {
    log.warn(`error: ${errorMessage(error)}`);
    status = 1;
  }
  await stack.shutdown();
  // go waits for stdout to close, not for this process: release it before pruning.
  try {
    Deno.stdout.close();
  } catch {
    // already closed
  }
  await stack.finish?.();
  if (status === 0) await pruneIfDue(stack.local, config, log).catch(() => {});
  if (config.metrics || config.verbose) log.warn(`metrics ${JSON.stringify(metrics.counters())}`);
  return status;
}

/** Standard input read straight into the session's buffer, with a blocking form for idle waits. */
const STDIN: ByteSource = {
  read: (buffer) => Deno.stdin.read(buffer),
  readSync: (buffer) => Deno.stdin.readSync(buffer),
};

/**
 * Standard output written with direct system calls. go waits for every reply, and
 * `Deno.stdout.writable` sends each write through the runtime's blocking thread pool; a reply is
 * a few hundred bytes that a pipe takes at once. Closing file descriptor 1 is what tells go the
 * session is over.
 */
const STDOUT: ByteSink = {
  write(bytes) {
    let offset = 0;
    while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
  },
};
