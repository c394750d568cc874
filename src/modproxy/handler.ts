/**
 * The module proxy's request handler: routes `/mod/…` requests, serves cached files, fetches
 * misses through the upstream list (one fetch per key at a time), and applies the caching
 * classes described in `mod.ts`.
 *
 * @module
 */

import type { ObjectStore } from "../cache/s3/object_store.ts";
import { DEBUG_MODPROXY, type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import {
  checkModuleZip,
  hashGoMod,
  hashZip,
  MAX_GO_MOD,
  MAX_ZIP,
  parseLookup,
  type RecordHashes,
} from "./_verify.ts";
import {
  checkRawPath,
  escapeString,
  HttpError,
  type ModuleRequest,
  parseRequestPath,
  parseSemver,
  rawPathOf,
} from "./paths.ts";
import { ModuleStore, type OpenedFile, TooLargeError } from "./store.ts";
import { lookupKey, type SumdbRoute, SumdbRoutes } from "./sumdb.ts";
import {
  fetchOne,
  type FetchOneResult,
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

type CacheClass = "immutable" | "mutable" | "sumdb";

/** How one cacheable resource is fetched, checked and served. */
interface Resource {
  key: string;
  cls: CacheClass;
  /** `undefined`: cache forever, cache first. A number: freshness in ms, stale served on error. */
  ttlMs?: number;
  maxBytes: number;
  contentType: string;
  label: string;
  fetch: (signal: AbortSignal) => Promise<FetchOneResult>;
  timeoutMs: number;
  /** Checks a complete body in its temp file before it is cached. */
  check?: (path: string, size: number) => Promise<void>;
  /** Runs after a fresh upstream body was stored. */
  afterStore?: (bytes: Uint8Array | undefined) => Promise<void>;
}

type Outcome =
  | { kind: "stored" }
  | { kind: "notfound"; message: string }
  | { kind: "error"; status: number; message: string };

const TEXT = "text/plain; charset=utf-8";
const JSON_TYPE = "application/json";
const SMALL_MAX = 10 << 20;
const IMMUTABLE_CC = "public, max-age=31536000, immutable";
const NEGATIVE_MAX = 10_000;
const SMALL_FILE = 256 << 10;
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
  readonly #list: ProxyList;
  readonly #sumdb: SumdbRoutes;
  readonly #metrics?: Metrics;
  readonly #log: Logger;
  readonly #trace?: (line: string) => void;
  readonly #fetch?: typeof fetch;
  readonly #mutableTtlMs: number;
  readonly #lookupTtlMs: number;
  readonly #negativeTtlMs: number;
  readonly #headerTimeoutMs: number;
  readonly #zipTimeoutMs: number;
  readonly #inflight = new Map<string, Promise<Outcome>>();
  readonly #negative = new Map<string, { message: string; expires: number }>();
  /** Cached files already matched against a lookup: key → `size:mtime:hash`. */
  readonly #verified = new Map<string, string>();
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
    });
    this.#sumdb = new SumdbRoutes(this.#list, options.sumdbs ?? ["sum.golang.org"], {
      fetch: options.fetch,
      log: this.#log,
    });
    this.#mutableTtlMs = options.mutableTtlMs ?? 60_000;
    this.#lookupTtlMs = options.lookupTtlMs ?? 3_600_000;
    this.#negativeTtlMs = options.negativeTtlMs ?? 60_000;
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
      if (request.method !== "GET" && request.method !== "HEAD") {
        throw new HttpError(405, "Method not allowed: only GET and HEAD");
      }
      const raw = rawPathOf(request.url);
      if (raw === "/mod" || raw === "/mod/") {
        return textResponse(200, USAGE, "max-age=3600");
      }
      if (!raw.startsWith("/mod/")) throw new HttpError(404, "Not found");
      checkRawPath(raw, request.url);
      const route = parseRequestPath(raw);
      if (route.kind === "sumdb") {
        const sumdb = this.#sumdb.parse(route.rest);
        label = `sumdb ${sumdb.name} ${"sub" in sumdb ? sumdb.sub : "supported"}`;
        this.#trace?.(`B mod R:${id} ${label}`);
        response = await this.#serveSumdb(request, sumdb);
      } else {
        label = describeRoute(route);
        this.#trace?.(`B mod R:${id} ${label}`);
        response = await this.#serveModule(request, route);
      }
    } catch (error) {
      response = errorResponse(error, this.#log);
    }
    if (response.status >= 400) this.#metrics?.add("modproxy_errors");
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

  // ---- module routes ----

  #serveModule(request: Request, route: ModuleRequest): Promise<Response> {
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
        return this.#serve(request, small(`${base}/@v/list`, TEXT));
      case "latest": {
        const resource = small(`${base}/@latest`, JSON_TYPE);
        resource.check = (path) => checkInfoFile(path, undefined);
        return this.#serve(request, resource);
      }
      default:
        break;
    }
    const { version, canonical } = route;
    const key = `${base}/@v/${escapeString(version)}.${route.kind}`;
    if (route.kind === "info" && !canonical) {
      const resource = small(key, JSON_TYPE);
      resource.check = (path) => checkInfoFile(path, undefined);
      return this.#serve(request, resource);
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
      resource.check = (path) => this.#verifyModuleFile(route.module, version, kind, path);
    }
    return this.#serve(request, resource);
  }

  #upstream(key: string, signal: AbortSignal): Promise<UpstreamResult> {
    this.#metrics?.add("modproxy_upstream_fetches");
    return fetchThroughList(this.#list, key, {
      fetch: this.#fetch,
      headerTimeoutMs: this.#headerTimeoutMs,
      signal,
    });
  }

  /**
   * Checks a downloaded or cached `.mod`/`.zip` against the hashes learned from checksum
   * database lookups that passed through this proxy (and the zip's structure).
   */
  async #verifyModuleFile(
    module: string,
    version: string,
    kind: "mod" | "zip",
    path: string,
  ): Promise<void> {
    if (kind === "zip") await checkModuleZip(path, `${module}@${version}/`);
    const known = await this.#knownHashes(module, version);
    const want = known[kind];
    if (!want) return;
    const got = kind === "zip" ? await hashZip(path) : hashGoMod(await Deno.readFile(path));
    if (got !== want) {
      this.#metrics?.add("modproxy_verify_failures");
      throw new VerifyError(
        `Checksum mismatch for ${module}@${version} ${kind}: upstream has ${got}, ` +
          `checksum database has ${want}`,
      );
    }
  }

  async #knownHashes(module: string, version: string): Promise<RecordHashes> {
    for (const name of this.#sumdb.names) {
      const bytes = await this.#store.readLocal(lookupKey(name, module, version));
      if (!bytes) continue;
      const hashes = parseLookup(new TextDecoder().decode(bytes), module, version);
      if (hashes.zip || hashes.mod) return hashes;
    }
    return {};
  }

  /** After a fresh lookup: drop cached files of that version that do not match it. */
  async #checkCachedAgainstLookup(module: string, version: string, body: Uint8Array) {
    const hashes = parseLookup(new TextDecoder().decode(body), module, version);
    const base = `${escapeString(module)}/@v/${escapeString(version)}`;
    for (const kind of ["mod", "zip"] as const) {
      const want = hashes[kind];
      const key = `${base}.${kind}`;
      if (!want) continue;
      const path = this.#store.localPath(key);
      const stamp = await Deno.stat(path).then((i) => `${i.size}:${i.mtime?.getTime()}`, () => "");
      if (stamp === "") continue;
      if (this.#verified.get(key) === `${stamp}:${want}`) continue;
      let got: string;
      try {
        got = kind === "zip" ? await hashZip(path) : hashGoMod(await Deno.readFile(path));
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) continue;
        got = `unreadable (${error instanceof Error ? error.message : String(error)})`;
      }
      if (got === want) {
        if (this.#verified.size >= NEGATIVE_MAX) this.#verified.clear();
        this.#verified.set(key, `${stamp}:${want}`);
        continue;
      }
      await this.#store.removeLocal(key);
      this.#metrics?.add("modproxy_verify_failures");
      this.#metrics?.add("modproxy_evictions");
      this.#log.warn(
        `Evicted ${
          JSON.stringify(key)
        }: cached ${got} does not match the checksum database ${want}`,
      );
    }
  }

  // ---- checksum database routes ----

  #serveSumdb(request: Request, route: SumdbRoute): Promise<Response> {
    if (route.kind === "supported") {
      this.#metrics?.add("modproxy_sumdb_hits");
      return Promise.resolve(
        new Response(null, { status: 200, headers: { "cache-control": "max-age=86400" } }),
      );
    }
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
        if (bytes) await this.#checkCachedAgainstLookup(route.module, route.version, bytes);
      };
    }
    return this.#serve(request, resource);
  }

  // ---- caching core ----

  async #serve(request: Request, resource: Resource): Promise<Response> {
    const { key, cls } = resource;
    const headers = (cacheControl: string) => ({
      "content-type": resource.contentType,
      "cache-control": cacheControl,
    });
    const freshCc = resource.ttlMs === undefined
      ? IMMUTABLE_CC
      : `public, max-age=${Math.floor(resource.ttlMs / 1000)}`;
    let opened = await this.#store.open(key);
    if (opened) {
      if (resource.ttlMs === undefined || Date.now() - opened.mtimeMs < resource.ttlMs) {
        this.#metrics?.add(`modproxy_${cls}_hits`);
        return this.#fileResponse(request, opened, headers(freshCc), cls);
      }
    }
    const negative = this.#negative.get(key);
    if (negative && negative.expires > Date.now()) {
      opened?.file.close();
      this.#metrics?.add(`modproxy_${cls}_negative_hits`);
      return textResponse(404, negative.message, "max-age=60");
    }
    this.#metrics?.add(`modproxy_${cls}_misses`);
    let outcome: Outcome;
    try {
      outcome = await this.#materialize(resource, opened === undefined);
    } catch (error) {
      opened?.file.close();
      throw error;
    }
    if (outcome.kind === "stored") {
      opened?.file.close();
      opened = await this.#store.open(key);
      if (!opened) throw new HttpError(502, `Cannot serve ${key}: cache entry vanished`);
      return this.#fileResponse(request, opened, headers(freshCc), cls);
    }
    if (outcome.kind === "notfound") {
      opened?.file.close();
      return textResponse(404, outcome.message, "max-age=60");
    }
    // Upstream failed: a mutable entry may be served stale, from local or the object store.
    if (resource.ttlMs !== undefined) {
      if (!opened && await this.#store.fillFromRemote(key, { maxBytes: resource.maxBytes })) {
        opened = await this.#store.open(key);
        // The copy from the store is of unknown age: make it stale right away.
        if (opened) await Deno.utime(this.#store.localPath(key), 0, 0).catch(() => {});
      }
      if (opened) {
        this.#metrics?.add(`modproxy_${cls}_stale`);
        this.#log.info(`modproxy: serving stale ${JSON.stringify(key)}: ${outcome.message}`);
        return this.#fileResponse(request, opened, headers("no-cache"), cls);
      }
    }
    return textResponse(outcome.status, outcome.message, "no-store");
  }

  /** One fetch per key at a time: concurrent misses share the outcome. */
  #materialize(resource: Resource, tryRemote: boolean): Promise<Outcome> {
    let pending = this.#inflight.get(resource.key);
    if (!pending) {
      pending = this.#fetchAndStore(resource, tryRemote).finally(() =>
        this.#inflight.delete(resource.key)
      );
      this.#inflight.set(resource.key, pending);
    }
    return pending;
  }

  async #fetchAndStore(resource: Resource, tryRemote: boolean): Promise<Outcome> {
    const { key, cls } = resource;
    if (
      resource.ttlMs === undefined && tryRemote && this.#store.hasRemote &&
      await this.#store.fillFromRemote(key, { maxBytes: resource.maxBytes, check: resource.check })
    ) {
      this.#metrics?.add(`modproxy_${cls}_store_hits`);
      return { kind: "stored" };
    }
    const signal = AbortSignal.timeout(resource.timeoutMs);
    const result = await resource.fetch(signal);
    if (result.kind === "notfound") {
      this.#remember(key, result.message);
      return { kind: "notfound", message: `Not found: ${result.message}` };
    }
    if (result.kind === "error") {
      this.#metrics?.add(`modproxy_${cls}_upstream_errors`);
      this.#metrics?.add("modproxy_upstream_errors");
      return {
        kind: "error",
        status: result.timeout ? 504 : 502,
        message: `Cannot fetch ${resource.label} from upstream: ${result.message}`,
      };
    }
    const body = result.response.body ?? ReadableStream.from([]);
    try {
      if (resource.ttlMs === undefined) {
        const size = await this.#store.writeStream(key, body, {
          maxBytes: resource.maxBytes,
          check: resource.check,
        });
        this.#metrics?.add("modproxy_upstream_bytes", size);
        this.#store.upload(key);
        await resource.afterStore?.(undefined);
      } else {
        const bytes = await readCapped(body, resource.maxBytes, key);
        this.#metrics?.add("modproxy_upstream_bytes", bytes.length);
        const old = await this.#store.readLocal(key);
        await this.#store.writeStream(key, ReadableStream.from([bytes]), {
          maxBytes: resource.maxBytes,
          check: resource.check,
        });
        if (!old || !sameBytes(old, bytes)) this.#store.upload(key);
        await resource.afterStore?.(bytes);
      }
      this.#negative.delete(key);
      return { kind: "stored" };
    } catch (error) {
      await body.cancel().catch(() => {});
      const message = error instanceof Error ? error.message : String(error);
      if (!(error instanceof VerifyError) && !(error instanceof TooLargeError)) {
        this.#metrics?.add(`modproxy_${cls}_upstream_errors`);
        this.#metrics?.add("modproxy_upstream_errors");
      }
      const timeout = error instanceof DOMException && error.name === "TimeoutError";
      return {
        kind: "error",
        status: timeout ? 504 : 502,
        message: `Cannot fetch ${resource.label} from upstream: ${message}`,
      };
    }
  }

  #remember(key: string, message: string): void {
    if (this.#negative.size >= NEGATIVE_MAX) {
      const oldest = this.#negative.keys().next().value;
      if (oldest !== undefined) this.#negative.delete(oldest);
    }
    this.#negative.delete(key);
    this.#negative.set(key, {
      message: `Not found: ${message}`,
      expires: Date.now() + this.#negativeTtlMs,
    });
  }

  async #fileResponse(
    request: Request,
    opened: OpenedFile,
    headers: Record<string, string>,
    cls: CacheClass,
  ): Promise<Response> {
    const all = { ...headers, "content-length": String(opened.size) };
    if (request.method === "HEAD") {
      opened.file.close();
      return new Response(null, { status: 200, headers: all });
    }
    this.#metrics?.add(`modproxy_${cls}_bytes_served`, opened.size);
    this.#metrics?.add("modproxy_bytes_served", opened.size);
    if (opened.size > SMALL_FILE) {
      return new Response(opened.file.readable, { status: 200, headers: all });
    }
    // Small files (go.mod, info, list, tiles) in one write: cheaper than a stream.
    const bytes = new Uint8Array(opened.size);
    try {
      let done = 0;
      while (done < bytes.length) {
        const n = await opened.file.read(bytes.subarray(done));
        if (n === null) {
          throw new RangeError(`Cannot read cached file: short by ${bytes.length - done} bytes`);
        }
        done += n;
      }
    } finally {
      opened.file.close();
    }
    return new Response(bytes, { status: 200, headers: all });
  }
}

