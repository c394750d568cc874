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
        // No bucket, no module proxy: no figures about them at all.
        for (const name of ["bytes_downloaded", "uploads_done", "breaker_trips", "modproxy_hits"]) {
          assert.equal(stats[name], undefined, name);
        }
        assert.equal(stats.cache_dir, `${work.path}/cache`);
        assert.ok(stats.cache_entries > 10 && stats.cache_bytes > 10_000, result.stdout);
        assert.equal(stats.max_size, 0);
        assert.equal(stats.put_errors, 0);
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
        const table = lines.slice(4);
        assert.deepEqual(table.slice(0, 2), ["| Metric | Value |", "| --- | --- |"]);
        for (const line of table) assert.match(line, /^\| .+ \| .+ \|$/, line);
        assert.ok(table.includes("| Go commands served | 2 |"), result.stdout);
        assert.match(
          lines[2]!,
          /^\*\*[\d.]+% hits\*\* \(\d+ of \d+ gets\): \d+ local · local tier only/,
        );
        assert.match(result.stdout, /^\| Hit rate \| [\d.]+% \(\d+ of \d+ gets, \d+ misses\) \|$/m);
        assert.match(
          result.stdout,
          /^\| Build time saved \| [\dmhs. ]+ measured( \+ about [\dmhs. ]+ estimated)? \(\d+ hits measured, /m,
        );
        assert.doesNotMatch(result.stdout, /\boff\b|S3|Module proxy/, "no rows for what is off");
      });

      await t.step("the default text table, and GOCACHE_HTTP", async () => {
        const result = await plugin(["stats"], { GOCACHE_HTTP: http });
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /^Go commands served +2$/m);
        assert.match(result.stdout, /^Hit rate +[\d.]+% \(\d+ of \d+ gets, \d+ misses\)$/m);
        assert.match(result.stdout, /^Served from cache +[\d.]+ (KiB|MiB)$/m);
        assert.match(result.stdout, /^Errors +0 get, 0 put, 0 session$/m);
        assert.match(
          result.stdout,
          /^Cache directory +\/.+\/cache: [\d.]+ (KiB|MiB) in \d+ entries \(no --max-size\)$/m,
        );
        assert.equal(result.stderr, "");
      });

      await t.step("--format=github: no annotation when all is well", async () => {
        const result = await plugin(["stats", `--http=${http}`, "--format=github"]);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, "");
      });

      await t.step("--format=counters: the raw counters, one name-value line each", async () => {
        const result = await plugin(["stats", `--http=${http}`, "--format=counters"]);
        assert.equal(result.code, 0, result.stderr);
        const lines = result.stdout.trimEnd().split("\n");
        for (const line of lines) assert.match(line, /^[a-z0-9_]+ -?[\d.e+-]+$/, line);
        const counters = new Map(lines.map((l) => l.split(" ") as [string, string]));
        assert.ok(Number(counters.get("get_requests")) > 100, result.stdout);
        assert.equal(counters.get("sessions"), "0", "no go command is running");
        assert.deepEqual([...counters.keys()], [...counters.keys()].sort(), "sorted by name");
      });

      await t.step("--reset prints, then zeroes the counters", async () => {
        const result = await plugin(["stats", `--http=${http}`, "--format=json", "--reset"]);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(JSON.parse(result.stdout).go_commands, 2, "printed before the reset");
        assert.match(result.stderr, /the server's counters were reset/);
        const after = JSON.parse(
          (await plugin(["stats", `--http=${http}`, "--format=json"])).stdout,
        );
        assert.equal(after.go_commands, 0);
        assert.equal(after.gets, 0);
      });

      await t.step(
        "the status page lists the two go commands and charts the hit rate",
        async () => {
          const page = await (await fetch(`http://${http}/`)).text();
          assert.match(page, /Go commands served<\/th><td>\d</);
          // Which go command ran: read from /proc on Linux (connect's parent), else "go".
          const command = Deno.build.os === "linux" ? "go build" : "go";
          assert.equal(
            page.match(
              new RegExp(
                `<tr><td>\\d+</td><td class="cmd">${command}</td><td>[\\d-]+T[\\d:]+Z</td>`,
                "g",
              ),
            )?.length,
            2,
            page,
          );
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
