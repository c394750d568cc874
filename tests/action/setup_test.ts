/**
 * `scripts/action/setup.sh` with the GitHub environment simulated (./_runner.ts), the ways it
 * must not fail the job (checksum, runner, server start), the version it picks, and the
 * read-only default on pull requests.
 */
import assert from "node:assert/strict";
import { ROOT, tempDir } from "../_util/go.ts";
import { freePort } from "../_util/minio.ts";
import {
  alive,
  annotations,
  ASSET,
  describe,
  killServer,
  markdownUnescape,
  pluginHasReadOnly,
  readCommandFile,
  type Runner,
  runScript,
  serverPid,
  simulatedRunner,
} from "./_runner.ts";

Deno.test({
  name: "scripts/action: setup.sh failures leave GOCACHEPROG unset with one warning and exit 0",
  sanitizeResources: false,
  async fn(t) {
    async function expectOff(
      runner: Runner,
      pattern: RegExp,
    ): Promise<void> {
      const result = await runScript("setup", runner.env);
      assert.equal(result.code, 0, describe(result));
      const warnings = annotations(result.stdout, "warning");
      assert.equal(warnings.length, 1, describe(result));
      assert.match(warnings[0]!, pattern);
      assert.match(warnings[0]!, /Go commands run without go-cache-plugin/);
      const exported = await readCommandFile(runner.files.env);
      assert.equal(exported.GOCACHEPROG, undefined, "GOCACHEPROG is not exported");
      assert.equal(exported.GOPROXY, undefined);
      assert.equal((await readCommandFile(runner.files.output)).enabled, "false");
      assert.equal(await serverPid(runner), undefined, "no server was left running");
    }

    await t.step("a checksum mismatch", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      await Deno.writeTextFile(`${runner.assets}/SHA256SUMS`, `${"0".repeat(64)}  ${ASSET}\n`);
      await expectOff(
        runner,
        /Checksum mismatch for go-cache-plugin-v0\.0\.0-test-x86_64-unknown-linux-gnu: got [0-9a-f]{64}, SHA256SUMS lists 0{64}/,
      );
      const dir = `${work.path}/tool-cache/go-cache-plugin/0.0.0-test/x64`;
      assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), [], "the download is removed");
    });

    await t.step("an asset SHA256SUMS does not list", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      await Deno.writeTextFile(`${runner.assets}/SHA256SUMS`, `${"0".repeat(64)}  other-file\n`);
      await expectOff(runner, /SHA256SUMS of v0\.0\.0-test does not list it/);
    });

    await t.step("an architecture without a release executable", async () => {
      await using work = await tempDir("gcp-action-");
      await expectOff(
        await simulatedRunner(work.path, { RUNNER_ARCH: "ARM" }),
        /No release executable for RUNNER_OS="Linux" RUNNER_ARCH="ARM"/,
      );
    });

    await t.step("an OS without a release executable", async () => {
      await using work = await tempDir("gcp-action-");
      await expectOff(
        await simulatedRunner(work.path, { RUNNER_OS: "FreeBSD", RUNNER_ARCH: "X64" }),
        /No release executable for RUNNER_OS="FreeBSD" RUNNER_ARCH="X64"/,
      );
    });

    await t.step("a server that cannot start; stop.sh then says why in the summary", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path, {
        INPUT_BUCKET: "b",
        INPUT_ENDPOINT: "not a url",
      });
      await expectOff(runner, /The server exited with status 2: .*"not a url" is not a URL/);
      const stop = await runScript("stop", runner.env);
      assert.equal(stop.code, 0, describe(stop));
      const summary = await Deno.readTextFile(runner.files.summary);
      // Escaped Markdown: what it quotes is text (tests/action/hostile_test.ts).
      assert.match(
        markdownUnescape(summary),
        /^Not used in this job: The server exited with status 2: .*"not a url" is not a URL/m,
        summary,
      );
    });
  },
});

