/**
 * The JavaScript action's entry points (action.yml `runs.main` and `runs.post`:
 * scripts/action/main.mjs and post.mjs) run with `node` as GitHub's runner runs them: inputs as
 * `INPUT_<NAME>` with `-` kept, defaults filled in from action.yml, no `GITHUB_ACTION_PATH`
 * (./_runner.ts `runEntry`). main starts the server and exports the variables, the real go builds
 * through them against a real MinIO bucket, post flushes the uploads and writes the job summary;
 * an explicit stop step before post leaves post nothing to do; main and post never fail the job.
 */
import assert from "node:assert/strict";
import { canRun, copyModule, goEnv, IN_CI, mustGo, tempDir } from "../_util/go.ts";
import { findMinio, startMinio } from "../_util/minio.ts";
import {
  alive,
  annotations,
  counters,
  declaredOutputs,
  describe,
  killServer,
  NODE,
  processEnv,
  readCommandFile,
  runEntry,
  runScript,
  serverPid,
  simulatedRunner,
  TOKEN,
} from "./_runner.ts";

const nodeReady = canRun(NODE);
const goReady = canRun("go");
const minioReady = IN_CI || (await findMinio()) !== undefined;
if (!minioReady) {
  // deno-lint-ignore no-console
  console.error(
    "skipping: MinIO is not installed (scripts/install_test_servers.sh; CI would fail)",
  );
}

Deno.test({
  name:
    "scripts/action/main.mjs serves real go builds from MinIO; post.mjs flushes the uploads and writes the summary",
  ignore: !nodeReady || !goReady || !minioReady,
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-action-");
    await using minio = await startMinio();
    const module = await copyModule();
    const cacheDir = `${work.path}/my-cache`;
    const runner = await simulatedRunner(work.path, {
      ...minio.env(),
      INPUT_BUCKET: minio.bucket,
      INPUT_ENDPOINT: minio.endpoint,
      "INPUT_PATH-STYLE": "true",
      INPUT_REGION: "us-east-1",
      INPUT_PREFIX: "js",
      "INPUT_CACHE-DIR": cacheDir,
    });
    let exported: Record<string, string> = {};
    let outputs: Record<string, string> = {};
    let pid: string | undefined;
    try {
      await t.step("main.mjs starts the server and exports the variables", async () => {
        const result = await runEntry("main", runner.env);
        assert.equal(result.code, 0, describe(result));
        assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
        pid = await serverPid(runner);
        assert.ok(pid, describe(result));
        exported = await readCommandFile(runner.files.env);
        outputs = await readCommandFile(runner.files.output);
        assert.equal(outputs.enabled, "true");
        assert.match(
          exported.GOCACHEPROG!,
          new RegExp(` connect \\S+ --cache-dir=${cacheDir}$`),
          "the cache-dir input (INPUT_CACHE-DIR from the runner) reached setup.sh",
        );
        assert.equal(outputs["cache-dir"], cacheDir);
        assert.equal(exported.GOPROXY, `http://${outputs.http}/mod`);
        const declared = await declaredOutputs();
        for (const name of Object.keys(outputs)) {
          assert.ok(declared.includes(name), `output ${name} is declared in action.yml`);
        }
        const serverEnv = await processEnv(pid!);
        if (serverEnv) {
          assert.ok(serverEnv.length > 5, "the server's environment was read");
          assert.ok(
            !serverEnv.some((entry) => entry.includes(TOKEN)),
            "the token input never reaches the server",
          );
        }
      });

      const build = (gocache: string) =>
        mustGo(["build", "./..."], {
          cwd: module,
          env: { ...goEnv(`${work.path}/${gocache}`), ...exported },
        });

      await t.step("a build through the exported variables, then one that hits", async () => {
        await build("gocache-1");
        const cold = await counters(outputs.http!);
        assert.ok(cold("put_requests") > 50, String(cold));
        await build("gocache-2");
        const warm = await counters(outputs.http!);
        assert.ok(warm("get_hits") - cold("get_hits") > 50, String(warm));
      });

      await t.step("post.mjs writes the summary, stops the server, and flushes", async () => {
        const before = await counters(outputs.http!);
        const result = await runEntry("post", { ...runner.env, ...exported });
        assert.equal(result.code, 0, describe(result));
        assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
        assert.equal(await alive(pid!), false, "the server exited");
        const log = await Deno.readTextFile(outputs.log!);
        const final = JSON.parse(log.match(/go-cache-plugin: metrics (\{.*\})$/m)![1]!);
        assert.equal(final.uploads_left ?? 0, 0, log);
        assert.equal(final.uploads_failed ?? 0, 0, log);
        const keys = await minio.listKeys(minio.bucket, "js/");
        const local: string[] = [];
        for await (const shard of Deno.readDir(`${cacheDir}/action`)) {
          for await (const entry of Deno.readDir(`${cacheDir}/action/${shard.name}`)) {
            local.push(`js/action/${shard.name}/${entry.name}`);
          }
        }
        assert.ok(local.length > 50);
        assert.deepEqual(
          local.filter((key) => !keys.includes(key)),
          [],
          "every upload is in MinIO",
        );

        // What `stats --format=markdown` prints is its own; the headline figures are there.
        const summary = await Deno.readTextFile(runner.files.summary);
        assert.match(summary, /hit/i, summary);
        assert.match(summary, new RegExp(`\\b${before("get_hits")}\\b`), summary);
        assert.match(summary, /every upload had reached the bucket/, summary);
        const after = await readCommandFile(runner.files.env);
        assert.equal(after.GOCACHEPROG, "", "go runs without the plugin after the post step");
      });

      await t.step("post.mjs run again finds the server stopped and writes nothing", async () => {
        const summary = await Deno.readTextFile(runner.files.summary);
        const again = await runEntry("post", { ...runner.env, ...exported });
        assert.equal(again.code, 0, describe(again));
        assert.match(again.stdout, /already stopped earlier in this job/, describe(again));
        assert.equal(await Deno.readTextFile(runner.files.summary), summary);
      });
    } finally {
      await killServer(pid);
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "scripts/action: an explicit stop step (stop/action.yml) then post.mjs: one summary, post has nothing to do",
  ignore: !nodeReady,
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const runner = await simulatedRunner(work.path, { "INPUT_MODULE-PROXY": "false" });
    let pid: string | undefined;
    try {
      const main = await runEntry("main", runner.env);
      assert.equal(main.code, 0, describe(main));
      pid = await serverPid(runner);
      const outputs = await readCommandFile(runner.files.output);
      assert.equal(outputs.enabled, "true", describe(main));
      assert.equal(outputs.goproxy, "", "module-proxy false (INPUT_MODULE-PROXY) reached setup.sh");
      const exported = await readCommandFile(runner.files.env);

      // stop/action.yml: `bash "$GITHUB_ACTION_PATH/../scripts/action/stop.sh"`.
      const stop = await runScript("stop", { ...runner.env, ...exported });
      assert.equal(stop.code, 0, describe(stop));
      assert.equal(await alive(pid!), false, "the stop step stopped the server");
      const summary = await Deno.readTextFile(runner.files.summary);
      assert.match(summary, /hit/i, summary);

      const post = await runEntry("post", { ...runner.env, ...exported });
      assert.equal(post.code, 0, describe(post));
      assert.deepEqual(annotations(post.stdout, "warning"), [], describe(post));
      assert.match(
        post.stdout,
        /the server was already stopped earlier in this job/,
        describe(post),
      );
      assert.equal(await Deno.readTextFile(runner.files.summary), summary, "one summary");

      // A second main in the same job starts a new server; its post stops that one.
      const again = await runEntry("main", runner.env);
      assert.equal(again.code, 0, describe(again));
      const second = await serverPid(runner);
      assert.ok(second && second !== pid, describe(again));
      pid = second;
      const last = await runEntry("post", { ...runner.env, ...exported });
      assert.equal(last.code, 0, describe(last));
      assert.doesNotMatch(last.stdout, /already stopped/, describe(last));
      assert.equal(await alive(pid), false, "post stopped the second server");
    } finally {
      await killServer(pid);
    }
  },
});

