/**
 * Build benchmarks on the prepared workload (see `_lib.ts`): go's built-in GOCACHE, our plugin
 * and tailscale's plugin side by side, rounds interleaved so load drifts hit every column alike.
 *
 * Scenarios (`--scenarios=cold,warm,s3warm,server`, in that order):
 * - `cold`: empty caches everywhere (`--n-cold` rounds). Ours runs local-only and, when the S3
 *   tier works, with a fresh bucket (uploads); tailscale's always needs a bucket (uploads). The
 *   last round's caches and buckets become the warm state of the later scenarios.
 * - `warm`: built-in with its warm GOCACHE; the plugins with a warm cache dir and a fresh
 *   GOCACHE each run.
 * - `s3warm`: a fresh local dir and GOCACHE each run, bucket filled by a cold build (the
 *   fresh-CI-worker case).
 * - `server`: warm builds through `serve --plugin` + `connect` vs direct, both implementations.
 *
 * Each plugin runs under GNU time (`/usr/bin/time -f %M`) for its peak RSS; `serve` processes
 * are sampled from /proc (VmHWM) at the end.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/build.ts [--scenarios=warm] [--n=5]
 *        [--n-cold=3] [--cold-s3-only] [--no-s3-ours] [--rewarm]
 *
 * @module
 */

import { findMinio, freePort, type Minio, startMinio } from "../servers/minio.ts";
import {
  BENCH_DIR,
  countDeps,
  DENO_RUN,
  environment,
  freshDir,
  goEnv,
  loadAverage,
  median,
  ms,
  parseFlags,
  peakRssOfPid,
  prepareWorkload,
  print,
  progress,
  ratio,
  readCpu,
  readRss,
  removeDir,
  run,
  saveResults,
  table,
  tailscalePlugin,
  withRss,
  WORK,
} from "./_lib.ts";
import {
  connectArgv,
  directArgv,
  type Impl,
  s3Env,
  type S3Target,
  serveArgv,
  ServeProcess,
} from "./_plugins.ts";

/** One timed build. */
interface Sample {
  ms: number;
  rssMiB: number;
  /** The plugin process's CPU seconds (user + system); less load-sensitive than wall time. */
  cpuS?: number;
  objects?: number;
  load: string;
}

/** Samples by scenario, then configuration. */
type Results = Record<string, Record<string, Sample[]>>;

const WARM = `${BENCH_DIR}/warm`;
let pkgs: string[] = [];

/** Runs `go build` of the workload; resolves to its wall time in ms. */
async function goBuild(env: Record<string, string>): Promise<number> {
  const out = await run("go", ["build", ...pkgs], { env, cwd: WORK.dir, timeoutMs: 900_000 });
  return out.ms;
}

/** A plugin-driven build: fresh GOCACHE, plugin under GNU time. */
async function pluginBuild(
  argv: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ ms: number; rssMiB: number; cpuS: number }> {
  const gocache = await freshDir("gocache");
  const rssFile = `${BENCH_DIR}/tmp/rss.txt`;
  await Deno.remove(rssFile).catch(() => {});
  const elapsed = await goBuild({
    ...goEnv(gocache, { gocacheprog: withRss(argv, rssFile) }),
    ...extraEnv,
  });
  const rssMiB = await readRss(rssFile);
  const cpuS = await readCpu(rssFile);
  await removeDir(gocache);
  return { ms: elapsed, rssMiB, cpuS };
}

function target(minio: Minio, bucket: string): S3Target {
  return {
    endpoint: minio.endpoint,
    bucket,
    accessKey: minio.accessKey,
    secretKey: minio.secretKey,
  };
}

async function countObjects(minio: Minio, bucket: string): Promise<number> {
  return (await minio.listKeys(bucket)).length;
}

