/**
 * Server mode with real processes: `serve` spawned through scripts/go-cache-plugin, go commands
 * using `connect` as GOCACHEPROG. One server cache is warmed once (a cold pair of concurrent
 * builds) and every later step reuses it.
 */
import assert from "node:assert/strict";
import {
  canRun,
  copyModule,
  goEnv,
  IN_CI,
  mustGo,
  PLUGIN,
  ROOT,
  runGo,
  tempDir,
} from "../_util/go.ts";
import { closeFrame, hexId, putFrame, sha256Hex } from "../_util/script.ts";
import { findMinio, freePort, startMinio } from "../_util/minio.ts";
import { Server } from "../_util/serve.ts";

/** The server's counters; a name never counted reads 0. */
async function counters(http: string): Promise<(name: string) => number> {
  const values: Record<string, number> = (await (await fetch(`http://${http}/debug/vars`)).json())
    .counters;
  const read = (name: string) => values[name] ?? 0;
  read.toString = () => JSON.stringify(values);
  return read;
}

const goReady = canRun("go");
const minioReady = IN_CI || (await findMinio()) !== undefined;

Deno.test({
  name: "serve + connect: real go builds share one server, survive its death, and hit again",
  ignore: !goReady,
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-serve-");
    const module = await copyModule();
    const serverCache = `${work.path}/server-cache`;
    const port = freePort();
    const httpPort = freePort();
    const serveArgs = [
      `--plugin=${port}`,
      `--http=127.0.0.1:${httpPort}`,
      `--cache-dir=${serverCache}`,
      "-v",
    ];
    const http = `127.0.0.1:${httpPort}`;
    let server = await Server.start(serveArgs);
    let run = 0;
    const connectEnv = (target: string | number = port, ...flags: string[]) =>
      goEnv(`${work.path}/gocache-${++run}`, [PLUGIN, "connect", target, ...flags].join(" "));

    try {
      await t.step("a cold go build and go test at once share the server's cache", async () => {
        // One build and one test (not two tests) keep the cold step cheap on two cores.
        const [build, test] = await Promise.all([
          mustGo(["build", "./..."], { cwd: module, env: connectEnv() }),
          mustGo(["test", "./..."], { cwd: module, env: connectEnv() }),
        ]);
        assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib/);
        for (const result of [build, test]) {
          assert.doesNotMatch(result.stderr, /Cannot use the server/);
        }
        const c = await counters(http);
        assert.ok(c("put_requests") > 100, String(c));
        assert.equal(c("sessions_total"), 2);
        assert.equal(c("sessions"), 0);
      });

      await t.step(
        "a warm pair with fresh GOCACHEs is (cached), undisturbed by a garbage client and one that leaves mid-put",
        async () => {
          const before = await counters(http);
          const garbage = (async () => {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port });
            await conn.write(new TextEncoder().encode("\x16\x03\x01 not json at all\n{{{\n"));
            await new Response(conn.readable).arrayBuffer(); // the server hangs up
          })();
          const leaver = (async () => {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port });
            const body = new Uint8Array(1 << 20).fill(7);
            const frame = new TextEncoder().encode(
              putFrame(1, hexId(42), body, await sha256Hex(body)),
            );
            await conn.write(frame.subarray(0, frame.length >> 1));
            conn.close();
          })();
          const [a, b] = await Promise.all([
            mustGo(["test", "./..."], { cwd: module, env: connectEnv() }),
            mustGo(["test", "./..."], { cwd: module, env: connectEnv() }),
            garbage,
            leaver,
          ]);
          for (const result of [a, b]) {
            assert.match(result.stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
          }
          const after = await counters(http);
          const delta = (name: string) => after(name) - before(name);
          assert.equal(delta("session_errors"), 2, String(after));
          assert.equal(delta("get_misses"), 0, "all hits");
          assert.ok(delta("get_hits") > 200);
        },
      );

      await t.step(
        "server killed mid-build: the build finishes through connect's fallback",
        async () => {
          const before = (await counters(http))("get_requests");
          const build = runGo(["test", "./..."], {
            cwd: module,
            // The fallback serves the same directory, as it would on one machine.
            env: connectEnv(port, `--cache-dir=${serverCache}`),
          });
          const deadline = Date.now() + 20_000;
          while ((await counters(http))("get_requests") < before + 5) {
            assert.ok(Date.now() < deadline, "the build never reached the server");
            await new Promise((r) => setTimeout(r, 5));
          }
          server.kill("SIGKILL");
          await server.exit();
          const result = await build;
          assert.equal(result.code, 0, result.stderr);
          assert.match(result.stdout, /ok\s+example\.com\/gcptest\/lib/);
          assert.equal(result.stderr.match(/Cannot use the server/g)?.length, 1, result.stderr);
        },
      );

      await t.step("with the server gone, connect serves locally from the start", async () => {
        const result = await mustGo(["build", "./..."], {
          cwd: module,
          env: connectEnv(port, `--cache-dir=${serverCache}`),
        });
        assert.match(result.stderr, /Cannot use the server at 127\.0\.0\.1:\d+: /);
      });

      await t.step("server restarted: later builds hit it again", async () => {
        server = await Server.start(serveArgs);
        const result = await mustGo(["test", "./..."], { cwd: module, env: connectEnv() });
        assert.match(result.stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
        assert.doesNotMatch(result.stderr, /Cannot use the server/);
        const c = await counters(http);
        assert.ok(c("get_hits") > 200, String(c));
        assert.equal(c("get_misses"), 0);
      });

      await t.step("/metrics and the status page over real HTTP", async () => {
        const metrics = await (await fetch(`http://${http}/metrics`)).text();
        assert.match(metrics, /^# TYPE go_cache_plugin_gets_total counter$/m);
        assert.match(metrics, /^go_cache_plugin_gets_total\{result="hit"\} [1-9]\d*$/m);
        assert.match(metrics, /^go_cache_plugin_sessions_running 0$/m);
        const page = await (await fetch(`http://${http}/`)).text();
        assert.match(page, /Hit rate<\/th><td>100\.0%/);
        const post = await fetch(`http://${http}/metrics`, { method: "POST" });
        assert.equal(post.status, 405);
        await post.body?.cancel();
      });

      await t.step("--plugin and connect take a Unix socket path", async () => {
        const socket = `${work.path}/gcp.sock`;
        await using unix = await Server.start([`--plugin=${socket}`, `--cache-dir=${serverCache}`]);
        assert.match(unix.stdout, new RegExp(`^export GOCACHEPROG='.+ connect ${socket}'$`, "m"));
        const result = await mustGo(["test", "./..."], { cwd: module, env: connectEnv(socket) });
        assert.match(result.stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
        assert.doesNotMatch(result.stderr, /Cannot use the server/);
        unix.kill("SIGTERM");
        assert.equal(await unix.exit(), 0);
        await assert.rejects(Deno.stat(socket), Deno.errors.NotFound, "the socket is removed");
      });

      await t.step("SIGTERM: the server stops and exits 0", async () => {
        server.kill("SIGTERM");
        assert.equal(await server.exit(), 0);
        assert.match(server.stderr, /shutting down/);
      });
    } finally {
      await server[Symbol.asyncDispose]();
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "serve on a fresh machine: local tier under go's GOCACHE, plain export lines on stdout",
  async fn() {
    await using home = await tempDir("gcp-home-");
    const port = freePort();
    const httpPort = freePort();
    await using server = await Server.start(
      [`--plugin=${port}`, `--http=127.0.0.1:${httpPort}`, "-v"],
      { HOME: home.path, XDG_CACHE_HOME: `${home.path}/xdg` },
    );
    const err = server.stderr;
    // go's default GOCACHE here is $XDG_CACHE_HOME/go-build: the directory direct mode uses too.
    const dir = `${home.path}/xdg/go-build/go-cache-plugin`;
    assert.match(err, new RegExp(`the local tier alone at ${dir}`));
    // The export line as printed: no timestamp, no program name, pasteable.
    assert.equal(
      server.stdout,
      `export GOCACHEPROG='${ROOT}/scripts/go-cache-plugin connect ${port}'\n`,
    );
    assert.match(err, new RegExp(`http://127\\.0\\.0\\.1:${httpPort}/`));
    assert.ok((await Deno.stat(dir)).isDirectory);
    server.kill("SIGINT");
    assert.equal(await server.exit(), 0);
  },
});

Deno.test({
  name: "serve --modproxy prints the GOPROXY and GOSUMDB lines",
  // The module proxy lands separately; outside CI this waits for it.
  ignore: !IN_CI && !(await Deno.stat(`${ROOT}/src/modproxy/mod.ts`).catch(() => undefined)),
  async fn() {
    await using home = await tempDir("gcp-home-");
    const httpPort = freePort();
    await using server = await Server.start(
      [`--plugin=${freePort()}`, `--http=127.0.0.1:${httpPort}`, "--modproxy"],
      { HOME: home.path, GOPROXY: "http://127.0.0.1:9/mod" },
    );
    const base = `http://127.0.0.1:${httpPort}`;
    const lines = server.stdout.trimEnd().split("\n");
    assert.equal(lines[1], `export GOPROXY=${base}/mod`, server.stdout);
    assert.equal(
      lines[2],
      `export GOSUMDB='sum.golang.org ${base}/mod/sumdb/sum.golang.org'`,
      server.stdout,
    );
    server.kill("SIGTERM");
    assert.equal(await server.exit(), 0);
  },
});

Deno.test({
  name: "serve with S3: SIGTERM right after a burst of puts flushes the uploads, exit 0",
  ignore: !minioReady,
  sanitizeResources: false,
  async fn() {
    await using minio = await startMinio();
    await using work = await tempDir("gcp-serve-s3-");
    const port = freePort();
    await using server = await Server.start(
      [`--plugin=${port}`, `--cache-dir=${work.path}/cache`, "-u", "1", "-v", ...minio.flags()],
      minio.env(),
    );
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const count = 150;
    let text = "";
    for (let i = 1; i <= count; i++) {
      const body = crypto.getRandomValues(new Uint8Array(64 * 1024));
      text += putFrame(i, hexId(i), body, await sha256Hex(body));
    }
    text += closeFrame(count + 1);
    const replies = new Response(conn.readable).text();
    const bytes = new TextEncoder().encode(text);
    for (let offset = 0; offset < bytes.length;) {
      offset += await conn.write(bytes.subarray(offset));
    }
    const lines = (await replies).trim().split("\n");
    assert.equal(lines.length, count + 2, "handshake, puts, close");
    assert.ok(lines.slice(1).every((l) => !l.includes("Err")), lines.join("\n"));
    server.kill("SIGTERM");
    assert.equal(await server.exit(), 0, server.stderr);
    assert.match(server.stderr, /waiting for \d+ uploads/, server.stderr);
    const actions = await minio.listKeys(minio.bucket, "action/");
    const reported = /uploads still pending|uploads_left/.test(server.stderr);
    assert.ok(
      actions.length === count || reported,
      `${actions.length} uploaded:\n${server.stderr}`,
    );
  },
});
