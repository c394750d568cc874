/**
 * The GitHub Action's scripts with hostile inputs and runner paths, the GitHub environment
 * simulated (./_runner.ts): no input adds a variable, a PATH entry, an output or a workflow
 * command of its own; a cache directory, `RUNNER_TEMP` or tool cache with spaces gives a
 * GOCACHEPROG the real go command runs (with hits on the second build); what the job summary
 * quotes is escaped Markdown. The cache is off with one warning whenever an input is refused, and
 * the job never fails.
 */
import assert from "node:assert/strict";
import { canRun, copyModule, goEnv, mustGo, ROOT, tempDir } from "../_util/go.ts";
import { freePort } from "../_util/net.ts";
import {
  alive,
  annotations,
  counters,
  declaredInputs,
  declaredOutputs,
  describe,
  goSplit,
  killServer,
  markdownUnescape,
  readCommandFile,
  resetFiles,
  type Runner,
  runScript,
  type ScriptResult,
  serverPid,
  simulatedRunner,
  VERSION,
} from "./_runner.ts";

const goReady = canRun("go");

/** What a newline in an input used to add to `$GITHUB_ENV`. */
const INJECTED = "NODE_OPTIONS=--require=/tmp/evil.js\nLD_PRELOAD=/tmp/evil.so";

/** The inputs setup.sh reads (all of action.yml's but `token`, which only gh sees), by variable. */
const INPUTS: Record<string, string> = {
  INPUT_BUCKET: "bucket",
  INPUT_REGION: "region",
  INPUT_ENDPOINT: "endpoint",
  INPUT_PATH_STYLE: "path-style",
  INPUT_GCS_KEY_FILE: "gcs-key-file",
  INPUT_PREFIX: "prefix",
  INPUT_READ_PREFIXES: "read-prefixes",
  INPUT_READ_ONLY: "read-only",
  INPUT_WARM_KEY: "warm-key",
  INPUT_MODULE_PROXY: "module-proxy",
  INPUT_VERSION: "version",
  INPUT_CACHE_DIR: "cache-dir",
  INPUT_SHA256: "sha256",
  INPUT_VERIFY_ATTESTATION: "verify-attestation",
};

/** Asserts the GitHub file command is only `NAME<<ghadelimiter_<32 hex>` blocks, each its own. */
async function assertDelimited(path: string): Promise<void> {
  const text = await Deno.readTextFile(path);
  const block = /^([A-Za-z_][\w-]*)<<(ghadelimiter_[0-9a-f]{32})\n(?:.*\n)*?\2\n/;
  const delimiters = new Set<string>();
  let rest = text;
  while (rest.length > 0) {
    const match = block.exec(rest);
    assert.ok(match, `not a delimited block at:\n${rest}\n--- whole file\n${text}`);
    assert.ok(!delimiters.has(match[2]!), "a fresh delimiter for every value");
    delimiters.add(match[2]!);
    rest = rest.slice(match[0].length);
  }
}

/** Asserts setup.sh turned the cache off with exactly one warning and wrote nothing else. */
async function assertOff(runner: Runner, result: ScriptResult, pattern: RegExp): Promise<void> {
  assert.equal(result.code, 0, describe(result));
  const warnings = annotations(result.stdout, "warning");
  assert.equal(warnings.length, 1, describe(result));
  assert.match(warnings[0]!, pattern, describe(result));
  assert.match(warnings[0]!, /Go commands run without go-cache-plugin\.$/);
  // Every line the script printed is its own: a log line, or one of its workflow commands.
  for (const line of result.stdout.split("\n")) {
    if (line === "") continue;
    assert.match(line, /^(go-cache-plugin: |::warning title=go-cache-plugin::)/, describe(result));
  }
  assert.doesNotMatch(result.stdout, /\r/, "no raw carriage return reaches the log");
  assert.equal(await Deno.readTextFile(runner.files.env), "", "nothing goes to GITHUB_ENV");
  assert.equal(await Deno.readTextFile(runner.files.path), "", "nothing goes to GITHUB_PATH");
  await assertDelimited(runner.files.output);
  assert.deepEqual(await readCommandFile(runner.files.output), { enabled: "false" });
  assert.equal(await serverPid(runner), undefined, "no state file is left");
  assert.deepEqual(await serversUnder(runner.root), [], "no server is left");
}

/** The `serve` processes whose command line names a path under `root`. */
async function serversUnder(root: string): Promise<string[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "pid=,args="], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout).split("\n")
    .filter((line) => line.includes(" serve ") && line.includes(root));
}

