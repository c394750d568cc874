/**
 * The caching proxy itself: a request for a listed origin is answered from memory, the local
 * directory or the bucket, else fetched from the origin (and kept where the policy allows, see
 * `policy.ts`). Every answer carries `X-Cache` (`hit, memory`, `hit, local`, `hit, remote`,
 * `fetch, cached`, `fetch, uncached`) and, when the cache was involved, `X-Cache-Id` (the key's
 * first 12 hex digits).
 *
 * A miss that may be shared (a cacheable `GET` without credentials or `Range`) joins the fetch
 * already under way for its key. A response kept on disk is streamed to a temporary file, and
 * every waiting client reads that file as it grows: one upstream fetch, memory bounded by a
 * read buffer per client, whatever the body's size. The upstream request carries the client's
 * end-to-end headers (minus `Accept-Encoding`, replaced by `identity`, and, for a shared fetch,
 * conditionals and `Range`) and a `Via` naming this process, which a looped request is refused
 * on (508).
 *
 * A disk or bucket fault is a miss: the request is fetched. A disk that fails while a body is
 * being written (full, gone) costs only the keeping: the rest of the body is relayed from memory
 * to the clients following it, at most 16 MiB ahead of the slowest. An upstream that fails gets 502
 * (504 when it does not answer in time), but what is cached is served without asking it.
 *
 * @module
 */

import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { errorMessage } from "../util/mod.ts";
import { cacheKey, type EntryHead, keyedUrl, type Origin } from "./entry.ts";
import { decideKeep, MEMORY_ENTRY_MAX, requestCacheable } from "./policy.ts";
import type { EntryWriter, RevproxyStore } from "./store.ts";

/** Options for {@linkcode CachingProxy}. */
export interface CachingProxyOptions {
  /** Where objects are kept. */
  store: RevproxyStore;
  /** The fetch client for origins (trusting extra CAs). @default the default client */
  client?: Deno.HttpClient;
  /** Bytes of short-lived responses kept in memory. @default {16 MiB} */
  memoryBytes?: number;
  /** Deadline for the origin's response headers, ms. @default {30000} */
  headersTimeoutMs?: number;
  /** A body being kept is given up when no byte arrives for this long, ms. @default {60000} */
  bodyIdleMs?: number;
  /** Lifecycle and fault lines. @default {SILENT} */
  log?: Logger;
  /** `--debug=8` request lines. @default none */
  trace?: (line: string) => void;
  /** Counters `revproxy_*`. @default none */
  metrics?: Metrics;
}

/** The proxy's own answers to a failed origin fetch (502, 504). */
const FAILED = new WeakSet<Response>();

/** Hop-by-hop headers, never forwarded either way. */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
];
const CONDITIONAL = [
  "if-match",
  "if-none-match",
  "if-modified-since",
  "if-unmodified-since",
  "if-range",
  "range",
];

interface MemoryEntry {
  headers: Headers;
  bytes: Uint8Array<ArrayBuffer>;
  expiresAt: number;
}

/** A small local object held in memory, valid while its file keeps this size and mtime. */
interface HotEntry {
  url: string;
  path: string;
  fileSize: number;
  mtimeMs: number;
  /** The response headers, `X-Cache: hit, local` included. */
  headers: Headers;
  bytes: Uint8Array<ArrayBuffer>;
  /** When the file was last seen unchanged (`performance.now()`). */
  checkedAt: number;
}

/** How long a hot entry is served without looking at its file again. */
const HOT_CHECK_MS = 1000;

/** Bytes of a body relayed from memory (the disk failed mid-body) not yet taken by every reader. */
const RELAY_MAX = 16 << 20;

/** Bodies up to this size are held in the hot set. */
const HOT_ENTRY_MAX = 64 << 10;
/** The hot set's bytes. */
const HOT_BYTES = 16 << 20;

