/**
 * The `--http` listener when `--revproxy` is on: a small HTTP/1.1 front on `Deno.listen` that
 * reads each connection's first request line and routes the whole connection.
 *
 * - `CONNECT host:port` to a listed origin: answered `200`, then the tunnel is piped into an
 *   internal TLS server on loopback (the server certificate names every listed host), whose
 *   requests the {@linkcode CachingProxy} answers for that origin; a request whose `Host` names
 *   another origin gets 421.
 * - `CONNECT` to any other host: tunnelled unchanged (bytes copied both ways).
 * - An absolute-form request (`GET http://host/path`): piped into an internal plain server on
 *   loopback; a listed origin is answered through the cache, any other gets 403.
 * - Anything else (the status page, `/metrics`, `/mod/`): piped unchanged into the internal
 *   server that `serve --http` runs without `--revproxy`.
 *
 * Proxy requests are accepted from loopback clients only, unless `allow` names more (addresses,
 * IPv4 CIDRs, or `*`). `CONNECT` (or an absolute-form request) to one of this process's own ports
 * is refused, and so is a direct connection to an internal server. A malformed request line or
 * target, a head over 16 KiB, a head not sent within 10 s, or an absurd `Content-Length` gets a
 * 4xx and one log line.
 *
 * @module
 */

import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { errorMessage } from "../util/mod.ts";
import type { Origin } from "./entry.ts";
import { authorityOf, type CachingProxy } from "./proxy.ts";

/** The longest request head the front reads. */
const MAX_HEAD = 16 << 10;
/** How long a client may take to send its request head. */
const HEAD_TIMEOUT_MS = 10_000;
/** How long a tunnel's connect to its target may take. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Request bodies larger than this are refused (413). */
const MAX_BODY = 1 << 30;

/** Options for {@linkcode startProxyFront}. */
export interface ProxyFrontOptions {
  /** Answers requests for listed origins. */
  proxy: CachingProxy;
  /** Listed origins: `host` (any port) or `host:port`. */
  hosts: readonly string[];
  /** The server certificate chain (PEM) for the listed hosts. */
  certChainPem: string;
  /** Its private key (PEM). */
  keyPem: string;
  /** `host:port` of the internal server for everything that is not proxy traffic. */
  inner: string;
  /** Clients allowed besides loopback: addresses, IPv4 CIDRs, or `*`. @default none */
  allow?: readonly string[];
  /** Refusals and faults. @default {SILENT} */
  log?: Logger;
  /** Counters `revproxy_*`. @default none */
  metrics?: Metrics;
}

/** A running front. */
export interface ProxyFront extends AsyncDisposable {
  /** `host:port` listened on. */
  address: string;
  /** `http://host:port`. */
  url: string;
  /** Stops accepting, closes tunnels and the internal servers. */
  shutdown(): Promise<void>;
}

interface Route {
  client: string;
  origin?: Origin;
}

/**
 * Listens on `address` and routes connections (see the module doc).
 *
 * @param address `[host]:port`, `host:port` or `port` (an empty host is 127.0.0.1).
 * @param options The proxy, the listed hosts and certificate, the internal server.
 * @returns The running front.
 */
