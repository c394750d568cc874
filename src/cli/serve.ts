/**
 * `serve --plugin`: one long-lived process that many go commands share through `connect`. This
 * file wires the configuration to the server's parts (the plugin listener with its session log,
 * the HTTP side, the module proxy) and runs the lifecycle: open the cache stack, take the serve
 * lock of the cache directory (so `clean` refuses while it runs), listen, keep the local tier
 * pruned (`--expiry`) and under its cap (`--max-size`: as writes add bytes and on a timer,
 * never removing what a running session was handed), and on SIGINT/SIGTERM stop accepting, let
 * sessions finish (bounded), flush uploads (bounded) and exit 0.
 *
 * @example
 * ```ts ignore
 * // go-cache-plugin serve --plugin=5930 --http=127.0.0.1:5970
 * // GOCACHEPROG="go-cache-plugin connect 5930" go build ./...
 * ```
 *
 * @module
 */

import { DEBUG_BUILD_CACHE, DEBUG_REVPROXY, type Logger } from "../log/mod.ts";
import { collapsingLogger } from "../metrics/faults.ts";
import type { ServerMode } from "../server/summary.ts";
import { bucketUrl, describeStore, storeLocation } from "../store/spec.ts";
import { settledWithin, writeAll } from "../util/mod.ts";
import type { Config } from "./config.ts";
import { VERSION } from "./version.ts";
import { type CacheStack, openCacheStack, type OpenStackOptions } from "./stack.ts";
import { holdServeLock, type Release } from "../cache/dir_locks.ts";
import { MODULE_DIR, REVPROXY_DIR } from "../cache/dir_layout.ts";
import { schedulePrunes } from "../cache/local_tier.ts";

/** Options for {@linkcode runServer}. */
export interface ServerOptions {
  /** Aborting it shuts the server down. */
  signal: AbortSignal;
  /** Called once everything listens, with the addresses. @default none */
  onReady?(ready: { plugin: string; http?: string }): void;
  /** Opens the cache. @default {openCacheStack} */
  openStack?(config: Config, options: OpenStackOptions): Promise<CacheStack>;
  /** How long sessions may run on after the signal. @default {10000} */
  sessionGraceMs?: number;
  /** How long the upload flush may take. @default {120000} */
  flushTimeoutMs?: number;
}

/**
 * Runs `serve` until SIGINT or SIGTERM. A second signal exits at once with status 1.
 *
 * @param config The parsed configuration.
 * @param log Where logs go (stderr).
 * @returns The exit status.
 */
export async function runServe(config: Config, log: Logger): Promise<number> {
  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const onSignal = () => {
    if (controller.signal.aborted) {
      log.warn("second signal: exiting without waiting");
      Deno.exit(1);
    }
    log.warn("shutting down: no new sessions, waiting for running ones and uploads");
    controller.abort();
  };
  for (const name of signals) Deno.addSignalListener(name, onSignal);
  try {
    return await runServer(config, log, { signal: controller.signal });
  } finally {
    for (const name of signals) Deno.removeSignalListener(name, onSignal);
  }
}

/**
 * The `serve` lifecycle, stopped by a signal object instead of process signals (for tests).
 *
 * @param config The parsed configuration.
 * @param log Where logs go.
 * @param options The stop signal, a readiness callback, and bounds.
 * @returns The exit status: 0 after a clean shutdown.
 */