/** The state of a shared fetch, as its waiters see it. */
type Shared =
  | { kind: "disk"; status: number; headers: Headers; growing: Growing }
  | { kind: "memory"; entry: MemoryEntry }
  | { kind: "uncached"; response?: Response }
  | { kind: "failed"; response: Response };

/** A body being written to a file, which readers follow. */
class Growing {
  written = 0;
  done = false;
  error: unknown = undefined;
  /**
   * Set when the disk failed mid-body: bytes before it are in the file, later ones in `relayed`
   * (kept until every reader has them), so the clients still get the whole body.
   */
  diskEnd: number | undefined = undefined;
  /** Chunks past `diskEnd`, from offset `relayedStart`. */
  relayed: Uint8Array[] = [];
  relayedStart = 0;
  /** Readers' positions, for dropping relayed chunks they all have. */
  readonly readers = new Set<{ position: number }>();
  #wakers: (() => void)[] = [];

  constructor(readonly writer: EntryWriter) {}

  /** Bytes held in `relayed`. */
  get relayedBytes(): number {
    return this.written - this.relayedStart;
  }

  /** Adds a chunk past the disk's end. */
  relay(chunk: Uint8Array): void {
    this.relayed.push(chunk);
    this.progress(chunk.byteLength);
    if (this.readers.size === 0) this.consumed();
  }

  /** The relayed bytes at `position` (at most one chunk's worth). */
  relayedAt(position: number): Uint8Array | undefined {
    let offset = this.relayedStart;
    for (const chunk of this.relayed) {
      if (position < offset + chunk.byteLength) return chunk.subarray(position - offset);
      offset += chunk.byteLength;
    }
    return undefined;
  }

  /** Drops relayed chunks every reader has passed, and wakes a waiting pump. */
  consumed(): void {
    let low = this.written;
    for (const reader of this.readers) low = Math.min(low, reader.position);
    while (this.relayed.length > 0 && this.relayedStart + this.relayed[0]!.byteLength <= low) {
      this.relayedStart += this.relayed.shift()!.byteLength;
    }
    this.#wake();
  }

  progress(n: number): void {
    this.written += n;
    this.#wake();
  }

  finish(error?: unknown): void {
    this.done = true;
    this.error = error;
    this.#wake();
  }

  changed(): Promise<void> {
    return new Promise((resolve) => this.#wakers.push(resolve));
  }

  #wake(): void {
    const wakers = this.#wakers;
    this.#wakers = [];
    for (const wake of wakers) wake();
  }
}

/**
 * Answers proxied requests for listed origins through the cache.
 */
export class CachingProxy {
  readonly #store: RevproxyStore;
  readonly #client?: Deno.HttpClient;
  readonly #memoryBytes: number;
  readonly #headersTimeoutMs: number;
  readonly #bodyIdleMs: number;
  readonly #log: Logger;
  readonly #trace?: (line: string) => void;
  readonly #metrics?: Metrics;
  readonly #memory = new Map<string, MemoryEntry>();
  #memoryUsed = 0;
  readonly #hot = new Map<string, HotEntry>();
  readonly #keys = new Map<string, string>();
  #hotUsed = 0;
  readonly #shared = new Map<string, Promise<Shared>>();
  readonly #via = `1.1 go-cache-plugin-${crypto.randomUUID().slice(0, 8)}`;
  readonly #running = new Set<Promise<unknown>>();
  #requests = 0;

  /** @param options Store, client, bounds, logging. */
  constructor(options: CachingProxyOptions) {
    this.#store = options.store;
    this.#client = options.client;
    this.#memoryBytes = options.memoryBytes ?? 16 << 20;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
    this.#bodyIdleMs = options.bodyIdleMs ?? 60_000;
    this.#log = options.log ?? SILENT;
    this.#trace = options.trace;
    this.#metrics = options.metrics;
  }

