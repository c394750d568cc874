/**
 * Handshake latency: time from spawning a GOCACHEPROG plugin to the first line on its stdout
 * (the `KnownCommands` handshake go waits for), for our plugin under `deno run` with and without
 * `--bucket`, through `connect` to a running `serve`, and tailscale's binary (direct and
 * connect). Rounds are interleaved; the first two are discarded as warm-up.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/handshake.ts [--n=21] [--json]
 *
 * @module
 */

import { findMinio, freePort, startMinio } from "../servers/minio.ts";
import {
  BENCH_DIR,
  DENO_RUN,
  environment,
  freshDir,
  median,
  ms,
  parseFlags,
  percentile,
  print,
  progress,
  ratio,
  ROOT,
  saveResults,
  table,
  tailscalePlugin,
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

/** Spawns argv and resolves to the ms until its first stdout line; then closes stdin, reaps it. */
export async function timeHandshake(argv: string[], env: Record<string, string>): Promise<number> {
  const started = performance.now();
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const killer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, 20_000);
  const reader = child.stdout.getReader();
  let elapsed = NaN;
  let seen = "";
  const decoder = new TextDecoder();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += decoder.decode(value, { stream: true });
      if (seen.includes("\n")) {
        elapsed = performance.now() - started;
        break;
      }
    }
  } finally {
    await child.stdin.close().catch(() => {});
    // drain the rest so the child never blocks on a full pipe
    (async () => {
      try {
        while (!(await reader.read()).done);
      } catch {
        // closed
      }
    })();
    await child.status;
    clearTimeout(killer);
  }
  if (!seen.startsWith("{") || !seen.includes("KnownCommands")) {
    throw new Error(`Cannot read a handshake from ${argv[0]}: ${seen}`);
  }
  return elapsed;
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const n = Number(flags.get("n") ?? 21);
  const warmup = 2;
  const ts = tailscalePlugin();
  const env = await environment();
  const base: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
  };
  const cacheDir = await freshDir("handshake-cache");
  // the runtime's own start-up cost: a cached one-line script that prints a handshake
  const floor = `${await freshDir("handshake-floor")}/floor.js`;
  await Deno.writeTextFile(
    floor,
    `await Deno.stdout.write(new TextEncoder().encode('{"ID":0,"KnownCommands":["get","put","close"]}\\n'));\n`,
  );
  const skipped: Record<string, string> = {};

  await using minio = (await findMinio()) ? await startMinio({ bucket: "handshake" }) : undefined;
  const s3: S3Target = minio
    ? {
      endpoint: minio.endpoint,
      bucket: minio.bucket,
      accessKey: minio.accessKey,
      secretKey: minio.secretKey,
    }
    : { endpoint: "http://127.0.0.1:9", bucket: "none", accessKey: "x", secretKey: "y" };
  if (!minio) progress("MinIO not installed: --bucket runs point at a closed port");

  const configs: { name: string; argv: string[]; env: Record<string, string> }[] = [
    {
      name: "deno floor (`deno run` of a script printing the line)",
      argv: [`${ROOT}/scripts/deno`, "run", "--quiet", "--no-config", "--no-lock", floor],
      env: base,
    },
    { name: "ours, direct", argv: directArgv("ours", cacheDir), env: base },
    {
      name: "ours, direct --bucket",
      argv: directArgv("ours", cacheDir, s3),
      env: { ...base, ...s3Env(s3) },
    },
  ];

  // connect through a running serve, if server mode works
  const servers: ServeProcess[] = [];
  async function addConnect(impl: Impl, name: string): Promise<void> {
    const port = freePort();
    const argv = serveArgv(impl, port, await freshDir(`handshake-serve-${impl}`), {
      s3: impl === "tailscale" ? s3 : undefined,
    });
    const server = new ServeProcess(argv, { ...base, ...s3Env(s3) });
    servers.push(server);
    try {
      await server.waitForPort(port, 20_000);
      const argvConnect = connectArgv(impl, port);
      await timeHandshake(argvConnect, base);
      configs.push({ name, argv: argvConnect, env: base });
    } catch (error) {
      skipped[name] = `serve did not work: ${(error as Error).message.slice(0, 200)}`;
    }
  }
  await addConnect("ours", "ours, connect to serve");
  if (ts.path) {
    configs.push({
      name: "tailscale, direct --bucket",
      argv: directArgv("tailscale", cacheDir, s3),
      env: { ...base, ...s3Env(s3) },
    });
    await addConnect("tailscale", "tailscale, connect to serve");
  } else {
    skipped["tailscale"] = ts.reason!;
  }

  try {
    const samples = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    for (let round = 0; round < n + warmup; round++) {
      for (const config of configs) {
        const t = await timeHandshake(config.argv, config.env);
        if (round >= warmup) samples.get(config.name)!.push(t);
      }
    }
    const oursMedian = median(samples.get("ours, direct")!);
    const tsMedian = median(samples.get("tailscale, direct --bucket") ?? []);
    const rows = configs.map((c) => {
      const s = samples.get(c.name)!;
      return [
        c.name,
        ms(median(s)),
        ms(percentile(s, 10)),
        ms(percentile(s, 90)),
        ratio(median(s), oursMedian),
        Number.isNaN(tsMedian) ? "n/a" : ratio(median(s), tsMedian),
      ];
    });
    const markdown = table(
      ["configuration", "median", "p10", "p90", "vs ours direct", "vs tailscale direct"],
      rows,
    );
    const data = {
      env,
      n,
      warmup,
      samples: Object.fromEntries(samples),
      skipped,
      minio: Boolean(minio),
    };
    const saved = await saveResults("handshake", data);
    if (flags.has("json")) print(JSON.stringify(data, null, 2));
    print(`### Handshake (n=${n} per row, ${warmup} warm-up rounds discarded)\n`);
    print(markdown);
    for (const [name, reason] of Object.entries(skipped)) print(`\n- skipped ${name}: ${reason}`);
    print(`\nload average before: ${env.load}; results: ${saved}`);
    print(
      `reproduce: TAILSCALE_PLUGIN=${
        ts.path ?? "/path/to/go-cache-plugin"
      } GCP_BENCH_DIR=${BENCH_DIR} ${DENO_RUN} scripts/bench/handshake.ts --n=${n}`,
    );
  } finally {
    for (const server of servers) await server[Symbol.asyncDispose]();
  }
}

if (import.meta.main) await main();