export async function runServer(
  config: Config,
  outerLog: Logger,
  options: ServerOptions,
): Promise<number> {
  const [{ PluginListener }, http, { GoCommands, SessionLog }] = await Promise.all([
    import("../server/listener.ts"),
    import("../server/http.ts"),
    import("../server/session_log.ts"),
  ]);
  // Faults are recorded with a count; a line about one object is logged once per shape.
  const faultLog = collapsingLogger(outerLog);
  const log: Logger = faultLog;
  const metrics = new http.ServerMetrics();
  const startedAt = Date.now();
  const sessions = new SessionLog({ metrics, commands: new GoCommands(config.serve.plugin) });
  const stack = await (options.openStack ?? openCacheStack)(config, {
    log,
    metrics,
    serving: true,
    // A server lives long: keep action records in memory (about 25 MB for 100k of them).
    rememberActions: 100_000,
    inUse: (outputId) => sessions.inUse(outputId),
  });
  const closers: (() => Promise<unknown>)[] = [];
  let stopPrunes: (() => Promise<void>) | undefined;
  let clean = false;
  let releaseServeLock: Release | undefined;
  try {
    releaseServeLock = await holdServeLock(
      stack.local.root,
      () => log.warn(`waiting for "clean" of ${stack.local.root} to finish`),
    );
    let modproxy:
      | { handle(request: Request): Promise<Response>; close(): Promise<void> }
      | undefined;
    if (config.serve.modproxy) {
      const { createModuleProxy, resolveUpstream } = await import("../modproxy/mod.ts");
      const upstream = await resolveUpstream(
        config.serve.upstream,
        (name: string) => Deno.env.get(name),
      );
      modproxy = await createModuleProxy({
        cacheDir: `${stack.local.root}/${MODULE_DIR}`,
        store: stack.moduleStore,
        upstream,
        sumdbs: config.serve.sumdb,
        metrics,
        log,
      });
      closers.push(() => modproxy!.close());
      log.info(`module proxy upstream: ${upstream}`);
    }
    let revproxy: Awaited<ReturnType<typeof import("../revproxy/mod.ts").openRevProxy>> | undefined;
    if (config.serve.revproxy.length > 0) {
      const { openRevProxy } = await import("../revproxy/mod.ts");
      revproxy = await openRevProxy({
        hosts: config.serve.revproxy,
        dir: `${stack.local.root}/${REVPROXY_DIR}`,
        store: stack.revproxyStore,
        allow: config.serve.revproxyAllow,
        env: (name) => {
          try {
            return Deno.env.get(name);
          } catch {
            return undefined; // not allowed: a build without the permission
          }
        },
        log,
        trace: log.trace(DEBUG_REVPROXY),
        metrics,
      });
      closers.push(() => revproxy!.close());
    }
    const listener = await PluginListener.listen(config.serve.plugin, {
      handler: stack.handler,
      maxRequests: config.concurrency,
      metrics,
      sessions,
      log,
      trace: log.trace(DEBUG_BUILD_CACHE),
    });
    closers.unshift(() => listener.drain(0));
    let httpServer: Awaited<ReturnType<typeof http.startHttpServer>> | undefined;
    if (config.serve.http) {
      const uploads = stack.handler as { pendingUploads?: unknown };
      const handler = http.createHttpHandler({
        metrics,
        modproxy,
        startedAt,
        sessions,
        refresh: () => {
          if (typeof uploads.pendingUploads === "number") {
            metrics.set("uploads_pending", uploads.pendingUploads);
          }
        },
        faults: faultLog.faults,
        status: {
          pluginAddress: listener.address,
          cacheDir: stack.local.root,
          bucket: config.bucket,
          modproxy: modproxy !== undefined,
          version: VERSION,
          maxSize: config.maxSize,
          mode: config.bucket ? modeOf(config) : undefined,
        },
      });
      if (revproxy) {
        // The proxy's front owns the --http address and hands everything else to the usual
        // server, which then listens on loopback only.
        const inner = await http.startHttpServer("127.0.0.1:0", handler, {
          log,
          // Its clients come through the front: local only when the front listens on loopback.
          clientsAreLocal: http.isLoopbackHost(http.parseHttpAddress(config.serve.http).hostname),
        });
        const front = await revproxy.listen(config.serve.http, inner.address);
        const shutdown = async () => {
          await front.shutdown();
          await inner.shutdown();
        };
        httpServer = {
          address: front.address,
          url: front.url,
          shutdown,
          [Symbol.asyncDispose]: shutdown,
        };
      } else {
        httpServer = await http.startHttpServer(config.serve.http, handler, { log });
      }
      closers.unshift(() => httpServer!.shutdown());
    }
    if (revproxy && httpServer) {
      log.warn(
        `caching proxy for ${
          config.serve.revproxy.join(", ")
        }: export HTTPS_PROXY=${httpServer.url} ` +
          `HTTP_PROXY=${httpServer.url}; trust its CA ${revproxy.caPath} ` +
          `(SSL_CERT_FILE, curl --cacert)` + (revproxy.caCreated ? " (new CA)" : ""),
      );
    }
    await announce(config, log, stack, {
      plugin: /^[1-9]\d*$/.test(config.serve.plugin) ? config.serve.plugin : listener.address,
      http: httpServer?.address,
    });
    options.onReady?.({ plugin: listener.address, http: httpServer?.address });

    stopPrunes = schedulePrunes(stack.local, config, log);

    await new Promise<void>((resolve) => {
      if (options.signal.aborted) resolve();
      options.signal.addEventListener("abort", () => resolve(), { once: true });
    });

    // Shutdown: stop accepting, let sessions finish, then flush what they stored.
    const prunesStopped = stopPrunes();
    listener.close();
    const cut = await listener.drain(options.sessionGraceMs ?? 10_000);
    if (cut > 0) log.warn(`cut off ${cut} running session(s); their go commands continue locally`);
    await httpServer?.shutdown();
    await modproxy?.close();
    await revproxy?.close();
    clean = true;
    const flushMs = options.flushTimeoutMs ?? 120_000;
    const flushed = await settledWithin(stack.shutdown(), flushMs);
    if (!flushed) log.warn(`uploads still pending after ${flushMs / 1000}s; exiting anyway`);
    await prunesStopped;
    await stack.local.idle();
    faultLog.flush();
    log.info("stopped");
    if (config.metrics || config.verbose) {
      log.warn(`metrics ${JSON.stringify(metrics.counters())}`);
    }
    return 0;
  } finally {
    void stopPrunes?.();
    releaseServeLock?.();
    if (!clean) {
      // A start-up failure: release what was opened, and flush what was stored.
      for (const close of closers) await close().catch(() => {});
      await settledWithin(stack.shutdown(), 10_000);
    }
  }
}

