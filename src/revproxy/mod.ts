/**
 * A caching HTTPS proxy for listed hosts, `serve --http=ADDR --revproxy=HOSTS` (tailscale's
 * command line): point `HTTPS_PROXY` (and `HTTP_PROXY`) at the `--http` address, and downloads a
 * job repeats (release archives, toolchains, files marked immutable) come from the local disk or
 * the bucket instead of the internet.
 *
 * ## Files
 *
 * Start reading at `front.ts`, then `proxy.ts`:
 *
 * - `front.ts`: the `--http` listener: routes `CONNECT`, absolute-form requests and everything
 *   else; the security checks (loopback clients, own ports, malformed requests).
 * - `proxy.ts`: {@linkcode CachingProxy}, the cache tiers, shared fetches, `X-Cache`.
 * - `policy.ts`: what may be kept and where. `entry.ts`: keys and the object format.
 * - `store.ts`: objects on disk and in the bucket. `certs.ts`: the CA and server certificate.
 *
 * Imports point down only: to `store/` (the object store and its `BucketTier`: the bucket's
 * breaker, upload queue and trust tiers), `log/`, `metrics/` and `util/`; `cli/serve.ts` wires it
 * in.
 *
 * ## Cache layout
 *
 * `<cache-dir>/revproxy/<xx>/<key>` and `[prefix/]revproxy/<xx>/<key>` in the bucket, where
 * `<key>` is the SHA-256 (hex) of `<scheme>://<host>:<port><path>[?<query>]` and `<xx>` its first
 * two digits; tailscale's object format (header lines, a blank line, the body) with
 * `X-Cache-Url` and `X-Body-Sha256` lines of ours (see `entry.ts`). Also in the directory:
 * `ca.pem` (the CA clients trust, mode 0644, the only file at the top level),
 * `private/ca-key.pem` (its key, mode 0600 in a 0700 directory, never uploaded), `.pending/`
 * (uploads owed).
 *
 * ## Debug lines (`--debug=8`)
 *
 * `B rp R:<n> U:"<url>" H:<key12>` when a request starts, `E rp R:<n> H:<key12> <status>
 * <x-cache> <ms>ms` when its headers are sent, `- rp H:<key12> not kept: <why>`.
 *
 * ## Metrics
 *
 * `revproxy_requests`, `revproxy_hits_memory`, `revproxy_hits_local`, `revproxy_hits_remote`,
 * `revproxy_fetches`, `revproxy_fetch_cached`, `revproxy_fetch_memory`,
 * `revproxy_fetch_uncached`, `revproxy_collapsed`, `revproxy_bytes_served`,
 * `revproxy_bytes_fetched`, `revproxy_upstream_errors`, `revproxy_disk_errors`, `revproxy_corrupt`,
 * `revproxy_refused`, `revproxy_bad_requests`, `revproxy_intercepted`, `revproxy_tunnels`,
 * `revproxy_tunnel_errors`, and the bucket's `revproxy_store_*`.
 *
 * @example
 * ```ts ignore
 * import { openRevProxy } from "./mod.ts";
 * const proxy = await openRevProxy({ hosts: ["example.com"], dir: "/tmp/gcp/revproxy" });
 * const front = await proxy.listen("127.0.0.1:5970", "127.0.0.1:5971");
 * // HTTPS_PROXY=http://127.0.0.1:5970 curl --cacert /tmp/gcp/revproxy/ca.pem https://example.com/
 * ```
 *
 * @module
 */

import type { ObjectStore } from "../store/mod.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { loadCertificates } from "./certs.ts";
import { type ProxyFront, startProxyFront } from "./front.ts";
import { CachingProxy } from "./proxy.ts";
import { RevproxyStore } from "./store.ts";

export { clientAllowed, type ProxyFront } from "./front.ts";
export { CachingProxy } from "./proxy.ts";
export { decideKeep, parseCacheControl } from "./policy.ts";
export { cacheKey, keyedUrl } from "./entry.ts";
export { RevproxyStore } from "./store.ts";

/** Options for {@linkcode openRevProxy}. */
export interface RevProxyOptions {
  /** Listed hosts: `host` or `host:port`. */
  hosts: readonly string[];
  /** The local directory, `<cache-dir>/revproxy`. */
  dir: string;
  /** The bucket under `[prefix/]revproxy/`. @default none */
  store?: ObjectStore;
  /** Clients allowed besides loopback. @default none */
  allow?: readonly string[];
  /** Reads the environment (`SSL_CERT_FILE`, `SSL_CERT_DIR`). @default nothing is read */
  env?: (name: string) => string | undefined;
  /** Lifecycle lines and refusals. @default {SILENT} */
  log?: Logger;
  /** Per-request lines. @default none */
  trace?: (line: string) => void;
  /** Counters. @default none */
  metrics?: Metrics;
  /** A body being kept is given up after this long without a byte, ms. @default {60000} */
  bodyIdleMs?: number;
}