  /**
   * Answers one request for an origin.
   *
   * @param request The client's request; its URL's path and query are the target's.
   * @param origin The origin it is for (a listed one).
   * @param connectTo Where to connect instead of the origin's host (a `.localhost` name). @default the host
   * @returns The response.
   */
  handle(request: Request, origin: Origin, connectTo?: string): Response | Promise<Response> {
    this.#metrics?.add("revproxy_requests");
    const pathAndQuery = pathOf(request.url);
    const url = keyedUrl(origin, pathAndQuery);
    if ((request.headers.get("via") ?? "").includes(this.#via)) {
      this.#metrics?.add("revproxy_refused");
      this.#log.warn(`revproxy: refused a request that looped back to this proxy: ${url}`);
      return text(508, "Loop detected: the proxy's own upstream request came back to it\n");
    }
    const key = this.#keyOf(url);
    // The warm path, answered without a promise: short-lived entries, then small local objects.
    if (!this.#trace && request.method === "GET" && requestCacheable(request)) {
      const memory = this.#memoryGet(key);
      if (memory) {
        this.#metrics?.add("revproxy_hits_memory");
        return this.#fromBytes(memory.headers, memory.bytes, "hit, memory", key, request);
      }
      const hot = this.#hotGet(key, url);
      if (hot) {
        this.#metrics?.add("revproxy_hits_local");
        this.#metrics?.add("revproxy_bytes_served", hot.bytes.length);
        return new Response(hot.bytes, { headers: hot.headers });
      }
    }
    return this.#handleAsync(request, origin, connectTo, pathAndQuery, url, key);
  }

  async #handleAsync(
    request: Request,
    origin: Origin,
    connectTo: string | undefined,
    pathAndQuery: string,
    url: string,
    key: string,
  ): Promise<Response> {
    const id = ++this.#requests;
    const started = performance.now();
    this.#trace?.(`B rp R:${id} U:${JSON.stringify(url)} H:${key.slice(0, 12)}`);
    const response = await this.#answer(request, origin, pathAndQuery, url, key, connectTo);
    this.#trace?.(
      `E rp R:${id} H:${key.slice(0, 12)} ${response.status} ${
        response.headers.get("x-cache") ?? "-"
      } ${(performance.now() - started).toFixed(0)}ms`,
    );
    return response;
  }

  /** The key of a URL, remembered for the URLs seen last (a hash costs more than a lookup). */
  #keyOf(url: string): string {
    let key = this.#keys.get(url);
    if (key === undefined) {
      if (this.#keys.size >= 8192) this.#keys.clear();
      key = cacheKey(url);
      this.#keys.set(url, key);
    }
    return key;
  }

  /** Waits until the bodies being kept are written (and their uploads queued). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }

  /** Waits for background writes, then closes the origin client. */
  async close(): Promise<void> {
    await this.idle();
    this.#client?.close();
  }

  async #answer(
    request: Request,
    origin: Origin,
    pathAndQuery: string,
    url: string,
    key: string,
    connectTo: string | undefined,
  ): Promise<Response> {
    const cacheable = requestCacheable(request);
    if (cacheable) {
      const memory = this.#memoryGet(key);
      if (memory) {
        this.#metrics?.add("revproxy_hits_memory");
        return this.#fromBytes(memory.headers, memory.bytes, "hit, memory", key, request);
      }
      const local = await this.#openLocal(key, url);
      if (local) {
        this.#metrics?.add("revproxy_hits_local");
        return local.respond("hit, local", request);
      }
      if (this.#store.hasRemote && await this.#store.fill(key, url)) {
        const filled = await this.#openLocal(key, url);
        if (filled) {
          this.#metrics?.add("revproxy_hits_remote");
          return filled.respond("hit, remote", request);
        }
      }
    }
    const upstream = upstreamUrl(origin, pathAndQuery, connectTo);
    const shareable = cacheable && !request.headers.has("authorization") &&
      !request.headers.has("cookie") && !request.headers.has("range");
    if (!shareable) return await this.#fetchOwn(request, upstream, origin, url, key, cacheable);
    let shared = this.#shared.get(key);
    const leader = shared === undefined;
    if (shared) {
      this.#metrics?.add("revproxy_collapsed");
    } else {
      // The map entry is this fetch's own: later steps remove it only while it is still theirs.
      const own = Promise.withResolvers<Shared>();
      shared = own.promise;
      this.#shared.set(key, shared);
      this.#fetchShared(request, upstream, url, key, shared).then(own.resolve, own.reject);
    }
    const outcome = await shared;
    switch (outcome.kind) {
      case "disk":
        return this.#follow(outcome, key, request);
      case "memory":
        return this.#fromBytes(
          outcome.entry.headers,
          outcome.entry.bytes,
          "fetch, cached",
          key,
          request,
        );
      case "failed":
        return outcome.response.clone();
      case "uncached":
        if (leader && outcome.response) return this.#passThrough(outcome.response);
        return await this.#fetchOwn(request, upstream, origin, url, key, false);
    }
  }

  /**
   * The shared fetch of a key: resolves once the origin's headers are in. A body kept on disk is
   * still being written then; waiters follow the file.
   */
  async #fetchShared(
    request: Request,
    upstream: { url: string; host: string },
    url: string,
    key: string,
    own: Promise<Shared>,
  ): Promise<Shared> {
    const release = () => {
      if (this.#shared.get(key) === own) this.#shared.delete(key);
    };
    let releaseNow = true;
    try {
      const response = await this.#fetchUpstream(request, upstream, true);
      if (FAILED.has(response)) return { kind: "failed", response };
      const keep = decideKeep(request, response);
      if (keep.where === "memory") {
        const bytes = await readCapped(response.body, MEMORY_ENTRY_MAX);
        if (bytes) {
          const entry = {
            headers: keptHeaders(response.headers),
            bytes,
            expiresAt: keep.expiresAt,
          };
          this.#memorySet(key, entry);
          this.#metrics?.add("revproxy_fetch_memory");
          this.#metrics?.add("revproxy_bytes_fetched", bytes.length);
          return { kind: "memory", entry };
        }
        return { kind: "uncached" };
      }
      if (keep.where !== "disk") {
        // Not shareable: the first client gets this response, each other one fetches its own.
        this.#trace?.(`- rp H:${key.slice(0, 12)} not kept: ${keep.why}`);
        return { kind: "uncached", response };
      }
      let writer: EntryWriter;
      try {
        writer = await this.#store.create(key, url, response.headers);
      } catch (error) {
        this.#log.warn(`revproxy: Cannot write to the local cache: ${errorMessage(error)}`);
        this.#metrics?.add("revproxy_disk_errors");
        await response.body?.cancel().catch(() => {});
        return { kind: "uncached" };
      }
      const growing = new Growing(writer);
      releaseNow = false;
      const pump = this.#pump(response, growing, key, release);
      this.#running.add(pump);
      pump.finally(() => {
        this.#running.delete(pump);
        release();
      });
      this.#metrics?.add("revproxy_fetch_cached");
      return { kind: "disk", status: response.status, headers: response.headers, growing };
    } finally {
      if (releaseNow) release();
    }
  }

  /** Copies the origin's body into the growing file, then commits it. */
  async #pump(
    response: Response,
    growing: Growing,
    key: string,
    release: () => void = () => {},
  ): Promise<void> {
    const expected = response.headers.get("content-length");
    const reader = response.body?.getReader();
    try {
      while (reader) {
        // An origin that stops sending must not hold every waiting client for ever.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const idle = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new RangeError(`no body bytes for ${this.#bodyIdleMs / 1000}s`)),
            this.#bodyIdleMs,
          );
        });
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await Promise.race([reader.read(), idle]);
        } finally {
          clearTimeout(timer);
        }
        if (result.done) break;
        if (growing.diskEnd !== undefined) {
          if (growing.readers.size === 0) {
            // Every client left: nothing to pass on, nothing to keep.
            await reader.cancel().catch(() => {});
            growing.finish();
            const writer = growing.writer;
            Deno.unrefTimer(setTimeout(() => void writer.abort(), 10_000));
            return;
          }
          // Relaying: hold at most RELAY_MAX bytes the slowest reader has not taken yet.
          while (growing.relayedBytes > RELAY_MAX && growing.readers.size > 0) {
            await growing.changed();
          }
          growing.relay(result.value);
          continue;
        }
        try {
          await growing.writer.write(result.value);
        } catch (error) {
          // The disk failed (full, gone): the readers get the rest from memory; nothing is kept,
          // and no new request joins this fetch.
          this.#metrics?.add("revproxy_disk_errors");
          this.#log.warn(
            `revproxy: Cannot keep ${key.slice(0, 12)} on disk, passing it on: ${
              errorMessage(error)
            }`,
          );
          release();
          growing.writer.closeFile();
          growing.diskEnd = growing.written;
          growing.relayedStart = growing.written;
          growing.relay(result.value);
          continue;
        }
        growing.progress(result.value.byteLength);
      }
      if (expected !== null && Number(expected) !== growing.written) {
        throw new RangeError(`got ${growing.written} bytes, expected ${expected}`);
      }
      this.#metrics?.add("revproxy_bytes_fetched", growing.written);
      if (growing.diskEnd !== undefined) {
        growing.finish();
        // The partial file goes once every reader is done with it (or after ten seconds).
        const deadline = Date.now() + 10_000;
        while (growing.readers.size > 0 && Date.now() < deadline) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            growing.changed(),
            new Promise((resolve) => timer = setTimeout(resolve, 1000)),
          ]);
          clearTimeout(timer);
        }
        await growing.writer.abort();
        return;
      }
    } catch (error) {
      this.#metrics?.add("revproxy_upstream_errors");
      this.#log.warn(`revproxy: Cannot cache ${key.slice(0, 12)}: ${errorMessage(error)}`);
      await reader?.cancel().catch(() => {});
      await growing.writer.abort();
      growing.finish(error);
      return;
    }
    try {
      await this.#store.commitLocal(key, growing.writer);
      growing.finish();
    } catch (error) {
      // The body is whole in the temporary file: the clients following it get all of it; it is
      // only not kept. The file goes once they have had time to open it (open files stay readable).
      this.#metrics?.add("revproxy_disk_errors");
      this.#log.warn(`revproxy: Cannot keep ${key.slice(0, 12)} on disk: ${errorMessage(error)}`);
      growing.finish();
      const writer = growing.writer;
      Deno.unrefTimer(setTimeout(() => void writer.abort(), 10_000));
    }
  }

  /** A response whose body follows a growing file. */
  #follow(outcome: Shared & { kind: "disk" }, key: string, request: Request): Response {
    const headers = clientHeaders(outcome.headers);
    headers.set("x-cache", "fetch, cached");
    headers.set("x-cache-id", key.slice(0, 12));
    const growing = outcome.growing;
    const metrics = this.#metrics;
    let file: Deno.FsFile | undefined;
    const reader = { position: 0 };
    const buffer = new Uint8Array(256 << 10);
    if (request.method !== "HEAD") growing.readers.add(reader);
    const done = () => {
      file?.close();
      file = undefined;
      growing.readers.delete(reader);
      growing.consumed();
    };
    const body = request.method === "HEAD" ? null : new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (true) {
          const onDisk = growing.diskEnd ?? growing.written;
          if (reader.position >= onDisk && reader.position < growing.written) {
            const bytes = growing.relayedAt(reader.position)!;
            reader.position += bytes.byteLength;
            metrics?.add("revproxy_bytes_served", bytes.byteLength);
            controller.enqueue(bytes.slice());
            growing.consumed();
            return;
          }
          if (reader.position < onDisk) {
            if (!file) {
              try {
                file = await Deno.open(growing.writer.path);
              } catch {
                file = await Deno.open(growing.writer.finalPath);
              }
              await file.seek(growing.writer.bodyOffset, Deno.SeekMode.Start);
            }
            const want = Math.min(buffer.length, onDisk - reader.position);
            const n = await file.read(buffer.subarray(0, want));
            if (n === null) throw new RangeError("Cannot read the body being cached: file ended");
            reader.position += n;
            metrics?.add("revproxy_bytes_served", n);
            controller.enqueue(buffer.slice(0, n));
            return;
          }
          if (growing.done) {
            done();
            if (growing.error) controller.error(growing.error);
            else controller.close();
            return;
          }
          await growing.changed();
        }
      },
      cancel() {
        done();
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status: outcome.status, headers });
  }

  /** A request fetched for itself alone (credentials, `Range`, or not kept when shared). */
  async #fetchOwn(
    request: Request,
    upstream: { url: string; host: string },
    _origin: Origin,
    url: string,
    key: string,
    cacheable: boolean,
  ): Promise<Response> {
    const response = await this.#fetchUpstream(request, upstream, false);
    if (FAILED.has(response)) return response;
    const keep = cacheable && !request.headers.has("range")
      ? decideKeep(request, response)
      : { where: "none" as const };
    if (keep.where === "disk" && response.body) {
      // A public response to a request with credentials: kept as any other.
      try {
        const writer = await this.#store.create(key, url, response.headers);
        const growing = new Growing(writer);
        const pump = this.#pump(response, growing, key);
        this.#running.add(pump);
        pump.finally(() => this.#running.delete(pump));
        this.#metrics?.add("revproxy_fetch_cached");
        return this.#follow(
          { kind: "disk", status: 200, headers: response.headers, growing },
          key,
          request,
        );
      } catch (error) {
        this.#log.warn(`revproxy: Cannot write to the local cache: ${errorMessage(error)}`);
        this.#metrics?.add("revproxy_disk_errors");
      }
    }
    return this.#passThrough(response);
  }

  /** The origin's response as it is, counted and marked `fetch, uncached`. */
  #passThrough(response: Response): Response {
    this.#metrics?.add("revproxy_fetch_uncached");
    const headers = clientHeaders(response.headers);
    headers.set("x-cache", "fetch, uncached");
    const metrics = this.#metrics;
    const body = response.body?.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          metrics?.add("revproxy_bytes_served", chunk.byteLength);
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body ?? null, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }

  /** Fetches from the origin; a failure is a 502 or 504 response, remembered in `FAILED`. */
  async #fetchUpstream(
    request: Request,
    upstream: { url: string; host: string },
    shared: boolean,
  ): Promise<Response> {
    const headers = new Headers();
    const connection = (request.headers.get("connection") ?? "").toLowerCase().split(",")
      .map((v) => v.trim());
    for (const [name, value] of request.headers) {
      if (HOP_BY_HOP.includes(name) || connection.includes(name)) continue;
      if (name === "accept-encoding" || name === "via") continue;
      if (shared && CONDITIONAL.includes(name)) continue;
      headers.append(name, value);
    }
    headers.set("accept-encoding", "identity");
    headers.set("host", upstream.host);
    const via = request.headers.get("via");
    headers.set("via", via ? `${via}, ${this.#via}` : this.#via);
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new DOMException("no response headers in time", "TimeoutError")),
      this.#headersTimeoutMs,
    );
    const signal = shared
      ? controller.signal
      : AbortSignal.any([controller.signal, request.signal]);
    try {
      const hasBody = request.method !== "GET" && request.method !== "HEAD" && request.body;
      const response = await fetch(upstream.url, {
        method: request.method,
        headers,
        body: hasBody ? request.body : undefined,
        redirect: "manual",
        signal,
        client: this.#client,
      });
      this.#metrics?.add("revproxy_fetches");
      return response;
    } catch (error) {
      this.#metrics?.add("revproxy_upstream_errors");
      const timeout = controller.signal.aborted;
      const why = timeout ? "no response headers in time" : errorMessage(error);
      this.#log.warn(`revproxy: Cannot fetch ${upstream.url}: ${why}`);
      const response = text(timeout ? 504 : 502, `Cannot fetch from the origin: ${why}\n`);
      FAILED.add(response);
      response.headers.set("x-cache", "fetch, uncached");
      return response;
    } finally {
      clearTimeout(timer);
    }
  }

  async #openLocal(key: string, url: string) {
    let object;
    try {
      object = await this.#store.open(key, url);
    } catch (error) {
      this.#metrics?.add("revproxy_disk_errors");
      this.#log.warn(`revproxy: Cannot read the local cache: ${errorMessage(error)}`);
      return undefined;
    }
    if (!object) return undefined;
    const found = object;
    const metrics = this.#metrics;
    if (found.bytes && found.bytes.length <= HOT_ENTRY_MAX) {
      const headers = new Headers(found.head.headers);
      headers.set("x-cache", "hit, local");
      headers.set("x-cache-id", key.slice(0, 12));
      this.#hotSet(key, {
        url,
        path: found.path,
        fileSize: found.fileSize,
        mtimeMs: found.mtimeMs,
        headers,
        bytes: found.bytes,
        checkedAt: performance.now(),
      });
    }
    return {
      respond: (xcache: string, request: Request): Response => {
        if (found.bytes) {
          return this.#fromBytes(found.head.headers, found.bytes, xcache, key, request);
        }
        const headers = objectHeaders(found.head);
        headers.set("content-length", String(found.size));
        headers.set("x-cache", xcache);
        headers.set("x-cache-id", key.slice(0, 12));
        if (request.method === "HEAD") {
          found.file!.close();
          return new Response(null, { headers });
        }
        metrics?.add("revproxy_bytes_served", found.size);
        return new Response(found.file!.readable, { headers });
      },
    };
  }

  #fromBytes(
    stored: Headers,
    bytes: Uint8Array<ArrayBuffer>,
    xcache: string,
    key: string,
    request: Request,
  ): Response {
    const headers = new Headers(stored);
    headers.set("x-cache", xcache);
    headers.set("x-cache-id", key.slice(0, 12));
    if (request.method === "HEAD") {
      headers.set("content-length", String(bytes.length));
      return new Response(null, { headers });
    }
    // Deno.serve sends Content-Length for a byte body itself.
    this.#metrics?.add("revproxy_bytes_served", bytes.length);
    return new Response(bytes, { headers });
  }

  /**
   * A small local object from memory, when its file is still there with the size and mtime it
   * had. One synchronous stat at most once a second per entry: cheaper than the thread hand-off
   * of its async form, and the disk stays the truth (a file trimmed, replaced or removed is
   * served from memory for at most that second: its body was checked against its digest).
   */
  #hotGet(key: string, url: string): HotEntry | undefined {
    const entry = this.#hot.get(key);
    if (!entry || entry.url !== url) return undefined;
    const now = performance.now();
    if (now - entry.checkedAt < HOT_CHECK_MS) return entry;
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.statSync(entry.path);
    } catch {
      info = undefined;
    }
    const mtimeMs = info?.mtime?.getTime() ?? 0;
    if (!info || info.size !== entry.fileSize || mtimeMs !== entry.mtimeMs) {
      this.#hot.delete(key);
      this.#hotUsed -= entry.bytes.length;
      return undefined;
    }
    if (Date.now() - mtimeMs >= 3_600_000) {
      // Used: refresh its time for --expiry and --max-size (the next hit re-reads the file).
      this.#store.touch(entry.path, info.mtime);
      this.#hot.delete(key);
      this.#hotUsed -= entry.bytes.length;
    }
    entry.checkedAt = now;
    return entry;
  }

  #hotSet(key: string, entry: HotEntry): void {
    const old = this.#hot.get(key);
    if (old) {
      this.#hot.delete(key);
      this.#hotUsed -= old.bytes.length;
    }
    this.#hot.set(key, entry);
    this.#hotUsed += entry.bytes.length;
    for (const [k, e] of this.#hot) {
      if (this.#hotUsed <= HOT_BYTES) break;
      this.#hot.delete(k);
      this.#hotUsed -= e.bytes.length;
    }
  }

  #memoryGet(key: string): MemoryEntry | undefined {
    const entry = this.#memory.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#memory.delete(key);
      this.#memoryUsed -= entry.bytes.length;
      return undefined;
    }
    // Most recently used last.
    this.#memory.delete(key);
    this.#memory.set(key, entry);
    return entry;
  }

  #memorySet(key: string, entry: MemoryEntry): void {
    const old = this.#memory.get(key);
    if (old) {
      this.#memory.delete(key);
      this.#memoryUsed -= old.bytes.length;
    }
    if (entry.bytes.length > this.#memoryBytes) return;
    this.#memory.set(key, entry);
    this.#memoryUsed += entry.bytes.length;
    const now = Date.now();
    for (const [k, e] of this.#memory) {
      if (this.#memoryUsed <= this.#memoryBytes) break;
      if (k === key && e.expiresAt > now) continue;
      this.#memory.delete(k);
      this.#memoryUsed -= e.bytes.length;
    }
  }
}

