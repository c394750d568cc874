/**
 * The caching HTTPS proxy (`serve --http --revproxy`) side by side with tailscale's, in one run,
 * measured in turns: small immutable hits per second, and MB/s of a large hit, both through
 * `HTTPS_PROXY` the way a client uses it (CONNECT, TLS to the proxy's certificate, keep-alive
 * HTTP/1.1 GETs inside the tunnel), then each server's peak RSS (VmHWM).
 *
 * The origin is an HTTPS `Deno.serve` on 127.0.0.1 behind a private CA (scripts/servers), listed as
 * `localhost:<port>` in both proxies. tailscale's proxy names that `host:port` in its certificate,
 * which no client verifies, so the load generator runs with
 * `--unsafely-ignore-certificate-errors=localhost` (the handshake costs the same). tailscale's
 * plugin needs a bucket (a MinIO on loopback here) and, as root on Linux, appends its CA to the
 * system bundle: it runs under `unshare -m` with a private copy of that file bind-mounted over it,
 * so this machine's bundle is never changed (its columns are skipped, with the reason, when that
 * or `TAILSCALE_PLUGIN` is not available).
 *
 * The load generator is this Deno process, on the same cores as the servers: `--concurrency`
 * tunnels, one request in flight each, for `--seconds` per round, raw HTTP/1.1 on the TLS
 * connection (no fetch). The large hit: `--big-mib` MiB, downloaded `--big-n` times per round on
 * one tunnel.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run --unsafely-ignore-certificate-errors=localhost
 *        scripts/bench/revproxy.ts [--rounds=3] [--seconds=5] [--concurrency=8] [--files=64]
 *        [--big-mib=100] [--big-n=3]
 *
 * @module
 */

import { freePort, startMinio } from "../servers/minio.ts";
import { makeOriginCerts, startHttpsOrigin } from "../servers/https_upstream.ts";
import {
  environment,
  freshDir,
  median,
  parseFlags,
  peakRssOfPid,
  percentile,
  print,
  progress,
  run,
  saveResults,
  table,
  tailscalePlugin,
} from "./_lib.ts";
import { executable, s3Env, type S3Target, ServeProcess } from "./_plugins.ts";

const CR = 13;
const LF = 10;

