/**
 * A bucket that fails without refusing, end to end: the real go command with the plugin in
 * direct mode (one process per go command) against a black-holed endpoint, a crawling link
 * (toxiproxy's bandwidth toxic in front of a real MinIO) and malformed records. Each go command
 * must finish in about the time it would take without S3.
 */
import assert from "node:assert/strict";
import {
  canRun,
  goEnv,
  mustGo,
  needs,
  pluginCommand,
  pluginMetrics,
  tempDir,
  total,
} from "../_util/go.ts";
import { findMinio, type Minio, startMinio } from "../_util/minio.ts";
import { findToxiproxy, startToxiproxy, type Toxiproxy } from "../_util/toxiproxy.ts";

const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());
const skipToxiproxy = await needs("toxiproxy (scripts/install_test_servers.sh)", findToxiproxy());

/** One lookup's deadline in the plugin: later go commands must finish well within it. */
const LOOKUP_DEADLINE_MS = 10_000;

/**
 * Writes a small module under `dir`: packages `a`, `b`, `c` (no imports, so no standard library
 * to compile) and, with `big`, packages `big1` and `big2` whose compiled archives are `big` bytes
 * each. Files get an old mtime so go caches their index from the first build on.
 */
async function writeModule(dir: string, big = 0): Promise<void> {
  const files: Record<string, string> = { "go.mod": "module example.com/faults\n\ngo 1.24\n" };
  for (const name of ["a", "b", "c"]) {
    files[`${name}/${name}.go`] = `package ${name}\n\n// Name is the package's name.\n` +
      `func Name() string { return ${JSON.stringify(name)} }\n`;
  }
  if (big > 0) {
    for (const name of ["big1", "big2"]) {
      files[`${name}/${name}.go`] = `package ${name}\n\n// Data is large.\n` +
        `var Data = "${randomHex(big)}"\n`;
    }
  }
  const old = new Date(Date.now() - 3_600_000);
  for (const [path, text] of Object.entries(files)) {
    const parent = `${dir}/${path}`.replace(/\/[^/]*$/, "");
    await Deno.mkdir(parent, { recursive: true });
    await Deno.writeTextFile(`${dir}/${path}`, text);
    await Deno.utime(`${dir}/${path}`, old, old);
  }
  for (const sub of ["a", "b", "c", ...(big > 0 ? ["big1", "big2"] : []), "."]) {
    await Deno.utime(`${dir}/${sub}`, old, old);
  }
}

function randomHex(chars: number): string {
  const bytes = new Uint8Array(chars / 2);
  for (let at = 0; at < bytes.length; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, at + 65536));
  }
  return bytes.toHex();
}

/** The plugin's lines on go's stderr other than its metrics. */
function pluginLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => / go-cache-plugin: /.test(l) && !/: metrics \{/.test(l));
}

/**
 * A TCP listener on loopback that accepts connections, reads and discards what they send and
 * never answers: a bucket behind a black hole.
 */
function blackHole(): AsyncDisposable & { endpoint: string; accepted: () => number } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let accepted = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      accepted++;
      conns.add(conn);
      conn.readable.pipeTo(new WritableStream()).catch(() => {}).finally(() => conns.delete(conn));
    }
  })().catch(() => {});
  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    accepted: () => accepted,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await serving;
    },
  };
}

Deno.test({
  name: "bucket faults: a black-holed bucket costs one deadline, not one per go command",
  ignore: skipGo,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-blackhole-");
    await using hole = blackHole();
    const module = `${work.path}/module`;
    await writeModule(module);
    const cacheDir = `${work.path}/cache`;
    const plugin = pluginCommand(
      `--cache-dir=${cacheDir}`,
      "--bucket=black-hole",
      `--s3-endpoint-url=${hole.endpoint}`,
      "--s3-path-style",
      "--region=us-east-1",
      "--metrics",
    );
    let run = 0;
    const env = () => ({
      ...goEnv(`${work.path}/gocache-${++run}`, plugin),
      AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
      AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
      AWS_REGION: "us-east-1",
    });

    await t.step("the first go command pays the deadlines once and builds", async () => {
      const started = performance.now();
      const build = await mustGo(["build", "./..."], { cwd: module, env: env() });
      const elapsed = performance.now() - started;
      const metrics = pluginMetrics(build.stderr);
      assert.equal(metrics.length, 1, build.stderr);
      assert.equal(total(metrics, "s3_breaker_trips"), 1, JSON.stringify(metrics));
      assert.ok(total(metrics, "put_requests") > 0);
      assert.ok(hole.accepted() > 0, "the plugin did try the bucket");
      const lines = pluginLines(build.stderr);
      assert.equal(lines.length, 1, build.stderr);
      assert.match(lines[0]!, /S3 tier paused for 30s .*deadline exceeded/);
      // go asks for its first entries one at a time: two lookups wait their deadline in turn,
      // then the breaker answers the rest at once; close does not wait 60 s for uploads.
      assert.ok(elapsed < 3 * LOOKUP_DEADLINE_MS, `took ${elapsed.toFixed(0)}ms`);
      const state = JSON.parse(await Deno.readTextFile(`${cacheDir}/s3-breaker`));
      assert.ok(Date.parse(state.openUntil) > Date.now(), JSON.stringify(state));
    });

    await t.step("the next go commands skip S3 at once and finish in a few seconds", async () => {
      const before = hole.accepted();
      // A warm rebuild, then one with a changed package (misses and puts).
      for (const change of [false, true]) {
        if (change) {
          await Deno.writeTextFile(
            `${module}/c/c.go`,
            'package c\n\n// Name is the package\'s name.\nfunc Name() string { return "C" }\n',
          );
        }
        const started = performance.now();
        const build = await mustGo(["build", "./..."], { cwd: module, env: env() });
        const elapsed = performance.now() - started;
        const metrics = pluginMetrics(build.stderr);
        assert.equal(metrics.length, 1, build.stderr);
        assert.ok(elapsed < LOOKUP_DEADLINE_MS / 2, `took ${elapsed.toFixed(0)}ms`);
        assert.equal(total(metrics, "s3_breaker_shared"), 1, JSON.stringify(metrics));
        assert.equal(total(metrics, "s3_get_errors"), 0);
        assert.equal(total(metrics, "s3_breaker_trips"), 0);
        if (change) {
          assert.ok(total(metrics, "s3_get_skipped") >= 1, JSON.stringify(metrics));
          assert.ok(total(metrics, "uploads_failed") >= 1, "owed, not waited for");
        }
        assert.deepEqual(pluginLines(build.stderr), [], "no warning again");
      }
      assert.equal(hole.accepted(), before, "no connection to the bucket at all");
      const owed = await Array.fromAsync(Deno.readDir(`${cacheDir}/s3-pending`));
      assert.ok(owed.length > 0, "uploads are remembered for when the bucket is back");
    });
  },
});

