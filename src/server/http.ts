/**
 * The HTTP side of `serve --http=ADDR`: a status page at `/` (`_status_page.ts`), `/debug/vars`
 * (JSON), `/metrics` (Prometheus text exposition, generated from the shared {@linkcode Metrics}
 * registry), and the module proxy under `/mod/` when it is on. Only GET and HEAD are allowed.
 *
 * Every counter `x` is exported as `go_cache_plugin_x`; names written with `Metrics.set` (or ever
 * lowered) are gauges, the others counters. Histograms get `_bucket{le=…}`, `_sum` and `_count`.
 *
 * `/debug/vars` holds `cmdline`, `uptime_seconds`, `memstats`, `counters`, `histograms`, and
 * `server` (`version`, `bucket` and `modproxy` as booleans); with a session log also
 * `miss_to_put` (`measured`, `median_ms`, `saved_hits`, `saved_ms`; null before the first), `recent_sessions` and
 * `hit_rate_by_minute`. `stats` reads it.
 *
 * @module
 */

import { Metrics } from "../metrics/mod.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import { type SessionView, type StatusInfo, statusPage } from "./_status_page.ts";
import { HttpGuard } from "./_http_guard.ts";

export type { SessionView, StatusInfo } from "./_status_page.ts";

/** The module proxy as the HTTP side sees it. */
export interface ModuleProxyHandler {
  handle(request: Request): Promise<Response>;
}

/** Options for {@linkcode createHttpHandler}. */
export interface HttpHandlerOptions {
  /** The shared registry. */
  metrics: Metrics;
  /** Static facts for the status page. */
  status: StatusInfo;
  /** Handles `/mod/…` requests. @default none: `/mod/` is 404 */
  modproxy?: ModuleProxyHandler;
  /** Start time for `uptime_seconds`. @default {Date.now() at creation} */
  startedAt?: number;
  /** The recent sessions and miss-to-put measurements. @default none: not shown */
  sessions?: SessionView;
  /** Called before each page, `/metrics` or `/debug/vars` is made, to update gauges. @default none */
  refresh?: () => void;
}

/** Options for {@linkcode startHttpServer}. */
export interface HttpServerOptions {
  /** Lifecycle lines. @default {SILENT} */
  log?: Logger;
  /** Connections open at once; more are closed as soon as they are accepted. @default {256} */
  maxConnections?: number;
  /** Time from a request's first byte (or the connection's accept) to its header's end. @default {10000} */
  headerTimeoutMs?: number;
  /** Time without a byte either way between requests before a connection is closed. @default {60000} */
  idleTimeoutMs?: number;
}

/** A running HTTP server. */
export interface HttpServer extends AsyncDisposable {
  /** `host:port` actually listened on. */
  address: string;
  /** The base URL, `http://host:port`. */
  url: string;
  /** Stops accepting and waits for in-flight requests. */
  shutdown(): Promise<void>;
}

/**
 * A registry that remembers which names are gauges: those written with `set` or ever lowered.
 * Pass it wherever a {@linkcode Metrics} goes.
 */
export class ServerMetrics extends Metrics {
  #gauges = new Set<string>();

  override set(name: string, value: number): void {
    this.#gauges.add(name);
    super.set(name, value);
  }

  override add(name: string, value = 1): void {
    if (value < 0) this.#gauges.add(name);
    super.add(name, value);
  }

  /** Whether `name` is a gauge. */
  isGauge(name: string): boolean {
    return this.#gauges.has(name);
  }
}

const GAUGE_NAMES = /(^sessions$|_open$|_inflight$|_in_flight$|_pending$|_active$|_queued$)/;
const PREFIX = "go_cache_plugin_";

/**
 * Renders the registry in the Prometheus text exposition format (version 0.0.4).
 *
 * @param metrics The registry; with a {@linkcode ServerMetrics}, `set` names are gauges.
 * @returns The exposition, ending with a newline.
 */
