/**
 * How `scripts/action/setup.sh` trusts the executable it downloads: a pinned `sha256` input
 * (then the release's SHA256SUMS is not needed), else SHA256SUMS; with `verify-attestation`,
 * also `gh attestation verify` (a stand-in `gh` on PATH records what it was asked). Every failed
 * or impossible check turns the cache off with one warning and exit 0 (fails closed).
 */
import assert from "node:assert/strict";
import { tempDir } from "../_util/go.ts";
import { sha256Hex } from "../_util/bytes.ts";
import {
  annotations,
  ASSET,
  describe,
  killServer,
  processEnv,
  readCommandFile,
  type Runner,
  runScript,
  type ScriptResult,
  serverPid,
  simulatedRunner,
  TOKEN,
} from "./_runner.ts";

/** The stand-in asset's SHA-256. */
async function assetSum(runner: Runner): Promise<string> {
  return await sha256Hex(await Deno.readFile(`${runner.assets}/${ASSET}`));
}

/** Runs setup.sh and stops the server it started (if any); returns what setup printed. */
async function setup(runner: Runner, env: Record<string, string> = {}): Promise<ScriptResult> {
  const result = await runScript("setup", { ...runner.env, ...env });
  await killServer(await serverPid(runner));
  return result;
}

/** The cache is off: one warning matching `pattern`, exit 0, nothing exported. */
async function assertOff(runner: Runner, result: ScriptResult, pattern: RegExp): Promise<void> {
  assert.equal(result.code, 0, describe(result));
  const warnings = annotations(result.stdout, "warning");
  assert.equal(warnings.length, 1, describe(result));
  assert.match(warnings[0]!, pattern, describe(result));
  assert.match(warnings[0]!, /Go commands run without go-cache-plugin/);
  assert.equal((await readCommandFile(runner.files.output)).enabled, "false");
  assert.equal((await readCommandFile(runner.files.env)).GOCACHEPROG, undefined);
}

/** The cache is on: exit 0, no warning. */
async function assertOn(runner: Runner, result: ScriptResult): Promise<void> {
  assert.equal(result.code, 0, describe(result));
  assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
  assert.equal((await readCommandFile(runner.files.output)).enabled, "true", describe(result));
}

/**
 * A PATH like the test's own, with `name` hidden: each directory that holds it is replaced by one
 * of links to everything else in it (GitHub's runners have gh in /usr/bin).
 */
async function pathWithout(name: string, scratch: string, path: string): Promise<string> {
  const dirs: string[] = [];
  for (const [i, dir] of path.split(":").entries()) {
    let has = false;
    try {
      has = (await Deno.stat(`${dir}/${name}`)).isFile;
    } catch {
      // not here
    }
    if (!has) {
      dirs.push(dir);
      continue;
    }
    const shadow = `${scratch}/path-${i}`;
    await Deno.mkdir(shadow, { recursive: true });
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name !== name) {
        await Deno.symlink(`${dir}/${entry.name}`, `${shadow}/${entry.name}`);
      }
    }
    dirs.push(shadow);
  }
  return dirs.join(":");
}

/** A stand-in `gh` in a new directory: records its arguments and GH_TOKEN, exits `code`. */
async function fakeGh(dir: string, code: number, message: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/gh`,
    `#!/bin/sh\nprintf '%s\\n' "$*" > "${dir}/args"\nprintf '%s' "$GH_TOKEN" > "${dir}/token"\n` +
      `echo "${message}" >&2\nexit ${code}\n`,
    { mode: 0o755 },
  );
  return dir;
}

