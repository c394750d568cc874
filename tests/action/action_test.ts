/**
 * The GitHub Action's scripts end to end, with the GitHub environment simulated (./_runner.ts):
 * `scripts/action/setup.sh` starts the server from a local stand-in for the release download
 * against a real MinIO bucket; the real go builds through the variables it exported;
 * `scripts/action/stop.sh` writes the summary and stops the server, and the uploads are then in
 * the bucket. Also stop.sh when `stats` fails, and the Windows code path (simulated).
 */
import assert from "node:assert/strict";
import { canRun, copyModule, goEnv, IN_CI, mustGo, ROOT, tempDir } from "../_util/go.ts";
import { findMinio, startMinio } from "../_util/minio.ts";
import { sha256Hex } from "../_util/bytes.ts";
import {
  alive,
  annotations,
  ASSET,
  counters,
  describe,
  killServer,
  readCommandFile,
  runScript,
  serverPid,
  simulatedRunner,
  VERSION,
} from "./_runner.ts";

/** go's `build ./...` misses one 0-byte entry even on a warm cache (see tests/e2e/s3_test.ts). */
const WARM_MISSES = 1;

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
    "scripts/action: setup.sh serves real go builds from MinIO, stop.sh flushes and writes the summary",
  ignore: !goReady || !minioReady,
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-action-");
    await using minio = await startMinio();
    const module = await copyModule();
    const runner = await simulatedRunner(work.path, {
      ...minio.env(),
      INPUT_BUCKET: minio.bucket,
      INPUT_ENDPOINT: minio.endpoint,
      INPUT_REGION: "us-east-1",
      INPUT_PREFIX: "ci",
    });
    let exported: Record<string, string> = {};
    let outputs: Record<string, string> = {};
    let pid: string | undefined;
    try {
      await t.step(
        "setup.sh verifies the download, starts serve and exports the variables",
        async () => {
          const result = await runScript("setup", runner.env);
          assert.equal(result.code, 0, describe(result));
          assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
          pid = await serverPid(runner);
          assert.ok(pid, "setup.sh recorded the server's pid");
          exported = await readCommandFile(runner.files.env);
          outputs = await readCommandFile(runner.files.output);
          const exe = `${work.path}/tool-cache/go-cache-plugin/0.0.0-test/x64/go-cache-plugin`;
          const socket = `${work.path}/temp/go-cache-plugin-action/plugin.sock`;
          const cacheDir = `${work.path}/temp/go-cache-plugin`;
          assert.equal(exported.GOCACHEPROG, `${exe} connect ${socket} --cache-dir=${cacheDir}`);
          assert.equal(
            await Deno.readTextFile(exe),
            await Deno.readTextFile(`${runner.assets}/${ASSET}`),
            "the verified asset is what runs",
          );
          assert.ok((await Deno.stat(socket)).isSocket, "serve listens on a Unix socket");
          const http = outputs.http!;
          assert.match(http, /^127\.0\.0\.1:\d+$/);
          assert.equal(exported.GOPROXY, `http://${http}/mod`);
          assert.equal(exported.GOSUMDB, `sum.golang.org http://${http}/mod/sumdb/sum.golang.org`);
          assert.equal(outputs.enabled, "true");
          assert.equal(outputs.version, VERSION);
          assert.equal(outputs["read-only"], "false", "push events write");
          assert.equal(
            (await Deno.readTextFile(runner.files.path)).trim(),
            exe.replace(/\/[^/]+$/, ""),
          );
          assert.equal((await counters(http))("sessions"), 0, "the server answers");
        },
      );

      const build = (gocache: string) =>
        mustGo(["build", "./..."], {
          cwd: module,
          env: { ...goEnv(`${work.path}/${gocache}`), ...exported },
        });

      await t.step(
        "go builds through the exported variables; the second (fresh GOCACHE) hits",
        async () => {
          const http = outputs.http!;
          await build("gocache-1");
          const cold = await counters(http);
          assert.equal(cold("sessions_total"), 1, String(cold));
          assert.ok(cold("put_requests") > 50, String(cold));
          await build("gocache-2");
          const warm = await counters(http);
          const delta = (name: string) => warm(name) - cold(name);
          assert.equal(delta("sessions_total"), 1);
          assert.ok(delta("get_hits") > 50, String(warm));
          assert.ok(delta("get_misses") <= WARM_MISSES, String(warm));
          assert.equal(delta("put_bytes"), 0, "nothing recompiles");
        },
      );

      await t.step("setup.sh run again in the job reuses the running server", async () => {
        const result = await runScript("setup", { ...runner.env, ...exported });
        assert.equal(result.code, 0, describe(result));
        assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
        assert.match(
          annotations(result.stdout, "notice").join("\n"),
          /reusing it/,
          describe(result),
        );
        assert.equal(await serverPid(runner), pid, "the same server");
        const again = await readCommandFile(runner.files.output);
        assert.equal(again.http, outputs.http);
        assert.equal(again.gocacheprog, exported.GOCACHEPROG);
        assert.equal(again.enabled, "true");
      });

      await t.step(
        "stop.sh writes the summary, stops the server, and the uploads are in MinIO",
        async () => {
          const http = outputs.http!;
          const before = await counters(http);
          const result = await runScript("stop", { ...runner.env, ...exported });
          assert.equal(result.code, 0, describe(result));
          assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
          assert.equal(await alive(pid!), false, "the server exited");

          const log = await Deno.readTextFile(outputs.log!);
          assert.match(log, /: stopped$/m, "a clean shutdown");
          const final = JSON.parse(log.match(/go-cache-plugin: metrics (\{.*\})$/m)![1]!);
          assert.equal(final.uploads_left ?? 0, 0, log);
          assert.equal(final.uploads_failed ?? 0, 0, log);
          const keys = await minio.listKeys(minio.bucket, "ci/");
          for (const key of keys) assert.match(key, /^ci\/(action|output|module|warm)\//);
          assert.ok(final.uploads_done > 50, log);
          // Flushed: every action record on the server's disk is in the bucket.
          const cacheDir = outputs["cache-dir"]!;
          const local: string[] = [];
          for await (const shard of Deno.readDir(`${cacheDir}/action`)) {
            for await (const entry of Deno.readDir(`${cacheDir}/action/${shard.name}`)) {
              local.push(`ci/action/${shard.name}/${entry.name}`);
            }
          }
          assert.ok(local.length > 50);
          const missing = local.filter((key) => !keys.includes(key));
          assert.deepEqual(missing, [], "every upload reached the bucket before the server exited");

          const summary = await Deno.readTextFile(runner.files.summary);
          assert.match(summary, /^\|.*\|$/m, `a Markdown table:\n${summary}`);
          assert.match(summary, /^\| *:?-{3,}:? *\|/m, `a Markdown table:\n${summary}`);
          // `go-cache-plugin stats --format=markdown`: its labels are its own (and changing);
          // the headline figures are there.
          assert.match(summary, /hit/i, summary);
          assert.match(summary, new RegExp(`\\b${before("get_hits")}\\b`), summary);
          assert.match(
            summary,
            new RegExp(
              `every upload had reached the bucket \\(${final.uploads_done} done, 0 failed\\)`,
            ),
            summary,
          );

          const after = await readCommandFile(runner.files.env);
          assert.equal(after.GOCACHEPROG, "", "later steps run go without the plugin");
          assert.equal(after.GOPROXY, "off", "GOPROXY as before the action");
          assert.equal(after.GOSUMDB, "");
          const again = await runScript("stop", { ...runner.env, ...exported });
          assert.equal(again.code, 0);
          assert.match(again.stdout, /already stopped earlier in this job/, describe(again));
        },
      );
    } finally {
      await killServer(pid);
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "scripts/action: stop.sh with a release whose stats command fails says so in the summary",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const runner = await simulatedRunner(work.path, { INPUT_MODULE_PROXY: "false" });
    // An older release: the same stand-in, but `stats` is an unknown command (exit 2).
    const asset = `${runner.assets}/${ASSET}`;
    const wrapper = (await Deno.readTextFile(asset)).replace(
      /^exec /m,
      'if [ "$1" = stats ]; then echo "usage: unknown command" >&2; exit 2; fi\nexec ',
    );
    await Deno.writeTextFile(asset, wrapper);
    const sum = await sha256Hex(new TextEncoder().encode(wrapper));
    await Deno.writeTextFile(`${runner.assets}/SHA256SUMS`, `${sum}  ${ASSET}\n`);
    let pid: string | undefined;
    try {
      const setup = await runScript("setup", runner.env);
      pid = await serverPid(runner);
      assert.equal((await readCommandFile(runner.files.output)).enabled, "true", describe(setup));
      const exported = await readCommandFile(runner.files.env);
      const stop = await runScript("stop", { ...runner.env, ...exported });
      assert.equal(stop.code, 0, describe(stop));
      assert.equal(await alive(pid!), false, "the server exited");
      const summary = await Deno.readTextFile(runner.files.summary);
      assert.match(summary, /^### Go build cache$/m, summary);
      assert.match(
        summary,
        /No statistics: `go-cache-plugin stats` failed for the server on 127\\\.0\\\.0\\\.1\\:\d+: usage\\: unknown command\./,
        summary,
      );
      assert.doesNotMatch(summary, /^\|/m, "no table made up from anything else");
    } finally {
      await killServer(pid);
    }
  },
});