/** A body failed verification against a checksum-database record. */
class VerifyError extends Error {
  override name = "VerifyError";
}

async function checkInfoFile(path: string, version: string | undefined): Promise<void> {
  let info: unknown;
  try {
    info = JSON.parse(await Deno.readTextFile(path));
  } catch (cause) {
    throw new SyntaxError("Bad info from upstream: not JSON", { cause });
  }
  const got = (info as { Version?: unknown } | null)?.Version;
  if (typeof got !== "string" || !parseSemver(got)) {
    throw new SyntaxError("Bad info from upstream: no valid Version");
  }
  if (version !== undefined && got !== version) {
    throw new SyntaxError(`Bad info from upstream: Version ${JSON.stringify(got)} for ${version}`);
  }
}

async function readCapped(
  body: ReadableStream<Uint8Array>,
  max: number,
  key: string,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) throw new TooLargeError(key, max);
    chunks.push(chunk);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describeRoute(route: ModuleRequest): string {
  return "version" in route
    ? `${route.kind} ${route.module}@${route.version}`
    : `${route.kind} ${route.module}`;
}

function textResponse(status: number, message: string, cacheControl: string): Response {
  return new Response(message.replace(/[^\x20-\x7e]/g, "?").slice(0, 600) + "\n", {
    status,
    headers: { "content-type": TEXT, "cache-control": cacheControl },
  });
}

function errorResponse(error: unknown, log: Logger): Response {
  if (error instanceof HttpError) return textResponse(error.status, error.message, "no-store");
  const message = error instanceof Error ? error.message : String(error);
  log.warn(`modproxy: internal error: ${message}`);
  return textResponse(500, `Internal error: ${message.split("\n", 1)[0]}`, "no-store");
}
