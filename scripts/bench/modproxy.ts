/**
 * Module proxy benchmarks on the workload's module graph (`go mod download` in the prepared
 * golang.org/x/tools checkout, a fresh GOMODCACHE each run, GOSUMDB=off since the checksum
 * database host is unreachable here; go.sum still verifies every download):
 *
 * - straight from the upstream (`go env GOPROXY`, read at run time);
 * - through our `serve --http --modproxy` (local tier; and with a MinIO bucket when our S3 tier
 *   works), cold (fresh cache dir and bucket, new server) and warm (same server again);
 * - through tailscale's `serve --http --modproxy` (it needs a bucket; its upstream is fixed in
 *   its code to the public proxy, so it only works where that is reachable).
 *
 * The warm proxies all run at once and are measured in turns (warm runs round-robin, then
 * `--load-rounds` rounds of a loopback load test, each round visiting every proxy per file kind,
 * starting with the next proxy each round), so that other work on the machine falls on all of
 * them alike. The load test: `--concurrency` keep-alive connections, one request in flight each,
 * for `--seconds` per file kind (.info, .mod, .zip) over the graph's files; it reports the median
 * over rounds of requests/s, p50, p99, and the CPU time per request of the server (all threads)
 * and of the load generator. The generator is this Deno process, on the same cores as the server
 * under test, so it speaks HTTP/1.1 on raw TCP connections (no `fetch`, no Request or Response
 * objects): it costs a few µs per request, well below either server. Then the peak RSS (VmHWM)
 * of every proxy process, next to tailscale's.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/modproxy.ts [--n=5] [--n-cold=3]
 *        [--seconds=5] [--concurrency=8] [--load-rounds=3]
 * `--n=0 --n-cold=0` measures the load alone (one filling download per proxy).
 *
 * @module
 */

import { findMinio, freePort, type Minio, startMinio } from "../servers/minio.ts";
import {
  BENCH_DIR,
  DENO_RUN,
  environment,
  freshDir,
  goEnv,
  loadAverage,
  median,
  ms,
  parseFlags,
  peakRssOfPid,
  percentile,
  prepareWorkload,
  print,
  progress,
  ratio,
  removeDir,
  run,
  saveResults,
  table,
  tailscalePlugin,
  WORK,
} from "./_lib.ts";
import { type Impl, s3Env, type S3Target, serveArgv, ServeProcess } from "./_plugins.ts";

/** A module version in the graph. */
interface ModVersion {
  path: string;
  version: string;
}

/** `go mod download` of the workload through `goproxy`; resolves to ms and the module list. */
async function download(goproxy: string): Promise<{ ms: number; modules: ModVersion[] }> {
  const modcache = await freshDir("modproxy-gomodcache");
  const env = goEnv(`${BENCH_DIR}/tmp/modproxy-gocache`, { goproxy, modcache });
  const out = await run("go", ["mod", "download", "-json"], {
    env,
    cwd: WORK.dir,
    timeoutMs: 300_000,
  });
  const modules: ModVersion[] = [];
  for (const match of out.stdout.matchAll(/"Path": "([^"]+)",\s*"Version": "([^"]+)"/g)) {
    modules.push({ path: match[1]!, version: match[2]! });
  }
  if (out.stdout.includes('"Error"')) {
    throw new Error(`Cannot download through ${goproxy}: ${out.stdout.slice(0, 500)}`);
  }
  await run("chmod", ["-R", "u+w", modcache]);
  await removeDir(modcache);
  return { ms: out.ms, modules };
}