export function startProxyFront(address: string, options: ProxyFrontOptions): ProxyFront {
  const log = options.log ?? SILENT;
  const metrics = options.metrics;
  const { hostname, port } = splitAddress(address);
  const inner = splitAddress(options.inner);
  const routes = new Map<number, Route>();
  const conns = new Set<Deno.Conn>();
  const listed = options.hosts.map((h) => parseAuthority(h.toLowerCase(), 0));
  const allow = options.allow ?? [];
  const ownPorts = new Set<number>();

  const refuse = (client: string, status: number, why: string) => {
    metrics?.add(status === 403 ? "revproxy_refused" : "revproxy_bad_requests");
    log.warn(`revproxy: ${status} to ${client}: ${why}`);
  };
  const isListed = (host: string, p: number) =>
    listed.some((l) => l && l.host === host && (l.port === 0 || l.port === p));
  const isOwn = (host: string, p: number) =>
    ownPorts.has(p) &&
    (isLoopbackName(host) || host === hostname || host === "0.0.0.0" || host === "[::]");

  // The front connects from 127.0.0.1; a route is found by the port it connected from.
  const routed = (info: Deno.ServeHandlerInfo<Deno.NetAddr>) =>
    info.remoteAddr.hostname === "127.0.0.1" ? routes.get(info.remoteAddr.port) : undefined;
  const tlsServer = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: options.certChainPem,
    key: options.keyPem,
    onListen() {},
    onError(error) {
      log.warn(`revproxy: handler failed: ${errorMessage(error)}`);
      return new Response("Internal error\n", { status: 500 });
    },
  }, (request, info) => {
    const route = routed(info);
    if (!route?.origin) return plain(403, "Not a proxy connection\n");
    const origin = route.origin;
    // The URL's authority: Host for HTTP/1.1, :authority for HTTP/2.
    const authority = authorityOf(request.url);
    const host = parseAuthority(authority.toLowerCase(), 443);
    if (!host || host.host !== origin.host || host.port !== origin.port) {
      refuse(
        route.client,
        421,
        `Host ${JSON.stringify(authority)} in a tunnel to ${origin.host}:${origin.port}`,
      );
      return plain(421, "Misdirected request: Host does not match the CONNECT target\n");
    }
    const tooLarge = checkLength(request);
    if (tooLarge) {
      refuse(route.client, tooLarge.status, tooLarge.why);
      return plain(tooLarge.status, `${tooLarge.why}\n`);
    }
    return options.proxy.handle(request, origin, connectTo(origin.host));
  });
  const plainServer = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
    onError(error) {
      log.warn(`revproxy: handler failed: ${errorMessage(error)}`);
      return new Response("Internal error\n", { status: 500 });
    },
  }, (request, info) => {
    const route = routed(info);
    if (!route) return plain(403, "Not a proxy connection\n");
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      refuse(route.client, 400, "malformed request target");
      return plain(400, "Malformed request target\n");
    }
    const host = url.hostname.toLowerCase();
    const p = Number(url.port || 80);
    if (url.protocol !== "http:") {
      refuse(route.client, 400, `scheme ${url.protocol} in an absolute-form request`);
      return plain(400, "Only http:// targets may be proxied this way; use CONNECT for https\n");
    }
    if (isOwn(host, p)) {
      refuse(route.client, 403, `request to the proxy's own port ${host}:${p}`);
      return plain(403, "Refused: that is this proxy's own port\n");
    }
    if (!isListed(host, p)) {
      refuse(route.client, 403, `http://${host}:${p} is not a listed host`);
      return plain(403, `Refused: ${host} is not listed in --revproxy\n`);
    }
    const tooLarge = checkLength(request);
    if (tooLarge) {
      refuse(route.client, tooLarge.status, tooLarge.why);
      return plain(tooLarge.status, `${tooLarge.why}\n`);
    }
    return options.proxy.handle(request, { scheme: "http", host, port: p }, connectTo(host));
  });
  const tlsPort = tlsServer.addr.port;
  const plainPort = plainServer.addr.port;

  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  const addr = listener.addr;
  for (const p of [addr.port, tlsPort, plainPort, inner.port]) ownPorts.add(p);

  const serveConn = async (conn: Deno.Conn) => {
    conns.add(conn);
    const remote = conn.remoteAddr as Deno.NetAddr;
    const client = remote.hostname.includes(":") ? `[${remote.hostname}]` : remote.hostname;
    let handedOver = false;
    try {
      const head = await readHead(conn);
      if (head.kind === "error") {
        if (head.status) {
          refuse(client, head.status, head.why);
          await respond(conn, head.status, `${head.why}\n`);
        }
        return;
      }
      if (head.kind === "other") {
        const target = await Deno.connect({ hostname: inner.hostname, port: inner.port });
        handedOver = true;
        await pipe(conn, target, head.bytes, conns);
        return;
      }
      if (!clientAllowed(remote.hostname, allow)) {
        refuse(client, 403, "proxy request from a client not allowed (see --revproxy-allow)");
        await respond(
          conn,
          403,
          "Refused: proxying is for loopback clients (see --revproxy-allow)\n",
        );
        return;
      }
      if (head.kind === "absolute") {
        const target = await Deno.connect({ hostname: "127.0.0.1", port: plainPort });
        routes.set((target.localAddr as Deno.NetAddr).port, { client });
        handedOver = true;
        await pipe(conn, target, head.bytes, conns).finally(() =>
          routes.delete((target.localAddr as Deno.NetAddr).port)
        );
        return;
      }
      if (head.kind !== "connect") return;
      const target = parseAuthority(head.target.toLowerCase(), -1);
      if (!target || target.port <= 0) {
        refuse(
          client,
          400,
          `malformed CONNECT target ${JSON.stringify(head.target.slice(0, 100))}`,
        );
        await respond(conn, 400, "Malformed CONNECT target: want host:port\n");
        return;
      }
      if (isOwn(target.host, target.port)) {
        refuse(client, 403, `CONNECT to the proxy's own port ${target.host}:${target.port}`);
        await respond(conn, 403, "Refused: that is this proxy's own port\n");
        return;
      }
      const rest = head.bytes.subarray(head.headEnd);
      if (isListed(target.host, target.port)) {
        const tunnel = await Deno.connect({ hostname: "127.0.0.1", port: tlsPort });
        const local = (tunnel.localAddr as Deno.NetAddr).port;
        routes.set(local, {
          client,
          origin: { scheme: "https", host: target.host, port: target.port },
        });
        metrics?.add("revproxy_intercepted");
        await writeAll(conn, ESTABLISHED);
        handedOver = true;
        await pipe(conn, tunnel, rest, conns).finally(() => routes.delete(local));
        return;
      }
      let upstream: Deno.Conn;
      try {
        upstream = await connectWithin(
          connectTo(target.host) ?? unbracket(target.host),
          target.port,
        );
      } catch (error) {
        metrics?.add("revproxy_tunnel_errors");
        log.warn(
          `revproxy: Cannot tunnel to ${target.host}:${target.port}: ${errorMessage(error)}`,
        );
        await respond(conn, 502, `Cannot connect to ${target.host}:${target.port}\n`);
        return;
      }
      metrics?.add("revproxy_tunnels");
      await writeAll(conn, ESTABLISHED);
      handedOver = true;
      await pipe(conn, upstream, rest, conns);
    } catch (error) {
      if (!handedOver) {
        log.info(`revproxy: connection from ${client} ended: ${errorMessage(error)}`);
      }
    } finally {
      conns.delete(conn);
      if (!handedOver) closeQuietly(conn);
    }
  };

  const accepting = (async () => {
    for await (const conn of listener) void serveConn(conn);
  })().catch(() => {});

  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let stopped: Promise<void> | undefined;
  const shutdown = () =>
    stopped ??= (async () => {
      try {
        listener.close();
      } catch {
        // closed
      }
      await accepting;
      for (const conn of conns) closeQuietly(conn);
      await Promise.all([tlsServer.shutdown(), plainServer.shutdown()]);
    })();
  return {
    address: `${host}:${addr.port}`,
    url: `http://${host}:${addr.port}`,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

const ESTABLISHED = new TextEncoder().encode("HTTP/1.1 200 Connection established\r\n\r\n");

type Head =
  | { kind: "connect"; target: string; bytes: Uint8Array; headEnd: number }
  | { kind: "absolute" | "other"; bytes: Uint8Array }
  | { kind: "error"; status?: number; why: string };

/**
 * Reads a connection's first request line (and, for proxy requests, the whole head).
 */
async function readHead(conn: Deno.Conn): Promise<Head> {
  let bytes = new Uint8Array(4096);
  let length = 0;
  let kind: "connect" | "absolute" | undefined;
  let target = "";
  const timer = setTimeout(() => closeQuietly(conn), HEAD_TIMEOUT_MS);
  try {
    while (true) {
      if (length === bytes.length) {
        if (bytes.length >= MAX_HEAD) {
          return { kind: "error", status: 431, why: "request head larger than 16 KiB" };
        }
        const bigger = new Uint8Array(bytes.length * 2);
        bigger.set(bytes);
        bytes = bigger;
      }
      let n: number | null;
      try {
        n = await conn.read(bytes.subarray(length));
      } catch {
        return { kind: "error", why: "closed" };
      }
      if (n === null) {
        return length === 0
          ? { kind: "error", why: "closed" }
          : { kind: "error", status: 400, why: "connection closed inside the request head" };
      }
      const from = Math.max(0, length - 3);
      length += n;
      if (!kind) {
        const lineEnd = bytes.subarray(0, length).indexOf(10);
        if (lineEnd < 0) continue;
        const line = new TextDecoder().decode(bytes.subarray(0, lineEnd)).replace(/\r$/, "");
        const match = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(line);
        if (!match) {
          // Not ours to judge unless it looks like a proxy request: the internal server answers.
          if (/^CONNECT /i.test(line) || / https?:\/\//i.test(line)) {
            return { kind: "error", status: 400, why: "malformed request line" };
          }
          return { kind: "other", bytes: bytes.slice(0, length) };
        }
        if (match[1] === "CONNECT") {
          kind = "connect";
          target = match[2]!;
        } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(match[2]!)) {
          kind = "absolute";
        } else {
          return { kind: "other", bytes: bytes.slice(0, length) };
        }
      }
      const end = findHeadEnd(bytes, from, length);
      if (end < 0) continue;
      if (kind === "absolute") return { kind, bytes: bytes.slice(0, length) };
      return { kind, target, bytes: bytes.slice(0, length), headEnd: end };
    }
  } finally {
    clearTimeout(timer);
  }
}

