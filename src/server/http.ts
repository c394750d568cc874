/**
 * The HTTP side of `serve --http=ADDR`: a status page at `/` (`_status_page.ts`) that updates
 * itself from `/status/fragment`, `/debug/vars` (JSON), `/metrics` (Prometheus text exposition
 * by the catalogue of `src/metrics/catalog.ts`, see `src/metrics/prometheus.ts`), and the module
 * proxy under `/mod/` when it is on. Only GET and HEAD are allowed, except `POST /debug/reset`
 * (from loopback only), which sets the counters and faults back to zero (`stats --reset`).
 *
 * `/debug/vars` holds `cmdline`, `uptime_seconds`, `memstats`, `counters`, `histograms`,
 * `faults` (`cause`, `count`, `first`, `firstAt` each), and `server` (`version`, `bucket` and
 * `modproxy` as booleans, `cache_dir`, `max_size`, and `mode`: `bucket`, `store`, `prefix`,
 * `readPrefixes`, `readOnly`, `warmKey`); with a session log also `miss_to_put` (`measured`,
 * `median_ms`, `saved_hits`, `saved_ms`, `produced_ms`; null before the first),
 * `recent_sessions` and `hit_rate_by_minute`. `stats` reads it.
 *
 * @module
 */

import { type Faults, Metrics } from "../metrics/mod.ts";
import { prometheusText } from "../metrics/prometheus.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import { isReadMethod, rawPathOf } from "../util/http.ts";
import { errorMessage } from "../util/mod.ts";
import { type SessionView, statusFragment, type StatusInfo, statusPage } from "./_status_page.ts";
import { HttpGuard } from "./_http_guard.ts";

export { prometheusText } from "../metrics/prometheus.ts";

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
  /** The faults by first cause. @default none recorded */
  faults?: Faults;
  /** Called by `POST /debug/reset` after the counters and faults are reset. @default none */
  onReset?: () => void;
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
  /**
   * Whether every client reaches this server from this machine. Behind the guard the handler sees
   * the guard's socket, not the client, so the server vouches for loopback clients only when this
   * holds (`POST /debug/reset` is refused otherwise).
   * @default whether the listen address is a loopback address
   */
  clientsAreLocal?: boolean;
}

/** The address a handler is told a vouched-for local client has. */
const LOCAL_CLIENT: { remoteAddr: Deno.NetAddr } = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 0 },
};

/**
 * Whether `hostname` is a loopback address (or `localhost`).
 *
 * @param hostname A host name or address.
 * @returns True for 127.0.0.0/8, ::1 and localhost.
 */
