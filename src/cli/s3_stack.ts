/**
 * Wires the S3 tier: an {@linkcode AwsObjectStore} on the configured bucket and a
 * {@linkcode TieredCache} over the local tier. Imported by `stack.ts` only when `--bucket` is set,
 * after the handshake; the SDK itself loads on the first remote call, so a slow or unreachable S3
 * never delays the first reply.
 *
 * The trust tiers (`--read-prefixes`, `--read-only`) are one {@linkcode ReadThroughStore} for the
 * build cache and one under `module/` for the module proxy, on one client and connection.
 *
 * @module
 */

import type { LocalCache } from "../cache/local.ts";
import {
  AwsObjectStore,
  ReadThroughStore,
  TieredCache,
  type TieredWarmOptions,
  warmKeyHash,
} from "../cache/s3/mod.ts";
import type { Logger } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { DEBUG_S3 } from "../log/mod.ts";
import type { Config } from "./config.ts";
import type { CacheStack } from "./cache_stack.ts";

/**
 * Opens the S3 tier over `local`. Bad configuration does not fail here: the first remote call
 * reports it in one line on stderr and the local tier keeps serving.
 *
 * @param local The local tier.
 * @param config Bucket, prefix, read prefixes, read-only mode, region, endpoint, path style,
 * upload policy.
 * @param options Logger and metrics.
 * @returns The stack; `moduleStore` holds keys under `[prefix/]module/`, reading through
 * `<read prefix>/module/` (the module proxy puts its own breaker and upload queue in front of it,
 * see `src/modproxy/store.ts`).
 */
export async function openS3Stack(
  local: LocalCache,
  config: Config,
  options: { log: Logger; metrics: Metrics },
): Promise<CacheStack> {
  const { log, metrics } = options;
  const bucket = new AwsObjectStore({
    bucket: config.bucket,
    region: config.region,
    endpoint: config.endpoint,
    pathStyle: config.pathStyle,
    observe: (name, seconds) => metrics.observe(name, seconds),
    trace: log.trace(DEBUG_S3),
  });
  const readPrefixes = readPrefixesOf(config);
  const own = bucket.withPrefix(config.prefix);
  const reads = readPrefixes.map((prefix) => bucket.withPrefix(prefix));
  const store = new ReadThroughStore(own, { readStores: reads, readOnly: config.readOnly });
  const moduleStore = new ReadThroughStore(own.withPrefix("module"), {
    readStores: reads.map((read) => read.withPrefix("module")),
    readOnly: config.readOnly,
  });
  const handler = new TieredCache(local, store, {
    minUploadSize: config.minUploadSize,
    uploadConcurrency: config.s3Concurrency,
    // Direct mode starts a process per go command: what one learns about a failing bucket is
    // shared through the cache directory, so the next one does not pay the same deadlines.
    breakerFile: `${local.root}/s3-breaker`,
    breakerScope: `${config.endpoint || "aws"} ${config.bucket}`,
    log,
    metrics,
    warm: await warmOptions(config, log),
  });
  describe(metrics);
  containStrayErrors(log, metrics);
  // Uploads an earlier session owed (s3-pending/), queued in the background once set up; never
  // when read-only (the directory is not even read).
  if (!config.readOnly) setTimeout(() => void handler.resumePending().catch(() => {}), 0);
  log.info(
    `S3 tier: bucket ${JSON.stringify(config.bucket)}` +
      (config.prefix ? ` prefix ${JSON.stringify(config.prefix)}` : "") +
      (readPrefixes.length > 0
        ? ` read prefixes ${readPrefixes.map((p) => JSON.stringify(p || "/")).join(", ")}`
        : "") +
      (config.region ? ` region ${config.region}` : " (region looked up on first use)") +
      (config.endpoint ? ` endpoint ${config.endpoint}` : ""),
  );
  if (config.readOnly) {
    log.info(
      "S3 tier is read-only (--read-only): nothing is written to the bucket; puts stay local " +
        "and owed uploads are neither sent nor recorded",
    );
  }
  // The warm-up runs in the background from now on; a server warms once for all connections.
  setTimeout(() => void handler.startWarmUp(), 0);
  if (config.command === "serve") {
    // A server writes its manifest when something changed, every minute and at shutdown.
    const timer = setInterval(() => {
      if (handler.warmChanged) void handler.finishSession();
    }, MANIFEST_EVERY_MS);
    Deno.unrefTimer(timer);
    return {
      handler,
      local,
      shutdown: async () => {
        clearInterval(timer);
        handler.stopWarmUp();
        await handler.close();
        await handler.finishSession();
      },
      moduleStore,
    };
  }
  return {
    handler,
    local,
    // Direct mode: go waits for close (uploads), and the manifest is written after stdout closes.
    shutdown: () => handler.close(),
    finish: async () => {
      handler.stopWarmUp();
      await handler.finishSession();
    },
    moduleStore,
  };
}

/** How often a server writes its warm-up manifest when entries were used. */
const MANIFEST_EVERY_MS = 60_000;

/**
 * The warm-up settings: the warm key as given, or derived from the working directory (the go
 * command's, in direct mode) for `auto`, the default; `off` or "" turns the warm-up off.
 */
async function warmOptions(config: Config, log: Logger): Promise<TieredWarmOptions | undefined> {
  let key = config.warmKey;
  if (key === "" || key === "off") return undefined;
  if (key === "auto") {
    try {
      key = `dir:${Deno.cwd()}`;
    } catch {
      return undefined;
    }
  }
  const keyHash = await warmKeyHash(key);
  log.info(`warm key ${JSON.stringify(key)} (warm/${keyHash}/)`);
  return {
    key,
    keyHash,
    scope: JSON.stringify([config.endpoint, config.bucket, config.prefix]),
    maxBytes: config.warmBytes,
    concurrency: config.warmConcurrency,
  };
}