Deno.test({
  name:
    "scripts/action: RUNNER_OS=Windows (simulated: netstat and taskkill stand-ins) uses a port and ends the idle server",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const bin = `${work.path}/fake-bin`;
    await Deno.mkdir(bin);
    const runner = await simulatedRunner(work.path, {
      RUNNER_OS: "Windows",
      PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
    });
    // The stand-in named as the Windows asset.
    const standin = await new Deno.Command("bash", {
      args: [`${ROOT}/tests/action/standin.sh`, runner.assets, VERSION],
      env: { RUNNER_OS: "Windows", RUNNER_ARCH: "X64" },
      stdout: "piped",
    }).output();
    assert.match(new TextDecoder().decode(standin.stdout), /x86_64-pc-windows-msvc\.exe$/m);
    let pid: string | undefined;
    try {
      const setup = await runScript("setup", runner.env);
      pid = await serverPid(runner);
      const outputs = await readCommandFile(runner.files.output);
      assert.equal(outputs.enabled, "true", describe(setup));
      assert.match(outputs.plugin!, /^\d+$/, "a port, not a Unix socket");
      assert.match(outputs.exe!, /\/go-cache-plugin\.exe$/);
      const exported = await readCommandFile(runner.files.env);
      assert.equal(
        exported.GOCACHEPROG,
        `${outputs.exe} connect ${outputs.plugin} --cache-dir=${outputs["cache-dir"]}`,
      );
      const port = outputs.http!.split(":")[1];
      await Deno.writeTextFile(
        `${bin}/netstat`,
        `#!/bin/sh\nprintf '  TCP    127.0.0.1:${port}    0.0.0.0:0    LISTENING    ${pid}\\r\\n'\n`,
        { mode: 0o755 },
      );
      await Deno.writeTextFile(
        `${bin}/taskkill`,
        `#!/bin/sh\necho "$@" >> ${work.path}/taskkill.log\nkill -KILL "$3"\n`,
        { mode: 0o755 },
      );
      const stop = await runScript("stop", { ...runner.env, ...exported });
      assert.equal(stop.code, 0, describe(stop));
      assert.equal(await Deno.readTextFile(`${work.path}/taskkill.log`), `//F //PID ${pid}\n`);
      assert.equal(await alive(pid!), false, "the server was ended");
      const summary = await Deno.readTextFile(runner.files.summary);
      assert.match(summary, /Windows: the server was ended once idle/, summary);
    } finally {
      await killServer(pid);
    }
  },
});

