/**
 * The Azure Blob Storage tier end to end: the real go command, the plugin as GOCACHEPROG (the
 * release permissions, `scripts/go-cache-plugin`), a real Azurite on 127.0.0.1 (Shared Key
 * checked) reached through the connection string Azurite documents, toxiproxy for a black hole.
 * The same scenarios as the S3 tier's (s3_test.ts, warmup_test.ts, trust_tiers_test.ts): a fresh
 * worker is all hits in few requests, the trust tiers, and a store that is down or black-holed
 * costs misses, never a failed or hung build.
 */
import assert from "node:assert/strict";
import {
  canRun,
  copyModule,
  goEnv,
  mustGo,
  needs,
  pluginCommand,
  pluginMetrics,
  tempDir,
  total,
} from "../_util/go.ts";
import { findAzurite, startAzurite } from "../_util/azurite.ts";
import { findToxiproxy, startToxiproxy } from "../_util/toxiproxy.ts";
import { sha256Hex } from "../_util/bytes.ts";

const skipGo = !canRun("go");
const skipAzurite = await needs("Azurite (scripts/install_test_servers.sh)", findAzurite());
const skipToxiproxy = await needs("toxiproxy (scripts/install_test_servers.sh)", findToxiproxy());

/** Old mtimes on the module's directories, so go caches its module index from the first run. */
async function ageDirectories(dir: string): Promise<void> {
  const old = new Date(Date.now() - 3_600_000);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) await ageDirectories(`${dir}/${entry.name}`);
  }
  await Deno.utime(dir, old, old);
}

/** Every output file of a cache directory hashes to its name. */
async function assertOutputsVerified(cacheDir: string): Promise<void> {
  for await (const shard of Deno.readDir(`${cacheDir}/output`)) {
    for await (const entry of Deno.readDir(`${cacheDir}/output/${shard.name}`)) {
      if (!entry.isFile || entry.name.includes(".")) continue;
      const bytes = await Deno.readFile(`${cacheDir}/output/${shard.name}/${entry.name}`);
      assert.equal(await sha256Hex(bytes), entry.name, `${entry.name} holds other bytes`);
    }
  }
}

const JOB = [["build", "./..."], ["test", "./..."]];