Deno.test({
  name: "scripts/action: on pull_request the server is read-only when the plugin supports it",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    // A bucket nobody listens for: serve starts without asking S3, and no build runs.
    const runner = await simulatedRunner(work.path, {
      GITHUB_EVENT_NAME: "pull_request",
      INPUT_BUCKET: "b",
      INPUT_ENDPOINT: `http://127.0.0.1:${freePort()}`,
      INPUT_REGION: "us-east-1",
      INPUT_READ_PREFIXES: "main",
      INPUT_MODULE_PROXY: "false",
      // Azure's inputs reach the server (unused with an S3 bucket, harmless).
      INPUT_AZURE_ACCOUNT: "acmestore",
      INPUT_AZURE_CLIENT_ID: "client-1",
      INPUT_AZURE_TENANT_ID: "tenant-1",
      GITHUB_REPOSITORY: "acme/app",
      GITHUB_WORKFLOW: "ci",
      GITHUB_JOB: "test",
      RUNNER_OS: "Linux",
      RUNNER_ARCH: "X64",
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
    });
    let pid: string | undefined;
    try {
      const result = await runScript("setup", runner.env);
      pid = await serverPid(runner);
      assert.equal(result.code, 0, describe(result));
      assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
      const outputs = await readCommandFile(runner.files.output);
      const exported = await readCommandFile(runner.files.env);
      assert.equal(outputs.enabled, "true", describe(result));
      assert.ok(exported.GOCACHEPROG);
      assert.equal(exported.GOPROXY, undefined, "module-proxy: false exports no GOPROXY");
      const notices = annotations(result.stdout, "notice");
      // The server's environment carries the trust-tier settings (Linux: /proc).
      // (Deno reads /proc only with --allow-all: cat it.)
      const environ = new TextDecoder().decode(
        (await new Deno.Command("cat", { args: [`/proc/${pid}/environ`], stdout: "piped" })
          .output())
          .stdout,
      ).split("\0");
      assert.ok(environ.includes("AZURE_CLIENT_ID=client-1"), environ.join(" "));
      assert.ok(environ.includes("AZURE_TENANT_ID=tenant-1"), environ.join(" "));
      const cmdline = new TextDecoder().decode(
        (await new Deno.Command("cat", { args: [`/proc/${pid}/cmdline`], stdout: "piped" })
          .output())
          .stdout,
      ).split("\0");
      assert.ok(cmdline.includes("--azure-account=acmestore"), cmdline.join(" "));
      if (await pluginHasReadOnly()) {
        assert.equal(outputs["read-only"], "true");
        assert.deepEqual(notices, []);
        assert.ok(environ.includes("GOCACHE_READ_ONLY=true"), environ.join(" "));
        assert.ok(environ.includes("GOCACHE_READ_PREFIXES=main"), environ.join(" "));
        // One warm-up manifest per job and platform, not one for every job of the runner.
        assert.ok(
          environ.includes("GOCACHE_WARM_KEY=acme/app/ci/test/Linux-X64"),
          environ.join(" "),
        );
      } else {
        assert.equal(outputs["read-only"], "false");
        assert.equal(notices.length, 2, describe(result));
        assert.match(notices[0]!, /has no --read-only: this pull_request job may write/);
        assert.match(notices[1]!, /has no --read-prefixes: read-prefixes ignored/);
        assert.ok(!environ.some((v) => v.startsWith("GOCACHE_READ_")), environ.join(" "));
      }
      const stop = await runScript("stop", { ...runner.env, ...exported });
      assert.equal(stop.code, 0, describe(stop));
      assert.equal(await alive(pid!), false, "the server exited");
    } finally {
      await killServer(pid);
    }
  },
});

Deno.test("scripts/action: setup.sh takes the version from the action's ref", async (t) => {
  const own = (await Deno.readTextFile(`${ROOT}/src/cli/version.ts`))
    .match(/^export const VERSION = "(.*)";$/m)![1]!;
  // The stand-in lists only v0.0.0-test: the warning names the version setup.sh chose.
  const cases: [string, Record<string, string>, RegExp][] = [
    ["a full version tag", { GCP_ACTION_REF: "v9.8.7" }, /SHA256SUMS of v9\.8\.7 does not list/],
    [
      "a major tag: the version of the action's own files",
      { GCP_ACTION_REF: "v1" },
      new RegExp(`SHA256SUMS of v${own.replaceAll(".", "\\.")} does not list`),
    ],
    [
      "the ref from the action's path when the expression is empty",
      { GITHUB_ACTION_PATH: "/runner/_actions/someone/go-cache-plugin/v2.3.4" },
      /SHA256SUMS of v2\.3\.4 does not list/,
    ],
    [
      "a branch: latest, which needs the release page",
      { GCP_ACTION_REF: "main" },
      /version "latest" cannot be resolved with GCP_ACTION_DOWNLOAD_BASE/,
    ],
  ];
  for (const [name, env, pattern] of cases) {
    await t.step(name, async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path, { INPUT_VERSION: "", ...env });
      const result = await runScript("setup", runner.env);
      assert.equal(result.code, 0, describe(result));
      const warnings = annotations(result.stdout, "warning");
      assert.equal(warnings.length, 1, describe(result));
      assert.match(warnings[0]!, pattern);
    });
  }
});