Deno.test({
  name: "scripts/action: stop.sh does not say every upload reached the bucket when some failed",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const runner = await simulatedRunner(work.path);
    // What setup.sh leaves for a server that has exited since, with its final metrics line.
    const stateDir = `${runner.env.RUNNER_TEMP}/go-cache-plugin-action`;
    await Deno.mkdir(stateDir);
    const log = `${stateDir}/server.log`;
    await Deno.writeTextFile(
      log,
      'go-cache-plugin: metrics {"uploads_done":7,"uploads_failed":3,"uploads_left":0}\n',
    );
    await Deno.writeTextFile(
      `${stateDir}/state`,
      [
        "pid=2147483646",
        "exe=/bin/false",
        "http=127.0.0.1:9",
        `log_file=${log}`,
        "bucket=my-bucket",
        "os=Linux",
        "",
      ].join("\n"),
    );
    const stop = await runScript("stop", runner.env);
    assert.equal(stop.code, 0, describe(stop));
    const summary = await Deno.readTextFile(runner.files.summary);
    assert.doesNotMatch(summary, /every upload had reached the bucket/, summary);
    assert.match(summary, /3 of 10 had failed: those objects are not in the bucket/, summary);
    assert.match(summary, /The server had already exited before the end of the job/, summary);
    assert.match(summary, /No statistics: `go-cache-plugin stats` failed/, summary);
  },
});