Deno.test({
  name: "Azure tier: a fresh worker is all hits in few requests; trust tiers; faults cost misses",
  ignore: skipGo || skipAzurite || skipToxiproxy,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-azure-e2e-");
    await using azurite = await startAzurite();
    const module = await copyModule();
    await ageDirectories(module);
    let run = 0;
    const worker = (flags: string[] = [], env: Record<string, string> = azurite.env()) => {
      run++;
      const cacheDir = `${work.path}/cache-${run}`;
      const plugin = pluginCommand(
        `--cache-dir=${cacheDir}`,
        ...azurite.flags(),
        "--metrics",
        ...flags,
      );
      return { cacheDir, env: { ...goEnv(`${work.path}/gocache-${run}`, plugin), ...env } };
    };
    const job = async (env: Record<string, string>) => {
      let stdout = "";
      let stderr = "";
      for (const args of JOB) {
        const result = await mustGo(args, { cwd: module, env });
        stdout += result.stdout;
        stderr += result.stderr;
      }
      return { stdout, stderr, metrics: pluginMetrics(stderr) };
    };
    let coldMs = 0;
    let entries = 0;

    await t.step("worker A builds and tests, uploading every entry and a manifest", async () => {
      const a = worker();
      const started = performance.now();
      const { metrics, stderr } = await job(a.env);
      coldMs = performance.now() - started;
      assert.equal(metrics.length, 2, stderr);
      assert.ok(total(metrics, "put_requests") > 100, JSON.stringify(metrics));
      assert.equal(total(metrics, "uploads_failed"), 0, stderr);
      assert.equal(total(metrics, "uploads_left"), 0);
      const keys = await azurite.listKeys();
      entries = keys.filter((k) => k.startsWith("action/")).length;
      assert.ok(entries >= total(metrics, "uploads_done") - 5, `${entries} action records`);
      // The S3 layout, unchanged, in the container.
      for (const key of keys) {
        assert.match(key, /^((action|output)\/[0-9a-f]{2}\/[0-9a-f]{64}|warm\/[0-9a-f]{16}\/)/);
      }
      assert.ok(keys.some((k) => k.startsWith("warm/")), "a warm-up manifest");
    });

    await t.step(
      "worker B (fresh): all hits from the warm-up, requests < entries / 4",
      async () => {
        // --debug=4 traces every request the adapter makes: `B AZURE <method> <blob>`.
        const b = worker(["--debug=4"]);
        const { stdout, stderr, metrics } = await job(b.env);
        assert.match(stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
        assert.equal(total(metrics, "put_bytes"), 0, `nothing recompiles: ${stderr}`);
        assert.ok(total(metrics, "warm_hits") > 100, JSON.stringify(metrics));
        const requests = [...stderr.matchAll(/\bB AZURE (GET|HEAD|PUT) /g)].length;
        assert.ok(requests > 0, stderr.slice(0, 2000));
        assert.ok(requests < entries / 4, `${requests} requests for ${entries} entries`);
        assert.equal(total(metrics, "s3_corrupt") + total(metrics, "s3_get_errors"), 0);
        await assertOutputsVerified(b.cacheDir);
      },
    );

    await t.step("worker C, one lookup at a time (--warm-key=off): all remote hits", async () => {
      const c = worker(["--warm-key=off"]);
      const { stdout, metrics } = await job(c.env);
      assert.match(stdout, /\(cached\)/);
      assert.equal(total(metrics, "put_bytes"), 0);
      assert.ok(total(metrics, "s3_get_hits") > 100, JSON.stringify(metrics));
      await assertOutputsVerified(c.cacheDir);
    });

    await t.step("--read-only: hits, and nothing written to the container", async () => {
      const before = await azurite.listKeys();
      const changed = await copyModule();
      await Deno.writeTextFile(`${changed}/lib/extra.go`, "package lib\n\nconst Extra = 42\n");
      const d = worker(["--read-only", "--warm-key=off"]);
      const build = await mustGo(["build", "./..."], { cwd: changed, env: d.env });
      const metrics = pluginMetrics(build.stderr);
      assert.ok(total(metrics, "s3_get_hits") > 50, JSON.stringify(metrics));
      assert.ok(total(metrics, "put_requests") > 0, "lib and its dependents recompiled");
      assert.deepEqual(await azurite.listKeys(), before, "read-only wrote nothing");
    });

    await t.step(
      "--prefix with --read-prefixes: reads the shared root, writes its own",
      async () => {
        const changed = await copyModule();
        await Deno.writeTextFile(`${changed}/lib/extra.go`, "package lib\n\nconst Extra = 43\n");
        const e = worker(["--prefix=pr/7", "--read-prefixes=/", "--warm-key=off"]);
        const build = await mustGo(["build", "./..."], { cwd: changed, env: e.env });
        const metrics = pluginMetrics(build.stderr);
        assert.ok(total(metrics, "s3_read_prefix_hits") > 50, JSON.stringify(metrics));
        const own = await azurite.listKeys(azurite.container, "pr/7/");
        assert.ok(own.length > 0, "the changed package's entries under pr/7/");
        assert.ok(own.every((k) => /^pr\/7\/(action|output)\//.test(k)), own.join(" "));
      },
    );

    await t.step("black-holed store (toxiproxy holds every byte): misses, bounded", async () => {
      await using toxiproxy = await startToxiproxy();
      const proxy = await toxiproxy.proxy("azure", `127.0.0.1:${azurite.port}`);
      await toxiproxy.timeout("azure", 0);
      const f = worker(["--warm-key=off"], azurite.env(`${proxy}/devstoreaccount1`));
      const started = performance.now();
      const build = await mustGo(["build", "./..."], { cwd: module, env: f.env });
      const elapsed = performance.now() - started;
      const metrics = pluginMetrics(build.stderr);
      assert.equal(total(metrics, "get_hits"), 0);
      assert.ok(total(metrics, "get_misses") > 100);
      // One deadline, then the breaker answers locally; a cold build's time plus slack.
      assert.ok(elapsed < coldMs + 30_000, `took ${elapsed.toFixed(0)}ms (cold ${coldMs})`);
      assert.match(build.stderr, /Azure tier paused .*deadline exceeded/);
    });

    await t.step("store down (Azurite stopped): the build succeeds with misses", async () => {
      const g = worker(["--warm-key=off"]);
      await azurite.stop();
      const started = performance.now();
      const { stdout, metrics, stderr } = await job(g.env);
      const elapsed = performance.now() - started;
      assert.match(stdout, /ok\s+example\.com\/gcptest\/lib/);
      assert.equal(total(metrics, "s3_get_hits") + total(metrics, "warm_hits"), 0, stderr);
      assert.ok(elapsed < coldMs + 30_000, `took ${elapsed.toFixed(0)}ms (cold ${coldMs})`);
      const lines = stderr.split("\n").filter((l) => l.trim() && !/metrics \{/.test(l));
      assert.ok(lines.length <= 4, stderr);
      assert.match(stderr, /Azure tier paused .*ECONNREFUSED/);
    });
  },
});
