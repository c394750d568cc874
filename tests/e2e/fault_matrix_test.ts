/**
 * The fault matrix: the real go command, with the plugin as GOCACHEPROG, through every fault a CI
 * machine meets — a slow, dead, resetting or black-holed bucket (toxiproxy in front of a real
 * MinIO), a full or read-only cache disk, a wedged server, a client that leaves without reading.
 * Each row must end with a successful build, in bounded time, and a cache directory whose entries
 * all verify. The table (fault → build → time → entries verified) is printed at the end, and
 * written to `$GCP_FAULT_MATRIX` when set (README's "What happens on failure" keeps a copy).
 */
import assert from "node:assert/strict";
import {
  copyModule,
  goEnv,
  IN_CI,
  PLUGIN,
  pluginMetrics,
  remoteHits,
  runGo,
  tempDir,
  total,
} from "../_util/go.ts";
import { findMinio, freePort, startMinio } from "../_util/minio.ts";
import { Server } from "../_util/serve.ts";
import { findToxiproxy, startToxiproxy, type Toxiproxy } from "../_util/toxiproxy.ts";
import { verifyCacheDir } from "../_util/verify.ts";
import { canMount, fill, mountReadOnly, mountTmpfs, unmount } from "../_util/mounts.ts";

/** One row of the table. */
interface Row {
  fault: string;
  mode: string;
  build: string;
  seconds: number;
  hits: string;
  verified: string;
}

const ready = IN_CI ||
  (canMount() && (await findMinio()) !== undefined && (await findToxiproxy()) !== undefined);
if (!ready) {
  // deno-lint-ignore no-console
  console.error("skipping the fault matrix: needs root (mounts), MinIO and toxiproxy");
}

/** Runs a go command and times it. */
async function timedGo(args: string[], cwd: string, env: Record<string, string>) {
  const started = performance.now();
  const result = await runGo(args, { cwd, env });
  return { ...result, seconds: (performance.now() - started) / 1000 };
}

async function verified(cacheDir: string): Promise<string> {
  const check = await verifyCacheDir(cacheDir);
  assert.deepEqual(check.bad, [], `entries that would mislead go in ${cacheDir}`);
  return `${check.outputs} outputs, ${check.actions} actions, 0 bad`;
}