/** Escapes a module path or version the way GOPROXY URLs need (`!` before upper case). */
function escape(text: string): string {
  return text.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`);
}

/** The figures of one load run. */
interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  mibps: number;
  /** The server's CPU time (user + system, all threads) per request, in µs. */
  serverCpuUs: number;
  /** This process's (the load generator's) CPU time per request, in µs. */
  clientCpuUs: number;
}

const CR = 13;
const LF = 10;

/**
 * One keep-alive HTTP/1.1 connection of the load generator, read through a reused buffer. It
 * understands just what the proxies send (status line, `content-length` or chunked bodies) and
 * decodes nothing but header lines, so that it costs the shared cores as little as possible.
 */
class LoadConnection {
  readonly conn: Deno.TcpConn;
  #buffer = new Uint8Array(256 << 10);
  #start = 0;
  #end = 0;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Sends one request (pre-encoded) and reads its response; resolves to status and body size. */
  async exchange(request: Uint8Array): Promise<{ status: number; bytes: number }> {
    let sent = 0;
    while (sent < request.length) sent += await this.conn.write(request.subarray(sent));
    // The head is parsed in the buffer, byte by byte: no strings for the common case.
    const headEnd = await this.#headEnd();
    const b = this.#buffer;
    const status = (b[this.#start + 9]! - 48) * 100 + (b[this.#start + 10]! - 48) * 10 +
      b[this.#start + 11]! - 48;
    let length = 0;
    let chunked = false;
    for (let line = this.#start; line < headEnd - 2;) {
      let eol = line;
      while (b[eol] !== CR) eol++;
      if (startsWithName(b, line, CONTENT_LENGTH)) {
        length = 0;
        for (let i = line + CONTENT_LENGTH.length; i < eol; i++) {
          if (b[i]! >= 48 && b[i]! <= 57) length = length * 10 + b[i]! - 48;
        }
      } else if (startsWithName(b, line, TRANSFER_ENCODING)) chunked = true; // only chunked is sent
      line = eol + 2;
    }
    this.#start = headEnd;
    if (!chunked) {
      await this.#skip(length);
      return { status, bytes: length };
    }
    let bytes = 0;
    for (
      let size = parseInt(await this.#line(), 16);
      size > 0;
      size = parseInt(await this.#line(), 16)
    ) {
      await this.#skip(size + 2); // the chunk and its CRLF
      bytes += size;
    }
    while ((await this.#line()) !== ""); // trailers
    return { status, bytes };
  }

  /** Waits for a whole response head; resolves to the index just past its empty line. */
  async #headEnd(): Promise<number> {
    let scanned = 0;
    for (;;) {
      for (let i = this.#start + scanned; i + 3 < this.#end; i++) {
        if (
          this.#buffer[i] === CR && this.#buffer[i + 1] === LF && this.#buffer[i + 2] === CR &&
          this.#buffer[i + 3] === LF
        ) return i + 4;
      }
      scanned = Math.max(0, this.#end - this.#start - 3);
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
    const n = await this.conn.read(this.#buffer.subarray(this.#end));
    if (n === null) throw new Error("connection closed by the server");
    this.#end += n;
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

  async #skip(n: number): Promise<void> {
    while (n > 0) {
      if (this.#start === this.#end) await this.#fill();
      const take = Math.min(n, this.#end - this.#start);
      this.#start += take;
      n -= take;
    }
  }
}

const CONTENT_LENGTH = new TextEncoder().encode("content-length:");
const TRANSFER_ENCODING = new TextEncoder().encode("transfer-encoding:");

/** Whether the header line at `at` has this lower-case `name:` (ASCII, any case). */
function startsWithName(bytes: Uint8Array, at: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) {
    // `| 0x20` lowers letters and leaves "-" and ":" as they are
    if ((bytes[at + i]! | 0x20) !== name[i]) return false;
  }
  return true;
}

function latin1(bytes: Uint8Array, from: number, to: number): string {
  let text = "";
  for (let i = from; i < to; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

/** CPU time (user + system) of a process so far, in ms, from /proc (through cat, see _lib.ts). */
async function cpuMsOfPid(pid: number): Promise<number> {
  try {
    const stat = (await run("cat", [`/proc/${pid}/stat`])).stdout;
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 1000 / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** Linux's USER_HZ, the unit of /proc/PID/stat's times, on every platform Linux runs on now. */
const CLOCK_TICKS = 100;

/**
 * A loopback load test of one proxy (`port`, `paths` under `/mod`) for one file kind:
 * `concurrency` keep-alive connections with one request in flight each, for `seconds`.
 */
async function load(
  port: number,
  serverPid: number,
  paths: string[],
  options: { seconds: number; concurrency: number },
): Promise<LoadResult> {
  const encoder = new TextEncoder();
  const requests = paths.map((path) =>
    encoder.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
  );
  const latencies: number[] = [];
  let errors = 0;
  let bytes = 0;
  let next = 0;
  const open = new Set<Deno.TcpConn>();
  const deadline = performance.now() + options.seconds * 1000;
  // A server that stops answering must not hang the benchmark: cut its connections.
  const stuck = setTimeout(
    () => open.forEach((conn) => conn.close()),
    options.seconds * 1000 + 10_000,
  );
  async function worker(): Promise<void> {
    let connection: LoadConnection | undefined;
    while (performance.now() < deadline) {
      const request = requests[next++ % requests.length]!;
      try {
        if (!connection) {
          connection = new LoadConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
          open.add(connection.conn);
        }
        const started = performance.now();
        const response = await connection.exchange(request);
        if (response.status === 200) {
          bytes += response.bytes;
          latencies.push(performance.now() - started);
        } else errors++;
      } catch {
        errors++;
        if (connection) closeQuietly(connection.conn, open);
        connection = undefined;
      }
    }
    if (connection) closeQuietly(connection.conn, open);
  }
  const serverCpu = await cpuMsOfPid(serverPid);
  const clientCpu = await cpuMsOfPid(Deno.pid);
  const started = performance.now();
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  clearTimeout(stuck);
  const perRequestUs = (ms: number) => ms * 1000 / Math.max(1, latencies.length);
  return {
    rps: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors,
    mibps: bytes / seconds / 1024 / 1024,
    serverCpuUs: perRequestUs(await cpuMsOfPid(serverPid) - serverCpu),
    // the two `cat`s this costs are child processes, not counted in this process's times
    clientCpuUs: perRequestUs(await cpuMsOfPid(Deno.pid) - clientCpu),
  };
}

function closeQuietly(conn: Deno.TcpConn, open: Set<Deno.TcpConn>): void {
  open.delete(conn);
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** The median of each figure over rounds. */
function medianResult(results: LoadResult[]): LoadResult {
  const of = (pick: (r: LoadResult) => number) => median(results.map(pick));
  return {
    rps: of((r) => r.rps),
    p50: of((r) => r.p50),
    p99: of((r) => r.p99),
    errors: results.reduce((sum, r) => sum + r.errors, 0),
    mibps: of((r) => r.mibps),
    serverCpuUs: of((r) => r.serverCpuUs),
    clientCpuUs: of((r) => r.clientCpuUs),
  };
}

/** The list rotated left by `by`: each round starts with the next one. */
function rotate<T>(list: T[], by: number): T[] {
  const k = list.length === 0 ? 0 : by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** One proxy configuration under test. */
interface ProxyConfig {
  name: string;
  impl: Impl;
  s3: boolean;
}

/** What the scenarios of one run share, and what they found. */
interface ProxyRun {
  n: number;
  nCold: number;
  seconds: number;
  concurrency: number;
  loadRounds: number;
  minio?: Minio;
  /** `go env GOPROXY`, and its first entry (the proxy itself). */
  upstream: string;
  upstreamProxy: string;
  configs: ProxyConfig[];
  skipped: Record<string, string>;
  /** Download times by configuration. */
  times: Map<string, number[]>;
  /** The module versions the workload's graph downloads. */
  modules: ModVersion[];
  /** Peak RSS (MiB) of each warm proxy after its downloads, and after the load test. */
  rssAfterDownloads: Record<string, number>;
  rss: Record<string, number>;
  loadResults: Record<string, Record<string, { median: LoadResult; rounds: LoadResult[] }>>;
  bucketSeq: number;
}

/** Adds one download time. */
function addTime(r: ProxyRun, name: string, value: number): void {
  if (!r.times.has(name)) r.times.set(name, []);
  r.times.get(name)!.push(value);
}

/** Starts a proxy with empty state; undefined (and a skip reason) if it does not come up. */
async function startProxy(
  r: ProxyRun,
  config: ProxyConfig,
): Promise<{ server: ServeProcess; base: string } | undefined> {
  const port = freePort();
  const httpPort = freePort();
  let s3: S3Target | undefined;
  if (config.s3) {
    const bucket = `mp-${config.impl}-${++r.bucketSeq}`;
    await r.minio!.createBucket(bucket);
    s3 = {
      endpoint: r.minio!.endpoint,
      bucket,
      accessKey: r.minio!.accessKey,
      secretKey: r.minio!.secretKey,
    };
  }
  const dir = await freshDir(`modproxy-${config.impl}`);
  const server = new ServeProcess(
    serveArgv(config.impl, port, dir, { s3, http: `127.0.0.1:${httpPort}`, modproxy: true }),
    {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      GOPROXY: r.upstream,
      GOSUMDB: "off",
      ...s3Env(s3),
    },
  );
  try {
    await server.waitForPort(httpPort);
    return { server, base: `http://127.0.0.1:${httpPort}/mod` };
  } catch (error) {
    await server[Symbol.asyncDispose]();
    r.skipped[config.name] = (error as Error).message.slice(0, 300);
    return undefined;
  }
}

