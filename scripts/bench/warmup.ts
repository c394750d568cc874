/**
 * The fresh CI worker against a warm bucket (issue 11): `go build` of the prepared workload (see
 * `_lib.ts`) with an empty cache directory and GOCACHE each run, the bucket filled once by a cold
 * build of ours (which also writes the warm-up manifest and packs). Columns: ours with the
 * warm-up, ours with `--warm-key=off` (one lookup per entry, as before), tailscale's plugin
 * (`TAILSCALE_PLUGIN`; skipped with the reason when unset), and our warm-local build (a warm
 * cache dir, fresh GOCACHE) for the "≤ 2× our own warm-local" target. Two links: loopback MinIO,
 * and toxiproxy adding `--latency` ms (default 10) on both directions. Rounds interleaved; the
 * median is shown. Times are until go exits (the plugin may still write its manifest after).
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/warmup.ts [--n=3] [--latency=10]
 *
 * @module
 */

import { startMinio } from "../../tests/_util/minio.ts";
import { startToxiproxy } from "../../tests/_util/toxiproxy.ts";
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
const ts = tailscalePlugin();
const pkgs = await prepareWorkload();

/** Runs `go build` of the workload; milliseconds until go exits. */
async function build(argv: string[], s3: S3Target, gocache: string): Promise<number> {
  const env = { ...goEnv(gocache, { gocacheprog: argv.join(" ") }), ...s3Env(s3) };
  const started = performance.now();
  const status = await new Deno.Command("go", {
    args: ["build", ...pkgs],
    cwd: WORK.dir,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn().status;
  const elapsed = performance.now() - started;
  if (!status.success) throw new Error(`go build exited ${status.code}`);
  return elapsed;
}

await using minio = await startMinio({ bucket: "warm" });
await using toxi = await startToxiproxy();
const listen = await toxi.proxy("s3", minio.endpoint.replace(/^https?:\/\//, ""));
for (const stream of ["downstream", "upstream"]) {
  const response = await fetch(`${toxi.api}/proxies/s3/toxics`, {
    method: "POST",
    body: JSON.stringify({
      name: `latency_${stream}`,
      type: "latency",
      stream,
      attributes: { latency, jitter: 0 },
    }),
  });
  if (!response.ok) throw new Error(`Cannot add latency: ${await response.text()}`);
}
const target = (endpoint: string): S3Target => ({
  endpoint,
  bucket: minio.bucket,
  accessKey: minio.accessKey,
  secretKey: minio.secretKey,
});
const links = {
  loopback: target(minio.endpoint),
  [`${latency} ms each way`]: target(`http://${listen}`),
};

progress("cold build of ours fills the bucket (objects, manifest, packs)");
const seedDir = await freshDir("warm-seed");
await build(directArgv("ours", `${seedDir}/cache`), links.loopback, `${seedDir}/gocache`);
await new Promise((r) => setTimeout(r, 3_000)); // the manifest is written after go exits
const localWarm: number[] = [];

type Column = "ours (warm-up)" | "ours --warm-key=off" | "tailscale";
const columns: { name: Column; argv: (dir: string, s3: S3Target) => string[] }[] = [
  {
    name: "ours (warm-up)",
    argv: (dir, s3) => [...directArgv("ours", dir, s3), "--warm-key=auto"],
  },
  {
    name: "ours --warm-key=off",
    argv: (dir, s3) => [...directArgv("ours", dir, s3), "--warm-key=off"],
  },
];
if (ts.path) {
  columns.push({
    name: "tailscale",
    argv: (dir, s3) => directArgv("tailscale", dir, s3),
  });
}
const times = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  for (const [link, s3] of Object.entries(links)) {
    for (const column of columns) {
      const dir = await freshDir("warm-run");
      const elapsed = await build(column.argv(`${dir}/cache`, s3), s3, `${dir}/gocache`);
      const key = `${link}|${column.name}`;
      times.set(key, [...(times.get(key) ?? []), elapsed]);
      progress(`round ${round + 1} ${link} ${column.name}: ${ms(elapsed)}`);
      await new Promise((r) => setTimeout(r, 1_500)); // let the plugin's manifest write finish
      await removeDir(dir);
    }
  }
  const dir = await freshDir("warm-local");
  localWarm.push(
    await build(directArgv("ours", `${seedDir}/cache`), links.loopback, `${dir}/gocache`),
  );
  await removeDir(dir);
}

const local = median(localWarm);
const rows: string[][] = [];
for (const link of Object.keys(links)) {
  const tsMs = ts.path ? median(times.get(`${link}|tailscale`)!) : undefined;
  for (const column of columns) {
    const value = median(times.get(`${link}|${column.name}`)!);
    rows.push([
      link,
      column.name,
      ms(value),
      tsMs ? ratio(value, tsMs) : "—",
      ratio(value, local),
    ]);
  }
}
print(
  `### Fresh worker against a warm bucket (go build of ${pkgs.length} packages, n=${rounds})\n`,
);
print(table(["link", "plugin", "median", "vs tailscale", "vs our warm-local"], rows));
print(`\nOur warm-local build (warm cache dir, fresh GOCACHE): ${ms(local)}`);
if (!ts.path) print(`\ntailscale's columns skipped: ${ts.reason}`);
const saved = await saveResults("warmup", {
  rounds,
  latency,
  times: Object.fromEntries(times),
  localWarm,
});
progress(`results in ${saved}`);