export function prometheusText(metrics: Metrics): string {
  const lines: string[] = [];
  const isGauge = (name: string) =>
    metrics instanceof ServerMetrics ? metrics.isGauge(name) : GAUGE_NAMES.test(name);
  const counters = metrics.counters();
  if (!("sessions" in counters)) counters.sessions = 0;
  for (const [name, value] of Object.entries(counters)) {
    const full = PREFIX + sanitize(name);
    const type = isGauge(name) || name === "sessions" ? "gauge" : "counter";
    lines.push(`# HELP ${full} ${escapeHelp(metrics.help(name) ?? describe(name, type))}`);
    lines.push(`# TYPE ${full} ${type}`);
    lines.push(`${full} ${formatNumber(value)}`);
  }
  for (const [name, histogram] of Object.entries(metrics.histograms())) {
    const full = PREFIX + sanitize(name);
    lines.push(`# HELP ${full} ${escapeHelp(metrics.help(name) ?? `Histogram ${name}`)}`);
    lines.push(`# TYPE ${full} histogram`);
    for (const bucket of histogram.buckets) {
      lines.push(`${full}_bucket{le="${formatNumber(bucket.le)}"} ${formatNumber(bucket.count)}`);
    }
    lines.push(`${full}_bucket{le="+Inf"} ${formatNumber(histogram.count)}`);
    lines.push(`${full}_sum ${formatNumber(histogram.sum)}`);
    lines.push(`${full}_count ${formatNumber(histogram.count)}`);
  }
  return lines.join("\n") + "\n";
}

/**
 * Creates the request handler: `/`, `/metrics`, `/debug/vars`, and `/mod/` when a module proxy
 * is given. Other methods than GET and HEAD get 405; unknown paths 404.
 *
 * @example
 * ```ts
 * import { createHttpHandler, ServerMetrics } from "./http.ts";
 * const handle = createHttpHandler({
 *   metrics: new ServerMetrics(),
 *   status: { pluginAddress: "127.0.0.1:5930", cacheDir: "/tmp/c", bucket: "", modproxy: false, version: "0" },
 * });
 * const response = await handle(new Request("http://localhost/metrics"));
 * if (response.status !== 200) throw new Error("metrics should be served");
 * ```
 *
 * @param options Registry, status facts and the module proxy.
 * @returns The handler.
 */
export function createHttpHandler(
  options: HttpHandlerOptions,
): (request: Request) => Promise<Response> {
  const startedAt = options.startedAt ?? Date.now();
  return async function handle(request: Request): Promise<Response> {
    const method = request.method;
    if (method !== "GET" && method !== "HEAD") {
      return text(405, `Method ${method} is not allowed: use GET or HEAD\n`, {
        allow: "GET, HEAD",
      });
    }
    const path = rawPath(request.url);
    if (!path.startsWith("/mod")) options.refresh?.();
    let response: Response;
    if (path === "/mod" || path.startsWith("/mod/")) {
      response = options.modproxy
        ? await options.modproxy.handle(request)
        : text(404, "The module proxy is off: start serve with --modproxy\n");
    } else if (path === "/metrics") {
      response = text(200, prometheusText(options.metrics), {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
      });
    } else if (path === "/debug/vars") {
      response = new Response(JSON.stringify(debugVars(options, startedAt), null, 1), {
        headers: { "content-type": "application/json; charset=utf-8" },
      });
    } else if (path === "/" || path === "/index.html") {
      const page = statusPage(options.metrics, options.status, {
        startedAt,
        sessions: options.sessions,
      });
      response = new Response(page, {
        headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" },
      });
    } else {
      response = text(404, `Not found: ${path}\n`);
    }
    if (method === "HEAD" && response.body && !path.startsWith("/mod")) {
      // Our pages are small: keep the length GET would have, drop the body.
      const length = (await response.arrayBuffer()).byteLength;
      const headers = new Headers(response.headers);
      headers.set("content-length", String(length));
      return new Response(null, { status: response.status, headers });
    }
    return response;
  };
}

/**
 * Listens for HTTP on `[host]:port`. An empty host means 127.0.0.1 (give 0.0.0.0 to expose it).
 *
 * Requests reach `handler` through two hops: the public address is a bounded TCP front
 * (`_http_guard.ts`: a connection cap, header and idle timeouts, which `Deno.serve` lacks) that
 * copies each connection's bytes to `Deno.serve` on a Unix socket in a private temporary
 * directory (on Windows, a port on 127.0.0.1), which calls `handler`.
 *
 * @param address `[host]:port`, `host:port` or `port`.
 * @param handler The request handler.
 * @param options Logging and connection limits.
 * @returns The running server.
 * @throws {TypeError} When the address cannot be parsed.
 */