/** cold: a new, empty proxy per run; also the upstream straight. */
async function coldScenario(r: ProxyRun): Promise<void> {
  const { nCold, upstreamProxy, configs, skipped } = r;
  // cold: a new, empty proxy per run; also the upstream straight
  for (let round = 0; round < nCold; round++) {
    progress(`cold round ${round + 1}/${nCold} (load ${await loadAverage()})`);
    const direct = await download(upstreamProxy);
    addTime(r, "upstream straight", direct.ms);
    r.modules = direct.modules;
    for (const config of configs) {
      if (skipped[config.name]) continue;
      const proxy = await startProxy(r, config);
      if (!proxy) continue;
      try {
        addTime(r, `${config.name} cold`, (await download(proxy.base)).ms);
      } catch (error) {
        skipped[config.name] = (error as Error).message.slice(0, 300);
      } finally {
        await proxy.server[Symbol.asyncDispose]();
      }
    }
  }
}

/** warm: every proxy filled once, then warm runs and load rounds interleaved. */
async function warmScenario(r: ProxyRun): Promise<void> {
  const {
    n,
    nCold,
    seconds,
    concurrency,
    loadRounds,
    upstreamProxy,
    configs,
    skipped,
    rssAfterDownloads,
    rss,
    loadResults,
  } = r;
  // warm: every config's proxy up at once (an idle one costs nothing), filled once; then the
  // warm runs and the load rounds interleaved, so that whatever else the machine does falls on
  // all of them alike
  const warm: { config: ProxyConfig; server: ServeProcess; base: string; port: number }[] = [];
  try {
    for (const config of configs) {
      if (skipped[config.name]) continue;
      const proxy = await startProxy(r, config);
      if (!proxy) continue;
      warm.push({ config, ...proxy, port: Number(new URL(proxy.base).port) });
      try {
        const filled = await download(proxy.base);
        if (r.modules.length === 0) r.modules = filled.modules;
      } catch (error) {
        skipped[config.name] = (error as Error).message.slice(0, 300);
      }
    }
    const live = () => warm.filter((w) => !skipped[w.config.name]);
    for (let round = 0; round < n; round++) {
      for (const w of rotate(live(), round)) {
        addTime(r, `${w.config.name} warm`, (await download(w.base)).ms);
      }
    }
    for (const w of live()) {
      rssAfterDownloads[w.config.name] = await peakRssOfPid(w.server.process.pid);
    }
    const rounds = new Map<string, LoadResult[]>();
    for (let round = 0; round < loadRounds; round++) {
      for (const kind of ["info", "mod", "zip"] as const) {
        const paths = r.modules.map((m) =>
          `/mod/${escape(m.path)}/@v/${escape(m.version)}.${kind}`
        );
        for (const w of rotate(live(), round)) {
          progress(
            `load ${w.config.name} .${kind} round ${
              round + 1
            }/${loadRounds} (load ${await loadAverage()})`,
          );
          const result = await load(w.port, w.server.process.pid, paths, { seconds, concurrency });
          const name = `${w.config.name}\u0000${kind}`;
          rounds.set(name, [...rounds.get(name) ?? [], result]);
        }
      }
    }
    for (const [name, results] of rounds) {
      const [config, kind] = name.split("\u0000") as [string, string];
      (loadResults[config] ??= {})[kind] = { median: medianResult(results), rounds: results };
    }
    for (const w of live()) rss[w.config.name] = await peakRssOfPid(w.server.process.pid);
  } finally {
    for (const w of warm) await w.server[Symbol.asyncDispose]();
  }
  for (let round = 0; round < Math.max(0, n - nCold); round++) {
    addTime(r, "upstream straight", (await download(upstreamProxy)).ms);
  }
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const ts = tailscalePlugin();
  await prepareWorkload();
  const env = await environment();
  const upstream = (await run("go", ["env", "GOPROXY"])).stdout.trim();

  await using minio = (await findMinio()) ? await startMinio({ bucket: "modproxy" }) : undefined;
  const r: ProxyRun = {
    n: Number(flags.get("n") ?? 5),
    nCold: Number(flags.get("n-cold") ?? 3),
    seconds: Number(flags.get("seconds") ?? 5),
    concurrency: Number(flags.get("concurrency") ?? 8),
    loadRounds: Number(flags.get("load-rounds") ?? 3),
    minio,
    upstream,
    // GOPROXY-style list: the first entry is the proxy itself
    upstreamProxy: upstream.split(/[,|]/)[0]!,
    configs: [{ name: "ours (local)", impl: "ours", s3: false }],
    skipped: {},
    times: new Map(),
    modules: [],
    rssAfterDownloads: {},
    rss: {},
    loadResults: {},
    bucketSeq: 0,
  };
  if (minio && !flags.has("no-s3-ours")) {
    r.configs.push({ name: "ours + S3", impl: "ours", s3: true });
  }
  if (ts.path && minio) r.configs.push({ name: "tailscale + S3", impl: "tailscale", s3: true });
  else r.skipped.tailscale = ts.reason ?? "tailscale's plugin needs a bucket and MinIO is absent";

  await coldScenario(r);
  await warmScenario(r);
  await printReport(r, env, ts.path);
}

