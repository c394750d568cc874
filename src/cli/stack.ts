/**
 * Builds the cache a session serves from the configuration: the local tier, and the S3 tier on
 * top of it when `--bucket` is set. The S3 code (and its SDK) is imported only then, and only
 * after the handshake has been written.
 *
 * @module
 */

import { LocalCache } from "../cache/local.ts";
import type { Logger } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import type { CacheHandler } from "../protocol/mod.ts";
import type { ObjectStore } from "../cache/s3/object_store.ts";
import type { Config } from "./config.ts";

/** The cache a process serves, with its end-of-life hooks. */
export interface CacheStack {
  /** What protocol sessions call. */
  handler: CacheHandler;
  /** The local tier underneath. */
  local: LocalCache;
  /** Waits (bounded) for background work such as uploads; called once at exit. */
  shutdown(): Promise<void>;
  /** With a bucket: the store under `[prefix/]module/`, for the module proxy. */
  moduleStore?: ObjectStore;
}

/**
 * Opens the local tier (falling back to a temporary directory when the configured one cannot be
 * used, so the build still gets a cache) and, with a bucket, the S3 tier.
 *
 * @param config The parsed configuration.
 * @param options Logger and metrics.
 * @returns The stack.
 */
export async function openCacheStack(
  config: Config,
  options: { log: Logger; metrics: Metrics },
): Promise<CacheStack> {
  const { log } = options;
  const touchAfterMs = config.expiryMs > 0 ? Math.min(3_600_000, config.expiryMs / 4) : undefined;
  let local: LocalCache;
  try {
    local = await LocalCache.open(config.cacheDir, { touchAfterMs });
    log.info(`local cache at ${config.cacheDir} (${config.cacheDirSource})`);
  } catch (error) {
    const fallback = await Deno.makeTempDir({ prefix: "go-cache-plugin-" });
    log.warn(
      `cannot use cache directory ${JSON.stringify(config.cacheDir)} (${
        message(error)
      }); using ${fallback}`,
    );
    local = await LocalCache.open(fallback, { touchAfterMs });
  }
  if (!config.bucket) {
    log.info("no --bucket: serving the local tier alone");
    return { handler: local, local, shutdown: () => Promise.resolve() };
  }
  const { openS3Stack } = await import("./s3_stack.ts");
  return openS3Stack(local, config, options);
}

/**
 * Prunes the local tier when `--expiry` is set, at most about once per quarter period, so
 * frequent short go commands do not each walk the whole directory.
 *
 * @param local The local tier.
 * @param config `expiryMs` and the logger's verbosity.
 * @param log Where to report what was removed.
 */
export async function pruneIfDue(local: LocalCache, config: Config, log: Logger): Promise<void> {
  if (config.expiryMs <= 0) return;
  const marker = `${local.root}/.last-prune`;
  try {
    const info = await Deno.stat(marker);
    if (Date.now() - (info.mtime?.getTime() ?? 0) < Math.min(config.expiryMs / 4, 3_600_000)) {
      return;
    }
  } catch {
    // never pruned
  }
  await Deno.writeTextFile(marker, new Date().toISOString());
  const started = performance.now();
  const result = await local.prune(config.expiryMs);
  log.info(
    `pruned ${result.actions} actions and ${result.outputs} outputs (${result.bytes} bytes) ` +
      `in ${(performance.now() - started).toFixed(0)}ms`,
  );
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
