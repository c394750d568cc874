/**
 * The stores side by side (issue 19): the S3 path on MinIO and the Azure path on Azurite, both on
 * loopback, in one run with rounds interleaved.
 *
 * 1. The hot path, in this process: small-object GET, HEAD (existing and missing) and PUT through
 *    our adapters (`AwsObjectStore` on MinIO, `AzureBlobStore` on Azurite), and through
 *    Microsoft's `@azure/storage-blob` on the same Azurite for scale. Median latency and this
 *    process's CPU per request.
 * 2. The x/tools workload (see `_lib.ts`): a cold build with uploads into an empty prefix, then a
 *    fresh worker (empty cache dir and GOCACHE) warming up from that prefix, per store.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/azure_hot_path.ts [--n=2] [--requests=300]
 *        (`--n=0`: the hot path alone; each build's time is also printed as it ends)
 *
 * @module
 */

import { startMinio } from "../../tests/_util/minio.ts";
import { startAzurite } from "../../tests/_util/azurite.ts";
import { AwsObjectStore } from "../../src/store/s3/store.ts";
import { AzureBlobStore } from "../../src/store/azure/store.ts";
import { cpuUsage } from "node:process";
import {
  freshDir,
  goEnv,
  loadAverage,
  median,
  ms,
  parseFlags,
  PLUGIN,
  prepareWorkload,
  print,
  progress,
  ratio,
  removeDir,
  saveResults,
  table,
  WORK,
} from "./_lib.ts";

const flags = parseFlags(Deno.args);
const rounds = Number(flags.get("n") ?? 2);
const requests = Number(flags.get("requests") ?? 300);

await using minio = await startMinio({ bucket: "bench" });
await using azurite = await startAzurite({ container: "bench" });

// ---- 1. The hot path ----
Deno.env.set("AWS_ACCESS_KEY_ID", minio.accessKey);
Deno.env.set("AWS_SECRET_ACCESS_KEY", minio.secretKey);
const s3 = new AwsObjectStore({
  bucket: minio.bucket,
  region: "us-east-1",
  endpoint: minio.endpoint,
  pathStyle: true,
});
const azure = new AzureBlobStore({
  container: azurite.container,
  connectionString: azurite.connectionString(),
  env: () => undefined,
});
const sdk = await azurite.client();

interface Client {
  get(key: string): Promise<number>;
  has(key: string): Promise<boolean>;
  put(key: string, body: Uint8Array): Promise<void>;
}
const ours = (store: AwsObjectStore | AzureBlobStore): Client => ({
  async get(key) {
    const object = await store.get(key);
    return object ? (await new Response(object.body).bytes()).length : -1;
  },
  has: (key) => store.has(key),
  put: (key, body) => store.put(key, body, { size: body.length }),
});
const clients: Record<string, Client> = {
  "S3 on MinIO (ours: fetch + SigV4)": ours(s3),
  "Azure on Azurite (ours: fetch + Shared Key)": ours(azure),
  "Azure on Azurite (@azure/storage-blob)": {
    async get(key) {
      return (await sdk.getBlockBlobClient(key).downloadToBuffer()).length;
    },
    has: (key) => sdk.getBlockBlobClient(key).exists(),
    async put(key, body) {
      await sdk.getBlockBlobClient(key).uploadData(body);
    },
  },
};
const body = crypto.getRandomValues(new Uint8Array(8 << 10));
const ops = ["PUT 8 KiB", "GET 8 KiB", "HEAD hit", "HEAD miss"] as const;
const latency = new Map<string, number[]>();
const cpu = new Map<string, number>();
for (const client of Object.values(clients)) {
  for (let i = 0; i < 20; i++) await client.put(`warm/${i}`, body); // connections and code warm
}
for (let round = 0; round < 3; round++) {
  for (const [name, client] of Object.entries(clients)) {
    for (const op of ops) {
      const key = `${name}|${op}`;
      const started = cpuUsage();
      for (let i = 0; i < requests / 3; i++) {
        const k = `hot/${round}/${i}`;
        const t0 = performance.now();
        if (op === "PUT 8 KiB") await client.put(k, body);
        else if (op === "GET 8 KiB") await client.get(k);
        else if (op === "HEAD hit") await client.has(k);
        else await client.has(`${k}-missing`);
        latency.set(key, [...(latency.get(key) ?? []), performance.now() - t0]);
      }
      const used = cpuUsage(started);
      cpu.set(key, (cpu.get(key) ?? 0) + (used.user + used.system) / 1000);
    }
  }
  progress(`hot path round ${round + 1} done`);
}
const hotRows = Object.keys(clients).map((name) => [
  name,
  ...ops.map((op) => {
    const values = latency.get(`${name}|${op}`)!;
    return `${median(values).toFixed(2)} ms · ${
      (cpu.get(`${name}|${op}`)! / values.length).toFixed(2)
    } ms CPU`;
  }),
]);
const hotLoad = await loadAverage();
print(`### Hot path: S3 on MinIO, Azure on Azurite (loopback)

${requests} requests per operation and client (3 rounds interleaved), median latency and this
process's CPU per request; load ${hotLoad}.

${table(["client", ...ops], hotRows)}
`);

