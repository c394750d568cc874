/**
 * The local tier as a process opens and keeps it: {@linkcode openLocalTier} opens the cache
 * directory (or its fallback directory when it cannot be created), takes the session lock that
 * `clean` looks at, and in a server sweeps on a timer; {@linkcode pruneIfDue} and
 * {@linkcode schedulePrunes} run the upkeep `--expiry` and `--max-size` ask for, each at most as
 * often as its marker in the directory allows.
 *
 * With `--max-size` the tier is kept under the cap by removing the least recently used outputs
 * and their action records (`_upkeep.ts`): in a server as writes add bytes and on a timer, never
 * touching what a running session was handed; in direct mode only after go has its last reply.
 * Hits then refresh an output's mtime at least every five minutes, so the hour-long grace of a
 * trim covers every file another process handed out.
 *
 * A cache directory that refuses writes (full, read-only, no permission) keeps serving what it
 * holds while puts go to its fallback directory in the system temp directory (`fallback.ts`);
 * one that cannot be created is replaced by that fallback directory. Either way it is the same
 * directory in every process, kept under a byte cap.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { FILE_MODE, reason } from "../util/files.ts";
import { errorMessage } from "../util/mod.ts";
import { PRUNE_MARKER, SWEEP_MARKER } from "./dir_layout.ts";
import { holdSessionLock } from "./dir_locks.ts";
import { FALLBACK_MAX_BYTES, fallbackDir, systemFallback } from "./fallback.ts";
import { LocalCache } from "./local.ts";

/** The upkeep settings: `--expiry` and `--max-size`. */
export interface UpkeepPolicy {
  /** Prune entries not used within this period; 0 never prunes by age. */
  expiryMs: number;
  /** Keep the tier under this many bytes; 0 sets no cap. */
  maxSize: number;
}