/** Whether our plugin's S3 tier works (a handshake-and-close with --bucket exits 0). */
async function oursS3Works(minio: Minio): Promise<boolean> {
  try {
    await minio.createBucket("probe");
    const argv = directArgv("ours", await freshDir("probe"), target(minio, "probe"));
    const child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      env: { PATH: Deno.env.get("PATH") ?? "", HOME: BENCH_DIR, ...s3Env(target(minio, "probe")) },
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode('{"ID":1,"Command":"close"}\n'));
    await writer.close();
    const out = await child.output();
    const err = new TextDecoder().decode(out.stderr);
    if (!out.success || /not implemented|error/i.test(err)) {
      progress(`our S3 tier is not usable yet: ${err.trim().slice(0, 200)}`);
      return false;
    }
    return true;
  } catch (error) {
    progress(`our S3 tier probe failed: ${(error as Error).message}`);
    return false;
  }
}

function record(results: Results, scenario: string, config: string, sample: Sample): void {
  ((results[scenario] ??= {})[config] ??= []).push(sample);
  progress(
    `${scenario} ${config}: ${ms(sample.ms)}, rss ${sample.rssMiB.toFixed(0)} MiB, cpu ${
      sample.cpuS?.toFixed(2) ?? "-"
    } s${sample.objects !== undefined ? `, ${sample.objects} objects` : ""} (load ${sample.load})`,
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** What the scenarios share: flags, the S3 server, what is usable, and the results so far. */
interface BenchRun {
  n: number;
  nCold: number;
  /** Cold rounds of the two S3 configurations only (skips built-in and ours local-only). */
  s3Only: boolean;
  minio?: Minio;
  /** Whether our S3 tier works against `minio`. */
  oursS3: boolean;
  /** Whether tailscale's plugin runs (it needs a bucket). */
  useTs: boolean;
  results: Results;
  /** Peak RSS (MiB) of the serve processes. */
  serverRss: Record<string, number>;
  skipped: Record<string, string>;
  /** Buckets holding a complete cold build, by implementation. */
  warmBuckets: Partial<Record<Impl, string>>;
  /** A new, empty bucket. */
  newBucket(label: string): Promise<string>;
}

/** `cold`: empty caches everywhere; the last round's caches and buckets stay warm. */
async function coldScenario(b: BenchRun): Promise<void> {
  const { nCold, s3Only, minio, oursS3, useTs, results, warmBuckets, newBucket } = b;
  for (let round = 0; round < nCold; round++) {
    const last = round === nCold - 1;
    if (!s3Only) {
      const gocache = await freshDir("gocache-builtin");
      const load = await loadAverage();
      const elapsed = await goBuild(goEnv(gocache));
      record(results, "cold", "built-in GOCACHE", { ms: elapsed, rssMiB: NaN, load });
      if (last) {
        await removeDir(`${WARM}/builtin`);
        await Deno.rename(gocache, `${WARM}/builtin`);
      } else await removeDir(gocache);
    }
    if (!s3Only) {
      const dir = await freshDir("cache-ours");
      const load = await loadAverage();
      const out = await pluginBuild(directArgv("ours", dir));
      record(results, "cold", "ours (local only)", { ...out, load });
      if (last) {
        await removeDir(`${WARM}/ours`);
        await Deno.rename(dir, `${WARM}/ours`);
      } else await removeDir(dir);
    }
    if (oursS3) {
      const dir = await freshDir("cache-ours-s3");
      const bucket = await newBucket("cold-ours");
      const s3 = target(minio!, bucket);
      const load = await loadAverage();
      const out = await pluginBuild(directArgv("ours", dir, s3), s3Env(s3));
      const objects = await countObjects(minio!, bucket);
      record(results, "cold", "ours + S3 (uploads)", { ...out, load, objects });
      if (last) warmBuckets.ours = bucket;
      await removeDir(dir);
    }
    if (useTs) {
      const dir = await freshDir("cache-ts");
      const bucket = await newBucket("cold-ts");
      const s3 = target(minio!, bucket);
      const load = await loadAverage();
      const out = await pluginBuild(directArgv("tailscale", dir, s3), s3Env(s3));
      const objects = await countObjects(minio!, bucket);
      record(results, "cold", "tailscale + S3 (uploads)", { ...out, load, objects });
      if (last) {
        warmBuckets.tailscale = bucket;
        await removeDir(`${WARM}/tailscale`);
        await Deno.rename(dir, `${WARM}/tailscale`);
      } else await removeDir(dir);
    }
  }
}

/** Makes sure a warm local state exists (one untimed cold build if not). */
async function ensureWarm(b: BenchRun, name: "builtin" | Impl): Promise<string> {
  const { minio, warmBuckets, newBucket } = b;
  const path = `${WARM}/${name}`;
  if (await exists(path)) return path;
  progress(`warming ${path} with one untimed cold build`);
  if (name === "builtin") {
    await goBuild(goEnv(path));
  } else if (name === "ours") {
    await pluginBuild(directArgv("ours", path));
  } else {
    const bucket = await newBucket("warmup-ts");
    const s3 = target(minio!, bucket);
    await pluginBuild(directArgv("tailscale", path, s3), s3Env(s3));
    warmBuckets.tailscale ??= bucket;
  }
  return path;
}

/** Makes sure a bucket holding a complete build exists for `impl`. */
async function ensureWarmBucket(b: BenchRun, impl: Impl): Promise<string> {
  const { minio, results, warmBuckets, newBucket } = b;
  const existing = warmBuckets[impl];
  if (existing) return existing;
  progress(`filling a bucket for ${impl} with a cold build (recorded under cold)`);
  const bucket = await newBucket(`warmup-${impl}`);
  const s3 = target(minio!, bucket);
  const dir = await freshDir(`fill-${impl}`);
  const load = await loadAverage();
  const out = await pluginBuild(directArgv(impl, dir, s3), s3Env(s3));
  // the fill is a cold build with uploads: keep it as a sample
  const objects = await countObjects(minio!, bucket);
  const name = impl === "ours" ? "ours + S3 (uploads)" : "tailscale + S3 (uploads)";
  record(results, "cold", name, { ...out, load, objects });
  await removeDir(dir);
  warmBuckets[impl] = bucket;
  return bucket;
}

/** `warm`: warm local caches, a fresh GOCACHE each run. */
async function warmScenario(b: BenchRun): Promise<void> {
  const { minio, oursS3, useTs, results, newBucket, n } = b;
  const builtinDir = await ensureWarm(b, "builtin");
  const oursDir = await ensureWarm(b, "ours");
  const tsDir = useTs ? await ensureWarm(b, "tailscale") : undefined;
  const anyBucket = minio ? await newBucket("warm-local") : undefined;
  for (let round = 0; round < n; round++) {
    {
      const load = await loadAverage();
      const elapsed = await goBuild(goEnv(builtinDir));
      record(results, "warm", "built-in GOCACHE", { ms: elapsed, rssMiB: NaN, load });
    }
    {
      const load = await loadAverage();
      const out = await pluginBuild(directArgv("ours", oursDir));
      record(results, "warm", "ours", { ...out, load });
    }
    if (oursS3) {
      const s3 = target(minio!, anyBucket!);
      const load = await loadAverage();
      const out = await pluginBuild(directArgv("ours", oursDir, s3), s3Env(s3));
      record(results, "warm", "ours --bucket", { ...out, load });
    }
    if (tsDir) {
      const s3 = target(minio!, anyBucket!);
      const load = await loadAverage();
      const out = await pluginBuild(directArgv("tailscale", tsDir, s3), s3Env(s3));
      record(results, "warm", "tailscale --bucket", { ...out, load });
    }
  }
}

/** `s3warm`: an empty local directory against a warm bucket (a fresh CI worker). */
async function s3warmScenario(b: BenchRun): Promise<void> {
  const { minio, oursS3, useTs, results, n } = b;
  const impls: Impl[] = [
    ...(oursS3 ? ["ours" as const] : []),
    ...(useTs ? ["tailscale" as const] : []),
  ];
  const buckets = new Map<Impl, string>();
  for (const impl of impls) buckets.set(impl, await ensureWarmBucket(b, impl));
  for (let round = 0; round < n; round++) {
    for (const impl of impls) {
      const dir = await freshDir(`s3warm-${impl}`);
      const s3 = target(minio!, buckets.get(impl)!);
      const load = await loadAverage();
      const out = await pluginBuild(directArgv(impl, dir, s3), s3Env(s3));
      record(results, "s3warm", impl === "ours" ? "ours" : "tailscale", { ...out, load });
      await removeDir(dir);
    }
  }
}

/** `server`: warm builds through `serve --plugin` + `connect` against direct mode. */
async function serverScenario(b: BenchRun): Promise<void> {
  const { minio, useTs, results, newBucket, n, serverRss, skipped } = b;
  const oursDir = await ensureWarm(b, "ours");
  const tsDir = useTs ? await ensureWarm(b, "tailscale") : undefined;
  const baseEnv = { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "/tmp" };
  const oursPort = freePort();
  await using oursServer = new ServeProcess(serveArgv("ours", oursPort, oursDir), baseEnv);
  let oursServe = true;
  try {
    await oursServer.waitForPort(oursPort);
  } catch (error) {
    oursServe = false;
    skipped["ours serve"] = (error as Error).message.slice(0, 300);
  }
  let tsServer: ServeProcess | undefined;
  const tsPort = freePort();
  const tsBucket = useTs ? await newBucket("serve-ts") : undefined;
  if (tsDir) {
    const s3 = target(minio!, tsBucket!);
    tsServer = new ServeProcess(serveArgv("tailscale", tsPort, tsDir, { s3 }), {
      ...baseEnv,
      ...s3Env(s3),
    });
    await tsServer.waitForPort(tsPort);
  }
  try {
    for (let round = 0; round < n; round++) {
      {
        const load = await loadAverage();
        const out = await pluginBuild(directArgv("ours", oursDir));
        record(results, "server", "ours direct", { ...out, load });
      }
      if (oursServe) {
        const load = await loadAverage();
        const out = await pluginBuild(connectArgv("ours", oursPort));
        record(results, "server", "ours serve+connect", { ...out, load });
      }
      if (tsDir) {
        const s3 = target(minio!, tsBucket!);
        const load = await loadAverage();
        const out = await pluginBuild(directArgv("tailscale", tsDir, s3), s3Env(s3));
        record(results, "server", "tailscale direct", { ...out, load });
        const load2 = await loadAverage();
        const out2 = await pluginBuild(connectArgv("tailscale", tsPort));
        record(results, "server", "tailscale serve+connect", { ...out2, load: load2 });
      }
    }
    if (oursServe) serverRss["ours serve"] = await peakRssOfPid(oursServer.process.pid);
    if (tsServer) serverRss["tailscale serve"] = await peakRssOfPid(tsServer.process.pid);
  } finally {
    await tsServer?.[Symbol.asyncDispose]();
  }
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const scenarios = (flags.get("scenarios") ?? "cold,warm,s3warm,server").split(",");
  const n = Number(flags.get("n") ?? 5);
  const nCold = Number(flags.get("n-cold") ?? 3);
  /** Cold rounds of the two S3 configurations only (skips built-in and ours local-only). */
  const s3Only = flags.has("cold-s3-only");
  const ts = tailscalePlugin();
  const skipped: Record<string, string> = {};
  if (!ts.path) skipped.tailscale = ts.reason!;

  progress("preparing the workload");
  pkgs = await prepareWorkload();
  const depCount = await countDeps(pkgs);
  const env = await environment();
  progress(`${pkgs.length} packages named, ${depCount} built (with dependencies and std)`);

  await Deno.mkdir(WARM, { recursive: true });
  if (flags.has("rewarm")) await removeDir(WARM);
  await Deno.mkdir(WARM, { recursive: true });

  await using minio = (await findMinio()) ? await startMinio({ bucket: "bench" }) : undefined;
  if (!minio) skipped.s3 = "MinIO is not installed (scripts/install_test_servers.sh)";
  const oursS3 = minio !== undefined && !flags.has("no-s3-ours") && await oursS3Works(minio);
  if (minio && !oursS3) skipped["ours S3"] = "our S3 tier is not usable (see progress log)";
  const useTs = ts.path !== undefined && minio !== undefined;
  if (ts.path && !minio) {
    skipped.tailscale = "tailscale's plugin needs a bucket and MinIO is absent";
  }

  const results: Results = {};
  /** Peak RSS (MiB) of the serve processes. */
  const serverRss: Record<string, number> = {};
  /** Buckets holding a complete cold build, by implementation. */
  const warmBuckets: Partial<Record<Impl, string>> = {};
  let bucketSeq = 0;
  async function newBucket(label: string): Promise<string> {
    const name = `${label}-${++bucketSeq}`;
    await minio!.createBucket(name);
    return name;
  }

  const run: BenchRun = {
    n,
    nCold,
    s3Only,
    minio,
    oursS3,
    useTs,
    results,
    serverRss,
    skipped,
    warmBuckets,
    newBucket,
  };
  if (scenarios.includes("cold")) await coldScenario(run);
  if (scenarios.includes("warm")) await warmScenario(run);
  if (scenarios.includes("s3warm") && minio) await s3warmScenario(run);
  if (scenarios.includes("server")) await serverScenario(run);

  const saved = await saveResults("build", {
    env,
    depCount,
    n,
    nCold,
    results,
    serverRss,
    skipped,
  });
  print(report(results, { n, nCold, depCount, env, skipped, serverRss }));
  print(`\nresults: ${saved}`);
  print(
    `reproduce: TAILSCALE_PLUGIN=${
      ts.path ?? "/path/to/go-cache-plugin"
    } GCP_BENCH_DIR=${BENCH_DIR} ${DENO_RUN} scripts/bench/build.ts --scenarios=${
      scenarios.join(",")
    } --n=${n} --n-cold=${nCold}${s3Only ? " --cold-s3-only" : ""}`,
  );
}

function report(
  results: Results,
  info: {
    n: number;
    nCold: number;
    depCount: number;
    env: Record<string, string>;
    skipped: Record<string, string>;
    serverRss: Record<string, number>;
  },
): string {
  const out: string[] = [];
  out.push(
    `Workload: go build of ${info.depCount} packages (${WORK.dir}); ${info.env.go}; Deno ${info.env.deno}; ${info.env.cpus}; ${info.env.date}`,
  );
  const baselines: Record<string, string> = {
    cold: "built-in GOCACHE",
    warm: "built-in GOCACHE",
    s3warm: "tailscale",
    server: "tailscale serve+connect",
  };
  for (const [scenario, configs] of Object.entries(results)) {
    const base = median((configs[baselines[scenario]!] ?? []).map((s) => s.ms));
    const second = scenario === "cold"
      ? median((configs["tailscale + S3 (uploads)"] ?? []).map((s) => s.ms))
      : NaN;
    const rows = Object.entries(configs).map(([name, samples]) => {
      const times = samples.map((s) => s.ms);
      const rss = median(samples.map((s) => s.rssMiB));
      const cpu = median(samples.map((s) => s.cpuS ?? NaN));
      const objects = samples.map((s) => s.objects).filter((o) => o !== undefined);
      return [
        name,
        String(samples.length),
        ms(median(times)),
        `${ms(Math.min(...times))} – ${ms(Math.max(...times))}`,
        ratio(median(times), base),
        scenario === "cold" ? ratio(median(times), second) : "",
        Number.isNaN(rss) ? "–" : `${rss.toFixed(0)} MiB`,
        Number.isNaN(cpu) ? "–" : `${cpu.toFixed(2)} s`,
        objects.length ? String(median(objects as number[])) : "",
        samples.map((s) => s.load.split(" ")[0]).join(", "),
      ];
    });
    out.push(`\n### ${scenario}\n`);
    out.push(table([
      "configuration",
      "n",
      "median",
      "range",
      `vs ${baselines[scenario]}`,
      scenario === "cold" ? "vs tailscale + S3" : "",
      "plugin peak RSS",
      "plugin CPU",
      "S3 objects",
      "1-min load per run",
    ], rows));
  }
  if (Object.keys(info.serverRss).length > 0) {
    out.push(`\nserve peak RSS (VmHWM, MiB): ${JSON.stringify(info.serverRss)}`);
  }
  for (const [name, reason] of Object.entries(info.skipped)) {
    out.push(`- skipped ${name}: ${reason}`);
  }
  return out.join("\n");
}

if (import.meta.main) await main();