Deno.test({
  name: "scripts/action: an input with a line break or control character turns the cache off",
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-action-");
    const runner = await simulatedRunner(work.path);

    const declared = Object.keys(await declaredInputs()).filter((name) => name !== "token");
    assert.deepEqual(Object.values(INPUTS).sort(), declared.sort(), "every input is tried");
    for (const [variable, input] of Object.entries(INPUTS)) {
      await t.step(`a newline in ${input} adds no variable to GITHUB_ENV`, async () => {
        await resetFiles(runner);
        const result = await runScript("setup", {
          ...runner.env,
          [variable]: `${work.path}/x\n${INJECTED}`,
        });
        await assertOff(
          runner,
          result,
          new RegExp(
            `Cannot use the ${input} input \\$'.*\\\\nNODE_OPTIONS=.*\\\\nLD_PRELOAD=.*': it holds a line break or other control character`,
          ),
        );
      });
    }

    const controls: [string, string][] = [
      ["a carriage return", "\r"],
      ["CR LF", "\r\n"],
      ["a tab", "\t"],
      ["an escape", "\x1b[31m"],
      ["DEL", "\x7f"],
      ["NEL (U+0085)", "\u0085"],
      ["LINE SEPARATOR (U+2028)", "\u2028"],
      ["PARAGRAPH SEPARATOR (U+2029)", "\u2029"],
    ];
    for (const [name, control] of controls) {
      await t.step(`${name} inside cache-dir`, async () => {
        await resetFiles(runner);
        const result = await runScript("setup", {
          ...runner.env,
          INPUT_CACHE_DIR: `${work.path}/x${control}LD_PRELOAD=/tmp/evil.so`,
        });
        await assertOff(runner, result, /Cannot use the cache-dir input \$'/);
      });
    }

    for (const variable of ["RUNNER_TEMP", "RUNNER_TOOL_CACHE", "GCP_ACTION_REF"]) {
      await t.step(`a newline in ${variable}`, async () => {
        await resetFiles(runner);
        const value = `${runner.env[variable] || "v1"}\n${INJECTED}`;
        // The script runs in RUNNER_TEMP, as on a runner.
        if (variable === "RUNNER_TEMP") await Deno.mkdir(value, { recursive: true });
        const result = await runScript("setup", { ...runner.env, [variable]: value });
        await assertOff(runner, result, new RegExp(`Cannot use ${variable}=\\$'`));
      });
    }

    await t.step("%0A in an input is text, and stays text in the warning", async () => {
      await resetFiles(runner);
      const result = await runScript("setup", {
        ...runner.env,
        INPUT_VERSION: "v1%0A::error::injected%0D%0A",
      });
      // Escaped as GitHub's workflow commands require: % is %25, so %0A shows as %0A.
      await assertOff(
        runner,
        result,
        /Cannot use version "v1%250A::error::injected%250D%250A": not a release tag/,
      );
      assert.doesNotMatch(result.stdout, /^::error/m);
    });

    await t.step("stop.sh then quotes the refusal escaped in the summary", async () => {
      await resetFiles(runner);
      const setup = await runScript("setup", {
        ...runner.env,
        INPUT_PREFIX: `main\n${INJECTED}`,
      });
      await assertOff(runner, setup, /Cannot use the prefix input/);
      const stop = await runScript("stop", runner.env);
      assert.equal(stop.code, 0, describe(stop));
      const summary = await Deno.readTextFile(runner.files.summary);
      const lines = summary.trimEnd().split("\n");
      assert.equal(lines.length, 3, summary);
      assert.equal(lines[0], "### Go build cache");
      assert.equal(
        markdownUnescape(lines[2]!),
        `Not used in this job: Cannot use the prefix input $'main\\n${
          INJECTED.replace("\n", "\\n")
        }': it holds a line break or other control character.`,
      );
    });
  },
});

