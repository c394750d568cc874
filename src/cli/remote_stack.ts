/**
 * Wires the remote tier: the store `--bucket` names (`openStore`) and a {@linkcode TieredCache}
 * over the local tier. Imported by `stack.ts` only when `--bucket` is set, after the handshake;
 * a store's SDK loads on its first remote call, so a slow or unreachable store never delays the
 * first reply.
 *
 * The trust tiers (`--read-prefixes`, `--read-only`) are one {@linkcode ReadThroughStore} for the
 * build cache and one under `module/` for the module proxy, on one client and connection.
 *
 * @module
 */

import { BREAKER_FILE } from "../cache/dir_layout.ts";
import type { LocalCache } from "../cache/local.ts";
import { TieredCache, type TieredWarmOptions, warmKeyHash } from "../cache/remote/mod.ts";
import {
  describeStore,
  openStore,
  ReadThroughStore,
  STORE_NAMES,
  storeScope,
  type StoreSpec,
} from "../store/mod.ts";
import type { Logger } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { DEBUG_S3 } from "../log/mod.ts";
import { errorMessage } from "../util/mod.ts";
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
export async function openRemoteStack(
  local: LocalCache,
  config: Config,
  options: { log: Logger; metrics: Metrics },
): Promise<CacheStack> {
  const { log, metrics } = options;
  const spec = config.store!;
  const bucket = openStore(spec, {
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
  const revproxyStore = new ReadThroughStore(own.withPrefix("revproxy"), {
    readStores: reads.map((read) => read.withPrefix("revproxy")),
    readOnly: config.readOnly,
  });
  const handler = new TieredCache(local, store, {
    minUploadSize: config.minUploadSize,
    uploadConcurrency: config.s3Concurrency,
    // Direct mode starts a process per go command: what one learns about a failing bucket is
    // shared through the cache directory, so the next one does not pay the same deadlines.
    breakerFile: `${local.root}/${BREAKER_FILE}`,
    breakerScope: storeScope(spec),
    storeName: STORE_NAMES[spec.kind],
    log,
    metrics,
    warm: await warmOptions(config, spec, log),
  });
  containStrayErrors(log, metrics);
  // Uploads an earlier session owed (s3-pending/), queued in the background; never when
  // read-only (the directory is not even read). Started now, not on a timer: a direct-mode
  // session blocks on go's reads while the tier is idle, and a timer could wait past the build.
  if (!config.readOnly) void handler.resumePending().catch(() => {});
  log.info(
    `remote tier: ${describeStore(spec)}` +
      (config.prefix ? ` prefix ${JSON.stringify(config.prefix)}` : "") +
      (readPrefixes.length > 0
        ? ` read prefixes ${readPrefixes.map((p) => JSON.stringify(p || "/")).join(", ")}`
        : ""),
  );
  if (config.readOnly) {
    log.info(
      "remote tier is read-only (--read-only): nothing is written to the bucket; puts stay local " +
        "and owed uploads are neither sent nor recorded",
    );
  }
  // The warm-up starts at the tier's first local miss (see TieredCache.get): a warm machine
  // never fetches its manifest; a server warms once for all connections.
  if (config.command === "serve") {
    const stopManifests = handler.writeManifestEvery();
    return {
      handler,
      local,
      idle: () => handler.idle,
      shutdown: async () => {
        stopManifests();
        handler.stopWarmUp();
        await handler.close();
        await handler.finishSession();
      },
      moduleStore,
      revproxyStore,
    };
  }
  return {
    handler,
    local,
    idle: () => handler.idle,
    // Direct mode: go waits for close (uploads), and the manifest is written after stdout closes.
    shutdown: () => handler.close(),
    finish: async () => {
      handler.stopWarmUp();
      await handler.finishSession();
    },
    moduleStore,
    revproxyStore,
  };
}

/**
 * The warm-up settings: the warm key as given, or derived from the working directory (the go
 * command's, in direct mode) for `auto`, the default; `off` or "" turns the warm-up off.
 */
async function warmOptions(
  config: Config,
  spec: StoreSpec,
  log: Logger,
): Promise<TieredWarmOptions | undefined> {
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
    // S3's scope keeps its earlier spelling, so local manifest copies stay valid.
    scope: JSON.stringify(
      spec.kind === "s3"
        ? [spec.endpoint, spec.bucket, config.prefix]
        : [storeScope(spec), config.prefix],
    ),
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
    log.info(`ignored a stray error: ${errorMessage(error)}`);
  };
  globalThis.addEventListener("unhandledrejection", (e) => contain(e, e.reason));
  globalThis.addEventListener("error", (e) => contain(e, e.error));
}