/**
 * The read prefixes in lookup order: slashes trimmed (`/` alone names the bucket's root), each
 * once, and never the own prefix, which is always looked up first.
 */
function readPrefixesOf(config: Config): string[] {
  const seen = new Set([config.prefix]);
  const prefixes: string[] = [];
  for (const raw of config.readPrefixes) {
    const prefix = raw.replace(/^\/+|\/+$/g, "");
    if (seen.has(prefix)) continue;
    seen.add(prefix);
    prefixes.push(prefix);
  }
  return prefixes;
}

/**
 * The SDK runs on Node-style streams and sockets; an error one of them raises with nobody
 * listening would end the process and fail the build. The S3 tier must never do that, so such
 * errors are logged (with `-v`) and counted as `s3_uncaught` instead.
 */
function containStrayErrors(log: Logger, metrics: Metrics): void {
  const contain = (event: Event, error: unknown) => {
    event.preventDefault();
    metrics.add("s3_uncaught");
    log.info(`ignored a stray error: ${error instanceof Error ? error.message : String(error)}`);
  };
  globalThis.addEventListener("unhandledrejection", (e) => contain(e, e.reason));
  globalThis.addEventListener("error", (e) => contain(e, e.error));
}

function describe(metrics: Metrics): void {
  const help: Record<string, string> = {
    "local_hits": "Gets answered by the local tier",
    "s3_get_hits": "Gets answered from S3 after a local miss",
    "s3_get_misses": "Gets that missed in S3 too",
    "s3_get_errors": "Remote lookups that failed (answered as misses)",
    "s3_get_skipped": "Remote lookups not made because the S3 tier was paused or disabled",
    "s3_get_collapsed": "Gets that joined a lookup of the same action already in flight",
    "s3_read_prefix_hits":
      "Gets answered from a --read-prefixes prefix after a miss under --prefix",
    "s3_corrupt": "Remote entries rejected: malformed action record or SHA-256 mismatch",
    "s3_too_slow": "Remote downloads given up on: slower than the throughput floor (1 MiB/s)",
    "s3_get_sluggish": "Remote lookups answered, but too slowly (counted toward the breaker)",
    "s3_bytes_down": "Output bytes fetched from S3",
    "s3_bytes_up": "Bytes uploaded to S3 (objects and action records)",
    "s3_wait_ms": "Milliseconds gets spent waiting on S3",
    "uploads_done": "Entries whose action record reached S3",
    "uploads_skipped": "Objects not sent: already in the bucket, or below --min-upload-size",
    "uploads_small": "Outputs below --min-upload-size kept local",
    "uploads_skipped_read_only": "Puts kept local because the S3 tier is read-only",
    "uploads_failed": "Uploads that failed or were dropped while S3 was paused",
    "uploads_left": "Uploads still pending when the wait at close ran out",
    "uploads_resumed": "Uploads an earlier session left undone, queued again",
    "s3_breaker_trips": "Times the S3 circuit breaker opened",
    "s3_breaker_open": "1 while the S3 tier is paused or disabled",
    "s3_breaker_shared": "1 when the session found the S3 tier paused by an earlier session",
    "s3_request_seconds": "Latency of S3 requests",
    "warm_entries": "Entries the warm-up wrote to the local tier (outputs verified)",
    "warm_bytes": "Bytes the warm-up fetched (outputs and packs)",
    "warm_hits": "Gets answered from the warm-up: filled ahead, or joined its fetch",
    "warm_jumped": "Gets for a manifest entry not fetched yet, fetched at once (no action GET)",
    "warm_hedged": "Gets that waited on a warm-up fetch past 150 ms and also looked up themselves",
    "warm_manifest_skipped": "Sessions that wrote no manifest: nothing new since the last one",
    "warm_wasted_bytes": "Bytes the warm-up fetched that go never asked for this session",
    "warm_ms": "Milliseconds the warm-up ran",
    "warm_requests": "S3 requests the warm-up made (manifest, packs, outputs)",
    "warm_manifest_writes": "Warm-up manifests written to S3",
    "warm_manifest_entries": "Entries in the last manifest written",
    "warm_manifest_errors": "Warm-up manifests that could not be written",
    "warm_manifest_corrupt": "Warm-up manifests ignored: not gzip JSON of version 1",
    "warm_packs_written": "Packs of small outputs written to S3",
    "s3_uncaught": "Stray errors from the S3 client contained instead of ending the process",
    "modproxy_store_skipped": "Module fills that skipped S3 because its breaker was open",
    "modproxy_store_breaker_trips": "Times the module proxy's S3 circuit breaker opened",
    "modproxy_store_breaker_open": "1 while the module proxy's S3 tier is paused or disabled",
    "modproxy_store_bytes_up": "Module file bytes uploaded to S3",
    "modproxy_store_read_prefix_hits": "Module fills from a --read-prefixes prefix",
    "modproxy_store_uploads_skipped_read_only":
      "Module files not uploaded because the S3 tier is read-only",
    "modproxy_store_uploads_left": "Module uploads still pending when the wait at close ran out",
    "modproxy_store_uploads_resumed": "Module uploads an earlier session left undone, queued again",
  };
  for (const [name, text] of Object.entries(help)) metrics.describe(name, text);
}