Deno.test({
  name: "scripts/action/main.mjs and post.mjs never fail the job",
  ignore: !nodeReady,
  sanitizeResources: false,
  async fn(t) {
    await t.step("no bash: one warning each, enabled false, exit 0", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      const empty = `${work.path}/empty-bin`;
      await Deno.mkdir(empty);
      const env = { ...runner.env, PATH: empty };
      const main = await runEntry("main", env);
      assert.equal(main.code, 0, describe(main));
      const warnings = annotations(main.stdout, "warning");
      assert.equal(warnings.length, 1, describe(main));
      assert.match(warnings[0]!, /Go build cache off: Cannot run bash: .*ENOENT/);
      assert.equal((await readCommandFile(runner.files.output)).enabled, "false");
      assert.deepEqual(await readCommandFile(runner.files.env), {}, "nothing exported");
      const post = await runEntry("post", env);
      assert.equal(post.code, 0, describe(post));
      assert.equal(annotations(post.stdout, "warning").length, 1, describe(post));
    });

    await t.step(
      "setup refuses (a malformed sha256 input); post says why in the summary",
      async () => {
        await using work = await tempDir("gcp-action-");
        const runner = await simulatedRunner(work.path, { INPUT_SHA256: "not-a-checksum" });
        const main = await runEntry("main", runner.env);
        assert.equal(main.code, 0, describe(main));
        const warnings = annotations(main.stdout, "warning");
        assert.equal(warnings.length, 1, describe(main));
        assert.match(warnings[0]!, /sha256 input "not-a-checksum": not 64 hexadecimal digits/);
        assert.equal((await readCommandFile(runner.files.output)).enabled, "false");
        assert.equal(await serverPid(runner), undefined);
        const post = await runEntry("post", runner.env);
        assert.equal(post.code, 0, describe(post));
        assert.deepEqual(annotations(post.stdout, "warning"), [], describe(post));
        assert.match(
          await Deno.readTextFile(runner.files.summary),
          /Not used in this job: .*not 64 hexadecimal digits/,
        );
      },
    );

    await t.step("a server that dies before post: post reports it and exits 0", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path, { "INPUT_MODULE-PROXY": "false" });
      let pid: string | undefined;
      try {
        const main = await runEntry("main", runner.env);
        assert.equal(main.code, 0, describe(main));
        pid = await serverPid(runner);
        assert.ok(pid, describe(main));
        await new Deno.Command("kill", { args: ["-KILL", pid] }).output();
        for (let i = 0; i < 50 && await alive(pid); i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const exported = await readCommandFile(runner.files.env);
        const post = await runEntry("post", { ...runner.env, ...exported });
        assert.equal(post.code, 0, describe(post));
        const summary = await Deno.readTextFile(runner.files.summary);
        assert.match(summary, /No statistics: .*stats.* failed/, summary);
        assert.match(summary, /already exited before the end of the job/, summary);
      } finally {
        await killServer(pid);
      }
    });
  },
});
