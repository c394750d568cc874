/**
 * The module proxy's caching core, the same for every route: a {@linkcode Resource} says how one
 * file is fetched, checked and served, and {@linkcode CacheCore.serve} applies the caching classes
 * described in `mod.ts`:
 *
 * - immutable (`ttlMs` undefined): cache first, kept forever; a miss tries the object store, then
 *   upstream.
 * - mutable (`ttlMs` set): served while fresh, then fetched upstream first; when upstream fails
 *   the stale copy is served (local, else the object store's copy, made stale at once).
 * - negative: a 404/410 from upstream is remembered in memory for `negativeTtlMs`, and counted
 *   as `modproxy_<class>_not_found` (an answer), never as `_upstream_errors` (a failure).
 *
 * Concurrent misses of one key share one fetch (single flight). Only complete bodies that pass
 * the resource's check are stored.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { errorMessage } from "../util/mod.ts";
import { VerifyError } from "./_verify.ts";
import { HttpError } from "./paths.ts";
import { type LocalEntry, type ModuleStore, TooLargeError } from "./store.ts";
import type { FetchOneResult } from "./upstream.ts";

/** The metrics class of a resource: `modproxy_<class>_hits` and so on. */
export type CacheClass = "immutable" | "mutable" | "sumdb";

/** How one cacheable resource is fetched, checked and served. */
export interface Resource {
  /** The store key. */
  key: string;
  /** The metrics class. */
  cls: CacheClass;
  /** `undefined`: cache forever, cache first. A number: freshness in ms, stale served on error. */
  ttlMs?: number;
  /** The size cap of a body. */
  maxBytes: number;
  /** The `content-type` it is served with. */
  contentType: string;
  /** How errors name it. */
  label: string;
  /** Fetches it from upstream. */
  fetch: (signal: AbortSignal) => Promise<FetchOneResult>;
  /** The deadline of the whole fetch, in ms. */
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

/** The content type of text bodies and error messages. */
export const TEXT = "text/plain; charset=utf-8";
const IMMUTABLE_CC = "public, max-age=31536000, immutable";
const NEGATIVE_MAX = 10_000;

/** Options for {@linkcode CacheCore}. */
export interface CacheCoreOptions {
  /** Counters `modproxy_*`. @default {undefined} */
  metrics?: Metrics;
  /** Where stale serving is logged. */
  log: Logger;
  /** How long a 404/410 from upstream is remembered, in ms. */
  negativeTtlMs: number;
}

/** Serves resources from the store, filling misses once per key. */
export class CacheCore {
  readonly #store: ModuleStore;
  readonly #metrics?: Metrics;
  readonly #log: Logger;
  readonly #negativeTtlMs: number;
  readonly #inflight = new Map<string, Promise<Outcome>>();
  readonly #negative = new Map<string, { message: string; expires: number }>();

  /**
   * @param store Where resources are cached.
   * @param options Metrics, logger, negative TTL.
   */
  constructor(store: ModuleStore, options: CacheCoreOptions) {
    this.#store = store;
    this.#metrics = options.metrics;
    this.#log = options.log;
    this.#negativeTtlMs = options.negativeTtlMs;
  }

  /**
   * Answers a request for one resource: from cache while fresh, else from upstream (or the object
   * store), else stale, else the upstream's error.
   *
   * @param request The request (GET or HEAD).
   * @param resource What to serve.
   * @returns The response.
   */
  async serve(request: Request, resource: Resource): Promise<Response> {
    const { key, cls } = resource;
    const immutable = resource.ttlMs === undefined;
    const freshCc = immutable
      ? IMMUTABLE_CC
      : `public, max-age=${Math.floor(resource.ttlMs! / 1000)}`;
    let entry = this.#store.read(key, { immutable });
    if (entry) {
      if (immutable || Date.now() - entry.mtimeMs < resource.ttlMs!) {
        this.#metrics?.add(CLASS_NAMES[cls].hits);
        return this.#entryResponse(request, entry, resource.contentType, freshCc, cls);
      }
    }
    const negative = this.#negative.get(key);
    if (negative && negative.expires > Date.now()) {
      entry?.file?.close();
      this.#metrics?.add(`modproxy_${cls}_negative_hits`);
      return textResponse(404, negative.message, "max-age=60");
    }
    this.#metrics?.add(`modproxy_${cls}_misses`);
    let outcome: Outcome;
    try {
      outcome = await this.#materialize(resource, entry === undefined);
    } catch (error) {
      entry?.file?.close();
      throw error;
    }
    if (outcome.kind === "stored") {
      entry?.file?.close();
      entry = this.#store.read(key, { immutable });
      if (!entry) throw new HttpError(502, `Cannot serve ${key}: cache entry vanished`);
      return this.#entryResponse(request, entry, resource.contentType, freshCc, cls);
    }
    if (outcome.kind === "notfound") {
      entry?.file?.close();
      return textResponse(404, outcome.message, "max-age=60");
    }
    // Upstream failed: a mutable entry may be served stale, from local or the object store.
    if (!immutable) {
      if (!entry && await this.#store.fillFromRemote(key, { maxBytes: resource.maxBytes })) {
        // The copy from the store is of unknown age: make it stale right away.
        await this.#store.markStale(key);
        entry = this.#store.read(key, { immutable });
      }
      if (entry) {
        this.#metrics?.add(`modproxy_${cls}_stale`);
        this.#log.info(`modproxy: serving stale ${JSON.stringify(key)}: ${outcome.message}`);
        return this.#entryResponse(request, entry, resource.contentType, "no-cache", cls);
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
      // An answer, not a failure: counted apart from `_upstream_errors`.
      this.#metrics?.add(`modproxy_${cls}_not_found`);
      this.#metrics?.add("modproxy_upstream_not_found");
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
      const message = errorMessage(error);
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

  #entryResponse(
    request: Request,
    entry: LocalEntry,
    contentType: string,
    cacheControl: string,
    cls: CacheClass,
  ): Response {
    const headers = {
      "content-type": contentType,
      "cache-control": cacheControl,
      "content-length": String(entry.size),
    };
    if (request.method === "HEAD") {
      entry.file?.close();
      return new Response(null, { status: 200, headers });
    }
    this.#metrics?.add(CLASS_NAMES[cls].bytesServed, entry.size);
    this.#metrics?.add("modproxy_bytes_served", entry.size);
    // Small files (go.mod, info, list, tiles) come whole, in one write: cheaper than a stream.
    return new Response(entry.bytes ?? entry.file.readable, { status: 200, headers });
  }
}

/** The per-class counter names of the hot path, built once rather than per request. */
const CLASS_NAMES: Record<CacheClass, { hits: string; bytesServed: string }> = {
  immutable: { hits: "modproxy_immutable_hits", bytesServed: "modproxy_immutable_bytes_served" },
  mutable: { hits: "modproxy_mutable_hits", bytesServed: "modproxy_mutable_bytes_served" },
  sumdb: { hits: "modproxy_sumdb_hits", bytesServed: "modproxy_sumdb_bytes_served" },
};

/**
 * A one-line `text/plain` response: non-printable characters become `?`, at most 600 of them.
 *
 * @param status The HTTP status.
 * @param message The text.
 * @param cacheControl The `cache-control` header.
 * @returns The response.
 */
export function textResponse(status: number, message: string, cacheControl: string): Response {
  return new Response(message.replace(/[^\x20-\x7e]/g, "?").slice(0, 600) + "\n", {
    status,
    headers: { "content-type": TEXT, "cache-control": cacheControl },
  });
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
