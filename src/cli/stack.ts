/**
 * Builds the cache a session serves from the configuration: the local tier, and the S3 tier on
 * top of it when `--bucket` is set. The S3 code (and its SDK) is imported only then, and only
 * after the handshake has been written.
 *
 * With `--max-size` the local tier is kept under the cap by removing the least recently used
 * outputs and their action records (`cache/_upkeep.ts`): in `serve` as writes add bytes and on a
 * timer, never touching what a running session was handed; in direct mode only after go has its
 * last reply ({@linkcode pruneIfDue}). Hits then refresh an output's mtime at least every five
 * minutes, so the hour-long grace of a trim covers every file another process handed out.
 *
 * A cache directory that refuses writes (full, read-only, no permission) keeps serving what it
 * holds while puts go to its fallback directory in the system temp directory (see
 * `cache/fallback.ts`); one that cannot be created is replaced by that fallback directory. Either
 * way it is the same directory in every process, kept under a byte cap.
 *
 * @module
 */

import { FALLBACK_MAX_BYTES, fallbackDir, systemFallback } from "../cache/fallback.ts";
import { LocalCache } from "../cache/local.ts";
import type { Logger } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import type { CacheStack } from "./cache_stack.ts";
import type { Config } from "./config.ts";
import { holdSessionLock } from "./_dir_locks.ts";

export type { CacheStack } from "./cache_stack.ts";

/** Options for {@linkcode openCacheStack}. */
export interface OpenStackOptions {
  /** Where logs go. */
  log: Logger;
  /** The registry the tiers count in. */
  metrics: Metrics;
  /**
   * With `--max-size`: trim as writes add bytes (a server), rather than only when
   * {@linkcode pruneIfDue} is called after the session (direct mode).
   * @default {false}
   */
  trimWhileServing?: boolean;
  /** Outputs a trim must keep whatever their age: handed out in a running session. @default none */
  inUse?: (outputId: string) => boolean;
  /**
   * Action records to keep in memory (a long-lived server), so hits read no record file.
   * @default {0}
   */
  rememberActions?: number;
}

/** How often hits refresh an output's mtime when `--max-size` is set. */
const CAPPED_TOUCH_MS = 300_000;

/**
 * Opens the local tier and, with a bucket, the S3 tier. Writes the cache directory refuses go to
 * its fallback directory; a cache directory that cannot be created is replaced by it.
 *
 * @param config The parsed configuration.
 * @param options Logger and metrics.
 * @returns The stack.
 */
export async function openCacheStack(
  config: Config,
  options: OpenStackOptions,
): Promise<CacheStack> {
  const { log } = options;
  let touchAfterMs = config.expiryMs > 0 ? Math.min(3_600_000, config.expiryMs / 4) : undefined;
  if (config.maxSize > 0) touchAfterMs = Math.min(touchAfterMs ?? Infinity, CAPPED_TOUCH_MS);
  let local: LocalCache;
  try {
    local = await LocalCache.open(config.cacheDir, {
      touchAfterMs,
      fallback: systemFallback(config.cacheDir),
      maxBytes: config.maxSize > 0 ? config.maxSize : undefined,
      trimPolicy: {
        countRecords: true,
        onWrite: options.trimWhileServing ?? false,
        inUse: options.inUse,
      },
      rememberActions: options.rememberActions,
      log,
    });
    log.info(`local cache at ${config.cacheDir} (${config.cacheDirSource})`);
  } catch (error) {
    local = await openInstead(config.cacheDir, error, { touchAfterMs, log });
  }
  // While a session holds it, `clean` keeps what the session may still read (_dir_locks.ts).
  const releaseLock = await holdSessionLock(local.root);
  // A server sweeps on a timer; a go command's process sweeps after its last reply (pruneIfDue),
  // and arming a timer it would unref loads the runtime's node:timers (milliseconds, before the
  // first reply).
  const sweeps = options.trimWhileServing ? scheduleSweeps(local, log) : () => Promise.resolve();
  const stopSweeps = async () => {
    await sweeps();
    releaseLock();
  };
  if (!config.bucket) {
    log.info("no --bucket: serving the local tier alone");
    return { handler: local, local, shutdown: stopSweeps };
  }
  const { openRemoteStack } = await import("./remote_stack.ts");
  const stack = await openRemoteStack(local, config, options);
  return {
    ...stack,
    shutdown: async () => {
      await stack.shutdown();
      await stopSweeps();
    },
  };
}

