/**
 * The per-request cost on its own, as go pays it: sequential `get` round trips through a pipe to
 * a plugin serving a warm local cache (one request written, its reply read, then the next), and
 * a session's spawn → handshake → close → exit time. Our plugin (direct mode, and `connect` to a
 * running `serve`) next to tailscale's, rounds interleaved in one run.
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/get_rtt.ts [--n=7] [--gets=2000] [--json]
 *
 * @module
 */

import { findMinio, type Minio, startMinio } from "../servers/minio.ts";
import { freePort } from "../servers/net.ts";
import {
  environment,
  freshDir,
  median,
  parseFlags,
  print,
  progress,
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

const encoder = new TextEncoder();

/** A cache dir holding `count` entries in the cachedir layout both plugins read. */
async function seed(dir: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const body = encoder.encode(`output ${i}\n`);
    const outputId = new Uint8Array(
      await crypto.subtle.digest("SHA-256", body as Uint8Array<ArrayBuffer>),
    ).toHex();
    const actionId = (i + 1).toString(16).padStart(64, "a");
    await Deno.mkdir(`${dir}/output/${outputId.slice(0, 2)}`, { recursive: true });
    await Deno.mkdir(`${dir}/action/${actionId.slice(0, 2)}`, { recursive: true });
    await Deno.writeFile(`${dir}/output/${outputId.slice(0, 2)}/${outputId}`, body);
    await Deno.writeTextFile(
      `${dir}/action/${actionId.slice(0, 2)}/${actionId}`,
      `${outputId} ${body.length}`,
    );
    ids.push(actionId);
  }
  return ids;
}

async function copyTree(from: string, to: string): Promise<void> {
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) {
      await Deno.mkdir(`${to}/${entry.name}`, { recursive: true });
      await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    } else {
      await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }
}

