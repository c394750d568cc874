/**
 * The S3 tier end to end: the real go command, the plugin as GOCACHEPROG, a real MinIO on
 * 127.0.0.1 (signatures checked), toxiproxy for a slow link, and tailscale's bucket fixtures.
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
import { findMinio, freePort, type Minio, startMinio } from "../_util/minio.ts";
import { findToxiproxy, startToxiproxy } from "../_util/toxiproxy.ts";
import { sha256Hex } from "../_util/bytes.ts";

/** Misses of a fully warm `go build ./...` (go looks one entry up under an id it never puts). */
const WARM_MISSES = 1;
/** tailscale's bucket and cache directory (see its README.md). */
const FIXTURES_DIR = new URL("../testdata/tailscale-bucket", import.meta.url).pathname;

const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());
const skipToxiproxy = await needs("toxiproxy (scripts/install_test_servers.sh)", findToxiproxy());

/** Environment for go (and so the plugin) against `minio`. */
function s3GoEnv(gocache: string, plugin: string, minio: Minio): Record<string, string> {
  return { ...goEnv(gocache, plugin), ...minio.env() };
}

/**
 * Gives the module's directories an old mtime too, so go caches its module index from the first
 * build on (it skips directories changed within the last seconds), and every later build of it
 * is all hits.
 */
async function ageDirectories(dir: string): Promise<void> {
  const old = new Date(Date.now() - 3_600_000);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) await ageDirectories(`${dir}/${entry.name}`);
  }
  await Deno.utime(dir, old, old);
}

/** Every output file of a cache directory hashes to its name. */
async function assertOutputsVerified(cacheDir: string): Promise<number> {
  let count = 0;
  for await (const shard of Deno.readDir(`${cacheDir}/output`)) {
    for await (const entry of Deno.readDir(`${cacheDir}/output/${shard.name}`)) {
      if (!entry.isFile || entry.name.includes(".")) continue;
      const bytes = await Deno.readFile(`${cacheDir}/output/${shard.name}/${entry.name}`);
      assert.equal(await sha256Hex(bytes), entry.name, `${entry.name} holds other bytes`);
      count++;
    }
  }
  return count;
}

Deno.test({
  name: "S3 tier: a second machine gets every entry from the bucket; faults never fail the build",
  ignore: skipGo || skipMinio || skipToxiproxy,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-s3e2e-");
    await using minio = await startMinio();
    const module = await copyModule();
    await ageDirectories(module);
    const ctx: S3Run = {
      work,
      minio,
      module,
      fresh: freshMachines(work.path, minio),
      baselineMs: 0,
    };
    await t.step(
      "plugin A builds and tests the module, uploading every entry",
      () => uploadsEveryEntry(ctx),
    );
    await t.step(
      "plugin B (empty cache dir, fresh GOCACHE): all remote hits, (cached)",
      () => secondMachineHitsAll(ctx),
    );
    await t.step(
      "a corrupted object in the bucket is a counted miss, never handed to go",
      () => corruptObjectIsMiss(ctx),
    );
    await t.step(
      "slow S3 (toxiproxy, 50 ms each way): the build finishes with bounded overhead",
      () => slowS3Bounded(ctx),
    );
    await t.step(
      "stalled S3 (toxiproxy holds every byte): misses after one deadline, one line",
      () => stalledS3Misses(ctx),
    );
    await t.step(
      "bucket stopped mid-build: the build succeeds; after a restart uploads resume",
      () => bucketStoppedMidBuild(ctx),
    );
    await Deno.remove(module, { recursive: true });
  },
});

/** One machine of the S3 run: its cache directory and go's environment. */
interface Machine {
  cacheDir: string;
  env: Record<string, string>;
}

/** What the steps of the S3 run share. */
interface S3Run {
  work: { path: string };
  minio: Minio;
  module: string;
  /** A fresh machine (empty cache directory, fresh GOCACHE), with extra plugin flags. */
  fresh(flags?: string[], endpoint?: string, bucket?: string): Machine;
  /** Plugin B's machine, once it has everything. */
  warm?: { cacheDir: string };
  /** How long plugin B's build took. */
  baselineMs: number;
}