Deno.test({
  name: "scripts/action: setup.sh checks the executable against a pinned sha256 input",
  sanitizeResources: false,
  async fn(t) {
    await t.step(
      "the right checksum (any case): on, without the release's SHA256SUMS",
      async () => {
        await using work = await tempDir("gcp-action-");
        const runner = await simulatedRunner(work.path, { INPUT_MODULE_PROXY: "false" });
        const sum = await assetSum(runner);
        await Deno.remove(`${runner.assets}/SHA256SUMS`);
        const result = await setup(runner, { INPUT_SHA256: ` ${sum.toUpperCase()}\n` });
        await assertOn(runner, result);
        assert.match(result.stdout, /checksum verified against the sha256 input/, describe(result));
      },
    );

    await t.step("a wrong checksum: off, the download removed", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      const result = await setup(runner, { INPUT_SHA256: "0".repeat(64) });
      await assertOff(
        runner,
        result,
        /Checksum mismatch for go-cache-plugin-v0\.0\.0-test-x86_64-unknown-linux-gnu: got [0-9a-f]{64}, the sha256 input pins 0{64}/,
      );
      const dir = `${work.path}/tool-cache/go-cache-plugin/0.0.0-test/x64`;
      assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), [], "the download is removed");
    });

    await t.step("a pinned checksum wins over a SHA256SUMS that lists another", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      const sum = await assetSum(runner);
      await Deno.writeTextFile(`${runner.assets}/SHA256SUMS`, `${"1".repeat(64)}  ${ASSET}\n`);
      await assertOn(runner, await setup(runner, { INPUT_SHA256: sum }));
    });

    await t.step("an executable already in the tool cache is checked against it too", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      await assertOn(runner, await setup(runner)); // installs it, checked against SHA256SUMS
      for (const file of Object.values(runner.files)) await Deno.writeTextFile(file, "");
      await Deno.remove(`${runner.env.RUNNER_TEMP}/go-cache-plugin-action`, { recursive: true });
      await assertOff(
        runner,
        await setup(runner, { INPUT_SHA256: "a".repeat(64) }),
        /Checksum mismatch .* the sha256 input pins a{64}/,
      );
    });

    for (const value of ["abc", "0".repeat(63), `${"0".repeat(63)}g`, "0".repeat(65)]) {
      await t.step(`a malformed value (${value.length} characters): off`, async () => {
        await using work = await tempDir("gcp-action-");
        const runner = await simulatedRunner(work.path);
        await assertOff(
          runner,
          await setup(runner, { INPUT_SHA256: value }),
          /Cannot use the sha256 input ".*": not 64 hexadecimal digits/,
        );
      });
    }
  },
});

Deno.test({
  name: "scripts/action: setup.sh with verify-attestation asks gh, and fails closed",
  sanitizeResources: false,
  async fn(t) {
    await t.step(
      "gh verifies: on; gh got the executable, the repository and the token",
      async () => {
        await using work = await tempDir("gcp-action-");
        const runner = await simulatedRunner(work.path, { INPUT_MODULE_PROXY: "false" });
        const bin = await fakeGh(`${work.path}/gh-bin`, 0, "Verification succeeded!");
        const result = await runScript("setup", {
          ...runner.env,
          INPUT_VERIFY_ATTESTATION: "true",
          INPUT_TOKEN: TOKEN,
          PATH: `${bin}:${runner.env.PATH}`,
        });
        const pid = await serverPid(runner);
        try {
          await assertOn(runner, result);
          const serverEnv = await processEnv(pid!);
          if (serverEnv) {
            assert.ok(serverEnv.some((entry) => entry.startsWith("PATH=")), "the env was read");
            assert.ok(!serverEnv.some((entry) => entry.includes(TOKEN)), "the server has no token");
          }
        } finally {
          await killServer(pid);
        }
        assert.match(result.stdout, /build provenance verified/, describe(result));
        const exe = `${work.path}/tool-cache/go-cache-plugin/0.0.0-test/x64/go-cache-plugin`;
        assert.equal(
          await Deno.readTextFile(`${bin}/args`),
          `attestation verify ${exe} --repo example/go-cache-plugin\n`,
        );
        assert.equal(await Deno.readTextFile(`${bin}/token`), TOKEN);
      },
    );

    await t.step("gh finds no attestation: off, with what gh said", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      const bin = await fakeGh(`${work.path}/gh-bin`, 1, "no attestations found for subject");
      const result = await setup(runner, {
        INPUT_VERIFY_ATTESTATION: "true",
        PATH: `${bin}:${runner.env.PATH}`,
      });
      await assertOff(
        runner,
        result,
        /Cannot verify the build provenance of go-cache-plugin-v0\.0\.0-test-x86_64-unknown-linux-gnu: gh attestation verify --repo example\/go-cache-plugin exited with status 1: no attestations found for subject/,
      );
      assert.equal(await serverPid(runner), undefined, "no server started");
    });

    await t.step("no gh CLI: off", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      const path = await pathWithout("gh", `${work.path}/shadow`, runner.env.PATH!);
      const result = await setup(runner, { INPUT_VERIFY_ATTESTATION: "yes", PATH: path });
      await assertOff(
        runner,
        result,
        /verify-attestation is true, but the gh CLI is not installed/,
      );
    });

    await t.step("not asked (false, the default): gh is never run", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      const bin = await fakeGh(`${work.path}/gh-bin`, 1, "must not run");
      const result = await setup(runner, {
        INPUT_VERIFY_ATTESTATION: "false",
        PATH: `${bin}:${runner.env.PATH}`,
      });
      await assertOn(runner, result);
      await assert.rejects(Deno.stat(`${bin}/args`), Deno.errors.NotFound);
    });

    await t.step("a value that is neither true nor false: off", async () => {
      await using work = await tempDir("gcp-action-");
      const runner = await simulatedRunner(work.path);
      await assertOff(
        runner,
        await setup(runner, { INPUT_VERIFY_ATTESTATION: "maybe" }),
        /Cannot use the verify-attestation input "maybe": true or false/,
      );
    });
  },
});
