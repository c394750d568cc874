/**
 * The warm-up end to end: the real go command, the plugin as GOCACHEPROG, a real MinIO on
 * 127.0.0.1 with `mc admin trace` counting requests. Machine A builds, vets and tests (uploads
 * plus one manifest); machine B, fresh, warms up from it and is all hits with far fewer requests
 * than entries; a damaged manifest, pack or output costs misses, never a wrong hit.
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
import {
  findMc,
  findMinio,
  type Minio,
  MinioAdmin,
  startMinio,
  type TracedCall,
} from "../_util/minio.ts";
import { freePort } from "../_util/net.ts";
import { Server } from "../_util/serve.ts";
import { sha256Hex } from "../_util/bytes.ts";
import {
  decodeManifest,
  manifestKey,
  outputKey,
  packKey,
  warmKeyHash,
} from "../../src/cache/remote/mod.ts";

const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());
const skipMc = await needs("mc (scripts/install_test_servers.sh)", findMc());

async function ageDirectories(dir: string): Promise<void> {
  const old = new Date(Date.now() - 3_600_000);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) await ageDirectories(`${dir}/${entry.name}`);
  }
  await Deno.utime(dir, old, old);
}

/** Action ids in a local cache directory. */
async function localActions(cacheDir: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const shard of Deno.readDir(`${cacheDir}/action`)) {
    for await (const entry of Deno.readDir(`${cacheDir}/action/${shard.name}`)) {
      if (/^[0-9a-f]{64}$/.test(entry.name)) ids.push(entry.name);
    }
  }
  return ids;
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

const JOB = [["build", "./..."], ["vet", "./..."], ["test", "./..."]];