/** The index just past `\r\n\r\n` (or `\n\n`), or -1. */
function findHeadEnd(bytes: Uint8Array, from: number, length: number): number {
  for (let i = from; i < length; i++) {
    if (bytes[i] !== 10) continue;
    if (bytes[i - 1] === 10) return i + 1;
    if (bytes[i - 1] === 13 && bytes[i - 2] === 10) return i + 1;
  }
  return -1;
}

/**
 * Splits `host:port` (`[v6]:port`); a missing port is `defaultPort`.
 *
 * @returns Host (IPv6 in brackets) and port, or `undefined` when malformed.
 */
function parseAuthority(
  text: string,
  defaultPort: number,
): { host: string; port: number } | undefined {
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]{0,252}))(?::(\d{1,5}))?$/.exec(text);
  if (!match) return undefined;
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (match[2] !== undefined && (port < 1 || port > 65535)) return undefined;
  return { host: match[1]!, port };
}

function checkLength(request: Request): { status: number; why: string } | undefined {
  const length = request.headers.get("content-length");
  if (length === null) return undefined;
  if (!/^\d{1,15}$/.test(length)) return { status: 400, why: "malformed Content-Length" };
  if (Number(length) > MAX_BODY) return { status: 413, why: "Content-Length over 1 GiB" };
  return undefined;
}