/** Reads reply lines from a plugin's stdout, one at a time. */
class Lines {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #text = "";
  #decoder = new TextDecoder();

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async next(): Promise<string> {
    for (;;) {
      const newline = this.#text.indexOf("\n");
      if (newline >= 0) {
        const line = this.#text.slice(0, newline);
        this.#text = this.#text.slice(newline + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`plugin output ended; got ${JSON.stringify(this.#text)}`);
      this.#text += this.#decoder.decode(value, { stream: true });
    }
  }
}

/** One session: µs per sequential get (median over the session), and spawn → exit in ms. */
async function session(
  argv: string[],
  ids: string[],
  gets: number,
  env: Record<string, string> = {},
): Promise<{ getUs: number; lifeMs: number; hits: number }> {
  const started = performance.now();
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = new Lines(child.stdout);
  await lines.next(); // the handshake
  const times: number[] = [];
  let hits = 0;
  for (let i = 1; i <= gets; i++) {
    const actionId = ids[i % ids.length]!;
    const request = JSON.stringify({
      ID: i,
      Command: "get",
      ActionID: Uint8Array.fromHex(actionId).toBase64(),
    }) + "\n\n";
    const t0 = performance.now();
    await writer.write(encoder.encode(request));
    const reply = await lines.next();
    times.push(performance.now() - t0);
    if (reply.includes('"DiskPath"')) hits++;
  }
  await writer.write(encoder.encode(JSON.stringify({ ID: gets + 1, Command: "close" }) + "\n\n"));
  await lines.next();
  await writer.close().catch(() => {});
  await child.status;
  const lifeMs = performance.now() - started;
  return { getUs: median(times) * 1000, lifeMs, hits };
}

if (import.meta.main) {
  const flags = parseFlags(Deno.args);
  const n = Number(flags.get("n") ?? "7");
  const gets = Number(flags.get("gets") ?? "2000");
  const dir = await freshDir("rtt-cache");
  progress(`seeding ${dir} with 500 entries`);
  const ids = await seed(dir, 500);
  const ts = tailscalePlugin();
  const skipped: Record<string, string> = {};
  // tailscale's plugin needs a bucket even for local hits; the hits here never reach it.
  await using minio: Minio | undefined = ts.path && (await findMinio())
    ? await startMinio({ bucket: "rtt" })
    : undefined;
  if (!ts.path) skipped.tailscale = ts.reason!;
  else if (!minio) skipped.tailscale = "it needs a bucket and MinIO is not installed";
  const impls: Impl[] = minio ? ["ours", "tailscale"] : ["ours"];
  const s3: S3Target | undefined = minio && {
    endpoint: minio.endpoint,
    bucket: minio.bucket,
    accessKey: minio.accessKey,
    secretKey: minio.secretKey,
  };
  const env = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
  };
  const s3OnlyFor = (impl: Impl) => (impl === "tailscale" ? s3 : undefined);
  const servers: Partial<Record<Impl, { port: number; process: ServeProcess }>> = {};
  for (const impl of impls) {
    const port = freePort();
    // The server serves a copy of the seeded directory, so its connect sessions hit too.
    const serverDir = await freshDir(`rtt-${impl}`);
    await copyTree(dir, serverDir);
    const process = new ServeProcess(serveArgv(impl, port, serverDir, { s3: s3OnlyFor(impl) }), {
      ...env,
      ...s3Env(s3OnlyFor(impl)),
    });
    await process.waitForPort(port);
    servers[impl] = { port, process };
  }
  const configs: { name: string; argv: string[]; env: Record<string, string> }[] = [];
  for (const impl of impls) {
    configs.push({
      name: `${impl} direct`,
      argv: directArgv(impl, dir, s3OnlyFor(impl)),
      env: { ...env, ...s3Env(s3OnlyFor(impl)) },
    });
  }
  if (s3) {
    configs.push({
      name: "ours --bucket direct",
      argv: directArgv("ours", dir, s3),
      env: { ...env, ...s3Env(s3) },
    });
  }
  for (const impl of impls) {
    configs.push({ name: `${impl} connect`, argv: connectArgv(impl, servers[impl]!.port), env });
  }
  const results: Record<string, { getUs: number[]; lifeMs: number[] }> = {};
  for (const c of configs) results[c.name] = { getUs: [], lifeMs: [] };
  for (const c of configs) await session(c.argv, ids, 50, c.env); // warm-up
  for (let round = 0; round < n; round++) {
    for (const c of configs) {
      const out = await session(c.argv, ids, gets, c.env);
      if (out.hits !== gets) throw new Error(`${c.name}: ${out.hits} of ${gets} gets hit`);
      results[c.name]!.getUs.push(out.getUs);
      const life = await session(c.argv, ids, 0, c.env);
      results[c.name]!.lifeMs.push(life.lifeMs);
      progress(`${c.name}: get ${out.getUs.toFixed(0)} µs, session ${life.lifeMs.toFixed(1)} ms`);
    }
  }
  for (const impl of impls) await servers[impl]!.process[Symbol.asyncDispose]();
  const base = results["tailscale direct"];
  const rows = configs.map((c) => {
    const r = results[c.name]!;
    const get = median(r.getUs);
    const life = median(r.lifeMs);
    return [
      c.name,
      String(n),
      `${get.toFixed(0)} µs`,
      base ? `${(get / median(base.getUs)).toFixed(2)}×` : "–",
      `${life.toFixed(1)} ms`,
      base ? `${(life / median(base.lifeMs)).toFixed(2)}×` : "–",
    ];
  });
  print(`### Per-request cost (${gets} sequential gets, warm local cache)\n`);
  print(`${JSON.stringify(await environment())}\n`);
  print(table(
    [
      "configuration",
      "n",
      "get round trip (median)",
      "vs tailscale direct",
      "spawn → close → exit",
      "vs tailscale direct",
    ],
    rows,
  ));
  for (const [what, why] of Object.entries(skipped)) print(`\n${what} skipped: ${why}`);
  await saveResults("get-rtt", { gets, n, results, skipped });
}
