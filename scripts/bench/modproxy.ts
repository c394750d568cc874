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
 * Then a loopback load test of each warm proxy: `--concurrency` workers (fetch, keep-alive) for
 * `--seconds` per file kind (.info, .mod, .zip) over the graph's files; requests/s, p50, p99.
 * The load generator is this Deno process, on the same 2 cores as the server under test.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/modproxy.ts [--n=5] [--n-cold=3]
 *        [--seconds=5] [--concurrency=8]
 *
 * @module
 */

import { findMinio, freePort, startMinio } from "../../tests/_util/minio.ts";
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

/** A loopback load test of `base` (ending in /mod) for one file kind. */
async function load(
  base: string,
  modules: ModVersion[],
  kind: "info" | "mod" | "zip",
  options: { seconds: number; concurrency: number },
): Promise<{ rps: number; p50: number; p99: number; errors: number; mibps: number }> {
  const urls = modules.map((m) => `${base}/${escape(m.path)}/@v/${escape(m.version)}.${kind}`);
  const latencies: number[] = [];
  let errors = 0;
  let bytes = 0;
  let next = 0;
  const deadline = performance.now() + options.seconds * 1000;
  async function worker(): Promise<void> {
    while (performance.now() < deadline) {
      const url = urls[next++ % urls.length]!;
      const started = performance.now();
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
        const body = await response.arrayBuffer();
        if (response.ok) {
          bytes += body.byteLength;
          latencies.push(performance.now() - started);
        } else errors++;
      } catch {
        errors++;
      }
    }
  }
  const started = performance.now();
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  return {
    rps: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors,
    mibps: bytes / seconds / 1024 / 1024,
  };
}

/** One proxy configuration under test. */
interface ProxyConfig {
  name: string;
  impl: Impl;
  s3: boolean;
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const n = Number(flags.get("n") ?? 5);
  const nCold = Number(flags.get("n-cold") ?? 3);
  const seconds = Number(flags.get("seconds") ?? 5);
  const concurrency = Number(flags.get("concurrency") ?? 8);
  const ts = tailscalePlugin();
  const skipped: Record<string, string> = {};
  await prepareWorkload();
  const env = await environment();
  const upstream = (await run("go", ["env", "GOPROXY"])).stdout.trim();
  // GOPROXY-style list: the first entry is the proxy itself
  const upstreamProxy = upstream.split(/[,|]/)[0]!;

  await using minio = (await findMinio()) ? await startMinio({ bucket: "modproxy" }) : undefined;
  const configs: ProxyConfig[] = [{ name: "ours (local)", impl: "ours", s3: false }];
  if (minio && !flags.has("no-s3-ours")) {
    configs.push({ name: "ours + S3", impl: "ours", s3: true });
  }
  if (ts.path && minio) configs.push({ name: "tailscale + S3", impl: "tailscale", s3: true });
  else skipped.tailscale = ts.reason ?? "tailscale's plugin needs a bucket and MinIO is absent";

  const times = new Map<string, number[]>();
  const add = (name: string, value: number) => {
    if (!times.has(name)) times.set(name, []);
    times.get(name)!.push(value);
  };
  let modules: ModVersion[] = [];
  const rss: Record<string, number> = {};
  const loadResults: Record<string, Record<string, unknown>> = {};
  let bucketSeq = 0;

  /** Starts a proxy with empty state; undefined (and a skip reason) if it does not come up. */
  async function startProxy(
    config: ProxyConfig,
  ): Promise<{ server: ServeProcess; base: string } | undefined> {
    const port = freePort();
    const httpPort = freePort();
    let s3: S3Target | undefined;
    if (config.s3) {
      const bucket = `mp-${config.impl}-${++bucketSeq}`;
      await minio!.createBucket(bucket);
      s3 = {
        endpoint: minio!.endpoint,
        bucket,
        accessKey: minio!.accessKey,
        secretKey: minio!.secretKey,
      };
    }
    const dir = await freshDir(`modproxy-${config.impl}`);
    const server = new ServeProcess(
      serveArgv(config.impl, port, dir, { s3, http: `127.0.0.1:${httpPort}`, modproxy: true }),
      {
        PATH: Deno.env.get("PATH") ?? "",
        HOME: Deno.env.get("HOME") ?? "/tmp",
        GOPROXY: upstream,
        GOSUMDB: "off",
        ...s3Env(s3),
      },
    );
    try {
      await server.waitForPort(httpPort);
      return { server, base: `http://127.0.0.1:${httpPort}/mod` };
    } catch (error) {
      await server[Symbol.asyncDispose]();
      skipped[config.name] = (error as Error).message.slice(0, 300);
      return undefined;
    }
  }

