/**
 * The warm-up against a hostile bucket, end to end: each hostile manifest or pack is put into a
 * real MinIO bucket under the warm key's `warm/<hash>/`, and the real go command builds and tests
 * the module on a fresh machine with the plugin as GOCACHEPROG at its default caps. The test
 * samples the plugin process's peak RSS (`VmHWM` in `/proc/<pid>/status`) and counts the files it
 * writes into the cache directory, and asserts the bounds the README documents; every build
 * succeeds with the module's tests passing.
 */
import assert from "node:assert/strict";
import {
  canRun,
  copyModule,
  goEnv,
  mustGo,
  needs,
  PLUGIN,
  pluginCommand,
  pluginMetrics,
  tempDir,
  total,
} from "../_util/go.ts";
import { findMinio, type Minio, startMinio } from "../_util/minio.ts";
import { freePort } from "../_util/net.ts";
import { Server } from "../_util/serve.ts";
import {
  decodeManifest,
  encodeManifest,
  manifestKey,
  packKey,
  warmKeyHash,
  type WarmManifest,
} from "../../src/cache/remote/mod.ts";
import { verifyCacheDir } from "../_util/verify.ts";
import zlib from "node:zlib";

const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());

const EMPTY_ID = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const MiB = 1 << 20;

/** What one go command did to the machine. */
interface Run {
  /** Peak RSS of the plugin process(es), bytes (the largest). */
  peakRss: number;
  /** Files in the cache directory afterwards. */
  files: number;
  ms: number;
  stdout: string;
  stderr: string;
  metrics: Record<string, number>[];
}

/**
 * A GOCACHEPROG wrapper that runs the plugin and appends its peak RSS (`VmHWM`, KiB) to the file
 * named by its first argument when it exits. (A shell reads `/proc`: Deno refuses it without
 * `--allow-all`.) `VmHWM` is a high-water mark, so any sample after the peak holds it.
 */
const RSS_WRAPPER = `#!/bin/sh
out="$1"; shift
exec 3<&0
"$@" <&3 3<&- &
pid=$!
peak=0
while :; do
  status=$(cat "/proc/$pid/status" 2>/dev/null) || break
  hwm=$(printf '%s\\n' "$status" | sed -n 's/^VmHWM:[[:space:]]*\\([0-9]*\\) kB$/\\1/p')
  [ -n "$hwm" ] || break
  peak=$hwm
  sleep 0.05
done
wait "$pid"
code=$?
echo "$peak" >> "$out"
exit "$code"
`;

async function countFiles(dir: string): Promise<number> {
  let files = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) files += await countFiles(`${dir}/${entry.name}`);
      else files++;
    }
  } catch {
    // not there
  }
  return files;
}