/** One tunnel through a proxy: CONNECT, TLS, then keep-alive GETs read through one buffer. */
class Tunnel {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(256 << 10);
  #start = 0;
  #end = 0;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  static async open(proxyPort: number, authority: string): Promise<Tunnel> {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort });
    try {
      await writeAll(
        tcp,
        new TextEncoder().encode(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`),
      );
      // The proxy's answer: read byte by byte up to the blank line (nothing follows it).
      let head = "";
      const one = new Uint8Array(1);
      while (!head.endsWith("\r\n\r\n")) {
        if (await tcp.read(one) === null) throw new Error(`CONNECT: closed after ${head}`);
        head += String.fromCharCode(one[0]!);
      }
      if (!/^HTTP\/1\.[01] 200/.test(head)) throw new Error(`CONNECT refused: ${head.trim()}`);
      const tls = await Deno.startTls(tcp, { hostname: authority.split(":")[0]! });
      return new Tunnel(tls);
    } catch (error) {
      tcp.close();
      throw error;
    }
  }

  /** One GET; resolves to status and body bytes (content-length or chunked). */
  async get(request: Uint8Array): Promise<{ status: number; bytes: number }> {
    await writeAll(this.#conn, request);
    const headEnd = await this.#headEnd();
    const head = latin1(this.#buffer, this.#start, headEnd);
    this.#start = headEnd;
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (length) {
      await this.#skip(Number(length[1]));
      return { status, bytes: Number(length[1]) };
    }
    if (!/\r\ntransfer-encoding:\s*chunked/i.test(head)) throw new Error("no length: " + head);
    let bytes = 0;
    for (
      let size = parseInt(await this.#line(), 16);
      size > 0;
      size = parseInt(await this.#line(), 16)
    ) {
      await this.#skip(size + 2);
      bytes += size;
    }
    while ((await this.#line()) !== "");
    return { status, bytes };
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // closed
    }
  }

  async #headEnd(): Promise<number> {
    let scanned = 0;
    for (;;) {
      const b = this.#buffer;
      for (let i = this.#start + scanned; i + 3 < this.#end; i++) {
        if (b[i] === CR && b[i + 1] === LF && b[i + 2] === CR && b[i + 3] === LF) return i + 4;
      }
      scanned = Math.max(0, this.#end - this.#start - 3);
      await this.#fill();
    }
  }

  async #line(): Promise<string> {
    let scanned = 0;
    for (;;) {
      for (let i = this.#start + scanned; i + 1 < this.#end; i++) {
        if (this.#buffer[i] === CR && this.#buffer[i + 1] === LF) {
          const line = latin1(this.#buffer, this.#start, i);
          this.#start = i + 2;
          return line;
        }
      }
      scanned = Math.max(0, this.#end - this.#start - 1);
      await this.#fill();
    }
  }

  async #fill(): Promise<void> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    else if (this.#end === this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const n = await this.#conn.read(this.#buffer.subarray(this.#end));
    if (n === null) throw new Error("connection closed by the proxy");
    this.#end += n;
  }

  async #skip(n: number): Promise<void> {
    while (n > 0) {
      if (this.#start === this.#end) await this.#fill();
      const take = Math.min(n, this.#end - this.#start);
      this.#start += take;
      n -= take;
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let sent = 0;
  while (sent < bytes.length) sent += await conn.write(bytes.subarray(sent));
}

function latin1(bytes: Uint8Array, from: number, to: number): string {
  let text = "";
  for (let i = from; i < to; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

/** CPU time (user + system) of a process so far, in ms. */
async function cpuMsOfPid(pid: number): Promise<number> {
  try {
    const stat = (await run("cat", [`/proc/${pid}/stat`])).stdout;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

interface Proxy {
  name: string;
  port: number;
  pid: number;
  server: ServeProcess;
}

interface SmallResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  cpuUs: number;
}

/** Small hits: `concurrency` tunnels, one GET in flight each, for `seconds`. */
async function smallHits(
  proxy: Proxy,
  authority: string,
  paths: string[],
  options: { seconds: number; concurrency: number },
): Promise<SmallResult> {
  const encoder = new TextEncoder();
  const requests = paths.map((p) =>
    encoder.encode(`GET ${p} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
  );
  const tunnels = await Promise.all(
    Array.from({ length: options.concurrency }, () => Tunnel.open(proxy.port, authority)),
  );
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const cpu = await cpuMsOfPid(proxy.pid);
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  await Promise.all(tunnels.map(async (tunnel) => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const answer = await tunnel.get(requests[next++ % requests.length]!);
      if (answer.status === 200) latencies.push(performance.now() - t0);
      else errors++;
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const cpuMs = await cpuMsOfPid(proxy.pid) - cpu;
  for (const tunnel of tunnels) tunnel.close();
  return {
    rps: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors,
    cpuUs: cpuMs * 1000 / Math.max(1, latencies.length),
  };
}

/** Large hits: `n` sequential downloads on one tunnel; MB/s (10^6 bytes) of the median one. */
async function largeHits(
  proxy: Proxy,
  authority: string,
  path: string,
  n: number,
): Promise<number> {
  const tunnel = await Tunnel.open(proxy.port, authority);
  const request = new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const rates: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const answer = await tunnel.get(request);
      if (answer.status !== 200) {
        throw new Error(`${proxy.name}: ${path} answered ${answer.status}`);
      }
      rates.push(answer.bytes / 1e6 / ((performance.now() - t0) / 1000));
    }
  } finally {
    tunnel.close();
  }
  return median(rates);
}

/** Fetches each path once through the proxy (fills its cache) and checks the last is a hit. */
async function warm(proxy: Proxy, authority: string, paths: string[]): Promise<void> {
  const tunnel = await Tunnel.open(proxy.port, authority);
  try {
    for (const path of paths) {
      const request = new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
      );
      const answer = await tunnel.get(request);
      if (answer.status !== 200) {
        throw new Error(`${proxy.name}: ${path} answered ${answer.status}`);
      }
    }
  } finally {
    tunnel.close();
  }
  await new Promise((r) => setTimeout(r, 1000)); // background writes land
}

async function waitForPort(server: ServeProcess, port: number): Promise<void> {
  await server.waitForPort(port);
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const rounds = Number(flags.get("rounds") ?? 3);
  const seconds = Number(flags.get("seconds") ?? 5);
  const concurrency = Number(flags.get("concurrency") ?? 8);
  const files = Number(flags.get("files") ?? 64);
  const bigMib = Number(flags.get("big-mib") ?? 100);
  const bigN = Number(flags.get("big-n") ?? 3);
  const env = await environment();
  const work = await freshDir("revproxy");
  const certs = await makeOriginCerts(work);
  await using origin = startHttpsOrigin(certs);
  const authority = `localhost:${origin.port}`;
  await using minio = await startMinio({ bucket: "revproxy-bench" });
  const s3: S3Target = {
    bucket: minio.bucket,
    endpoint: minio.endpoint,
    accessKey: minio.accessKey,
    secretKey: minio.secretKey,
  };
  const baseEnv = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    SSL_CERT_FILE: certs.caFile,
    ...s3Env(s3),
  };
  const proxies: Proxy[] = [];
  const ours = (() => {
    const port = freePort();
    const server = new ServeProcess([
      executable("ours"),
      "serve",
      `--plugin=${freePort()}`,
      `--http=127.0.0.1:${port}`,
      `--cache-dir=${work}/ours`,
      `--bucket=${s3.bucket}`,
      `--s3-endpoint-url=${s3.endpoint}`,
      "--s3-path-style",
      "--region=us-east-1",
      "--prefix=ours",
      `--revproxy=${authority}`,
    ], baseEnv);
    return { name: "ours", port, pid: server.process.pid, server };
  })();
  await waitForPort(ours.server, ours.port);
  proxies.push(ours);
  const ts = tailscalePlugin();
  let tsSkipped = ts.reason;
  if (ts.path) {
    let unshared = true;
    try {
      await run("unshare", ["-m", "true"]);
    } catch {
      unshared = false;
    }
    if (!unshared) {
      tsSkipped = "unshare -m is not available: its CA would be appended to the system bundle";
    } else {
      const bundle = `${work}/ca-certificates.crt`;
      await Deno.copyFile("/etc/ssl/certs/ca-certificates.crt", bundle);
      const port = freePort();
      const argv = [
        ts.path,
        "serve",
        `--plugin=${freePort()}`,
        `--http=127.0.0.1:${port}`,
        `--cache-dir=${work}/tailscale`,
        `--bucket=${s3.bucket}`,
        `--s3-endpoint-url=${s3.endpoint}`,
        "--s3-path-style",
        "--region=us-east-1",
        "--prefix=tailscale",
        `--revproxy=${authority}`,
      ];
      const quoted = argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
      await Deno.mkdir(`${work}/tailscale-cwd`, { recursive: true });
      const server = new ServeProcess([
        "unshare",
        "-m",
        "sh",
        "-c",
        `mount --bind '${bundle}' /etc/ssl/certs/ca-certificates.crt && cd '${work}/tailscale-cwd' && exec ${quoted}`,
      ], baseEnv);
      try {
        await waitForPort(server, port);
        proxies.push({ name: "tailscale", port, pid: server.process.pid, server });
      } catch (error) {
        tsSkipped = `did not start: ${(error as Error).message.slice(0, 300)}`;
        await server[Symbol.asyncDispose]();
      }
    }
  }
  if (tsSkipped) progress(`tailscale's columns skipped: ${tsSkipped}`);