/** Limits a toxiproxy proxy's downstream to `rate` KB/s. */
async function bandwidth(toxiproxy: Toxiproxy, proxy: string, rate: number): Promise<void> {
  const response = await fetch(`${toxiproxy.api}/proxies/${proxy}/toxics`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      name: `bandwidth_${rate}`,
      type: "bandwidth",
      stream: "downstream",
      attributes: { rate },
    }),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`Cannot add a bandwidth toxic: HTTP ${response.status}: ${text}`);
  }
}

Deno.test({
  name: "bucket faults: a crawling bucket and malformed records never slow or flood a build",
  ignore: skipGo || skipMinio || skipToxiproxy,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-slowbucket-");
    await using minio = await startMinio();
    const module = `${work.path}/module`;
    await writeModule(module, 6 << 20);
    let run = 0;
    const fresh = (endpoint: string, flags: string[] = [], server: Minio = minio) => {
      run++;
      const cacheDir = `${work.path}/cache-${run}`;
      const plugin = pluginCommand(
        `--cache-dir=${cacheDir}`,
        `--bucket=${server.bucket}`,
        `--s3-endpoint-url=${endpoint}`,
        "--s3-path-style",
        "--region=us-east-1",
        "--metrics",
        ...flags,
      );
      return { cacheDir, env: { ...goEnv(`${work.path}/gocache-${run}`, plugin), ...minio.env() } };
    };
    let warm: { cacheDir: string } | undefined;
    let coldMs = 0;

    await t.step("a first machine fills the bucket, two 6 MiB outputs included", async () => {
      const a = fresh(minio.endpoint);
      const started = performance.now();
      const build = await mustGo(["build", "./..."], { cwd: module, env: a.env });
      coldMs = performance.now() - started;
      const metrics = pluginMetrics(build.stderr);
      assert.equal(total(metrics, "uploads_failed"), 0, build.stderr);
      assert.ok(total(metrics, "s3_bytes_up") > 12 << 20, JSON.stringify(metrics));
      warm = a;
    });

    await t.step(
      "through a 256 KB/s link big outputs are given up on: the build is not slower",
      async () => {
        await using toxiproxy = await startToxiproxy();
        const endpoint = await toxiproxy.proxy("crawl", `127.0.0.1:${minio.port}`);
        await bandwidth(toxiproxy, "crawl", 256);
        const b = fresh(endpoint);
        const started = performance.now();
        const build = await mustGo(["build", "./..."], { cwd: module, env: b.env });
        const elapsed = performance.now() - started;
        const metrics = pluginMetrics(build.stderr);
        assert.ok(total(metrics, "s3_too_slow") >= 1, JSON.stringify(metrics));
        // Fetching one 6 MiB object at 256 KB/s would take 24 s (the body deadline, 16 s).
        const bound = coldMs + 8_000;
        assert.ok(elapsed < bound, `took ${elapsed.toFixed(0)}ms, bound ${bound.toFixed(0)}ms`);
        for (const line of pluginLines(build.stderr)) {
          assert.match(line, /S3 tier paused .*below the floor/, build.stderr);
        }
      },
    );

    await t.step("many malformed records: one warning line, each one counted", async () => {
      const actions: string[] = [];
      for await (const shard of Deno.readDir(`${warm!.cacheDir}/action`)) {
        for await (const entry of Deno.readDir(`${warm!.cacheDir}/action/${shard.name}`)) {
          actions.push(entry.name);
        }
      }
      assert.ok(actions.length >= 3, `${actions.length} actions`);
      for (const actionId of actions) {
        await minio.putObject(
          `action/${actionId.slice(0, 2)}/${actionId}`,
          new TextEncoder().encode("this is not an action record"),
        );
      }
      // The records are read one by one only without the warm-up (which has them from its
      // manifest, and would not look at these).
      const c = fresh(minio.endpoint, ["--warm-key=off"]);
      const build = await mustGo(["build", "./..."], { cwd: module, env: c.env });
      const metrics = pluginMetrics(build.stderr);
      assert.ok(total(metrics, "s3_corrupt") >= 3, JSON.stringify(metrics));
      const lines = pluginLines(build.stderr);
      assert.equal(lines.length, 1, build.stderr);
      assert.match(lines[0]!, /Ignoring bucket action record .*malformed.*only counted/);
    });
  },
});