Deno.test({
  name: "fault matrix: no fault makes a build fail or hang",
  ignore: !ready,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-faults-");
    await using minio = await startMinio();
    await using toxiproxy = await startToxiproxy();
    const module = await copyModule();
    const upstream = minio.endpoint.replace(/^http:\/\//, "");
    const proxied = await toxiproxy.proxy("s3", upstream);
    const rows: Row[] = [];
    let run = 0;
    const machine = (endpoint: string, flags: string[] = []) => {
      run++;
      const cacheDir = `${work.path}/cache-${run}`;
      const plugin = [
        PLUGIN,
        `--cache-dir=${cacheDir}`,
        `--bucket=${minio.bucket}`,
        `--s3-endpoint-url=${endpoint}`,
        "--s3-path-style",
        "--region=us-east-1",
        "--metrics",
        ...flags,
      ].join(" ");
      return { cacheDir, env: { ...goEnv(`${work.path}/gocache-${run}`, plugin), ...minio.env() } };
    };

    /** A fresh machine builds through `fault`; a second go command shows what the first learned. */
    const bucketRow = async (
      fault: string,
      apply: (toxiproxy: Toxiproxy) => Promise<void>,
      bounds: { first: number; second: number },
    ) => {
      await toxiproxy.reset();
      await apply(toxiproxy);
      const m = machine(proxied);
      const build = await timedGo(["build", "./..."], module, m.env);
      const vet = await timedGo(["vet", "./..."], module, m.env);
      await toxiproxy.reset();
      assert.equal(build.code, 0, `${fault}: go build failed:\n${build.stderr}`);
      assert.equal(vet.code, 0, `${fault}: go vet failed:\n${vet.stderr}`);
      const metrics = pluginMetrics(build.stderr);
      rows.push({
        fault,
        mode: "direct",
        build: `ok, then vet ok in ${vet.seconds.toFixed(1)}s`,
        seconds: build.seconds,
        hits: `${remoteHits(metrics)} remote / ${total(metrics, "get_requests")} gets`,
        verified: await verified(m.cacheDir),
      });
      assert.ok(build.seconds < bounds.first, `${fault}: build took ${build.seconds.toFixed(1)}s`);
      assert.ok(
        vet.seconds < bounds.second,
        `${fault}: next command took ${vet.seconds.toFixed(1)}s`,
      );
    };

    await t.step("warm the bucket (no fault)", async () => {
      const m = machine(minio.endpoint);
      const build = await timedGo(["build", "./..."], module, m.env);
      assert.equal(build.code, 0, build.stderr);
      const vet = await timedGo(["vet", "./..."], module, m.env);
      assert.equal(vet.code, 0, vet.stderr);
      rows.push({
        fault: "none (cold build, uploads)",
        mode: "direct",
        build: "ok",
        seconds: build.seconds,
        hits: `${total(pluginMetrics(build.stderr), "uploads_done")} uploaded`,
        verified: await verified(m.cacheDir),
      });
    });

    await t.step(
      "no fault, fresh machine",
      () => bucketRow("none", async () => {}, { first: 60, second: 30 }),
    );
    await t.step("latency 10 ms each way", () =>
      bucketRow("latency 10 ms each way", async (tp) => {
        await tp.toxic("s3", "latency", { latency: 10 }, "downstream");
        await tp.toxic("s3", "latency", { latency: 10 }, "upstream");
      }, { first: 90, second: 60 }));
    await t.step(
      "bandwidth 16 KB/s",
      () =>
        bucketRow("bandwidth 16 KB/s", (tp) => tp.toxic("s3", "bandwidth", { rate: 16 }), {
          first: 90,
          second: 60,
        }),
    );
    await t.step(
      "slow close 2 s",
      () =>
        bucketRow("slow close 2 s", (tp) => tp.toxic("s3", "slow_close", { delay: 2000 }), {
          first: 90,
          second: 60,
        }),
    );
    await t.step("slicer", () =>
      bucketRow(
        "slicer (8-byte pieces, 50 µs apart)",
        (tp) => tp.toxic("s3", "slicer", { average_size: 8, size_variation: 4, delay: 50 }),
        { first: 90, second: 60 },
      ));
    await t.step(
      "reset peer",
      () =>
        bucketRow("connection reset", (tp) => tp.toxic("s3", "reset_peer", { timeout: 0 }), {
          first: 60,
          second: 30,
        }),
    );
    await t.step(
      "black hole",
      () =>
        bucketRow(
          "black hole (accepts, never answers)",
          (tp) => tp.toxic("s3", "timeout", { timeout: 0 }),
          {
            first: 45,
            second: 8,
          },
        ),
    );
    await t.step("bucket refused", async () => {
      const m = machine(`http://127.0.0.1:${freePort()}`);
      const build = await timedGo(["build", "./..."], module, m.env);
      assert.equal(build.code, 0, build.stderr);
      rows.push({
        fault: "connection refused",
        mode: "direct",
        build: "ok",
        seconds: build.seconds,
        hits: `${remoteHits(pluginMetrics(build.stderr))} remote`,
        verified: await verified(m.cacheDir),
      });
      assert.ok(build.seconds < 60);
    });

    await t.step("full cache disk", async () => {
      const mount = `${work.path}/full`;
      await mountTmpfs(mount, "8m");
      try {
        await fill(mount);
        const plugin = [PLUGIN, `--cache-dir=${mount}/cache`, "--metrics"].join(" ");
        const env = goEnv(`${work.path}/gocache-full`, plugin);
        const build = await timedGo(["build", "./..."], module, env);
        const vet = await timedGo(["vet", "./..."], module, env);
        assert.equal(build.code, 0, build.stderr);
        assert.equal(vet.code, 0, vet.stderr);
        rows.push({
          fault: "cache disk full",
          mode: "direct",
          build: "ok, then vet ok",
          seconds: build.seconds,
          hits: `${total(pluginMetrics(vet.stderr), "get_hits")} hits in vet`,
          verified: await verified(`${mount}/cache`),
        });
      } finally {
        await unmount(mount);
      }
    });

    await t.step("read-only cache dir (warm)", async () => {
      const source = `${work.path}/cache-1`; // warmed by the first step
      const mount = `${work.path}/readonly`;
      await mountReadOnly(source, mount);
      try {
        const plugin = [PLUGIN, `--cache-dir=${mount}`, "--metrics"].join(" ");
        const env = goEnv(`${work.path}/gocache-ro`, plugin);
        const build = await timedGo(["build", "./..."], module, env);
        assert.equal(build.code, 0, build.stderr);
        const metrics = pluginMetrics(build.stderr);
        rows.push({
          fault: "cache dir read-only (warm)",
          mode: "direct",
          build: "ok",
          seconds: build.seconds,
          hits: `${total(metrics, "get_hits")} / ${total(metrics, "get_requests")} gets`,
          verified: await verified(mount),
        });
        assert.ok(total(metrics, "get_hits") > 0, "the read-only cache still serves hits");
      } finally {
        await unmount(mount);
      }
    });

    await t.step("serve: clients that leave without reading, then a real build", async () => {
      const socket = `${work.path}/plugin.sock`;
      await using server = await Server.start([
        `--plugin=${socket}`,
        `--cache-dir=${work.path}/srv`,
      ]);
      for (let i = 0; i < 3; i++) {
        const conn = await Deno.connect({ transport: "unix", path: socket });
        const id = new Uint8Array(32).fill(i).toBase64();
        await conn.write(
          new TextEncoder().encode(
            `{"ID":1,"Command":"get","ActionID":"${id}"}\n\n{"ID":2,"Command":"close"}\n\n`,
          ),
        );
        conn.close();
      }
      const env = goEnv(`${work.path}/gocache-srv`, `${PLUGIN} connect ${socket}`);
      const build = await timedGo(["build", "./..."], module, env);
      assert.equal(build.code, 0, build.stderr);
      assert.doesNotMatch(build.stderr, /Cannot use the server/, "the server still answered");
      assert.doesNotMatch(server.stderr, /Uncaught|panic/, server.stderr);
      rows.push({
        fault: "clients leave without reading",
        mode: "serve + connect",
        build: "ok, served by the server",
        seconds: build.seconds,
        hits: "-",
        verified: await verified(`${work.path}/srv`),
      });
      assert.ok(build.seconds < 60);
    });

    await t.step("connect: a server that accepts and never replies", async () => {
      const port = freePort();
      const listener = Deno.listen({ hostname: "127.0.0.1", port });
      const held: Deno.Conn[] = [];
      const accepting = (async () => {
        try {
          for await (const conn of listener) held.push(conn); // read nothing, answer nothing
        } catch {
          // closed
        }
      })();
      try {
        const cacheDir = `${work.path}/connect-fallback`;
        const plugin = `${PLUGIN} connect ${port} --reply-timeout=2s --cache-dir=${cacheDir}`;
        const env = goEnv(`${work.path}/gocache-wedged`, plugin);
        const build = await timedGo(["build", "./..."], module, env);
        assert.equal(build.code, 0, build.stderr);
        assert.match(build.stderr, /no reply from the server/);
        rows.push({
          fault: "server wedged (never replies)",
          mode: "connect",
          build: "ok, answered locally after 2 s",
          seconds: build.seconds,
          hits: "-",
          verified: await verified(cacheDir),
        });
        assert.ok(build.seconds < 60);
      } finally {
        listener.close();
        for (const conn of held) conn.close();
        await accepting;
      }
    });

    const table = [
      "| fault | mode | go build | time | cache hits | entries verified |",
      "|---|---|---|---|---|---|",
      ...rows.map((r) =>
        `| ${r.fault} | ${r.mode} | ${r.build} | ${
          r.seconds.toFixed(1)
        } s | ${r.hits} | ${r.verified} |`
      ),
    ].join("\n");
    // deno-lint-ignore no-console
    console.log(`\n${table}\n`);
    const out = Deno.env.get("GCP_FAULT_MATRIX");
    if (out) await Deno.writeTextFile(out, table + "\n");
  },
});
