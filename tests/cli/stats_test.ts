/**
 * `stats` against a real server: `serve` spawned through the launcher, real go builds through
 * `connect`, then `stats` in its three formats; and a server that is not there.
 */
import assert from "node:assert/strict";
import { canRun, copyModule, goEnv, mustGo, PLUGIN, tempDir } from "../_util/go.ts";
import { freePort } from "../_util/net.ts";
import { runPlugin, Server } from "../_util/serve.ts";

const plugin = runPlugin;

Deno.test({
  name: "stats prints a running server's counters as a table, Markdown and JSON",
  ignore: !canRun("go"),
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-stats-");
    const module = await copyModule();
    const port = freePort();
    const http = `127.0.0.1:${freePort()}`;
    await using _server = await Server.start([
      `--plugin=${port}`,
      `--http=${http}`,
      `--cache-dir=${work.path}/cache`,
    ]);
    try {
      // A cold build (misses, each followed by its put) and a warm one with a fresh GOCACHE.
      for (const run of [1, 2]) {
        await mustGo(["build", "./..."], {
          cwd: module,
          env: goEnv(`${work.path}/gocache-${run}`, `${PLUGIN} connect ${port}`),
        });
      }

      await t.step("--format=json: every figure, the counters above zero", async () => {
        const result = await plugin(["stats", `--http=${http}`, "--format=json"]);
        assert.equal(result.code, 0, result.stderr);
        const stats = JSON.parse(result.stdout);
        assert.equal(stats.go_commands, 2);
        assert.ok(stats.gets > 100, result.stdout);
        assert.ok(stats.hits > 50 && stats.hits === stats.local_hits, result.stdout);
        assert.ok(stats.misses > 10, result.stdout);
        assert.ok(stats.hit_rate > 0.3 && stats.hit_rate < 1, result.stdout);
        assert.ok(stats.bytes_served > 0, result.stdout);
        assert.equal(stats.remote_hits, 0);
        assert.equal(stats.uploads_pending, 0);
        for (const name of ["bytes_downloaded", "bytes_uploaded", "s3_wait_ms", "breaker_trips"]) {
          assert.equal(stats[name], 0, name);
        }
        for (const name of ["modproxy_hits", "modproxy_misses", "modproxy_not_found"]) {
          assert.equal(stats[name], 0, name);
        }
        // The warm build hit what the cold one produced here: the time saved is measured.
        assert.ok(stats.time_saved_ms > 0, result.stdout);
        assert.ok(stats.time_saved_measured_hits > 50, result.stdout);
        assert.match(stats.time_saved_basis, /^\d+ hits measured, .*: what go took from the miss/);
      });

      await t.step("--format=markdown: a table for the job summary", async () => {
        const result = await plugin(["stats", `--http=${http}`, "--format=markdown"]);
        assert.equal(result.code, 0, result.stderr);
        const lines = result.stdout.trimEnd().split("\n");
        assert.equal(lines[0], "### Go build cache");
        const table = lines.slice(2);
        assert.deepEqual(table.slice(0, 2), ["| Metric | Value |", "| --- | --- |"]);
        for (const line of table) assert.match(line, /^\| .+ \| .+ \|$/, line);
        assert.ok(table.includes("| Go commands served | 2 |"), result.stdout);
        assert.match(result.stdout, /^\| Hit rate \| [\d.]+% \(\d+ hits, \d+ misses\) \|$/m);
        assert.match(result.stdout, /^\| Build time saved \| .+ \(\d+ hits measured, /m);
        assert.match(result.stdout, /^\| Remote hits \| off \(no --bucket\) \|$/m);
      });

      await t.step("the default text table, and GOCACHE_HTTP", async () => {
        const result = await plugin(["stats"], { GOCACHE_HTTP: http });
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /^Go commands served +2$/m);
        assert.match(result.stdout, /^Hit rate +[\d.]+% \(\d+ hits, \d+ misses\)$/m);
        assert.match(result.stdout, /^Served from cache +[\d.]+ (KiB|MiB)$/m);
        assert.equal(result.stderr, "");
      });

      await t.step(
        "the status page lists the two go commands and charts the hit rate",
        async () => {
          const page = await (await fetch(`http://${http}/`)).text();
          assert.match(page, /Go commands served<\/th><td>2</);
          assert.equal(page.match(/<tr><td>\d+<\/td><td>[\d-]+T[\d:]+Z<\/td>/g)?.length, 2);
          assert.match(page, /<svg [^>]*aria-label="hit rate per minute"/);
        },
      );
    } finally {
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("stats: a server that cannot be reached is one line on stderr and exit 1", async () => {
  const port = freePort();
  for (const format of ["text", "json", "markdown"]) {
    const result = await plugin(["stats", `--http=127.0.0.1:${port}`, `--format=${format}`]);
    assert.equal(result.code, 1, format);
    assert.equal(result.stdout, "");
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `Cannot read the server's counters from http://127\\.0\\.0\\.1:${port}/debug/vars: `,
      ),
    );
  }
  // Something that answers, but is not the server.
  await using other = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("nope", { status: 404 }),
  );
  const result = await plugin(["stats", `--http=127.0.0.1:${other.addr.port}`]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /: it answered 404/);
  assert.equal(result.stderr.trimEnd().split("\n").length, 1);
});