  // cold: a new, empty proxy per run; also the upstream straight
  for (let round = 0; round < nCold; round++) {
    progress(`cold round ${round + 1}/${nCold} (load ${await loadAverage()})`);
    const direct = await download(upstreamProxy);
    add("upstream straight", direct.ms);
    modules = direct.modules;
    for (const config of configs) {
      if (skipped[config.name]) continue;
      const proxy = await startProxy(config);
      if (!proxy) continue;
      try {
        add(`${config.name} cold`, (await download(proxy.base)).ms);
      } catch (error) {
        skipped[config.name] = (error as Error).message.slice(0, 300);
      } finally {
        await proxy.server[Symbol.asyncDispose]();
      }
    }
  }

  // warm: one proxy per config, filled once, then n runs; then the load test
  for (const config of configs) {
    if (skipped[config.name]) continue;
    const proxy = await startProxy(config);
    if (!proxy) continue;
    try {
      await download(proxy.base);
      for (let round = 0; round < n; round++) {
        add(`${config.name} warm`, (await download(proxy.base)).ms);
      }
      const perKind: Record<string, unknown> = {};
      for (const kind of ["info", "mod", "zip"] as const) {
        progress(`load ${config.name} .${kind} (load ${await loadAverage()})`);
        perKind[kind] = await load(proxy.base, modules, kind, { seconds, concurrency });
      }
      loadResults[config.name] = perKind;
      rss[config.name] = await peakRssOfPid(proxy.server.process.pid);
    } catch (error) {
      skipped[config.name] = (error as Error).message.slice(0, 300);
    } finally {
      await proxy.server[Symbol.asyncDispose]();
    }
  }
  for (let round = 0; round < Math.max(0, n - nCold); round++) {
    add("upstream straight", (await download(upstreamProxy)).ms);
  }

  const upstreamMedian = median(times.get("upstream straight") ?? []);
  const rows = [...times.entries()].map(([name, samples]) => [
    name,
    String(samples.length),
    ms(median(samples)),
    `${ms(Math.min(...samples))} – ${ms(Math.max(...samples))}`,
    ratio(median(samples), upstreamMedian),
  ]);
  const loadRows: string[][] = [];
  for (const [name, perKind] of Object.entries(loadResults)) {
    for (const [kind, r] of Object.entries(perKind)) {
      const result = r as { rps: number; p50: number; p99: number; errors: number; mibps: number };
      loadRows.push([
        name,
        `.${kind}`,
        result.rps.toFixed(0),
        ms(result.p50),
        ms(result.p99),
        result.mibps.toFixed(1),
        String(result.errors),
      ]);
    }
  }
  const saved = await saveResults("modproxy", {
    env,
    upstream,
    modules,
    n,
    nCold,
    seconds,
    concurrency,
    times: Object.fromEntries(times),
    load: loadResults,
    rss,
    skipped,
  });
  print(
    `### go mod download of the workload graph (${modules.length} module versions)\n`,
  );
  print(table(["configuration", "n", "median", "range", "vs upstream straight"], rows));
  print(
    `\n### Warm proxy under loopback load (${concurrency} workers, ${seconds} s per kind)\n`,
  );
  print(table(["proxy", "kind", "req/s", "p50", "p99", "MiB/s", "errors"], loadRows));
  print(`\nserve peak RSS (VmHWM, MiB): ${JSON.stringify(rss)}`);
  for (const [name, reason] of Object.entries(skipped)) print(`- skipped ${name}: ${reason}`);
  print(`\nresults: ${saved}`);
  print(
    `reproduce: TAILSCALE_PLUGIN=${
      ts.path ?? "/path/to/go-cache-plugin"
    } GCP_BENCH_DIR=${BENCH_DIR} ${DENO_RUN} scripts/bench/modproxy.ts --n=${n} --n-cold=${nCold} --seconds=${seconds} --concurrency=${concurrency}`,
  );
}

if (import.meta.main) await main();