/** Where to connect for a host: `.localhost` names are loopback (RFC 6761). */
function connectTo(host: string): string | undefined {
  return host.endsWith(".localhost") ? "127.0.0.1" : undefined;
}

function isLoopbackName(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost") || host === "[::1]" ||
    /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Whether a client may use the proxy: loopback always; others when `allow` names them.
 *
 * @param address The client's address.
 * @param allow Addresses, IPv4 CIDRs, or `*`.
 * @returns Whether it is allowed.
 */
export function clientAllowed(address: string, allow: readonly string[]): boolean {
  const bare = address.replace(/^::ffff:/i, "");
  if (bare === "::1" || /^127\./.test(bare)) return true;
  for (const rule of allow) {
    if (rule === "*" || rule === bare) return true;
    const cidr = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(rule);
    const ip = ipv4(bare);
    if (cidr && ip !== undefined) {
      const base = ipv4(cidr[1]!);
      const bits = Number(cidr[2]);
      if (base === undefined || bits > 32) continue;
      const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
      if (((ip & mask) >>> 0) === ((base & mask) >>> 0)) return true;
    }
  }
  return false;
}

function ipv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    value = value * 256 + Number(part);
  }
  return value;
}

function unbracket(host: string): string {
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

async function connectWithin(hostname: string, port: number): Promise<Deno.Conn> {
  const signal = AbortSignal.timeout(CONNECT_TIMEOUT_MS);
  return await Deno.connect({ hostname, port, signal });
}

/** Copies both ways until both sides are done; `first` goes to `b` before anything else. */
async function pipe(
  a: Deno.Conn,
  b: Deno.Conn,
  first: Uint8Array,
  conns: Set<Deno.Conn>,
): Promise<void> {
  conns.add(a);
  conns.add(b);
  const closeBoth = () => {
    closeQuietly(a);
    closeQuietly(b);
  };
  try {
    if (first.length > 0) await writeAll(b, first);
    await Promise.all([copy(a, b, closeBoth), copy(b, a, closeBoth)]);
  } catch {
    // a side failed: both are closed below
  } finally {
    conns.delete(a);
    conns.delete(b);
    closeBoth();
  }
}

/**
 * Copies one direction until its end, then half-closes the other side. Reads run ahead of writes
 * by one buffer (two alternate), so a bulk transfer reads and writes at once.
 */
async function copy(from: Deno.Conn, to: Deno.Conn, abort: () => void): Promise<void> {
  const buffers = [new Uint8Array(64 << 10), new Uint8Array(64 << 10)];
  let writing: Promise<void> = Promise.resolve();
  try {
    for (let i = 0;; i ^= 1) {
      // buffers[i] is free: its last write was awaited before the other buffer's began.
      const n = await from.read(buffers[i]!);
      if (n === null) break;
      await writing;
      writing = writeAll(to, buffers[i]!.subarray(0, n));
      writing.catch(() => {}); // awaited on the next turn; this only marks it handled
    }
    await writing;
    await to.closeWrite().catch(() => {});
  } catch {
    abort();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

async function respond(conn: Deno.Conn, status: number, body: string): Promise<void> {
  const reason: Record<number, string> = {
    400: "Bad Request",
    403: "Forbidden",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
  };
  const bytes = new TextEncoder().encode(body);
  const head = `HTTP/1.1 ${status} ${reason[status] ?? "Error"}\r\n` +
    `content-type: text/plain; charset=utf-8\r\ncontent-length: ${bytes.length}\r\n` +
    `connection: close\r\n\r\n`;
  await writeAll(conn, new TextEncoder().encode(head)).catch(() => {});
  await writeAll(conn, bytes).catch(() => {});
}

function plain(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // closed
  }
}

function splitAddress(address: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]*)\]|([^:\[\]]*)):(\d+)$/.exec(address) ?? /^()()(\d+)$/.exec(address);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new TypeError(
      `Cannot listen on HTTP address ${JSON.stringify(address)}: want [host]:port`,
    );
  }
  return { hostname: match[1] || match[2] || "127.0.0.1", port };
}