/** Options for {@linkcode openLocalTier}. */
export interface LocalTierOptions extends UpkeepPolicy {
  /** Where logs go. */
  log: Logger;
  /** How the directory was chosen (flag, variable, default), for the log line. @default none */
  source?: string;
  /**
   * A long-lived server: with `--max-size`, trim as writes add bytes, rather than only when
   * {@linkcode pruneIfDue} is called after the session (direct mode); and sweep on a timer.
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

/** An open local tier; {@linkcode LocalTier.close} stops its sweeps and releases its lock. */
export interface LocalTier {
  /** The cache. */
  local: LocalCache;
  /** Stops the sweeps (waiting for a running one) and releases the session lock. */
  close(): Promise<void>;
}

/** How often hits refresh an output's mtime when `--max-size` is set. */
const CAPPED_TOUCH_MS = 300_000;

/**
 * Opens the local tier. Writes the cache directory refuses go to its fallback directory; a cache
 * directory that cannot be created is replaced by it.
 *
 * @param cacheDir The cache directory.
 * @param options Upkeep policy, logger, and the server's settings.
 * @returns The tier.
 */
export async function openLocalTier(
  cacheDir: string,
  options: LocalTierOptions,
): Promise<LocalTier> {
  const { log } = options;
  let touchAfterMs = options.expiryMs > 0 ? Math.min(3_600_000, options.expiryMs / 4) : undefined;
  if (options.maxSize > 0) touchAfterMs = Math.min(touchAfterMs ?? Infinity, CAPPED_TOUCH_MS);
  let local: LocalCache;
  try {
    local = await LocalCache.open(cacheDir, {
      touchAfterMs,
      fallback: systemFallback(cacheDir),
      maxBytes: options.maxSize > 0 ? options.maxSize : undefined,
      trimPolicy: {
        countRecords: true,
        onWrite: options.serving ?? false,
        inUse: options.inUse,
      },
      rememberActions: options.rememberActions,
      log,
    });
    log.info(`local cache at ${cacheDir}${options.source ? ` (${options.source})` : ""}`);
  } catch (error) {
    local = await openInstead(cacheDir, error, { touchAfterMs, log });
  }
  // While a session holds it, `clean` keeps what the session may still read (dir_locks.ts).
  const releaseLock = await holdSessionLock(local.root);
  // A server sweeps on a timer; a go command's process sweeps after its last reply (pruneIfDue),
  // and arming a timer it would unref loads the runtime's node:timers (milliseconds, before the
  // first reply).
  const sweeps = options.serving ? scheduleSweeps(local, log) : () => Promise.resolve();
  return {
    local,
    close: async () => {
      await sweeps();
      releaseLock();
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
    touchAfterMs: Math.min(options.touchAfterMs ?? Infinity, CAPPED_TOUCH_MS),
    maxBytes: FALLBACK_MAX_BYTES,
    log,
  });
}

/**
 * The local tier's upkeep: with `--expiry`, prunes entries not used within the period, at most
 * about once per quarter period, so frequent short go commands do not each walk the whole
 * directory; without it, removes the temporary files killed writers left behind (at most once a
 * day; see {@linkcode sweepIfDue}). With `--max-size`, then trims to the cap when due (see
 * {@linkcode LocalCache.trimIfDue}). Direct mode calls it after go has its last reply, a server
 * on a timer ({@linkcode schedulePrunes}).
 *
 * @param local The local tier.
 * @param policy `expiryMs` and `maxSize`.
 * @param log Where to report what was removed.
 */
export async function pruneIfDue(
  local: LocalCache,
  policy: UpkeepPolicy,
  log: Logger,
): Promise<void> {
  if (policy.expiryMs > 0) await pruneByAge(local, policy.expiryMs, log);
  else await sweepIfDue(local, log);
  // The trim logs what it removed (-v).
  if (policy.maxSize > 0) await local.trimIfDue();
}

/** The period a prune by age waits for after the last one (the `.last-prune` marker). */
function pruneEveryMs(expiryMs: number): number {
  return Math.min(expiryMs / 4, 3_600_000);
}

async function pruneByAge(local: LocalCache, expiryMs: number, log: Logger): Promise<void> {
  const marker = `${local.root}/${PRUNE_MARKER}`;
  if (await markedWithin(marker, pruneEveryMs(expiryMs))) return;
  await Deno.writeTextFile(marker, new Date().toISOString(), { mode: FILE_MODE });
  const started = performance.now();
  const result = await local.prune(expiryMs);
  log.info(
    `pruned ${result.actions} actions and ${result.outputs} outputs (${result.bytes} bytes) ` +
      (result.temps > 0 ? `and ${result.temps} stale temporary files ` : "") +
      `in ${(performance.now() - started).toFixed(0)}ms`,
  );
}

/** With `--max-size`, how often a server looks whether a trim is due. */
const TRIM_CHECK_MS = 300_000;

/**
 * In a server, {@linkcode pruneIfDue} now and on a timer: twice per prune period with
 * `--expiry`, and every five minutes with `--max-size` (a trim is due when no process trimmed
 * for ten minutes; writes start one sooner). Does nothing when neither is set.
 *
 * @param local The local tier.
 * @param policy `expiryMs` and `maxSize`.
 * @param log Where to report what was removed, or why it could not be.
 * @returns Stops the timer; the promise it returns settles when a running prune ends.
 */
export function schedulePrunes(
  local: LocalCache,
  policy: UpkeepPolicy,
  log: Logger,
): () => Promise<void> {
  if (policy.expiryMs <= 0 && policy.maxSize <= 0) return () => Promise.resolve();
  let pruning: Promise<void> | undefined;
  const prune = () => {
    pruning ??= pruneIfDue(local, policy, log)
      .catch((error) => log.warn(`Cannot prune the local tier: ${errorMessage(error)}`))
      .finally(() => pruning = undefined);
  };
  prune();
  const pruneEvery = policy.expiryMs > 0
    ? Math.max(1000, pruneEveryMs(policy.expiryMs) / 2)
    : Infinity;
  const timer = setInterval(
    prune,
    Math.min(pruneEvery, policy.maxSize > 0 ? TRIM_CHECK_MS : Infinity),
  );
  return async () => {
    clearInterval(timer);
    await pruning;
  };
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
  const marker = `${local.root}/${SWEEP_MARKER}`;
  if (await markedWithin(marker, SWEEP_EVERY_MS)) return;
  try {
    await Deno.writeTextFile(marker, new Date().toISOString(), { mode: FILE_MODE });
  } catch {
    return; // a directory that takes no writes has nothing a writer left
  }
  const removed = await local.sweepTemps();
  if (removed > 0) log.info(`removed ${removed} stale temporary files from ${local.root}`);
}

/** Whether a marker's mtime is within the last `ms`; a missing marker never is. */
async function markedWithin(marker: string, ms: number): Promise<boolean> {
  try {
    const info = await Deno.stat(marker);
    return Date.now() - (info.mtime?.getTime() ?? 0) < ms;
  } catch {
    return false; // never done
  }
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

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
