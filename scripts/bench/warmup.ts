/**
 * The fresh CI worker against a warm bucket (issue 11): `go build` of the prepared workload (see
 * `_lib.ts`) with an empty cache directory and GOCACHE each run, the bucket filled once by a cold
 * build of ours (which also writes the warm-up manifest and packs). Columns: ours with the
 * warm-up, ours with `--warm-key=off` (one lookup per entry, as before), tailscale's plugin
 * (`TAILSCALE_PLUGIN`; skipped with the reason when unset), and our warm-local build (a warm
 * cache dir, fresh GOCACHE) for the "≤ 2× our own warm-local" target. Two links: loopback MinIO,
 * and toxiproxy adding `--latency` ms (default 10) each way (twice that on the answers). Rounds interleaved; the
 * median is shown. Times are until go exits (the plugin may still write its manifest after).
 * With `--rate=<Mbit/s>` the slow link is the benchmark's own relay instead (`_link.ts`: one
 * bandwidth shared by all connections per direction, `--latency` ms each way), checked first with
 * one connection and sixteen, and each run's downloaded bytes (on the wire) are shown.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/warmup.ts [--n=3] [--latency=10]
 *        [--rate=250] (Mbit/s: the relay link instead of toxiproxy)
 *        [--only-slow] (skip the loopback link) [--no-off] (skip the `--warm-key=off` column)
 *        [--log-dir=DIR] (each run's plugin log there, ours with `-v --metrics`)
 *        [--job=build,vet,test] (the go commands of each run; default build)
 *
 * @module
 */

import { startMinio } from "../servers/minio.ts";
import { startToxiproxy } from "../servers/toxiproxy.ts";
import { selfCheck, startLink } from "./_link.ts";
import {
  freshDir,
  goEnv,
  median,
  ms,
  parseFlags,
  prepareWorkload,
  print,
  progress,
  ratio,
  removeDir,
  saveResults,
  table,
  tailscalePlugin,
  WORK,
} from "./_lib.ts";
import { directArgv, s3Env, type S3Target } from "./_plugins.ts";

const flags = parseFlags(Deno.args);
const rounds = Number(flags.get("n") ?? 3);
const latency = Number(flags.get("latency") ?? 10);
const rate = flags.has("rate") ? Number(flags.get("rate")) : undefined;
const ts = tailscalePlugin();
const pkgs = await prepareWorkload();

const logDir = flags.get("log-dir");
let logged = 0;

/** The go commands of one job: `--job=build` (default), or say `--job=build,vet,test`. */
const JOB: Record<string, string[]> = {
  build: ["build", ...pkgs],
  vet: ["vet", ...pkgs],
  // Test binaries compiled and their (empty) results cached, as in a CI job's test step.
  test: ["test", "-run=^$", ...pkgs],
};
const job = (flags.get("job") ?? "build").split(",").map((name) => {
  const args = JOB[name];
  if (!args) throw new Error(`--job: unknown step ${name} (build, vet, test)`);
  return args;
});

/**
 * Runs the job's go commands one after another; milliseconds until the last go exits. With
 * `--log-dir`, each command's stderr (the plugin's log and metrics; ours with `-v --metrics`)
 * goes to a file there.
 */
async function build(argv: string[], s3: S3Target, gocache: string): Promise<number> {
  const ours = !argv[0]?.includes("tailscale") && argv[0] !== ts.path;
  const plugin = logDir && ours ? [...argv, "-v", "--metrics"] : argv;
  const env = { ...goEnv(gocache, { gocacheprog: plugin.join(" ") }), ...s3Env(s3) };
  let elapsed = 0;
  for (const args of job) {
    const started = performance.now();
    const child = new Deno.Command("go", {
      args,
      cwd: WORK.dir,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: logDir ? "piped" : "null",
    }).spawn();
    const log = logDir
      ? child.stderr.pipeTo(
        (await Deno.open(`${logDir}/${String(++logged).padStart(2, "0")}-${args[0]}.log`, {
          write: true,
          create: true,
          truncate: true,
        })).writable,
      )
      : undefined;
    const status = await child.status;
    elapsed += performance.now() - started;
    await log; // the plugin may still be writing (its manifest) after go exits
    // vet exits 1 for what it reports about the code; that is not the cache's doing.
    const fine = status.success || (args[0] === "vet" && status.code === 1);
    if (!fine) throw new Error(`go ${args[0]} exited ${status.code}`);
  }
  return elapsed;
}