/** Runs go with the plugin (under {@linkcode RSS_WRAPPER}, writing `rssFile`). */
async function runMeasured(
  args: string[],
  options: { cwd: string; env: Record<string, string>; cacheDir: string; rssFile: string },
): Promise<Run> {
  const started = performance.now();
  const result = await new Deno.Command("go", {
    args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const stdout = decoder.decode(result.stdout);
  const stderr = decoder.decode(result.stderr);
  assert.equal(result.code, 0, `go ${args.join(" ")}:\n${stdout}\n${stderr}`);
  const peaks = (await Deno.readTextFile(options.rssFile)).trim().split("\n").map(Number);
  const peakRss = Math.max(...peaks) * 1024;
  assert.ok(peakRss > 0, "the plugin process was measured");
  return {
    peakRss,
    files: await countFiles(options.cacheDir),
    ms: performance.now() - started,
    stdout,
    stderr,
    metrics: pluginMetrics(stderr),
  };
}

/** Gzip of the given parts, streamed (never the whole text in memory). */
async function gzip(parts: Iterable<string | Uint8Array>): Promise<Uint8Array> {
  const encoder = new TextEncoder();
  const bytes = ReadableStream.from(
    (function* () {
      for (const p of parts) yield typeof p === "string" ? encoder.encode(p) : p;
    })(),
  );
  const gz = new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>;
  return await new Response(bytes.pipeThrough(gz)).bytes();
}

/** Manifest entries of empty outputs under sequential action ids, 1,000 to a string. */
function* emptyEntries(count: number): Generator<string> {
  for (let from = 0; from < count; from += 1000) {
    const batch: string[] = [];
    for (let n = from; n < Math.min(count, from + 1000); n++) {
      const action = n.toString(16).padStart(64, "0");
      batch.push(
        `{"action":"${action}","output":"${EMPTY_ID}","size":0,"time":"1700000000000000000",` +
          `"seen":1}`,
      );
    }
    yield (from ? "," : "") + batch.join(",");
  }
}

/** One zstd frame of the given parts without its content size (as a streaming writer makes). */
async function zstdStream(parts: Iterable<Uint8Array>): Promise<Uint8Array> {
  const out: Uint8Array[] = [];
  const compressor = zlib.createZstdCompress();
  compressor.on("data", (chunk: Uint8Array) => out.push(chunk));
  const ended = new Promise((resolve) => compressor.on("end", resolve));
  for (const part of parts) compressor.write(part);
  compressor.end();
  await ended;
  return new Uint8Array(await new Blob(out as BlobPart[]).arrayBuffer());
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}

Deno.test({
  name:
    "warm-up: a hostile bucket costs misses only, within the README's memory, file and time bounds",
  ignore: skipGo || skipMinio,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-hostile-");
    await using minio = await startMinio();
    const module = await copyModule();
    const keyHash = await warmKeyHash(`dir:${module}`);
    const wrapper = `${work.path}/rss-wrapper.sh`;
    await Deno.writeTextFile(wrapper, RSS_WRAPPER, { mode: 0o755 });
    let machines = 0;
    /** A fresh machine: its own cache directory and GOCACHE. */
    const fresh = (server: Minio = minio) => {
      machines++;
      const cacheDir = `${work.path}/cache-${machines}`;
      const rssFile = `${work.path}/rss-${machines}`;
      const plugin = wrapper + " " + rssFile + " " + pluginCommand(
        `--cache-dir=${cacheDir}`,
        ...server.flags(),
        "--metrics",
        "--warm-key=auto",
        "-v",
      );
      return {
        cacheDir,
        rssFile,
        env: { ...goEnv(`${work.path}/gocache-${machines}`, plugin), ...server.env() },
      };
    };
    const test = async (hostile: Uint8Array) => {
      await minio.putObject(manifestKey(keyHash), hostile);
      const machine = fresh();
      const run = await runMeasured(["test", "./..."], { cwd: module, ...machine });
      const check = await verifyCacheDir(machine.cacheDir);
      assert.deepEqual(check.bad, [], "no wrong bytes in the cache directory");
      assert.match(run.stdout, /^ok\s/m, "the module's tests pass");
      assert.doesNotMatch(run.stdout + run.stderr, /FAIL/);
      const skipped = run.stderr.match(/ignoring the warm-up manifest/g) ?? [];
      // Every build was all hits from the bucket's ordinary layout: a hostile manifest costs
      // the warm-up, never the entries.
      assert.equal(total(run.metrics, "s3_breaker_trips"), 0, run.stderr);
      // The session's own manifest replaced the hostile one.
      const after = await minio.getObject(manifestKey(keyHash));
      assert.ok(after && await decodeManifest(after), "the next writer repaired the manifest");
      return { ...run, skipped: skipped.length };
    };
    // The numbers the README quotes, on stderr.
    const report = (what: string, run: Run) =>
      // deno-lint-ignore no-console
      console.error(
        `  ${what}: peak RSS ${mib(run.peakRss)}, ${run.files} files, ${Math.round(run.ms)} ms`,
      );

    let baseline!: Run;
    let honest!: WarmManifest;
    /** The honest manifest's first pack, as machine A wrote it. */
    let honestObject!: Uint8Array;
    await t.step(
      "machine A fills the bucket; a fresh machine warms from its manifest",
      async () => {
        const a = fresh();
        report("machine A (cold)", await runMeasured(["test", "./..."], { cwd: module, ...a }));
        const written = await minio.getObject(manifestKey(keyHash));
        honest = (await decodeManifest(written ?? new Uint8Array()))!;
        assert.ok(honest, "an honest manifest");
        assert.ok(honest.packs.length > 0 && honest.packs.every((p) => p.raw), "zstd packs");
        honestObject = (await minio.getObject(packKey(keyHash, honest.packs[0]!)))!;
        const b = fresh();
        baseline = await runMeasured(["test", "./..."], { cwd: module, ...b });
        report("baseline (fresh machine, honest manifest)", baseline);
        assert.ok(total(baseline.metrics, "warm_hits") > 0);
      },
    );
    // Far above what an honest build needs, far below what the bombs took before (2 to 6 GB).
    const rssBound = () => baseline.peakRss + 160 * MiB;

    await t.step("a gzip bomb (1 GiB of JSON in 1 MiB) is abandoned at 32 MiB", async () => {
      const chunk = new Uint8Array(16 * MiB).fill(0x20);
      const bomb = await gzip(
        (function* () {
          yield '{"version":1,"key":"';
          for (let n = 0; n < 64; n++) yield chunk;
          yield '","entries":[]}';
        })(),
      );
      const run = await test(bomb);
      report(`gzip bomb (${mib(bomb.length)} compressed)`, run);
      assert.ok(run.skipped >= 1, run.stderr);
      assert.match(run.stderr, /more than 33554432 bytes once decompressed/);
      assert.ok(run.peakRss < rssBound(), `peak RSS ${mib(run.peakRss)}`);
    });

    await t.step("a JSON nesting bomb (39 KB) is refused before it is parsed", async () => {
      const run = await test(await gzip([`{"version":1,"entries":[],"x":${"[".repeat(39_000)}`]));
      report("nesting bomb", run);
      assert.match(run.stderr, /JSON nested more than 16 deep/);
      assert.ok(run.peakRss < rssBound(), `peak RSS ${mib(run.peakRss)}`);
    });

    await t.step("sizes of 2.25e12 are refused: no instant deadline, no breaker trip", async () => {
      const pack = "c".repeat(64);
      const entries = [...emptyEntries(50)].join("").replaceAll('"size":0', '"size":2250000000000');
      const manifest = `{"version":1,"key":"k","session":1,"packs":[{"name":"${pack}",` +
        `"size":2250000000000}],"entries":[${entries}]}`;
      const run = await test(await gzip([manifest]));
      report("sizes of 2.25e12", run);
      assert.ok(run.skipped >= 1);
      assert.equal(total(run.metrics, "s3_breaker_trips"), 0, run.stderr);
      assert.doesNotMatch(run.stderr, /deadline exceeded/);
      assert.ok(run.ms < baseline.ms + 15_000, `${Math.round(run.ms)} ms`);
    });

    await t.step("a million entries is refused at the caps: no files written for it", async () => {
      const million = await gzip(
        (function* () {
          yield '{"version":1,"key":"k","session":1,"packs":[],"entries":[';
          yield* emptyEntries(1_000_000);
          yield "]}";
        })(),
      );
      const run = await test(million);
      report(`1,000,000 entries (${mib(million.length)} compressed)`, run);
      assert.ok(run.skipped >= 1, run.stderr);
      assert.ok(run.files <= baseline.files + 10, `${run.files} files`);
      assert.ok(run.peakRss < rssBound(), `peak RSS ${mib(run.peakRss)}`);
    });

    let capped!: Uint8Array;
    await t.step(
      "50,000 entries (the cap) of empty outputs: bounded files, time and memory",
      async () => {
        capped = await gzip(
          (function* () {
            yield '{"version":1,"key":"k","session":1,"packs":[],"entries":[';
            yield* emptyEntries(50_000);
            yield "]}";
          })(),
        );
        const run = await test(capped);
        report("50,000 empty entries", run);
        const warmed = total(run.metrics, "warm_entries");
        assert.ok(warmed <= 50_000, `${warmed} entries warmed`);
        // One action record per entry at most, one shared empty output, and go's own.
        assert.ok(run.files <= baseline.files + 50_001, `${run.files} files`);
        assert.ok(run.ms < 60_000, `${Math.round(run.ms)} ms`);
        assert.ok(run.peakRss < rssBound(), `peak RSS ${mib(run.peakRss)}`);
      },
    );

    await t.step(
      "serve mode, 50,000 empty outputs: /metrics and connect answer throughout",
      async () => {
        await minio.putObject(manifestKey(keyHash), capped);
        const plugin = freePort();
        const http = freePort();
        await using server = await Server.start([
          `--plugin=${plugin}`,
          `--http=127.0.0.1:${http}`,
          `--cache-dir=${work.path}/serve`,
          ...minio.flags(),
          "--metrics",
          `--warm-key=dir:${module}`,
        ], minio.env());
        let slowest = 0;
        let polls = 0;
        let polling = true;
        const poller = (async () => {
          while (polling) {
            const started = performance.now();
            const response = await fetch(`http://127.0.0.1:${http}/metrics`);
            await response.text();
            slowest = Math.max(slowest, performance.now() - started);
            polls++;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        })();
        const started = performance.now();
        let stdout: string;
        try {
          const env = goEnv(`${work.path}/gocache-serve`, `${PLUGIN} connect ${plugin}`);
          stdout = (await mustGo(["test", "./..."], { cwd: module, env })).stdout;
        } finally {
          polling = false;
          await poller;
        }
        const ms = performance.now() - started;
        server.kill("SIGTERM");
        assert.equal(await server.exit(), 0, server.stderr);
        // deno-lint-ignore no-console
        console.error(
          `  serve mode, 50,000 empty outputs: build ${Math.round(ms)} ms, slowest /metrics ` +
            `${Math.round(slowest)} ms of ${polls}`,
        );
        assert.match(stdout, /^ok\s/m);
        assert.ok(slowest < 2_000, `/metrics took ${Math.round(slowest)} ms`);
        assert.ok(ms < 60_000, `the build took ${Math.round(ms)} ms`);
      },
    );

    await t.step("packs declared 100 bytes but 64 MiB are never read past 100 bytes", async () => {
      const big = new Uint8Array(64 * MiB).fill(0x61);
      const names = ["d", "e", "f"].map((c) => c.repeat(64));
      for (const name of names) await minio.putObject(packKey(keyHash, { name, size: 100 }), big);
      const entries = names.map((pack, n) => ({
        actionId: (n + 1).toString(16).padStart(64, "0"),
        outputId: "a".repeat(64),
        size: 100,
        nanos: 1n,
        seen: 1,
        pack,
        offset: 0,
      }));
      const manifest = await encodeManifest({
        key: "k",
        session: 1,
        packs: names.map((name) => ({ name, size: 100 })),
        entries,
      });
      const run = await test(manifest);
      report("packs of 64 MiB declared 100 bytes", run);
      assert.equal(total(run.metrics, "warm_bytes"), 0);
      assert.ok(total(run.metrics, "s3_corrupt") >= 3, run.stderr);
      assert.ok(run.peakRss < baseline.peakRss + 64 * MiB, `peak RSS ${mib(run.peakRss)}`);
    });

    /**
     * The honest manifest with its first pack's object replaced (and the manifest's `size` of it
     * set to the new object's, so the fetch itself is honest): the pack's entries must cost
     * misses only, with one log line, within the memory bound.
     */
    const hostilePack = async (what: string, object: Uint8Array, pattern: RegExp) => {
      const pack = { ...honest.packs[0]!, size: object.length };
      await minio.putObject(packKey(keyHash, pack), object);
      const manifest = { ...honest, packs: [pack, ...honest.packs.slice(1)] };
      const run = await test(await encodeManifest(manifest));
      report(what, run);
      const lines = run.stderr.split("\n").filter((line) =>
        line.includes(`warm-up pack ${pack.name.slice(0, 12)} skipped`)
      );
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0]!, pattern);
      assert.equal(total(run.metrics, "s3_breaker_trips"), 0);
      assert.ok(run.peakRss < rssBound(), `peak RSS ${mib(run.peakRss)}`);
      return run;
    };
    const honestPack = () => new Uint8Array(zlib.zstdDecompressSync(honestObject));

    await t.step("a zstd pack past the size its manifest declares is abandoned there", async () => {
      const raw = honestPack();
      // No content size in the frame: the bound is the decompressed bytes counted.
      const object = await zstdStream([raw, new Uint8Array(1 << 20).fill(7)]);
      await hostilePack("zstd pack past its declared size", object, /more than \d+ bytes/);
    });

    await t.step(
      "a zstd bomb (1 GiB of zeros in about 32 KB) is abandoned at its bound",
      async () => {
        const zeros = new Uint8Array(16 * MiB);
        const bomb = await zstdStream(Array.from({ length: 64 }, () => zeros));
        assert.ok(bomb.length < MiB, `${bomb.length} bytes`);
        await hostilePack(`zstd bomb (${bomb.length} bytes)`, bomb, /more than \d+ bytes/);
      },
    );

    await t.step("a zstd frame cut short is a miss", async () => {
      const cut = honestObject.slice(0, honestObject.length >> 1);
      await hostilePack("zstd frame cut short", cut, /cut short|not zstd/);
    });

    await t.step(
      "a well-formed zstd pack of wrong bytes: SHA-256 checked once decompressed",
      async () => {
        const raw = honestPack();
        raw.fill(0x41, 0, Math.min(raw.length, 64 << 10));
        const object = new Uint8Array(zlib.zstdCompressSync(raw));
        const pack = { ...honest.packs[0]!, size: object.length };
        await minio.putObject(packKey(keyHash, pack), object);
        const run = await test(
          await encodeManifest({ ...honest, packs: [pack, ...honest.packs.slice(1)] }),
        );
        report("zstd pack of wrong bytes", run);
        assert.ok(total(run.metrics, "s3_corrupt") >= 1, run.stderr);
        assert.ok(run.peakRss < rssBound(), `peak RSS ${mib(run.peakRss)}`);
      },
    );
  },
});