async function announce(
  config: Config,
  log: Logger,
  stack: CacheStack,
  where: { plugin: string; http?: string },
): Promise<void> {
  const httpUrl = where.http && `http://${where.http}`;
  const tier = config.store
    ? `local tier ${stack.local.root} + ${describeStore(config.store)}`
    : `the local tier alone at ${stack.local.root} (no --bucket: the remote tier is off)`;
  log.warn(`serving the build cache on ${where.plugin}: ${tier}`);
  if (httpUrl) {
    log.warn(`status page: ${httpUrl}/ (metrics: ${httpUrl}/metrics, ${httpUrl}/debug/vars)`);
  }
  // The lines first, then the log line that says they are there (tests wait for it). A closed
  // stdout must not stop the server: the lines are a convenience.
  await writeAll(Deno.stdout, new TextEncoder().encode(exportLines(config, where))).catch(() => {});
  log.warn(
    "point go at it: paste the export lines printed on stdout, or " +
      'eval "$(go-cache-plugin serve <the same flags> --print-env)"',
  );
}

/**
 * The shell lines that point go at a server started with `config`: `GOCACHEPROG`, and with the
 * module proxy `GOPROXY` and `GOSUMDB`. Printed plainly by `serve` (stdout) and by
 * `serve --print-env`, for `eval "$(…)"`.
 *
 * @param config The server's configuration.
 * @param where The addresses actually listened on. @default those of `config`
 * @returns The lines, each ending with a newline.
 */
export function exportLines(
  config: Config,
  where: { plugin?: string; http?: string } = {},
): string {
  const plugin = where.plugin ?? config.serve.plugin;
  const lines = [`export GOCACHEPROG=${shellQuote(`${programPath()} connect ${plugin}`)}`];
  const http = where.http ?? config.serve.http;
  if (http && config.serve.modproxy) {
    const base = `http://${dialable(http)}`;
    lines.push(`export GOPROXY=${shellQuote(`${base}/mod`)}`);
    const sumdb = config.serve.sumdb[0];
    if (sumdb) lines.push(`export GOSUMDB=${shellQuote(`${sumdb} ${base}/mod/sumdb/${sumdb}`)}`);
  }
  return lines.map((l) => l + "\n").join("");
}

/** `serve --print-env`: prints {@linkcode exportLines} and exits. */
export async function printEnv(config: Config): Promise<number> {
  await writeAll(Deno.stdout, new TextEncoder().encode(exportLines(config)));
  return 0;
}

/** The S3 tier's set-up, for the status page, `/debug/vars` and the job summary. */
function modeOf(config: Config): ServerMode {
  const warm = config.warmKey === "auto" ? `auto (dir:${Deno.cwd()})` : config.warmKey;
  return {
    bucket: config.store ? bucketUrl(config.store) : config.bucket,
    store: config.store ? storeLocation(config.store) : "",
    prefix: config.prefix,
    readPrefixes: config.readPrefixes.filter((p) => p.replace(/^\/+|\/+$/g, "") !== config.prefix),
    readOnly: config.readOnly,
    warmKey: warm === "off" ? "" : warm,
  };
}

/** A listen address as a place to dial: an empty or any-address host means this machine. */
function dialable(address: string): string {
  const match = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(address);
  if (!match) return /^\d+$/.test(address) ? `127.0.0.1:${address}` : address;
  const host = match[1] ?? match[2] ?? "";
  if (host === "" || host === "0.0.0.0") return `127.0.0.1:${match[3]}`;
  if (host === "::") return `[::1]:${match[3]}`;
  return match[1] !== undefined ? `[${host}]:${match[3]}` : `${host}:${match[3]}`;
}

/** Quotes for a POSIX shell when needed. */
function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

function programPath(): string {
  const exec = Deno.execPath();
  const base = exec.slice(Math.max(exec.lastIndexOf("/"), exec.lastIndexOf("\\")) + 1);
  if (!/^deno(\.exe)?$/.test(base)) return exec; // a compiled binary
  const url = new URL("../../scripts/go-cache-plugin", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : "go-cache-plugin";
}