Deno.test({
  name: "warm-up: a fresh machine is all hits from a manifest, in far fewer requests than entries",
  ignore: skipGo || skipMinio || skipMc,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-warm-");
    await using minio = await startMinio();
    await using admin = await MinioAdmin.open(minio);
    const module = await copyModule();
    await ageDirectories(module);
    // The default warm key: the go command's working directory.
    const keyHash = await warmKeyHash(`dir:${module}`);
    let run = 0;
    const machine = (flags: string[] = [], server: Minio = minio) => {
      run++;
      const cacheDir = `${work.path}/cache-${run}`;
      const plugin = pluginCommand(
        `--cache-dir=${cacheDir}`,
        ...server.flags(),
        "--metrics",
        "--warm-key=auto",
        ...flags,
      );
      return {
        cacheDir,
        env: { ...goEnv(`${work.path}/gocache-${run}`, plugin), ...server.env() },
      };
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
    let entries = 0;

    await t.step(
      "machine A: build, vet, test end with one manifest covering all three",
      async () => {
        const a = machine();
        const { metrics, stderr } = await job(a.env);
        assert.equal(metrics.length, 3, stderr);
        assert.equal(total(metrics, "warm_manifest_writes"), 3, JSON.stringify(metrics));
        const manifest = await decodeManifest((await minio.getObject(manifestKey(keyHash)))!);
        assert.ok(manifest, "a manifest under warm/<hash>/");
        assert.equal(manifest.session, 3);
        const listed = new Set(manifest.entries.map((e) => e.actionId));
        // Every action any of the three commands stored (A's directory holds exactly those).
        const stored = await localActions(a.cacheDir);
        const missing = stored.filter((id) => !listed.has(id));
        assert.deepEqual(missing, [], `${missing.length} of ${stored.length} actions not listed`);
        assert.ok(manifest.packs.length >= 1, "small outputs packed");
        entries = manifest.entries.length;
        // Still tailscale's layout for every entry.
        const keys = new Set(await minio.listKeys());
        for (const entry of manifest.entries) {
          assert.ok(keys.has(`action/${entry.actionId.slice(0, 2)}/${entry.actionId}`));
          assert.ok(keys.has(outputKey(entry.outputId)));
        }
        for (const key of keys) {
          assert.match(key, /^((action|output)\/[0-9a-f]{2}\/[0-9a-f]{64}|warm\/)/);
        }
        // Action records exactly as tailscale's plugin writes and parses them (see
        // tests/testdata/tailscale-bucket): "<output hex> <unix nanos>", nothing else.
        for (const entry of manifest.entries.slice(0, 50)) {
          const record = new TextDecoder().decode(
            (await minio.getObject(`action/${entry.actionId.slice(0, 2)}/${entry.actionId}`))!,
          );
          assert.equal(record, `${entry.outputId} ${entry.nanos}`);
        }
      },
    );

    await t.step(
      "machine B (fresh): all hits, nothing recompiled, requests < entries / 4",
      async () => {
        const b = machine();
        const trace = await admin.trace();
        const { stdout, metrics, stderr } = await job(b.env);
        const calls = await trace.stop();
        assert.match(stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
        assert.equal(total(metrics, "put_bytes"), 0, `nothing recompiles: ${stderr}`);
        assert.ok(total(metrics, "warm_hits") > 100, JSON.stringify(metrics));
        const gets = calls.filter((c) => c.api === "s3.GetObject");
        assert.ok(
          gets.length < entries / 4,
          `${gets.length} GETs for ${entries} entries: ${JSON.stringify(metrics)}`,
        );
        await assertOutputsVerified(b.cacheDir);
      },
    );

    await t.step(
      "a fresh server warms up once, and every connect after it is all hits",
      async () => {
        run++;
        const cacheDir = `${work.path}/serve-${run}`;
        const plugin = freePort();
        const trace = await admin.trace();
        const server = await Server.start([
          `--plugin=${plugin}`,
          `--cache-dir=${cacheDir}`,
          ...minio.flags(),
          "--metrics",
          // The server's working directory is not the module's: the key is given as machine
          // A's direct mode derived it.
          `--warm-key=dir:${module}`,
        ], minio.env());
        let metrics: Record<string, number> = {};
        let calls: TracedCall[] = [];
        let stdout = "";
        try {
          const env = goEnv(`${work.path}/gocache-${run}`, `${PLUGIN} connect ${plugin}`);
          for (const args of JOB) stdout += (await mustGo(args, { cwd: module, env })).stdout;
        } finally {
          calls = await trace.stop();
          server.kill("SIGTERM");
          assert.equal(await server.exit(), 0, server.stderr);
          metrics = pluginMetrics(server.stderr)[0] ?? {};
        }
        assert.match(stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
        assert.equal(metrics.put_bytes ?? 0, 0, `nothing recompiles: ${server.stderr}`);
        assert.ok((metrics.warm_hits ?? 0) > 100, JSON.stringify(metrics));
        const manifestGets = calls.filter((c) =>
          c.api === "s3.GetObject" && c.path.endsWith(`/${manifestKey(keyHash)}`)
        );
        assert.equal(manifestGets.length, 1, "one warm-up for three go commands");
        const gets = calls.filter((c) => c.api === "s3.GetObject");
        assert.ok(gets.length < entries / 4, `${gets.length} GETs for ${entries} entries`);
        await assertOutputsVerified(cacheDir);
      },
    );

    await t.step(
      "damaged packs, outputs and manifest entries cost misses, never a wrong hit",
      async () => {
        const manifest = (await decodeManifest((await minio.getObject(manifestKey(keyHash)))!))!;
        for (const pack of manifest.packs) {
          const key = packKey(keyHash, pack);
          const bytes = (await minio.getObject(key))!;
          bytes.fill(0x5a, 0, Math.min(bytes.length, 4096));
          await minio.putObject(key, bytes);
        }
        // Outputs of the first large entries replaced by other bytes.
        let damaged = 0;
        for (
          const entry of manifest.entries.filter((e) => !e.pack && e.size > 0).slice(0, 5)
        ) {
          await minio.putObject(outputKey(entry.outputId), new TextEncoder().encode("not it"));
          damaged++;
        }
        const c = machine();
        const { stdout, metrics } = await job(c.env);
        assert.match(stdout, /ok\s+example\.com\/gcptest\/lib/);
        assert.ok(total(metrics, "s3_corrupt") > 0 || damaged === 0, JSON.stringify(metrics));
        await assertOutputsVerified(c.cacheDir);
      },
    );

    await t.step(
      "a bucket with no manifest (tailscale's, or --warm-key=off) works as today",
      async () => {
        await minio.createBucket("plain");
        const writer = machine(["--warm-key=off", "--bucket=plain"]);
        await job(writer.env);
        const keys = await minio.listKeys("plain");
        assert.ok(keys.length > 100);
        assert.ok(keys.every((k) => !k.startsWith("warm/")), "off writes no manifest");
        const reader = machine(["--bucket=plain"]);
        const { stdout, metrics } = await job(reader.env);
        assert.match(stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
        assert.equal(total(metrics, "put_bytes"), 0);
        assert.ok(total(metrics, "s3_get_hits") > 100, JSON.stringify(metrics));
        assert.equal(total(metrics, "warm_hits"), 0);
      },
    );
  },
});
