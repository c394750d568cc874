/**
 * The module proxy's request handler and its routes: which `/mod/…` request becomes which cached
 * {@linkcode Resource} (key, caching class, size cap, content type, upstream, check), and the
 * responses that never touch the cache (usage, `supported`, bad paths). Serving and filling the
 * cache is `_cache_core.ts`; the checks against checksum-database lookups are `_guard.ts`.
 *
 * @module
 */

import type { ObjectStore } from "../store/mod.ts";
import { DEBUG_MODPROXY, type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { isReadMethod, rawPathOf } from "../util/http.ts";
import { errorMessage } from "../util/mod.ts";
import { CacheCore, type Resource, TEXT, textResponse } from "./_cache_core.ts";
import { ChecksumGuard } from "./_guard.ts";
import { checkInfoFile, MAX_GO_MOD, MAX_ZIP } from "./_verify.ts";
import {
  checkRawPath,
  escapeString,
  HttpError,
  type ModuleRequest,
  parseRequestPath,
} from "./paths.ts";
import { ModuleStore } from "./store.ts";
import { type SumdbRoute, SumdbRoutes } from "./sumdb.ts";
import {
  fetchOne,
  fetchThroughList,
  parseProxyList,
  type ProxyList,
  type UpstreamResult,
} from "./upstream.ts";

/** Options for {@linkcode createModuleProxy}. */
export interface ModuleProxyOptions {
  /** Local root for module files, such as `${cacheDir}/module`. */
  cacheDir: string;
  /** The S3 tier; keys are relative to `[prefix/]module/`. @default {undefined} (local only) */
  store?: ObjectStore;
  /** A GOPROXY-style upstream list, already resolved (see `resolveUpstream`). */
  upstream: string;
  /** Checksum databases to proxy: `<name>` or `<name> <URL>`. @default {["sum.golang.org"]} */
  sumdbs?: string[];
  /** Counters `modproxy_*`. @default {undefined} */
  metrics?: Metrics;
  /** Logger; trace bit 2 logs each request. @default {SILENT} */
  log?: Logger;
  /** The fetch implementation, for tests. @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** Freshness of `list`, `@latest`, query `.info` and sumdb `latest`, in ms. @default {60000} */
  mutableTtlMs?: number;
  /** Freshness of a cached sumdb lookup, in ms. @default {3600000} */
  lookupTtlMs?: number;
  /** How long a 404/410 from upstream is remembered, in ms. @default {60000} */
  negativeTtlMs?: number;
  /** Deadline for upstream response headers, in ms. @default {30000} */
  headerTimeoutMs?: number;
  /** Deadline for a whole upstream zip download, in ms. @default {600000} */
  zipTimeoutMs?: number;
  /**
   * Memory for small immutable files (`.info`, `.mod` of a version, tiles) served without the
   * disk, in bytes; 0 turns it off. @default {16 MiB}
   */
  memoryBytes?: number;
}

/** A running module proxy. */
export interface ModuleProxy {
  /**
   * Answers one request whose path starts with `/mod/`.
   *
   * @param request The request; only its method and URL are used.
   * @returns The response; errors are one-line `text/plain` bodies.
   */
  handle(request: Request): Promise<Response>;
  /** Waits for background uploads to the object store. */
  close(): Promise<void>;
}

const JSON_TYPE = "application/json";
const SMALL_MAX = 10 << 20;
/** Accepted request paths remembered at most; the memory is cleared when full. */
const ROUTES_MAX = 4096;
/** Longer paths are not remembered, which bounds that memory to a few MiB. */
const ROUTE_PATH_MAX = 512;
const USAGE = "Go module proxy: set GOPROXY=http://<this host>/mod and " +
  "GOSUMDB='sum.golang.org http://<this host>/mod/sumdb/sum.golang.org'";

/**
 * Creates the module proxy.
 *
 * @param options Cache dir, store, upstream list, allow-listed checksum databases.
 * @returns The proxy; call `close()` when done.
 */
export function createModuleProxy(options: ModuleProxyOptions): Promise<ModuleProxy> {
  try {
    return Promise.resolve(new ProxyHandler(options));
  } catch (error) {
    return Promise.reject(error);
  }
}

class ProxyHandler implements ModuleProxy {
  readonly #store: ModuleStore;
  readonly #core: CacheCore;
  readonly #guard: ChecksumGuard;
  readonly #list: ProxyList;
  readonly #sumdb: SumdbRoutes;
  readonly #metrics?: Metrics;
  readonly #log: Logger;
  readonly #trace?: (line: string) => void;
  readonly #fetch?: typeof fetch;
  readonly #mutableTtlMs: number;
  readonly #lookupTtlMs: number;
  readonly #headerTimeoutMs: number;
  readonly #zipTimeoutMs: number;
  readonly #routes = new Map<string, PlannedRoute>();
  #requestId = 0;

  constructor(options: ModuleProxyOptions) {
    this.#log = options.log ?? SILENT;
    this.#trace = this.#log.trace(DEBUG_MODPROXY);
    this.#metrics = options.metrics;
    this.#fetch = options.fetch;
    this.#list = parseProxyList(options.upstream);
    this.#store = new ModuleStore(options.cacheDir, {
      store: options.store,
      log: this.#log,
      metrics: options.metrics,
      memoryBytes: options.memoryBytes,
    });
    this.#sumdb = new SumdbRoutes(this.#list, options.sumdbs ?? ["sum.golang.org"], {
      fetch: options.fetch,
      log: this.#log,
    });
    this.#core = new CacheCore(this.#store, {
      metrics: options.metrics,
      log: this.#log,
      negativeTtlMs: options.negativeTtlMs ?? 60_000,
    });
    this.#guard = new ChecksumGuard(this.#store, {
      sumdbNames: this.#sumdb.names,
      metrics: options.metrics,
      log: this.#log,
    });
    this.#mutableTtlMs = options.mutableTtlMs ?? 60_000;
    this.#lookupTtlMs = options.lookupTtlMs ?? 3_600_000;
    this.#headerTimeoutMs = options.headerTimeoutMs ?? 30_000;
    this.#zipTimeoutMs = options.zipTimeoutMs ?? 600_000;
    if (this.#list.terminal) {
      this.#log.info(
        `modproxy: upstream entry ${JSON.stringify(this.#list.terminal)} ends the list; ` +
          "the proxy does not fetch from version control",
      );
    }
    this.#log.info(
      `modproxy: upstream ${this.#list.entries.map((e) => e.url).join(" ") || "(none)"}, ` +
        `checksum databases ${this.#sumdb.names.join(" ")}`,
    );
  }

  async handle(request: Request): Promise<Response> {
    const id = ++this.#requestId;
    const start = performance.now();
    this.#metrics?.add("modproxy_requests");
    let response: Response;
    let label = "";
    try {
      if (!isReadMethod(request.method)) {
        throw new HttpError(405, "Method not allowed: only GET and HEAD");
      }
      const raw = rawPathOf(request.url);
      if (raw === "/mod" || raw === "/mod/") {
        return textResponse(200, USAGE, "max-age=3600");
      }
      const route = this.#routes.get(raw) ?? this.#plan(raw, request.url);
      label = route.label;
      this.#trace?.(`B mod R:${id} ${label}`);
      response = await route.serve(request);
    } catch (error) {
      response = errorResponse(error, this.#log);
    }
    // 404 and 410 are answers (go probes module paths that do not exist, `go mod tidy` many),
    // counted apart from failures.
    if (response.status === 404 || response.status === 410) {
      this.#metrics?.add("modproxy_not_found");
    } else if (response.status >= 400) this.#metrics?.add("modproxy_errors");
    this.#trace?.(
      `E mod R:${id} ${label || "bad-path"} ${response.status} ${
        (performance.now() - start).toFixed(1)
      }ms`,
    );
    return response;
  }

  async close(): Promise<void> {
    await this.#store.close();
  }

  /**
   * Checks and parses a request path into what serves it, and remembers accepted paths: the
   * answer depends on the raw path alone, and the checks cost more than a cached file's answer.
   */
  #plan(raw: string, url: string): PlannedRoute {
    if (!raw.startsWith("/mod/")) throw new HttpError(404, "Not found");
    checkRawPath(raw, url);
    const route = parseRequestPath(raw);
    let planned: PlannedRoute;
    if (route.kind === "sumdb") {
      const sumdb = this.#sumdb.parse(route.rest);
      const resource = this.#sumdbResource(sumdb);
      planned = {
        label: `sumdb ${sumdb.name} ${"sub" in sumdb ? sumdb.sub : "supported"}`,
        serve: resource
          ? (request) => this.#core.serve(request, resource)
          : () => this.#supported(),
      };
    } else {
      const resource = this.#moduleResource(route);
      planned = {
        label: describeRoute(route),
        serve: (request) => this.#core.serve(request, resource),
      };
    }
    if (raw.length <= ROUTE_PATH_MAX) {
      if (this.#routes.size >= ROUTES_MAX) this.#routes.clear();
      this.#routes.set(raw, planned);
    }
    return planned;
  }

  // ---- module routes ----

  #moduleResource(route: ModuleRequest): Resource {
    const base = escapeString(route.module);
    const small = (key: string, contentType: string): Resource => ({
      key,
      cls: "mutable",
      ttlMs: this.#mutableTtlMs,
      maxBytes: SMALL_MAX,
      contentType,
      label: key,
      timeoutMs: 60_000,
      fetch: (signal) => this.#upstream(key, signal),
    });
    switch (route.kind) {
      case "list":
        return small(`${base}/@v/list`, TEXT);
      case "latest": {
        const resource = small(`${base}/@latest`, JSON_TYPE);
        resource.check = (path) => checkInfoFile(path, undefined);
        return resource;
      }
      default:
        break;
    }
    const { version, canonical } = route;
    const key = `${base}/@v/${escapeString(version)}.${route.kind}`;
    if (route.kind === "info" && !canonical) {
      const resource = small(key, JSON_TYPE);
      resource.check = (path) => checkInfoFile(path, undefined);
      return resource;
    }
    const resource: Resource = {
      key,
      cls: "immutable",
      maxBytes: route.kind === "zip" ? MAX_ZIP : route.kind === "mod" ? MAX_GO_MOD : SMALL_MAX,
      contentType: route.kind === "zip"
        ? "application/zip"
        : route.kind === "mod"
        ? TEXT
        : JSON_TYPE,
      label: key,
      timeoutMs: route.kind === "zip" ? this.#zipTimeoutMs : 120_000,
      fetch: (signal) => this.#upstream(key, signal),
    };
    if (route.kind === "info") resource.check = (path) => checkInfoFile(path, version);
    if (route.kind === "mod" || route.kind === "zip") {
      const kind = route.kind;
      resource.check = (path) => this.#guard.verify(route.module, version, kind, path);
    }
    return resource;
  }

  #upstream(key: string, signal: AbortSignal): Promise<UpstreamResult> {
    this.#metrics?.add("modproxy_upstream_fetches");
    return fetchThroughList(this.#list, key, {
      fetch: this.#fetch,
      headerTimeoutMs: this.#headerTimeoutMs,
      signal,
    });
  }

  // ---- checksum database routes ----

  #supported(): Promise<Response> {
    this.#metrics?.add("modproxy_sumdb_hits");
    return Promise.resolve(
      new Response(null, { status: 200, headers: { "cache-control": "max-age=86400" } }),
    );
  }

  /** The cached resource of a checksum-database route; `undefined` for `supported`. */
  #sumdbResource(route: SumdbRoute): Resource | undefined {
    if (route.kind === "supported") return undefined;
    const resource: Resource = {
      key: route.key,
      cls: "sumdb",
      maxBytes: route.kind === "tile" ? route.maxBytes : 1 << 20,
      contentType: route.kind === "tile" && !route.sub.includes("/data/")
        ? "application/octet-stream"
        : "text/plain; charset=UTF-8",
      label: route.key,
      timeoutMs: 60_000,
      fetch: async (signal) => {
        const found = await this.#sumdb.base(route.name);
        if ("error" in found) return { kind: "error", message: found.error, timeout: false };
        this.#metrics?.add("modproxy_upstream_fetches");
        const result = await fetchOne(`${found.base}/${route.sub}`, {
          fetch: this.#fetch,
          headerTimeoutMs: this.#headerTimeoutMs,
          signal,
        });
        return result;
      },
    };
    if (route.kind === "latest") resource.ttlMs = this.#mutableTtlMs;
    if (route.kind === "lookup") {
      resource.ttlMs = this.#lookupTtlMs;
      resource.afterStore = async (bytes) => {
        if (bytes) await this.#guard.checkCached(route.module, route.version, bytes);
      };
    }
    return resource;
  }
}

/** What answers one accepted request path. */
interface PlannedRoute {
  /** How trace lines name the request. */
  label: string;
  serve: (request: Request) => Promise<Response>;
}

function describeRoute(route: ModuleRequest): string {
  return "version" in route
    ? `${route.kind} ${route.module}@${route.version}`
    : `${route.kind} ${route.module}`;
}

function errorResponse(error: unknown, log: Logger): Response {
  if (error instanceof HttpError) return textResponse(error.status, error.message, "no-store");
  const message = errorMessage(error);
  log.warn(`modproxy: internal error: ${message}`);
  return textResponse(500, `Internal error: ${message.split("\n", 1)[0]}`, "no-store");
}