/** The URL fetched: the origin's, or for a `.localhost` name the loopback address. */
function upstreamUrl(
  origin: Origin,
  pathAndQuery: string,
  connectTo: string | undefined,
): { url: string; host: string } {
  const defaultPort = origin.scheme === "https" ? 443 : 80;
  const port = origin.port === defaultPort ? "" : `:${origin.port}`;
  return {
    url: `${origin.scheme}://${connectTo ?? origin.host}${port}${pathAndQuery}`,
    host: `${origin.host}${port}`,
  };
}

function keptHeaders(headers: Headers): Headers {
  const kept = clientHeaders(headers);
  kept.delete("content-length");
  return kept;
}

/** The origin's response headers for the client: hop-by-hop ones removed. */
function clientHeaders(headers: Headers): Headers {
  const out = new Headers();
  const connection = (headers.get("connection") ?? "").toLowerCase().split(",").map((v) =>
    v.trim()
  );
  for (const [name, value] of headers) {
    if (HOP_BY_HOP.includes(name) || connection.includes(name)) continue;
    if (name === "set-cookie") continue;
    out.append(name, value);
  }
  for (const cookie of headers.getSetCookie()) out.append("set-cookie", cookie);
  return out;
}

function objectHeaders(head: EntryHead): Headers {
  return new Headers(head.headers);
}

/** Reads a body whole when it has at most `max` bytes; `undefined` (and cancelled) otherwise. */
async function readCapped(
  body: ReadableStream<Uint8Array> | null,
  max: number,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  if (!body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) return undefined; // leaving the loop cancels the body
    chunks.push(chunk);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/**
 * The path and query of a request URL as the client sent them (no parsing, no normalisation;
 * a fragment, never sent, is dropped).
 *
 * @param url `request.url`, absolute.
 * @returns From the first `/` after the authority, or `/`.
 */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const hash = url.indexOf("#", start);
  return hash < 0 ? url.slice(start) : url.slice(start, hash);
}

/**
 * The authority (`host[:port]`) of an absolute request URL.
 *
 * @param url `request.url`.
 * @returns Between `//` and the next `/`.
 */
export function authorityOf(url: string): string {
  const from = url.indexOf("//") + 2;
  const end = url.indexOf("/", from);
  return end < 0 ? url.slice(from) : url.slice(from, end);
}