await using minio = await startMinio({ bucket: "warm" });
const minioHost = minio.endpoint.replace(/^https?:\/\//, "");
await using toxi = rate === undefined ? await startToxiproxy() : undefined;
await using link = rate === undefined
  ? undefined
  : startLink({ target: minioHost, mbitPerSecond: rate, delayMs: latency });
let slowEndpoint: string;
let linkCheck = "";
if (link) {
  const check = await selfCheck(rate!, latency);
  progress(
    `link check: ${rate} Mbit/s configured; one connection saw ${check.one.toFixed(1)}, ` +
      `sixteen ${check.sixteen.toFixed(1)}`,
  );
  linkCheck = `one connection ${check.one.toFixed(0)} Mbit/s, sixteen ${check.sixteen.toFixed(0)}`;
  if ([check.one, check.sixteen].some((seen) => Math.abs(seen - rate!) > rate! * 0.1)) {
    // A loaded machine starves the relay: the same link for both plugins, but slower.
    progress(`warning: the link is more than 10% off its ${rate} Mbit/s (a loaded machine?)`);
  }
  slowEndpoint = `http://${link.address}`;
} else {
  slowEndpoint = await toxi!.proxy("s3", minioHost);
  // Both directions' latency is added to the answers alone (toxiproxy delays each chunk it
  // forwards; a get's answer starts a round trip after the get was sent either way).
  await toxi!.latency("s3", 2 * latency);
}
const target = (endpoint: string): S3Target => ({
  endpoint,
  bucket: minio.bucket,
  accessKey: minio.accessKey,
  secretKey: minio.secretKey,
});
const links = {
  loopback: target(minio.endpoint),
  [rate === undefined ? `${latency} ms each way` : `${latency} ms each way, ${rate} Mbit/s`]:
    target(slowEndpoint),
};

progress("a cold run of ours fills the bucket (objects, manifest, packs)");
const seedDir = await freshDir("warm-seed");
await build(
  directArgv("ours", `${seedDir}/cache`, links.loopback),
  links.loopback,
  `${seedDir}/gocache`,
);
// The manifest is written after go exits: wait for it.
for (
  let waited = 0;
  !(await minio.listKeys()).some((k) => k.endsWith("manifest.v2.json.zst"));
  waited++
) {
  if (waited > 600) throw new Error("the seed wrote no warm-up manifest within a minute");
  await new Promise((r) => setTimeout(r, 100));
}
const localWarm: number[] = [];

type Column = "ours (warm-up)" | "ours --warm-key=off" | "tailscale";
const columns: { name: Column; argv: (dir: string, s3: S3Target) => string[] }[] = [
  {
    name: "ours (warm-up)",
    argv: (dir, s3) => [...directArgv("ours", dir, s3), "--warm-key=auto"],
  },
];
if (!flags.has("no-off")) {
  columns.push({
    name: "ours --warm-key=off",
    argv: (dir, s3) => [...directArgv("ours", dir, s3), "--warm-key=off"],
  });
}
if (ts.path) {
  columns.push({
    name: "tailscale",
    argv: (dir, s3) => directArgv("tailscale", dir, s3),
  });
}
const times = new Map<string, number[]>();
/** Bytes each run downloaded over the relay link (go exited; the manifest write is upload). */
const downloaded = new Map<string, number[]>();
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
const fileCounts = new Map<string, number>();
const seedFiles = await countFiles(`${seedDir}/cache`);

/** Regular files under a directory, recursively. */
async function countFiles(dir: string): Promise<number> {
  let count = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) count += await countFiles(`${dir}/${entry.name}`);
      else if (entry.isFile) count++;
    }
  } catch {
    // gone or unreadable: nothing counted
  }
  return count;
}
for (let round = 0; round < rounds; round++) {
  for (const [name, s3] of Object.entries(links)) {
    if (flags.has("only-slow") && s3 === links.loopback) continue;
    for (const column of columns) {
      const dir = await freshDir("warm-run");
      const before = link?.bytesDown ?? 0;
      const elapsed = await build(column.argv(`${dir}/cache`, s3), s3, `${dir}/gocache`);
      const key = `${name}|${column.name}`;
      times.set(key, [...(times.get(key) ?? []), elapsed]);
      // What each plugin fetched: all hits leave about as many files as the seed's directory.
      const files = await countFiles(`${dir}/cache`);
      fileCounts.set(key, files);
      const down = s3 === links.loopback ? undefined : link && link.bytesDown - before;
      if (down !== undefined) downloaded.set(key, [...(downloaded.get(key) ?? []), down]);
      progress(
        `round ${round + 1} ${name} ${column.name}: ${ms(elapsed)}, ${files} files` +
          (down !== undefined ? `, ${mib(down)} down` : ""),
      );
      await new Promise((r) => setTimeout(r, 1_500)); // let the plugin's manifest write finish
      await removeDir(dir);
    }
  }
  const dir = await freshDir("warm-local");
  localWarm.push(
    await build(
      directArgv("ours", `${seedDir}/cache`, links.loopback),
      links.loopback,
      `${dir}/gocache`,
    ),
  );
  await removeDir(dir);
}

const local = median(localWarm);
const rows: string[][] = [];
for (const name of Object.keys(links)) {
  if (!times.has(`${name}|${columns[0]!.name}`)) continue;
  const tsMs = ts.path ? median(times.get(`${name}|tailscale`)!) : undefined;
  const tsDown = downloaded.get(`${name}|tailscale`);
  for (const column of columns) {
    const value = median(times.get(`${name}|${column.name}`)!);
    const down = downloaded.get(`${name}|${column.name}`);
    rows.push([
      name,
      column.name,
      ms(value),
      String(fileCounts.get(`${name}|${column.name}`) ?? 0),
      tsMs ? ratio(value, tsMs) : "—",
      ratio(value, local),
      down ? mib(median(down)) : "—",
      down && tsDown ? ratio(median(down), median(tsDown)) : "—",
    ]);
  }
}
const jobName = job.map((args) => `go ${args[0]}`).join(", ");
print(
  `### Fresh worker against a warm bucket (${jobName} of ${pkgs.length} packages, n=${rounds})\n`,
);
print(
  table(
    [
      "link",
      "plugin",
      "median",
      "local files (last run)",
      "vs tailscale",
      "vs our warm-local",
      "downloaded",
      "bytes vs tailscale",
    ],
    rows,
  ),
);
print(`\nThe seed's cache directory (the cold build that filled the bucket): ${seedFiles} files.`);
print(
  `\nOur warm-local build (the seed's warm cache dir and --bucket, fresh GOCACHE): ${ms(local)}`,
);
if (linkCheck) {
  print(`\nThe relay's check before the runs (${rate} Mbit/s configured): ${linkCheck}.`);
}
if (!ts.path) print(`\ntailscale's columns skipped: ${ts.reason}`);
const saved = await saveResults("warmup", {
  rounds,
  latency,
  rate,
  job: jobName,
  times: Object.fromEntries(times),
  downloaded: Object.fromEntries(downloaded),
  localWarm,
});
progress(`results in ${saved}`);