/** Fresh machines against `minio`, numbered in `dir`. */
function freshMachines(dir: string, minio: Minio): S3Run["fresh"] {
  let run = 0;
  return (flags: string[] = [], endpoint = minio.endpoint, bucket = minio.bucket) => {
    run++;
    const cacheDir = `${dir}/cache-${run}`;
    const plugin = pluginCommand(
      `--cache-dir=${cacheDir}`,
      `--bucket=${bucket}`,
      `--s3-endpoint-url=${endpoint}`,
      "--s3-path-style",
      "--region=us-east-1",
      "--metrics",
      // The lookups one entry at a time, as tailscale's plugin makes them; the warm-up has its
      // own tests (warmup_test.ts, and the fault matrix runs with it on).
      "--warm-key=off",
      ...flags,
    );
    return { cacheDir, env: s3GoEnv(`${dir}/gocache-${run}`, plugin, minio) };
  };
}

/** plugin A builds and tests the module, uploading every entry. */
async function uploadsEveryEntry(ctx: S3Run): Promise<void> {
  const { fresh, minio, module } = ctx;
  const a = fresh();
  const build = await mustGo(["build", "./..."], { cwd: module, env: a.env });
  const test = await mustGo(["test", "./..."], { cwd: module, env: a.env });
  assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib\s+[\d.]+s/);
  const metrics = pluginMetrics(build.stderr + test.stderr);
  assert.equal(metrics.length, 2, build.stderr + test.stderr);
  assert.ok(total(metrics, "put_requests") > 100);
  assert.equal(total(metrics, "uploads_failed"), 0);
  assert.equal(total(metrics, "uploads_left"), 0);
  assert.equal(
    total(metrics, "uploads_done") + total(metrics, "uploads_small"),
    total(metrics, "put_requests"),
  );
  const keys = await minio.listKeys();
  const actions = keys.filter((k) => k.startsWith("action/")).length;
  assert.ok(actions >= total(metrics, "uploads_done") - 5, `${actions} action records`);
  for (const key of keys) {
    assert.match(key, /^((action|output)\/[0-9a-f]{2}\/[0-9a-f]{64}|warm\/[0-9a-f]{16}\/)/);
  }
}

/** plugin B (empty cache dir, fresh GOCACHE): all remote hits, (cached). */
async function secondMachineHitsAll(ctx: S3Run): Promise<void> {
  const { fresh, module } = ctx;
  const b = fresh();
  const started = performance.now();
  const build = await mustGo(["build", "./..."], { cwd: module, env: b.env });
  ctx.baselineMs = performance.now() - started;
  const test = await mustGo(["test", "./..."], { cwd: module, env: b.env });
  assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
  const metrics = pluginMetrics(build.stderr + test.stderr);
  // go's `build ./...` always misses one 0-byte entry and puts it under another id, even on
  // a local-only warm cache: allow that one, but no compiled output may be put.
  assert.ok(total(metrics, "get_misses") <= 2 * WARM_MISSES, JSON.stringify(metrics));
  assert.equal(total(metrics, "put_bytes"), 0, "nothing recompiles");
  const buildMetrics = pluginMetrics(build.stderr);
  assert.ok(total(buildMetrics, "s3_get_hits") > 100);
  assert.equal(total(buildMetrics, "s3_get_hits"), total(buildMetrics, "get_hits"));
  assert.equal(total(metrics, "s3_corrupt") + total(metrics, "s3_get_errors"), 0);
  assert.ok(total(metrics, "s3_bytes_down") > 0);
  await assertOutputsVerified(b.cacheDir);
  ctx.warm = b;
}