// ---- 2. Cold build with uploads, then a fresh worker, per store ----
const pkgs = await prepareWorkload();
const stores = {
  "S3 (MinIO)": {
    flags: [
      `--bucket=${minio.bucket}`,
      `--s3-endpoint-url=${minio.endpoint}`,
      "--s3-path-style",
      "--region=us-east-1",
    ],
    env: { ...minio.env(), AWS_EC2_METADATA_DISABLED: "true" },
  },
  "Azure (Azurite)": {
    flags: [`--bucket=azblob://${azurite.container}`],
    env: azurite.env(),
  },
};

async function build(flags: string[], env: Record<string, string>, dir: string): Promise<number> {
  const plugin = [PLUGIN, `--cache-dir=${dir}/cache`, "--warm-key=auto", ...flags].join(" ");
  const started = performance.now();
  const status = await new Deno.Command("go", {
    args: ["build", ...pkgs],
    cwd: WORK.dir,
    env: { ...goEnv(`${dir}/gocache`, { gocacheprog: plugin }), ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn().status;
  if (!status.success) throw new Error(`go build exited ${status.code}`);
  return performance.now() - started;
}

const builds = new Map<string, number[]>();
const loads: string[] = [];
for (let round = 0; round < rounds; round++) {
  for (const scenario of ["cold", "fresh"] as const) {
    for (const [name, store] of Object.entries(stores)) {
      const prefix = `--prefix=round-${round}`;
      const dir = await freshDir("stores-run");
      const elapsed = await build([...store.flags, prefix], store.env, dir);
      const key = `${scenario}|${name}`;
      builds.set(key, [...(builds.get(key) ?? []), elapsed]);
      progress(`round ${round + 1} ${scenario} ${name}: ${ms(elapsed)}`);
      await new Promise((r) => setTimeout(r, 1_500)); // the manifest is written after go exits
      await removeDir(dir);
    }
  }
  loads.push(await loadAverage());
}
const buildRows = rounds === 0 ? [] : (["cold", "fresh"] as const).map((scenario) => {
  const s3Ms = median(builds.get(`${scenario}|S3 (MinIO)`)!);
  const azMs = median(builds.get(`${scenario}|Azure (Azurite)`)!);
  return [
    scenario === "cold" ? "cold build, uploads into an empty prefix" : "fresh worker, warm-up",
    ms(s3Ms),
    ms(azMs),
    ratio(azMs, s3Ms),
  ];
});

if (rounds > 0) {
  print(`### x/tools builds: S3 on MinIO, Azure on Azurite (loopback)

x/tools build (${pkgs.length} packages), median of ${rounds} rounds interleaved; loads ${
    loads.join("; ")
  }.

${table(["scenario", "S3 (MinIO)", "Azure (Azurite)", "Azure / S3"], buildRows)}
`);
}
const file = await saveResults("stores", {
  latency: Object.fromEntries(latency),
  cpu: Object.fromEntries(cpu),
  builds: Object.fromEntries(builds),
  loads,
});
progress(`saved ${file}`);
