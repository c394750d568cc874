/**
 * The stores side by side (issue 19): S3 on MinIO and Google Cloud Storage on fake-gcs-server,
 * both on loopback, in one run, rounds interleaved. Two parts:
 *
 * 1. Builds of the prepared workload (see `_lib.ts`) with our plugin: a cold build with uploads
 *    (empty cache dir, nothing under the round's prefix; go waits for the uploads) and then a
 *    fresh worker against what it uploaded (empty cache dir, fresh GOCACHE, the warm-up on).
 *    Each round uses a prefix of its own, so every cold build starts from an empty prefix.
 * 2. The adapters' own cost per request, the server taken out: sequential GET, HEAD and PUT of a
 *    1 KiB object through `AwsObjectStore` and `GcsObjectStore` (no token: an emulator; and a
 *    federated token) against one trivial loopback HTTP server in the process that answers both;
 *    wall-clock time and the process's CPU time per request (medians of the rounds).
 *
 * Medians are shown. Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env
 * --allow-net=127.0.0.1 --allow-sys=osRelease --allow-run scripts/bench/stores.ts [--n=3]
 * [--requests=2000] [--skip-builds]
 *
 * @module
 */

import { cpuUsage } from "node:process";
import { startMinio } from "../../tests/_util/minio.ts";
import { startFakeGcs } from "../../tests/_util/fake_gcs.ts";
import { AwsObjectStore, GcsObjectStore, type ObjectStore } from "../../src/store/mod.ts";
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
  WORK,
} from "./_lib.ts";
import { directArgv, s3Env, type S3Target } from "./_plugins.ts";

const flags = parseFlags(Deno.args);
const rounds = Number(flags.get("n") ?? 3);
const requests = Number(flags.get("requests") ?? 2000);

/** One store under test: the plugin flags and environment that select it. */
interface StoreTarget {
  name: string;
  argv(cacheDir: string, prefix: string): string[];
  env: Record<string, string>;
}