export function isLoopbackHost(hostname: string): boolean {
  return /^(127\.|::1$|::ffff:127\.|localhost$)/.test(hostname.replace(/^\[|\]$/g, ""));
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

  /** Sets the counters back to zero, not the gauges. */
  override reset(): void {
    super.reset((name) => this.#gauges.has(name));
  }
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
): (request: Request, info?: { remoteAddr: Deno.Addr }) => Promise<Response> {
  const startedAt = options.startedAt ?? Date.now();
  return async function handle(
    request: Request,
    info?: { remoteAddr: Deno.Addr },
  ): Promise<Response> {
    const method = request.method;
    const path = rawPathOf(request.url);
    if (path === "/debug/reset") return reset(request, info, options);
    if (!isReadMethod(method)) {
      return text(405, `Method ${method} is not allowed: use GET or HEAD\n`, {
        allow: "GET, HEAD",
      });
    }
    if (!path.startsWith("/mod")) options.refresh?.();
    let response: Response;
    if (path === "/mod" || path.startsWith("/mod/")) {
      response = options.modproxy
        ? await options.modproxy.handle(request)
        : text(404, "The module proxy is off: start serve with --modproxy\n");
    } else if (path === "/metrics") {
      response = text(
        200,
        prometheusText(options.metrics, {
          faults: options.faults,
          version: options.status.version,
          startedAt: performance.timeOrigin,
        }),
        {
          "content-type": "text/plain; version=0.0.4; charset=utf-8",
        },
      );
    } else if (path === "/debug/vars") {
      response = new Response(JSON.stringify(debugVars(options, startedAt), null, 1), {
        headers: { "content-type": "application/json; charset=utf-8" },
      });
    } else if (path === "/" || path === "/index.html" || path === "/status/fragment") {
      const render = path === "/status/fragment" ? statusFragment : statusPage;
      const page = render(options.metrics, options.status, {
        startedAt,
        sessions: options.sessions,
        faults: options.faults?.list(),
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
  handler: (request: Request, info?: { remoteAddr: Deno.Addr }) => Promise<Response>,
  options: HttpServerOptions = {},
): Promise<HttpServer> {
  const log = options.log ?? SILENT;
  const { hostname, port } = parseHttpAddress(address);
  const onError = (error: unknown) => {
    log.warn(`HTTP handler failed: ${errorMessage(error)}`);
    return text(500, "Internal error\n");
  };
  // The server behind the guard: reachable by this user only (a socket in a 0700 directory).
  const unix = Deno.build.os !== "windows";
  const stage = unix ? await Deno.makeTempDir({ prefix: "go-cache-plugin-http-" }) : "";
  const listening = Promise.withResolvers<Deno.Addr>();
  const local = options.clientsAreLocal ?? isLoopbackHost(hostname);
  const served = (request: Request, info: Deno.ServeHandlerInfo) =>
    handler(request, local ? LOCAL_CLIENT : info);
  const inner = unix
    ? Deno.serve({ path: `${stage}/http.sock`, onListen: listening.resolve, onError }, served)
    : Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: listening.resolve, onError }, served);
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
    faults: options.faults?.list() ?? [],
    server: {
      version: status.version,
      bucket: status.bucket !== "",
      modproxy: status.modproxy,
      "cache_dir": status.cacheDir,
      "max_size": status.maxSize ?? 0,
      ...status.mode ? { mode: status.mode } : {},
    },
  };
  if (sessions) {
    const measured = sessions.missToPut();
    vars["miss_to_put"] = measured
      ? {
        measured: measured.measured,
        "median_ms": measured.medianMs,
        "saved_hits": measured.savedHits,
        "saved_ms": measured.savedMs,
        "produced_ms": measured.producedMs ?? 0,
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
      command: r.command,
    }));
    vars["hit_rate_by_minute"] = sessions.hitRateByMinute().map((m) => ({
      minute: new Date(m.minute).toISOString(),
      gets: m.gets,
      hits: m.hits,
    }));
  }
  return vars;
}

/**
 * `POST /debug/reset`: counters and faults back to zero. Only from loopback (the address Deno
 * reports for the connection), so that a server listening on 0.0.0.0 cannot be reset from afar.
 */
async function reset(
  request: Request,
  info: { remoteAddr: Deno.Addr } | undefined,
  options: HttpHandlerOptions,
): Promise<Response> {
  await request.body?.cancel();
  if (request.method !== "POST") {
    return text(405, `Method ${request.method} is not allowed: use POST\n`, { allow: "POST" });
  }
  // A custom header: a web page cannot send it across origins without a preflight, which this
  // server never answers, so a browser on this machine cannot be made to reset the counters.
  if (request.headers.get("x-go-cache-plugin") !== "reset") {
    return text(400, "Send the header X-Go-Cache-Plugin: reset (go-cache-plugin stats --reset)\n");
  }
  const addr = info?.remoteAddr;
  if (!addr || !("hostname" in addr) || !isLoopbackHost(addr.hostname)) {
    return text(403, "Resetting the counters is only allowed from this machine (loopback)\n");
  }
  options.metrics.reset();
  options.faults?.reset();
  options.onReset?.();
  return text(200, "Counters reset\n");
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}
