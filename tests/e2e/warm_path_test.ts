/**
 * A warm machine pays nothing for its bucket: with the real go command, the plugin as
 * GOCACHEPROG and a real MinIO traced by `mc admin trace`, a warm build with `--bucket` makes only
 * the lookups its local misses need (no manifest, no warm-up), in direct and in serve mode, while
 * a fresh machine still warms up from the manifest (its first miss starts the warm-up).
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
import { findMc, findMinio, MinioAdmin, startMinio, type TracedCall } from "../_util/minio.ts";
import { freePort } from "../_util/net.ts";
import { Server } from "../_util/serve.ts";

const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());
const skipMc = await needs("mc (scripts/install_test_servers.sh)", findMc());

/** Calls on the warm-up's keys (manifests and packs). */
function warmCalls(calls: TracedCall[]): TracedCall[] {
  return calls.filter((call) => call.path.includes("/warm/"));
}

/** GETs of action records: the lookups a local miss makes. */
function actionGets(calls: TracedCall[]): TracedCall[] {
  return calls.filter((call) => call.api === "s3.GetObject" && call.path.includes("/action/"));
}

Deno.test({
  name: "warm path: a warm build with --bucket makes only its local misses' lookups",
  ignore: skipGo || skipMinio || skipMc,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-warm-path-");
    await using minio = await startMinio();
    await using admin = await MinioAdmin.open(minio);
    const module = await copyModule();
    const warmDir = `${work.path}/warm`;
    let run = 0;
    const build = async (plugin: string) => {
      const env = { ...goEnv(`${work.path}/gocache-${++run}`, plugin), ...minio.env() };
      const result = await mustGo(["build", "./..."], { cwd: module, env });
      return { ...result, metrics: pluginMetrics(result.stderr) };
    };
    const direct = (cacheDir: string) =>
      pluginCommand(`--cache-dir=${cacheDir}`, ...minio.flags(), "--metrics");

    await t.step("machine A fills the bucket and writes its manifest", async () => {
      const { metrics } = await build(direct(warmDir));
      assert.ok(total(metrics, "uploads_done") > 50, JSON.stringify(metrics));
      assert.equal(total(metrics, "warm_manifest_writes"), 1, JSON.stringify(metrics));
    });

    await t.step("direct mode, warm: no manifest, one lookup per local miss", async () => {
      const trace = await admin.trace();
      const { metrics, stderr } = await build(direct(warmDir));
      const calls = await trace.stop();
      assert.ok(total(metrics, "local_hits") > 50, stderr);
      assert.deepEqual(warmCalls(calls), [], "a warm build never fetches the manifest");
      assert.equal(total(metrics, "warm_requests"), 0, JSON.stringify(metrics));
      assert.equal(
        actionGets(calls).length,
        total(metrics, "get_misses"),
        `one lookup per miss go saw: ${JSON.stringify(metrics)}`,
      );
    });

    await t.step("direct mode, fresh machine: the first miss starts the warm-up", async () => {
      const trace = await admin.trace();
      const { metrics } = await build(direct(`${work.path}/fresh-direct`));
      const calls = await trace.stop();
      const manifests = warmCalls(calls).filter((c) => c.path.endsWith("/manifest.v2.json.zst"));
      assert.equal(manifests.length, 1, "one manifest GET");
      assert.ok(total(metrics, "warm_hits") > 50, JSON.stringify(metrics));
      assert.equal(total(metrics, "put_bytes"), 0, "nothing recompiled");
    });

    for (const machine of ["warm", "fresh"] as const) {
      await t.step(`serve mode, ${machine} server: connect builds`, async () => {
        const cacheDir = machine === "warm" ? warmDir : `${work.path}/fresh-serve`;
        const port = freePort();
        const trace = await admin.trace();
        const server = await Server.start([
          `--plugin=${port}`,
          `--cache-dir=${cacheDir}`,
          ...minio.flags(),
          "--metrics",
          `--warm-key=dir:${module}`,
        ], minio.env());
        let calls: TracedCall[] = [];
        try {
          for (let n = 0; n < 2; n++) await build(`${PLUGIN} connect ${port}`);
        } finally {
          calls = await trace.stop();
          server.kill("SIGTERM");
          assert.equal(await server.exit(), 0, server.stderr);
        }
        const metrics = pluginMetrics(server.stderr)[0] ?? {};
        const manifests = warmCalls(calls).filter((c) =>
          c.api === "s3.GetObject" && c.path.endsWith("/manifest.v2.json.zst")
        );
        if (machine === "warm") {
          assert.deepEqual(manifests, [], "a warm server never fetches the manifest");
          assert.equal(actionGets(calls).length, metrics.get_misses ?? 0, JSON.stringify(metrics));
        } else {
          assert.equal(manifests.length, 1, "one warm-up for both go commands");
          assert.ok((metrics.warm_hits ?? 0) > 50, JSON.stringify(metrics));
        }
      });
    }
  },
});