/** a corrupted object in the bucket is a counted miss, never handed to go. */
async function corruptObjectIsMiss(ctx: S3Run): Promise<void> {
  const { fresh, minio, module } = ctx;
  // Corrupt three outputs plugin B needed (same size, other bytes).
  const victims: string[] = [];
  for await (const shard of Deno.readDir(`${ctx.warm!.cacheDir}/output`)) {
    for await (const entry of Deno.readDir(`${ctx.warm!.cacheDir}/output/${shard.name}`)) {
      const info = await Deno.stat(`${ctx.warm!.cacheDir}/output/${shard.name}/${entry.name}`);
      if (info.size > 64) victims.push(entry.name);
    }
  }
  victims.sort();
  const chosen = victims.slice(0, 3);
  for (const outputId of chosen) {
    const key = `output/${outputId.slice(0, 2)}/${outputId}`;
    const bytes = (await minio.getObject(key))!;
    const bad = bytes.slice();
    bad[bad.length >> 1]! ^= 0xff;
    await minio.putObject(key, bad);
  }
  const c = fresh();
  const build = await mustGo(["build", "./..."], { cwd: module, env: c.env });
  const test = await mustGo(["test", "./..."], { cwd: module, env: c.env });
  assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib/);
  const metrics = pluginMetrics(build.stderr + test.stderr);
  assert.ok(total(metrics, "s3_corrupt") >= 1, JSON.stringify(metrics));
  assert.match(build.stderr + test.stderr, /Ignoring bucket object "output\/.*SHA-256/);
  await assertOutputsVerified(c.cacheDir);
  // Put the good bytes back for the next steps.
  for (const outputId of chosen) {
    const local = `${ctx.warm!.cacheDir}/output/${outputId.slice(0, 2)}/${outputId}`;
    await minio.putObject(
      `output/${outputId.slice(0, 2)}/${outputId}`,
      await Deno.readFile(local),
    );
  }
}

/** slow S3 (toxiproxy, 50 ms each way): the build finishes with bounded overhead. */
async function slowS3Bounded(ctx: S3Run): Promise<void> {
  const { fresh, minio, module } = ctx;
  await using toxiproxy = await startToxiproxy();
  const endpoint = await toxiproxy.proxy("s3", `127.0.0.1:${minio.port}`);
  await toxiproxy.latency("s3", 50);
  const d = fresh(["-c=8"], endpoint);
  const started = performance.now();
  const build = await mustGo(["build", "./..."], { cwd: module, env: d.env });
  const elapsed = performance.now() - started;
  const metrics = pluginMetrics(build.stderr);
  assert.ok(total(metrics, "get_misses") <= WARM_MISSES);
  assert.equal(total(metrics, "put_bytes"), 0);
  assert.ok(total(metrics, "s3_get_hits") > 100);
  const gets = total(metrics, "get_requests");
  // Two round trips per remote hit, spread over -c=8 lanes, plus slack for this slow machine.
  const bound = ctx.baselineMs + (gets * 2 * 110) / 4 + 10_000;
  assert.ok(elapsed < bound, `took ${elapsed.toFixed(0)}ms, bound ${bound.toFixed(0)}ms`);
  assert.ok(total(metrics, "s3_wait_ms") > 0);
}

/** stalled S3 (toxiproxy holds every byte): misses after one deadline, one line. */
async function stalledS3Misses(ctx: S3Run): Promise<void> {
  const { minio, work } = ctx;
  await using toxiproxy = await startToxiproxy();
  const endpoint = await toxiproxy.proxy("stall", `127.0.0.1:${minio.port}`);
  await toxiproxy.timeout("stall", 0);
  const gets = [1, 2, 3, 4, 5, 6].map((n) =>
    JSON.stringify({
      ID: n,
      Command: "get",
      ActionID: b64(n.toString(16).padStart(2, "0").repeat(32)),
    })
  );
  const started = performance.now();
  const result = await replay(
    [...gets, JSON.stringify({ ID: 7, Command: "close" }), ""].join("\n"),
    [
      `--cache-dir=${work.path}/stall`,
      `--bucket=${minio.bucket}`,
      `--s3-endpoint-url=${endpoint}`,
      "--s3-path-style",
      "--region=us-east-1",
      "-c=2",
    ],
    minio.env(),
  );
  const elapsed = performance.now() - started;
  assert.equal(result.code, 0, result.stderr);
  for (let n = 1; n <= 6; n++) {
    assert.equal(result.replies.find((r) => r.ID === n)?.Miss, true);
  }
  // Two lanes wait one 10 s deadline, then the breaker answers the rest at once.
  assert.ok(elapsed < 16_000, `took ${elapsed.toFixed(0)}ms`);
  const lines = result.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0]!, /S3 tier paused .*deadline exceeded/);
}