export async function startHttpServer(
  address: string,
  handler: (request: Request) => Promise<Response>,
  options: HttpServerOptions = {},
): Promise<HttpServer> {
  const log = options.log ?? SILENT;
  const { hostname, port } = parseHttpAddress(address);
  const onError = (error: unknown) => {
    log.warn(`HTTP handler failed: ${error instanceof Error ? error.message : String(error)}`);
    return text(500, "Internal error\n");
  };
  // The server behind the guard: reachable by this user only (a socket in a 0700 directory).
  const unix = Deno.build.os !== "windows";
  const stage = unix ? await Deno.makeTempDir({ prefix: "go-cache-plugin-http-" }) : "";
  const listening = Promise.withResolvers<Deno.Addr>();
  const inner = unix
    ? Deno.serve({ path: `${stage}/http.sock`, onListen: listening.resolve, onError }, handler)
    : Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: listening.resolve, onError }, handler);
  const backend = await listening.promise;
  let guard: HttpGuard;
  try {
    guard = new HttpGuard(
      { hostname, port },
      () => Deno.connect(backend as Deno.UnixConnectOptions & Deno.ConnectOptions),
      options,
    );
  } catch (error) {
    await inner.shutdown();
    if (stage) await Deno.remove(stage, { recursive: true }).catch(() => {});
    throw error;
  }
  const addr = guard.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let stopped: Promise<void> | undefined;
  const shutdown = () =>
    stopped ??= (async () => {
      await guard.stop();
      await inner.shutdown(); // in-flight requests finish; their connections then close
      await guard.close();
      if (stage) await Deno.remove(stage, { recursive: true }).catch(() => {});
    })();
  return {
    address: `${host}:${addr.port}`,
    url: `http://${host}:${addr.port}`,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/**
 * Splits an HTTP listen address.
 *
 * @param address `[host]:port`, `host:port`, `:port` or `port`.
 * @returns Host (127.0.0.1 when empty) and port.
 * @throws {TypeError} When it is not such an address.
 */
export function parseHttpAddress(address: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]*)\]|([^:\[\]]*)):(\d+)$/.exec(address) ?? /^()()(\d+)$/.exec(address);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new TypeError(
      `Cannot listen on HTTP address ${JSON.stringify(address)}: want [host]:port`,
    );
  }
  return { hostname: match[1] || match[2] || "127.0.0.1", port };
}

function debugVars(options: HttpHandlerOptions, startedAt: number): Record<string, unknown> {
  const { metrics, status, sessions } = options;
  const vars: Record<string, unknown> = {
    cmdline: ["go-cache-plugin", ...Deno.args],
    "uptime_seconds": (Date.now() - startedAt) / 1000,
    memstats: Deno.memoryUsage(),
    counters: metrics.counters(),
    histograms: metrics.histograms(),
    server: { version: status.version, bucket: status.bucket !== "", modproxy: status.modproxy },
  };
  if (sessions) {
    const measured = sessions.missToPut();
    vars["miss_to_put"] = measured
      ? {
        measured: measured.measured,
        "median_ms": measured.medianMs,
        "saved_hits": measured.savedHits,
        "saved_ms": measured.savedMs,
      }
      : null;
    vars["recent_sessions"] = sessions.recent().map((r) => ({
      id: r.id,
      start: new Date(r.start).toISOString(),
      "duration_ms": r.durationMs ?? null,
      gets: r.gets,
      hits: r.hits,
      puts: r.puts,
      end: r.end ?? null,
    }));
    vars["hit_rate_by_minute"] = sessions.hitRateByMinute().map((m) => ({
      minute: new Date(m.minute).toISOString(),
      gets: m.gets,
      hits: m.hits,
    }));
  }
  return vars;
}

function rawPath(url: string): string {
  // The path as sent: new URL() would resolve "..", which the module proxy must see.
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const end = url.indexOf("?", start);
  return url.slice(start, end < 0 ? undefined : end);
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

function describe(name: string, type: string): string {
  return `go-cache-plugin ${type} ${name}`;
}

function sanitize(name: string): string {
  return name.replace(/[^a-zA-Z0-9_:]/g, "_");
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