/** Saves the results and prints the tables. */
async function printReport(
  r: ProxyRun,
  env: Awaited<ReturnType<typeof environment>>,
  tsPath: string | undefined,
): Promise<void> {
  const {
    n,
    nCold,
    seconds,
    concurrency,
    loadRounds,
    upstream,
    times,
    modules,
    rssAfterDownloads,
    rss,
    loadResults,
    skipped,
  } = r;
  const upstreamMedian = median(times.get("upstream straight") ?? []);
  const rows = [...times.entries()].map(([name, samples]) => [
    name,
    String(samples.length),
    ms(median(samples)),
    `${ms(Math.min(...samples))} – ${ms(Math.max(...samples))}`,
    ratio(median(samples), upstreamMedian),
  ]);
  const loadRows: string[][] = [];
  const reference = Object.keys(loadResults).find((name) => name.startsWith("tailscale"));
  for (const [name, perKind] of Object.entries(loadResults)) {
    for (const [kind, { median: result }] of Object.entries(perKind)) {
      const base = reference ? loadResults[reference]?.[kind]?.median : undefined;
      loadRows.push([
        name,
        `.${kind}`,
        result.rps.toFixed(0),
        base ? ratio(result.rps, base.rps) : "n/a",
        ms(result.p50),
        ms(result.p99),
        result.mibps.toFixed(1),
        result.serverCpuUs.toFixed(1),
        result.clientCpuUs.toFixed(1),
        String(result.errors),
      ]);
    }
  }
  const rssRows = Object.entries(rss).map(([name, mib]) => [
    name,
    (rssAfterDownloads[name] ?? NaN).toFixed(0),
    reference ? ratio(rssAfterDownloads[name] ?? NaN, rssAfterDownloads[reference] ?? NaN) : "n/a",
    mib.toFixed(0),
    reference ? ratio(mib, rss[reference] ?? NaN) : "n/a",
  ]);
  const saved = await saveResults("modproxy", {
    env,
    upstream,
    modules,
    n,
    nCold,
    seconds,
    concurrency,
    loadRounds,
    times: Object.fromEntries(times),
    load: loadResults,
    rssAfterDownloads,
    rss,
    skipped,
  });
  print(
    `### go mod download of the workload graph (${modules.length} module versions)\n`,
  );
  print(table(["configuration", "n", "median", "range", "vs upstream straight"], rows));
  print(
    `\n### Warm proxy under loopback load (${concurrency} connections, ${seconds} s per kind, ` +
      `median of ${loadRounds} interleaved rounds)\n`,
  );
  print(
    table([
      "proxy",
      "kind",
      "req/s",
      "vs tailscale",
      "p50",
      "p99",
      "MiB/s",
      "server CPU µs/req",
      "generator CPU µs/req",
      "errors",
    ], loadRows),
  );
  print("\n### Peak RSS of each proxy process (VmHWM)\n");
  print(
    table([
      "proxy",
      "after downloads (MiB)",
      "vs tailscale",
      "after the load test (MiB)",
      "vs tailscale",
    ], rssRows),
  );
  for (const [name, reason] of Object.entries(skipped)) print(`- skipped ${name}: ${reason}`);
  print(`\nresults: ${saved}`);
  print(
    `reproduce: TAILSCALE_PLUGIN=${
      tsPath ?? "/path/to/go-cache-plugin"
    } GCP_BENCH_DIR=${BENCH_DIR} ${DENO_RUN} scripts/bench/modproxy.ts --n=${n} --n-cold=${nCold} --seconds=${seconds} --concurrency=${concurrency} --load-rounds=${loadRounds}`,
  );
}

if (import.meta.main) await main();