/** `go build` of the workload; milliseconds until go exits (uploads included: go waits). */
async function build(argv: string[], env: Record<string, string>, gocache: string) {
  const pkgs = await prepareWorkload();
  const started = performance.now();
  const child = new Deno.Command("go", {
    args: ["build", ...pkgs],
    cwd: WORK.dir,
    env: { ...goEnv(gocache, { gocacheprog: [...argv, "--metrics"].join(" ") }), ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const output = await child;
  const elapsed = performance.now() - started;
  const stderr = new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`go build exited ${output.code}: ${stderr.slice(-2000)}`);
  const metrics = /go-cache-plugin: metrics (\{.*\})$/m.exec(stderr);
  return { elapsed, metrics: metrics ? JSON.parse(metrics[1]!) as Record<string, number> : {} };
}

const results: Record<string, unknown> = { rounds, requests };

if (flags.get("skip-builds") !== "true") {
  await using minio = await startMinio({ bucket: "stores" });
  await using gcs = await startFakeGcs({ bucket: "stores" });
  const s3: S3Target = {
    endpoint: minio.endpoint,
    bucket: minio.bucket,
    accessKey: minio.accessKey,
    secretKey: minio.secretKey,
  };
  const targets: StoreTarget[] = [
    {
      name: "S3 (MinIO)",
      argv: (dir, prefix) => [...directArgv("ours", dir, s3), `--prefix=${prefix}`],
      env: s3Env(s3),
    },
    {
      name: "GCS (fake-gcs-server)",
      argv: (dir, prefix) => [...directArgv("ours", dir), ...gcs.flags(), `--prefix=${prefix}`],
      env: gcs.env(),
    },
  ];
  const times = new Map<string, number[]>();
  const record = (key: string, value: number) => times.set(key, [...(times.get(key) ?? []), value]);
  for (let round = 0; round < rounds; round++) {
    // Alternate which store goes first, so neither always runs on a cooler machine.
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const target of order) {
      const prefix = `r${round}-${crypto.randomUUID().slice(0, 8)}`;
      const cold = await freshDir("stores-cold");
      const c = await build(target.argv(`${cold}/cache`, prefix), target.env, `${cold}/gocache`);
      record(`${target.name}|cold`, c.elapsed);
      progress(
        `round ${round + 1} ${target.name} cold: ${ms(c.elapsed)}, ${
          c.metrics.uploads_done ?? 0
        } uploads, ${c.metrics.uploads_failed ?? 0} failed`,
      );
      await new Promise((r) => setTimeout(r, 1_500)); // its manifest is written after go exits
      const fresh = await freshDir("stores-fresh");
      const f = await build(target.argv(`${fresh}/cache`, prefix), target.env, `${fresh}/gocache`);
      record(`${target.name}|fresh`, f.elapsed);
      progress(
        `round ${round + 1} ${target.name} fresh worker: ${ms(f.elapsed)}, ${
          f.metrics.warm_hits ?? 0
        } warm hits, ${f.metrics.get_misses ?? 0} misses`,
      );
      await new Promise((r) => setTimeout(r, 1_500));
      await removeDir(cold);
      await removeDir(fresh);
    }
  }
  const s3Name = targets[0]!.name;
  const rows = targets.flatMap((target) =>
    (["cold", "fresh"] as const).map((kind) => {
      const value = median(times.get(`${target.name}|${kind}`)!);
      return [
        kind === "cold" ? "cold build, uploads" : "fresh worker (warm-up)",
        target.name,
        ms(value),
        ratio(value, median(times.get(`${s3Name}|${kind}`)!)),
      ];
    })
  );
  print(`### Stores side by side: go build of the workload, loopback (n=${rounds})\n`);
  print(table(["build", "store", "median", "vs S3"], rows));
  results.builds = Object.fromEntries(times);
}

// 2. The adapters alone, against one server that answers both.
{
  const body = new Uint8Array(1024).fill(7);
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (new URL(req.url).pathname === "/sts") {
      return Response.json({
        "access_token": "bench-token",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 3600,
      });
    }
    if (req.method === "PUT" || req.method === "POST") {
      return req.arrayBuffer().then(() => Response.json({ size: "1024" }));
    }
    if (req.method === "HEAD") return new Response(null, { headers: { "content-length": "1024" } });
    return new Response(body);
  });
  const endpoint = `http://127.0.0.1:${server.addr.port}`;
  Deno.env.set("AWS_ACCESS_KEY_ID", "bench");
  Deno.env.set("AWS_SECRET_ACCESS_KEY", "bench-secret");
  // Workload identity federation against the same server's /sts: the token is fetched once and
  // reused, as on GitHub Actions.
  const wifDir = await freshDir("stores-wif");
  await Deno.writeTextFile(`${wifDir}/oidc`, "bench.oidc.token");
  await Deno.writeTextFile(
    `${wifDir}/wif.json`,
    JSON.stringify({
      type: "external_account",
      audience:
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/b/providers/b",
      "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
      "token_url": `${endpoint}/sts`,
      "credential_source": { file: `${wifDir}/oidc` },
    }),
  );
  const stores: [string, ObjectStore][] = [
    [
      "S3 (SigV4 signed)",
      new AwsObjectStore({ bucket: "b", endpoint, pathStyle: true, region: "us-east-1" }),
    ],
    ["GCS (emulator: no token)", new GcsObjectStore({ bucket: "b", endpoint })],
    [
      "GCS (federated token)",
      new GcsObjectStore({ bucket: "b", apiEndpoint: endpoint, keyFile: `${wifDir}/wif.json` }),
    ],
  ];
  const ops: Record<string, (store: ObjectStore, i: number) => Promise<unknown>> = {
    GET: async (store, i) => {
      const object = await store.get(`output/ab/${i}`);
      await new Response(object!.body).arrayBuffer();
    },
    HEAD: (store, i) => store.has(`output/ab/${i}`),
    PUT: (store, i) => store.put(`output/ab/${i}`, body, { size: body.length }),
  };
  const perOp = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const [op, call] of Object.entries(ops)) {
      for (const [name, store] of round % 2 === 0 ? stores : [...stores].reverse()) {
        for (let i = 0; i < 50; i++) await call(store, i); // warm the connection
        const started = performance.now();
        const cpuStart = cpuUsage();
        for (let i = 0; i < requests; i++) await call(store, i);
        const cpu = cpuUsage(cpuStart);
        const us = (performance.now() - started) * 1000 / requests;
        perOp.set(`${op}|${name}`, [...(perOp.get(`${op}|${name}`) ?? []), us]);
        // CPU time of this process (the adapter, and the one server both share) per request:
        // what the adapter costs, much less disturbed by other work on the machine than time.
        const cpuUs = (cpu.user + cpu.system) / requests;
        perOp.set(`${op}|${name}|cpu`, [...(perOp.get(`${op}|${name}|cpu`) ?? []), cpuUs]);
      }
    }
  }
  const rows = Object.keys(ops).flatMap((op) =>
    stores.map(([name]) => {
      const value = median(perOp.get(`${op}|${name}`)!);
      const cpu = median(perOp.get(`${op}|${name}|cpu`)!);
      return [
        op,
        name,
        `${value.toFixed(0)} µs`,
        `${cpu.toFixed(0)} µs`,
        ratio(cpu, median(perOp.get(`${op}|${stores[0]![0]}|cpu`)!)),
      ];
    })
  );
  print(
    `\n### The adapters' own cost: ${requests} sequential 1 KiB requests against one loopback ` +
      `server (n=${rounds})\n`,
  );
  print(table(["op", "adapter", "time per request", "CPU per request", "CPU vs S3"], rows));
  results.adapters = Object.fromEntries(perOp);
}

progress(`results in ${await saveResults("stores", results)}`);