Deno.test({
  name: "scripts/action: Markdown and HTML in an input are escaped in the job summary",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const runner = await simulatedRunner(work.path);
    const hostile = "v1<img src=x onerror=alert(1)>**[click](http://evil.example)**|`x`&amp;" +
      "<!--";
    const setup = await runScript("setup", { ...runner.env, INPUT_VERSION: hostile });
    await assertOff(runner, setup, /Cannot use version ".*": not a release tag/);
    const stop = await runScript("stop", runner.env);
    assert.equal(stop.code, 0, describe(stop));
    const summary = await Deno.readTextFile(runner.files.summary);
    const line = summary.split("\n").find((l) => l.startsWith("Not used"))!;
    assert.ok(line, summary);
    // Every ASCII punctuation character is backslash-escaped: no tag, link, emphasis, code span,
    // entity or table cell can form.
    assert.doesNotMatch(line, /(?<!\\)[<>[\]()*`|&!_]/, line);
    assert.equal(
      markdownUnescape(line),
      `Not used in this job: Cannot use version "${hostile}": not a release tag.`,
    );
  },
});

Deno.test({
  name:
    "scripts/action: stop.sh restores a multi-line variable intact and stops the log's commands",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const runner = await simulatedRunner(work.path);
    const stateDir = `${work.path}/temp/go-cache-plugin-action`;
    await Deno.mkdir(stateDir);
    const log = `${stateDir}/server.log`;
    await Deno.writeTextFile(log, "go-cache-plugin: from the bucket\n::error::injected\n");
    // A state file as setup.sh writes it (printf %q), for a server that is gone.
    const previous = `https://proxy.example\n${INJECTED}`;
    await Deno.writeTextFile(
      `${stateDir}/state`,
      [
        "pid=2147483646",
        "exe=/bin/false",
        `http=127.0.0.1:${freePort()}`,
        `log_file=${log}`,
        "modproxy=true",
        // printf %q's spelling of a value with line breaks.
        `prev_goproxy=$'${previous.replaceAll("\n", "\\n")}'`,
        "prev_gosumdb=''",
        "prev_gocacheprog=''",
        "",
      ].join("\n"),
    );
    const stop = await runScript("stop", runner.env);
    assert.equal(stop.code, 0, describe(stop));
    await assertDelimited(runner.files.env);
    assert.deepEqual(await readCommandFile(runner.files.env), {
      GOCACHEPROG: "",
      GOPROXY: previous,
      GOSUMDB: "",
    });
    const lines = stop.stdout.split("\n");
    const at = lines.indexOf("::error::injected");
    const stopped = lines.findIndex((l) => l.startsWith("::stop-commands::"));
    assert.ok(stopped >= 0 && stopped < at, describe(stop));
    const token = lines[stopped]!.slice("::stop-commands::".length);
    assert.match(token, /^gcp-[0-9a-f]{32}$/);
    assert.equal(lines.indexOf(`::${token}::`) > at, true, describe(stop));
  },
});

/**
 * setup.sh with `env`, then two go builds of tests/testdata/gomod with fresh GOCACHEs through
 * the exported variables: both succeed, the second hits. Returns the outputs and exports.
 */
async function setupAndBuild(
  work: string,
  runner: Runner,
  env: Record<string, string>,
): Promise<{ outputs: Record<string, string>; exported: Record<string, string>; pid?: string }> {
  const result = await runScript("setup", { ...runner.env, ...env });
  const pid = await serverPid(runner);
  assert.equal(result.code, 0, describe(result));
  assert.ok(pid && await alive(pid), `setup.sh recorded a running server\n${describe(result)}`);
  assert.deepEqual(annotations(result.stdout, "warning"), [], describe(result));
  await assertDelimited(runner.files.env);
  await assertDelimited(runner.files.output);
  const outputs = await readCommandFile(runner.files.output);
  const exported = await readCommandFile(runner.files.env);
  assert.equal(outputs.enabled, "true", describe(result));
  assert.deepEqual(
    Object.keys(exported).sort(),
    ["GCP_ACTION_STATE", "GOCACHEPROG", "GOPROXY", "GOSUMDB"],
  );
  const declared = await declaredOutputs();
  for (const name of Object.keys(outputs)) {
    assert.ok(declared.includes(name), `action.yml declares the output ${name}`);
  }
  const module = await copyModule();
  try {
    const build = (gocache: string) =>
      mustGo(["build", "./..."], {
        cwd: module,
        env: { ...goEnv(`${work}/${gocache}`), ...exported, GOPROXY: "off", GOSUMDB: "off" },
      });
    await build("gocache-1");
    const cold = await counters(outputs.http!);
    assert.ok(cold("put_requests") > 50, String(cold));
    await build("gocache-2");
    const warm = await counters(outputs.http!);
    assert.equal(warm("sessions_total"), 2, String(warm));
    assert.ok(warm("get_hits") - cold("get_hits") > 50, String(warm));
    assert.equal(warm("put_bytes") - cold("put_bytes"), 0, "nothing recompiles");
  } finally {
    await Deno.remove(module, { recursive: true }).catch(() => {});
  }
  return { outputs, exported, pid };
}

Deno.test({
  name:
    "scripts/action: RUNNER_TEMP, the tool cache and cache-dir with spaces and quotes: go builds and hits",
  ignore: !goReady,
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const temp = `${work.path}/runner temp`;
    const tools = `${work.path}/tool cache`;
    await Deno.mkdir(temp);
    await Deno.mkdir(tools);
    const runner = await simulatedRunner(work.path, {
      RUNNER_TEMP: temp,
      RUNNER_TOOL_CACHE: tools,
    });
    // A block scalar's final newline is trimmed; %0A is text; a quote inside a word is a character.
    const cacheDir = `${work.path}/my "cache" %0A dir`;
    let pid: string | undefined;
    try {
      const run = await setupAndBuild(work.path, runner, { INPUT_CACHE_DIR: `  ${cacheDir}\n` });
      pid = run.pid;
      const { outputs, exported } = run;
      assert.equal(outputs["cache-dir"], cacheDir);
      const words = goSplit(exported.GOCACHEPROG!);
      assert.equal(words.length, 5, exported.GOCACHEPROG);
      const [exe, connect, socket, flag, dir] = words;
      // The executable and socket are reached by paths go never splits.
      assert.match(exe!, /^\/tmp\/gcp\.\w+\/go-cache-plugin$/);
      assert.equal(await Deno.realPath(exe!), await Deno.realPath(outputs.exe!));
      assert.equal(outputs.exe, `${tools}/go-cache-plugin/0.0.0-test/x64/go-cache-plugin`);
      assert.equal(connect, "connect");
      assert.match(socket!, /^\/tmp\/gcp\.\w+\/plugin\.sock$/);
      assert.equal(socket, outputs.plugin);
      assert.equal(flag, "--cache-dir");
      assert.equal(dir, cacheDir);
      assert.equal(exported.GCP_ACTION_STATE, `${temp}/go-cache-plugin-action/state`);
      assert.equal(
        (await Deno.readTextFile(runner.files.path)).trim(),
        outputs.exe!.replace(/\/[^/]+$/, ""),
      );

      const shortDir = exe!.replace(/\/[^/]+$/, "");
      const stop = await runScript("stop", { ...runner.env, ...exported });
      assert.equal(stop.code, 0, describe(stop));
      assert.equal(await alive(pid!), false, "the server exited");
      await assert.rejects(Deno.stat(shortDir), Deno.errors.NotFound, "the links are removed");
    } finally {
      await killServer(pid);
    }
  },
});

