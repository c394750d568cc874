/**
 * Builds the cache a session serves from the configuration: the local tier
 * ({@linkcode openLocalTier}, which owns its fallback directory, lock and upkeep), and the remote
 * tier on top of it when `--bucket` is set. The remote code is imported only then, and only after
 * the handshake has been written.
 *
 * @module
 */

import { openLocalTier } from "../cache/local_tier.ts";
import type { Logger } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import type { CacheStack } from "./cache_stack.ts";
import type { Config } from "./config.ts";

export type { CacheStack } from "./cache_stack.ts";

/** Options for {@linkcode openCacheStack}. */
export interface OpenStackOptions {
  /** Where logs go. */
  log: Logger;
  /** The registry the tiers count in. */
  metrics: Metrics;
  /**
   * A long-lived server: with `--max-size`, trim as writes add bytes, rather than only after the
   * session (direct mode); and sweep on a timer.
   * @default {false}
   */
  serving?: boolean;
  /** Outputs a trim must keep whatever their age: handed out in a running session. @default none */
  inUse?: (outputId: string) => boolean;
  /**
   * Action records to keep in memory (a long-lived server), so hits read no record file.
   * @default {0}
   */
  rememberActions?: number;
}

/**
 * Opens the local tier and, with a bucket, the remote tier.
 *
 * @param config The parsed configuration.
 * @param options Logger, metrics and the server's settings.
 * @returns The stack.
 */
export async function openCacheStack(
  config: Config,
  options: OpenStackOptions,
): Promise<CacheStack> {
  const { log } = options;
  const tier = await openLocalTier(config.cacheDir, {
    expiryMs: config.expiryMs,
    maxSize: config.maxSize,
    source: config.cacheDirSource,
    serving: options.serving,
    inUse: options.inUse,
    rememberActions: options.rememberActions,
    log,
  });
  const { local } = tier;
  if (!config.bucket) {
    log.info("no --bucket: serving the local tier alone");
    return { handler: local, local, shutdown: () => tier.close() };
  }
  const { openRemoteStack } = await import("./remote_stack.ts");
  const stack = await openRemoteStack(local, config, options);
  return {
    ...stack,
    shutdown: async () => {
      await stack.shutdown();
      await tier.close();
    },
  };
}