/** An opened proxy: its certificates and cache, ready to listen. */
export interface RevProxy {
  /** Where the CA certificate clients trust was written. */
  caPath: string;
  /** Whether the CA was made at this start. */
  caCreated: boolean;
  /** Extra CA certificates trusted for origins (`SSL_CERT_FILE`, `SSL_CERT_DIR`). */
  extraCas: number;
  /**
   * Listens on the `--http` address.
   *
   * @param address The `--http` address.
   * @param inner `host:port` of the internal server for non-proxy traffic.
   */
  listen(address: string, inner: string): Promise<ProxyFront>;
  /** Waits until the bodies being kept are written (for tests). */
  idle(): Promise<void>;
  /** Waits for background writes and uploads. */
  close(): Promise<void>;
}

/**
 * Makes or loads the CA, signs the server certificate, opens the cache.
 *
 * @param options Hosts, directory, bucket, logging.
 * @returns The proxy.
 */
export async function openRevProxy(options: RevProxyOptions): Promise<RevProxy> {
  const log = options.log ?? SILENT;
  const hostNames = [...new Set(options.hosts.map((h) => hostOf(h.toLowerCase())))];
  const certs = await loadCertificates(options.dir, hostNames);
  const caCerts = await extraCaCerts(options.env ?? (() => undefined), log);
  const client = Deno.createHttpClient({ caCerts, allowHost: true });
  const store = new RevproxyStore(options.dir, {
    store: options.store,
    log,
    metrics: options.metrics,
  });
  const proxy = new CachingProxy({
    store,
    client,
    log,
    trace: options.trace,
    metrics: options.metrics,
    bodyIdleMs: options.bodyIdleMs,
  });
  describe(options.metrics);
  return {
    caPath: certs.caPath,
    caCreated: certs.caCreated,
    extraCas: caCerts.length,
    listen: (address, inner) =>
      Promise.resolve().then(() =>
        startProxyFront(address, {
          proxy,
          hosts: options.hosts,
          certChainPem: certs.certChainPem,
          keyPem: certs.keyPem,
          inner,
          allow: options.allow,
          log,
          metrics: options.metrics,
        })
      ),
    idle: () => proxy.idle(),
    close: async () => {
      await proxy.close();
      await store.close();
    },
  };
}

/**
 * The host of a listed `host` or `host:port`.
 *
 * @param listed As given to `--revproxy`.
 * @returns The host alone.
 */
export function hostOf(listed: string): string {
  if (listed.startsWith("[")) return listed.slice(0, listed.indexOf("]") + 1);
  const colon = listed.lastIndexOf(":");
  return colon > 0 && listed.indexOf(":") === colon ? listed.slice(0, colon) : listed;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g;

/** The certificates `SSL_CERT_FILE` and the files of `SSL_CERT_DIR` hold, as Go reads them. */
async function extraCaCerts(
  env: (name: string) => string | undefined,
  log: Logger,
): Promise<string[]> {
  const files: string[] = [];
  const file = env("SSL_CERT_FILE");
  if (file) files.push(file);
  for (const dir of (env("SSL_CERT_DIR") ?? "").split(":").filter((d) => d !== "")) {
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (entry.isFile || entry.isSymlink) files.push(`${dir}/${entry.name}`);
      }
    } catch (error) {
      log.warn(
        `revproxy: Cannot read SSL_CERT_DIR ${JSON.stringify(dir)}: ${(error as Error).message}`,
      );
    }
  }
  const certs: string[] = [];
  for (const path of files) {
    try {
      certs.push(...(await Deno.readTextFile(path)).match(PEM_CERTIFICATE) ?? []);
    } catch (error) {
      log.warn(
        `revproxy: Cannot read CA file ${JSON.stringify(path)}: ${(error as Error).message}`,
      );
    }
  }
  return certs;
}

function describe(metrics: Metrics | undefined): void {
  if (!metrics) return;
  const help: Record<string, string> = {
    "revproxy_requests": "Requests the caching proxy answered for listed hosts",
    "revproxy_hits_memory": "Proxy requests answered from memory (short-lived responses)",
    "revproxy_hits_local": "Proxy requests answered from the local disk",
    "revproxy_hits_remote": "Proxy requests answered from the bucket (copied to disk)",
    "revproxy_fetches": "Proxy requests fetched from the origin",
    "revproxy_fetch_cached": "Origin responses kept on disk (and uploaded)",
    "revproxy_fetch_memory": "Origin responses kept in memory until they expire",
    "revproxy_fetch_uncached": "Origin responses passed through without keeping them",
    "revproxy_collapsed": "Proxy requests that joined a fetch of the same URL under way",
    "revproxy_bytes_served": "Body bytes the proxy sent to clients",
    "revproxy_bytes_fetched": "Body bytes fetched from origins to keep",
    "revproxy_refused": "Proxy requests refused (403): client, host or port not allowed",
    "revproxy_bad_requests": "Malformed proxy requests answered with 4xx",
    "revproxy_tunnels": "CONNECT tunnels to unlisted hosts, passed through unchanged",
    "revproxy_intercepted": "CONNECT tunnels to listed hosts, served through the cache",
    "revproxy_corrupt": "Proxy objects rejected: malformed, another URL, or digest mismatch",
  };
  for (const [name, text] of Object.entries(help)) metrics.describe(name, text);
}