/** The cache directory cannot be created: its fallback directory, else a fresh temporary one. */
async function openInstead(
  cacheDir: string,
  error: unknown,
  options: { touchAfterMs?: number; log: Logger },
): Promise<LocalCache> {
  const { log } = options;
  const why = `Cannot use cache directory ${JSON.stringify(cacheDir)}: ${reason(error)}`;
  let dir: string;
  try {
    dir = fallbackDir(cacheDir, { create: true })!;
  } catch (cause) {
    // Its fallback is unusable too (someone else owns it): a private directory for this process.
    dir = await Deno.makeTempDir({ prefix: "go-cache-plugin-" });
    log.warn(`${why}; ${lowerFirst(reason(cause))}; using ${JSON.stringify(dir)} instead`);
    return await LocalCache.open(dir, { touchAfterMs: options.touchAfterMs, log });
  }
  log.warn(`${why}; using ${JSON.stringify(dir)} instead`);
  return await LocalCache.open(dir, {
    touchAfterMs: Math.min(options.touchAfterMs ?? Infinity, 300_000),
    maxBytes: FALLBACK_MAX_BYTES,
    log,
  });
}

/**
 * The local tier's upkeep: with `--expiry`, prunes entries not used within the period, at most
 * about once per quarter period, so frequent short go commands do not each walk the whole
 * directory; without it, removes the temporary files killed writers left behind (at most once a
 * day; see {@linkcode sweepIfDue}). With `--max-size`, then trims to the cap when due (see
 * {@linkcode LocalCache.trimIfDue}). Direct mode calls it after go has its last reply, `serve` on
 * a timer.
 *
 * @param local The local tier.
 * @param config `expiryMs`, `maxSize` and the logger's verbosity.
 * @param log Where to report what was removed.
 */
export async function pruneIfDue(local: LocalCache, config: Config, log: Logger): Promise<void> {
  if (config.expiryMs > 0) await pruneByAge(local, config, log);
  else await sweepIfDue(local, log);
  // The trim logs what it removed (-v).
  if (config.maxSize > 0) await local.trimIfDue();
}

async function pruneByAge(local: LocalCache, config: Config, log: Logger): Promise<void> {
  const marker = `${local.root}/.last-prune`;
  try {
    const info = await Deno.stat(marker);
    if (Date.now() - (info.mtime?.getTime() ?? 0) < Math.min(config.expiryMs / 4, 3_600_000)) {
      return;
    }
  } catch {
    // never pruned
  }
  await Deno.writeTextFile(marker, new Date().toISOString(), { mode: 0o600 }); // owner only
  const started = performance.now();
  const result = await local.prune(config.expiryMs);
  log.info(
    `pruned ${result.actions} actions and ${result.outputs} outputs (${result.bytes} bytes) ` +
      (result.temps > 0 ? `and ${result.temps} stale temporary files ` : "") +
      `in ${(performance.now() - started).toFixed(0)}ms`,
  );
}

/** How often any process sweeps a cache directory's stale temporary files. */
const SWEEP_EVERY_MS = 86_400_000;
/** A process that lives this long (a server, a long build) looks whether a sweep is due. */
const SWEEP_DELAY_MS = 60_000;
/** Then it looks again this often. */
const SWEEP_RECHECK_MS = 6 * 3_600_000;

/**
 * Removes the temporary files killed writers left in the local tier, when no process has done
 * so for a day (the `.last-sweep` marker). Files written to within the last hour are kept: a
 * live writer may still be writing them.
 *
 * @param local The local tier.
 * @param log Where to report what was removed (`-v`).
 */
export async function sweepIfDue(local: LocalCache, log: Logger): Promise<void> {
  const marker = `${local.root}/.last-sweep`;
  try {
    const info = await Deno.stat(marker);
    if (Date.now() - (info.mtime?.getTime() ?? 0) < SWEEP_EVERY_MS) return;
  } catch {
    // never swept
  }
  try {
    await Deno.writeTextFile(marker, new Date().toISOString(), { mode: 0o600 }); // owner only
  } catch {
    return; // a directory that takes no writes has nothing a writer left
  }
  const removed = await local.sweepTemps();
  if (removed > 0) log.info(`removed ${removed} stale temporary files from ${local.root}`);
}

/** In a long-lived process, {@linkcode sweepIfDue} off the request path; returns the stopper. */
function scheduleSweeps(local: LocalCache, log: Logger): () => Promise<void> {
  let running: Promise<void> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (delay: number) => {
    const armed = setTimeout(() => {
      running = sweepIfDue(local, log).catch(() => {}).finally(() => running = undefined);
      arm(SWEEP_RECHECK_MS);
    }, delay);
    Deno.unrefTimer(armed); // never what keeps a process alive
    timer = armed;
  };
  arm(SWEEP_DELAY_MS);
  return async () => {
    clearTimeout(timer);
    await running;
  };
}

function reason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/ \(os error \d+\).*$/s, "");
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