Deno.test({
  name:
    "scripts/action: RUNNER_OS=Windows (simulated) with spaces quotes whole words: go builds and hits",
  ignore: !goReady,
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const temp = `${work.path}/runner temp`;
    const tools = `${work.path}/tool cache`;
    await Deno.mkdir(temp);
    await Deno.mkdir(tools);
    const runner = await simulatedRunner(work.path, {
      RUNNER_OS: "Windows",
      RUNNER_TEMP: temp,
      RUNNER_TOOL_CACHE: tools,
    });
    // The stand-in named as the Windows asset.
    const standin = await new Deno.Command("bash", {
      args: [`${ROOT}/tests/action/standin.sh`, runner.assets, VERSION],
      env: { RUNNER_OS: "Windows", RUNNER_ARCH: "X64" },
      stdout: "null",
    }).output();
    assert.ok(standin.success);
    let pid: string | undefined;
    try {
      const run = await setupAndBuild(work.path, runner, {});
      pid = run.pid;
      const { outputs, exported } = run;
      // No links on Windows: the words with spaces are quoted, and go splits them back.
      assert.deepEqual(goSplit(exported.GOCACHEPROG!), [
        outputs.exe,
        "connect",
        outputs.plugin,
        "--cache-dir",
        `${temp}/go-cache-plugin`,
      ]);
      assert.match(exported.GOCACHEPROG!, /^"[^"]+ [^"]+" connect \d+ --cache-dir "[^"]+"$/);
    } finally {
      await killServer(pid);
    }
  },
});

Deno.test({
  name:
    "scripts/action: a cache-dir go cannot quote turns the cache off, never a broken GOCACHEPROG",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-action-");
    const runner = await simulatedRunner(work.path);
    const result = await runScript("setup", {
      ...runner.env,
      INPUT_CACHE_DIR: `${work.path}/it's a "dir"`,
      INPUT_MODULE_PROXY: "false",
    });
    await assertOff(runner, result, /Cannot put ".*it's a "dir"" into GOCACHEPROG/);
  },
});