  const small = Array.from({ length: files }, (_, i) => `/immutable/f${i}`);
  const big = `/big/${bigMib << 20}`;
  for (const proxy of proxies) {
    progress(`${proxy.name}: warming ${files} small files and ${bigMib} MiB`);
    await warm(proxy, authority, [...small, big]);
    const check = await Tunnel.open(proxy.port, authority);
    check.close();
  }
  const originRequests = origin.total();
  const results = new Map<string, { small: SmallResult[]; large: number[] }>(
    proxies.map((p) => [p.name, { small: [], large: [] }]),
  );
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? proxies : [...proxies].reverse();
    for (const proxy of order) {
      progress(`round ${round + 1}/${rounds}: ${proxy.name} small hits`);
      results.get(proxy.name)!.small.push(
        await smallHits(proxy, authority, small, { seconds, concurrency }),
      );
    }
    for (const proxy of order) {
      progress(`round ${round + 1}/${rounds}: ${proxy.name} large hit`);
      results.get(proxy.name)!.large.push(await largeHits(proxy, authority, big, bigN));
    }
  }
  if (origin.total() !== originRequests) {
    progress(`warning: the origin saw ${origin.total() - originRequests} requests during the hits`);
  }
  const rss = new Map<string, number>();
  for (const proxy of proxies) rss.set(proxy.name, await peakRssOfPid(proxy.pid));
  for (const proxy of proxies) await proxy.server[Symbol.asyncDispose]();

  const rows = proxies.map((proxy) => {
    const r = results.get(proxy.name)!;
    const of = (pick: (s: SmallResult) => number) => median(r.small.map(pick));
    return [
      proxy.name === "ours" ? "ours (Deno)" : "tailscale",
      of((s) => s.rps).toFixed(0),
      `${of((s) => s.p50).toFixed(2)} / ${of((s) => s.p99).toFixed(2)} ms`,
      `${of((s) => s.cpuUs).toFixed(0)} µs`,
      String(r.small.reduce((sum, s) => sum + s.errors, 0)),
      median(r.large).toFixed(0),
      `${(rss.get(proxy.name) ?? NaN).toFixed(0)} MiB`,
    ];
  });
  if (tsSkipped) rows.push(["tailscale", "skipped", tsSkipped, "", "", "", ""]);
  const path = await saveResults("revproxy", {
    env,
    rounds,
    seconds,
    concurrency,
    files,
    bigMib,
    bigN,
    results: Object.fromEntries(results),
    rss: Object.fromEntries(rss),
    tailscaleSkipped: tsSkipped ?? null,
  });
  print(`### Caching HTTPS proxy (\`serve --revproxy\`) through HTTPS_PROXY

${env.date}, ${env.cpus}, Deno ${env.deno}, ${env.go}; load ${env.load}. ${rounds} rounds,
interleaved; medians. Small: ${files} immutable files of ~15 bytes, ${concurrency} tunnels, one
request in flight each, ${seconds} s per round. Large: a ${bigMib} MiB immutable file, ${bigN}
downloads per round on one tunnel (MB = 10^6 bytes). Peak RSS after all rounds (VmHWM).

${
    table([
      "proxy",
      "small hits/s",
      "p50 / p99",
      "server CPU per hit",
      "errors",
      "large hit MB/s",
      "peak RSS",
    ], rows)
  }

Results: \`${path}\`.`);
}

if (import.meta.main) await main();