/** bucket stopped mid-build: the build succeeds; after a restart uploads resume. */
async function bucketStoppedMidBuild(ctx: S3Run): Promise<void> {
  const { fresh, minio, work } = ctx;
  // A changed lib: std comes from the bucket, lib and its dependents are compiled and put.
  const changed = await copyModule();
  await Deno.writeTextFile(
    `${changed}/lib/extra.go`,
    "package lib\n\n// Extra is new.\nconst Extra = 42\n",
  );
  await ageDirectories(changed);
  const old = new Date(Date.now() - 3_600_000);
  await Deno.utime(`${changed}/lib/extra.go`, old, old);
  const e = fresh(["--debug=1"]);
  const build = new Deno.Command("go", {
    args: ["build", "./..."],
    cwd: changed,
    env: e.env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Kill the server at the first put after std came from the bucket (lib's compile): that
  // upload and the later ones fail.
  let stderr = "";
  let hits = 0;
  let stopped: Promise<void> | undefined;
  let partial = "";
  for await (const chunk of build.stderr.pipeThrough(new TextDecoderStream())) {
    stderr += chunk;
    const lines = (partial + chunk).split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      if (/ E GET .* DP:/.test(line)) hits++;
      if (!stopped && hits >= 50 && / B PUT /.test(line)) stopped = minio.stop();
    }
  }
  await stopped;
  const status = await build.status;
  await build.stdout.cancel();
  assert.equal(status.code, 0, stderr);
  assert.ok(stopped, "the build put something");
  const metrics = pluginMetrics(stderr);
  assert.ok(total(metrics, "s3_get_hits") > 50, JSON.stringify(metrics));
  assert.ok(total(metrics, "uploads_failed") > 0, JSON.stringify(metrics));
  assert.ok(total(metrics, "s3_breaker_trips") >= 1);
  assert.match(stderr, /S3 tier paused/);

  const restarted = await minio.restart();
  try {
    // The same machine again (its cache dir, a fresh GOCACHE): local hits, and the uploads
    // the outage left undone go out now.
    const again = s3GoEnv(`${work.path}/gocache-resume`, e.env.GOCACHEPROG!, restarted);
    const next = await mustGo(["build", "./..."], { cwd: changed, env: again });
    const nextMetrics = pluginMetrics(next.stderr);
    assert.ok(total(nextMetrics, "get_misses") <= WARM_MISSES);
    assert.ok(total(nextMetrics, "uploads_resumed") > 0, JSON.stringify(nextMetrics));
    assert.ok(total(nextMetrics, "uploads_done") > 0, "uploads resume");
    assert.equal(total(nextMetrics, "uploads_failed"), 0);
    // Now the bucket has everything: another machine hits it all.
    const g = fresh([], restarted.endpoint);
    const last = await mustGo(["build", "./..."], {
      cwd: changed,
      env: { ...g.env, ...restarted.env() },
    });
    const lastMetrics = pluginMetrics(last.stderr);
    assert.ok(total(lastMetrics, "get_misses") <= WARM_MISSES, JSON.stringify(lastMetrics));
    assert.equal(total(lastMetrics, "put_bytes"), 0, "nothing recompiles");
    assert.ok(total(lastMetrics, "s3_get_hits") > 50);
  } finally {
    await restarted[Symbol.asyncDispose]();
    await Deno.remove(changed, { recursive: true });
  }
}

/**
 * One plugin process fed `input` on stdin; replies parsed; time to the handshake measured. An
 * array of segments is sent one at a time, each after every reply to the ones before (like go,
 * which never asks for an action before its put is answered).
 */
async function replay(
  input: Uint8Array | string | string[],
  args: string[],
  env: Record<string, string>,
): Promise<
  { replies: Record<string, unknown>[]; stderr: string; code: number; handshakeMs: number }
> {
  const started = performance.now();
  const child = new Deno.Command(PLUGIN, {
    args,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      ...env,
    },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderrText = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const lines = () => buffered.split("\n").length - 1;
  async function readUntil(count: number): Promise<void> {
    while (lines() < count) {
      const { done, value } = await reader.read();
      if (done) return;
      buffered += value;
    }
  }
  await readUntil(1);
  const handshakeMs = performance.now() - started;
  const segments = Array.isArray(input) ? input : [input];
  const writer = child.stdin.getWriter();
  let sent = 0;
  for (const segment of segments) {
    const bytes = typeof segment === "string" ? new TextEncoder().encode(segment) : segment;
    await writer.write(bytes);
    sent += typeof segment === "string"
      ? segment.split("\n").filter((l) => l.startsWith("{")).length
      : 0;
    if (Array.isArray(input)) await readUntil(1 + sent);
  }
  await writer.close();
  await readUntil(Infinity);
  const { code } = await child.status;
  const replies = buffered.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  return { replies, stderr: await stderrText, code, handshakeMs };
}

function b64(hex: string): string {
  return Uint8Array.fromHex(hex).toBase64();
}

Deno.test({
  name: "S3 tier: bad configuration is one line on stderr; the local tier keeps serving",
  ignore: skipMinio,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-s3bad-");
    await using minio = await startMinio();
    const body = new TextEncoder().encode("local output");
    const outputId = await sha256Hex(body);
    const script = [
      [
        JSON.stringify({ ID: 1, Command: "get", ActionID: b64("11".repeat(32)) }),
        JSON.stringify({
          ID: 2,
          Command: "put",
          ActionID: b64("22".repeat(32)),
          OutputID: b64(outputId),
          BodySize: body.length,
        }),
        "",
        JSON.stringify(body.toBase64()),
        "",
      ].join("\n"),
      [
        JSON.stringify({ ID: 3, Command: "get", ActionID: b64("22".repeat(32)) }),
        JSON.stringify({ ID: 4, Command: "get", ActionID: b64("33".repeat(32)) }),
        "",
      ].join("\n"),
      JSON.stringify({ ID: 5, Command: "close" }) + "\n",
    ];
    const cases = [
      {
        name: "missing bucket",
        flags: minio.flags("no-such-bucket"),
        env: minio.env(),
        cause: /NoSuchBucket/,
      },
      {
        name: "wrong endpoint",
        flags: [
          `--bucket=${minio.bucket}`,
          `--s3-endpoint-url=http://127.0.0.1:${freePort()}`,
          "--s3-path-style",
          "--region=us-east-1",
        ],
        env: minio.env(),
        cause: /ECONNREFUSED/,
      },
      {
        name: "bad credentials",
        flags: minio.flags(),
        env: { ...minio.env(), AWS_SECRET_ACCESS_KEY: "not-the-secret-key" },
        cause: /SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|access denied/,
      },
      {
        name: "no credentials at all",
        flags: minio.flags(),
        env: { AWS_REGION: "us-east-1", AWS_EC2_METADATA_DISABLED: "true" },
        cause: /credentials/i,
      },
    ];
    await t.step("no region anywhere: looked up from the bucket on first use", async () => {
      const actionId = "44".repeat(32);
      await minio.putObject(`output/${outputId.slice(0, 2)}/${outputId}`, body);
      await minio.putObject(
        `action/44/${actionId}`,
        new TextEncoder().encode(`${outputId} 1700000000123456789`),
      );
      const { AWS_REGION: _, ...env } = minio.env();
      const result = await replay(
        JSON.stringify({ ID: 1, Command: "get", ActionID: b64(actionId) }) + "\n" +
          JSON.stringify({ ID: 2, Command: "close" }) + "\n",
        [
          `--cache-dir=${work.path}/region`,
          `--bucket=${minio.bucket}`,
          `--s3-endpoint-url=${minio.endpoint}`,
          "--s3-path-style",
        ],
        env,
      );
      assert.equal(result.code, 0, result.stderr);
      const hit = result.replies.find((r) => r.ID === 1)!;
      assert.equal(hit.OutputID, b64(outputId), result.stderr);
      assert.equal(hit.Time, "2023-11-14T22:13:20.123456789Z");
      assert.equal(result.stderr, "");
    });

    for (const c of cases) {
      await t.step(c.name, async () => {
        const dir = `${work.path}/${c.name.replaceAll(" ", "-")}`;
        const result = await replay(script, [`--cache-dir=${dir}`, ...c.flags], c.env);
        assert.equal(result.code, 0, result.stderr);
        assert.ok(result.handshakeMs < 3_000, `handshake after ${result.handshakeMs.toFixed(0)}ms`);
        const byId = new Map(result.replies.map((r) => [r.ID, r]));
        assert.equal(byId.get(1)?.Miss, true);
        assert.match(String(byId.get(2)?.DiskPath), new RegExp(`${outputId}$`));
        assert.equal(byId.get(3)?.OutputID, b64(outputId), "served by the local tier");
        assert.equal(byId.get(4)?.Miss, true);
        assert.deepEqual(byId.get(5), { ID: 5 });
        for (const r of result.replies) assert.equal(r.Err, undefined);
        const lines = result.stderr.split("\n").filter((l) => l.trim() !== "");
        assert.equal(lines.length, 1, result.stderr);
        assert.match(lines[0]!, /S3 tier (disabled|paused)/);
        assert.match(lines[0]!, c.cause);
        assert.match(lines[0]!, /local tier/);
      });
    }
  },
});

Deno.test({
  name: "S3 tier: interoperates with tailscale's go-cache-plugin bucket and cache directory",
  ignore: skipMinio,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-s3ts-");
    await using minio = await startMinio({ bucket: "fxbucket" });
    const bucketFiles: string[] = [];
    async function walk(dir: string, rel: string): Promise<void> {
      for await (const entry of Deno.readDir(dir)) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory) await walk(`${dir}/${entry.name}`, path);
        else bucketFiles.push(path);
      }
    }
    await walk(`${FIXTURES_DIR}/bucket`, "");
    bucketFiles.sort();
    const expected = (await Deno.readTextFile(`${FIXTURES_DIR}/get.stdout`)).split("\n")
      .filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
    const getStdin = await Deno.readFile(`${FIXTURES_DIR}/get.stdin`);

    await t.step(
      "reads tailscale's bucket: IDs 3 and 4 are remote hits with its times",
      async () => {
        for (const key of bucketFiles) {
          await minio.putObject(key, await Deno.readFile(`${FIXTURES_DIR}/bucket/${key}`));
        }
        const dir = `${work.path}/read`;
        const result = await replay(getStdin, [
          `--cache-dir=${dir}`,
          ...minio.flags(),
          "--prefix=ts",
          "--metrics",
        ], minio.env());
        assert.equal(result.code, 0, result.stderr);
        for (const id of [3, 4]) {
          const want = expected.find((r) => r.ID === id)!;
          const got = result.replies.find((r) => r.ID === id)!;
          assert.equal(got.OutputID, want.OutputID);
          assert.equal(got.Size ?? 0, want.Size ?? 0);
          assert.equal(got.Time, want.Time);
          const outputId = Uint8Array.fromBase64(String(want.OutputID)).toHex();
          assert.equal(got.DiskPath, `${dir}/output/${outputId.slice(0, 2)}/${outputId}`);
          assert.deepEqual(
            await Deno.readFile(String(got.DiskPath)),
            await Deno.readFile(
              `${FIXTURES_DIR}/bucket/ts/output/${outputId.slice(0, 2)}/${outputId}`,
            ),
          );
        }
        assert.equal(result.replies.find((r) => r.ID === 1)?.Miss, true);
        const metrics = pluginMetrics(result.stderr)[0]!;
        assert.equal(metrics.s3_get_hits, 2);
      },
    );

    await t.step(
      "writes what tailscale reads: same keys, same objects, same record form",
      async () => {
        await minio.createBucket("fxput");
        const dir = `${work.path}/write`;
        const before = BigInt(Date.now()) * 1_000_000n;
        const result = await replay(
          await Deno.readFile(`${FIXTURES_DIR}/put.stdin`),
          [`--cache-dir=${dir}`, ...minio.flags("fxput"), "--prefix=ts", "--metrics"],
          minio.env(),
        );
        assert.equal(result.code, 0, result.stderr);
        const after = BigInt(Date.now()) * 1_000_000n;
        // Beside them only the warm-up's own keys, which tailscale's plugin never reads.
        const keys = await minio.listKeys("fxput");
        assert.deepEqual(keys.filter((k) => !k.startsWith("ts/warm/")), bucketFiles);
        for (const key of keys) assert.match(key, /^ts\/(action|output|warm)\//);
        for (const key of bucketFiles) {
          const ours = (await minio.getObject(key, "fxput"))!;
          const theirs = await Deno.readFile(`${FIXTURES_DIR}/bucket/${key}`);
          if (key.startsWith("ts/output/")) {
            assert.deepEqual(ours, theirs, key);
            continue;
          }
          const [ourOutput, ourNanos, ...rest] = new TextDecoder().decode(ours).split(" ");
          const [theirOutput] = new TextDecoder().decode(theirs).split(" ");
          assert.equal(rest.length, 0);
          assert.equal(ourOutput, theirOutput, key);
          assert.match(ourNanos!, /^\d+$/);
          assert.ok(BigInt(ourNanos!) >= before - 1_000_000_000n && BigInt(ourNanos!) <= after);
          assert.match(new TextDecoder().decode(ours), /^[0-9a-f]{64} \d+$/);
        }
      },
    );

    await t.step("takes over tailscale's cache directory: IDs 3 and 4 are local hits", async () => {
      const dir = `${work.path}/takeover`;
      const manifest = (await Deno.readTextFile(`${FIXTURES_DIR}/local.manifest`)).split("\n")
        .filter((l) => l !== "");
      for (const line of manifest) {
        const [path, , nanos] = line.split(" ");
        await Deno.mkdir(`${dir}/${path!.slice(0, path!.lastIndexOf("/"))}`, { recursive: true });
        await Deno.copyFile(`${FIXTURES_DIR}/local/${path}`, `${dir}/${path}`);
        const time = new Date(Number(BigInt(nanos!) / 1_000_000n));
        await Deno.utime(`${dir}/${path}`, time, time);
      }
      await minio.createBucket("fxempty");
      const result = await replay(getStdin, [
        `--cache-dir=${dir}`,
        ...minio.flags("fxempty"),
        "--prefix=ts",
        "--metrics",
      ], minio.env());
      assert.equal(result.code, 0, result.stderr);
      for (const id of [3, 4]) {
        const want = expected.find((r) => r.ID === id)!;
        const got = result.replies.find((r) => r.ID === id)!;
        assert.equal(got.OutputID, want.OutputID);
        assert.equal(got.Size ?? 0, want.Size ?? 0);
        assert.equal(
          String(got.Time).slice(0, 23),
          String(want.Time).slice(0, 23),
          "mtime kept to the ms",
        );
      }
      const metrics = pluginMetrics(result.stderr)[0]!;
      assert.equal(metrics.local_hits, 2);
      assert.equal(metrics.s3_get_hits ?? 0, 0);
    });
  },
});
