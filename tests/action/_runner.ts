/**
 * A simulated GitHub Actions runner for tests of the action's scripts (scripts/action/): temporary
 * `GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_PATH` and `GITHUB_STEP_SUMMARY` files, `RUNNER_*` facts,
 * and a local directory standing in for the release download (tests/action/standin.sh: a wrapper
 * named like the release asset that execs scripts/go-cache-plugin, and its `SHA256SUMS`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { PLUGIN, ROOT } from "../_util/go.ts";
import { DENO_DIR } from "../_util/serve.ts";

/** The version the stand-in is named for. */
export const VERSION = "v0.0.0-test";
/** The stand-in's name: the Linux x64 asset of {@linkcode VERSION}. */
export const ASSET: string = `go-cache-plugin-${VERSION}-x86_64-unknown-linux-gnu`;

/** A simulated GitHub Actions runner: its directories, files and the scripts' environment. */
export interface Runner {
  root: string;
  assets: string;
  files: { env: string; output: string; path: string; summary: string };
  env: Record<string, string>;
}

/**
 * Makes a simulated runner under `root`: empty GitHub command files, `RUNNER_TEMP`,
 * `RUNNER_TOOL_CACHE`, and the release stand-in (tests/action/standin.sh) for Linux x64.
 *
 * @param root An empty directory.
 * @param env Variables to add or override (inputs, `RUNNER_*`).
 * @returns The runner; its `env` is the whole environment of a script run.
 */
export async function simulatedRunner(
  root: string,
  env: Record<string, string> = {},
): Promise<Runner> {
  const files = {
    env: `${root}/github_env`,
    output: `${root}/github_output`,
    path: `${root}/github_path`,
    summary: `${root}/step_summary`,
  };
  for (const file of Object.values(files)) await Deno.writeTextFile(file, "");
  await Deno.mkdir(`${root}/temp`);
  await Deno.mkdir(`${root}/tool-cache`);
  const assets = `${root}/assets`;
  const standin = await new Deno.Command("bash", {
    args: [`${ROOT}/tests/action/standin.sh`, assets, VERSION],
    env: { RUNNER_OS: "Linux", RUNNER_ARCH: "X64" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(standin.code, 0, new TextDecoder().decode(standin.stderr));
  return {
    root,
    assets,
    files,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      DENO_DIR, // the stand-in runs main.ts through Deno: keep its module cache
      GITHUB_ENV: files.env,
      GITHUB_OUTPUT: files.output,
      GITHUB_PATH: files.path,
      GITHUB_STEP_SUMMARY: files.summary,
      GITHUB_EVENT_NAME: "push",
      GITHUB_REPOSITORY: "example/go-cache-plugin",
      GITHUB_ACTION_PATH: ROOT,
      RUNNER_OS: "Linux",
      RUNNER_ARCH: "X64",
      RUNNER_TEMP: `${root}/temp`,
      RUNNER_TOOL_CACHE: `${root}/tool-cache`,
      INPUT_VERSION: VERSION,
      INPUT_MODULE_PROXY: "true",
      GCP_ACTION_DOWNLOAD_BASE: `file://${assets}`,
      GOPROXY: "off", // the module proxy's upstream: no network in tests
      ...env,
    },
  };
}

/** What a script did. */
export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs scripts/action/<name>.sh as a composite step would: bash, with exactly `env`. */
export async function runScript(name: string, env: Record<string, string>): Promise<ScriptResult> {
  const output = await new Deno.Command("bash", {
    args: [`${ROOT}/scripts/action/${name}.sh`],
    cwd: env.RUNNER_TEMP,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(180_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Parses a `GITHUB_ENV`/`GITHUB_OUTPUT` file (`NAME=value` and `NAME<<DELIM` blocks); last wins. */
export async function readCommandFile(path: string): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  const lines = (await Deno.readTextFile(path)).split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heredoc = line.match(/^([^=<]+)<<(.+)$/);
    if (heredoc) {
      const end = lines.indexOf(heredoc[2]!, i + 1);
      if (end < 0) throw new Error(`${path}: ${heredoc[1]}<<${heredoc[2]} is never closed`);
      values[heredoc[1]!] = lines.slice(i + 1, end).join("\n");
      i = end;
    } else if (line.includes("=")) {
      values[line.slice(0, line.indexOf("="))] = line.slice(line.indexOf("=") + 1);
    }
  }
  return values;
}

/** The `::<level> ...` workflow commands a script printed. */
export function annotations(stdout: string, level: string): string[] {
  return stdout.split("\n").filter((line) => line.startsWith(`::${level} `));
}

/** A script's status and output, for assertion messages. */
export function describe(result: ScriptResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

/** The server's counters; a name never counted reads 0. */
export async function counters(http: string): Promise<(name: string) => number> {
  const values: Record<string, number> = (await (await fetch(`http://${http}/debug/vars`)).json())
    .counters;
  const read = (name: string) => values[name] ?? 0;
  read.toString = () => JSON.stringify(values);
  return read;
}

/**
 * Whether a process runs: it exists and is not a zombie (an orphan waits for init to reap it, so
 * `kill -0` alone would still see it).
 */
export async function alive(pid: string): Promise<boolean> {
  const out = await new Deno.Command("ps", {
    args: ["-o", "stat=", "-p", pid],
    stdout: "piped",
    stderr: "null",
  }).output();
  const state = new TextDecoder().decode(out.stdout).trim();
  return out.success && state !== "" && !state.includes("Z");
}

/** The pid in the state file setup.sh wrote, if any. */
export async function serverPid(runner: Runner): Promise<string | undefined> {
  try {
    const state = await Deno.readTextFile(
      `${runner.env.RUNNER_TEMP}/go-cache-plugin-action/state`,
    );
    return state.match(/^pid=(\d+)$/m)?.[1];
  } catch {
    return undefined;
  }
}

/** Kills a server a failed test left running. */
export async function killServer(pid: string | undefined): Promise<void> {
  if (pid && await alive(pid)) {
    await new Deno.Command("kill", { args: ["-KILL", pid], stderr: "null" }).output();
  }
}

/** Whether the plugin under test knows the trust-tier flags (another issue adds them). */
export async function pluginHasReadOnly(): Promise<boolean> {
  const out = await new Deno.Command(PLUGIN, {
    args: ["help", "environment"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).includes("GOCACHE_READ_ONLY");
}

/**
 * The words go makes of a GOCACHEPROG value: Go's `cmd/internal/quoted.Split` (split at spaces,
 * tabs and line breaks; a word that starts with `'` or `"` runs to the next such quote, with no
 * escapes; quotes inside a word are ordinary characters).
 *
 * @throws {Error} On an unterminated quote, as go does.
 */
export function goSplit(value: string): string[] {
  const words: string[] = [];
  let s = value;
  const space = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r";
  while (s.length > 0) {
    while (s.length > 0 && space(s[0])) s = s.slice(1);
    if (s.length === 0) break;
    if (s[0] === '"' || s[0] === "'") {
      const end = s.indexOf(s[0], 1);
      if (end < 0) throw new Error(`unterminated ${s[0]} string`);
      words.push(s.slice(1, end));
      s = s.slice(end + 1);
      continue;
    }
    let i = 0;
    while (i < s.length && !space(s[i])) i++;
    words.push(s.slice(0, i));
    s = s.slice(i);
  }
  return words;
}

/** Markdown text with its backslash escapes undone: what a reader of the rendered text sees. */
export function markdownUnescape(text: string): string {
  return text.replace(/\\([!-/:-@[-`{-~])/g, "$1");
}

/** The names `action.yml` declares under `outputs:`. */
export async function declaredOutputs(): Promise<string[]> {
  const yml = await Deno.readTextFile(`${ROOT}/action.yml`);
  const block = yml.slice(yml.indexOf("\noutputs:\n"), yml.indexOf("\nruns:\n"));
  return [...block.matchAll(/^ {2}([\w-]+):$/gm)].map((m) => m[1]!);
}

/** Empties the runner's GitHub command files, for the next script run. */
export async function resetFiles(runner: Runner): Promise<void> {
  for (const file of Object.values(runner.files)) await Deno.writeTextFile(file, "");
}

/**
 * The Node that runs the JavaScript entry points: `NODE_BIN`, else `node` on PATH as an absolute
 * path (a test may give the action a PATH without it), else `node`.
 */
export const NODE: string = Deno.env.get("NODE_BIN") ?? await findOnPath("node") ?? "node";

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir && (await Deno.stat(`${dir}/${name}`)).isFile) return `${dir}/${name}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** A stand-in for `${{ github.token }}`, the default of the action's `token` input. */
export const TOKEN = "ghs_simulatedTokenForTests";

/** The inputs `action.yml` declares, with their defaults (`${{ github.token }}` as {@linkcode TOKEN}). */
export async function declaredInputs(): Promise<Record<string, string>> {
  const yml = await Deno.readTextFile(`${ROOT}/action.yml`);
  const block = yml.slice(yml.indexOf("\ninputs:\n"), yml.indexOf("\noutputs:\n"));
  const inputs: Record<string, string> = {};
  for (const part of block.split(/^ {2}(?=[\w-]+:$)/m).slice(1)) {
    const name = part.slice(0, part.indexOf(":"));
    const value = part.match(/^ {4}default: (.*)$/m)?.[1] ?? "";
    inputs[name] = value === "${{ github.token }}" ? TOKEN : value.replace(/^"(.*)"$/, "$1");
  }
  return inputs;
}

/**
 * The environment GitHub's runner gives a JavaScript action's process: every declared input as
 * `INPUT_<NAME>` (upper case, `-` kept: `INPUT_CACHE-DIR`), its value taken from `env` where the
 * test gives it as the scripts read it (`INPUT_CACHE_DIR`), else its default; the rest of `env`
 * as it is, without `GITHUB_ACTION_PATH` (set for composite actions only).
 */
export async function actionEnv(env: Record<string, string>): Promise<Record<string, string>> {
  const out: Record<string, string> = { ...env };
  delete out.GITHUB_ACTION_PATH;
  for (const [name, fallback] of Object.entries(await declaredInputs())) {
    const read = `INPUT_${name.toUpperCase().replaceAll("-", "_")}`;
    const given = `INPUT_${name.toUpperCase()}`;
    const value = env[given] ?? env[read] ?? fallback;
    delete out[read];
    out[given] = value;
  }
  return out;
}

/**
 * Runs the JavaScript action's entry point scripts/action/<name>.mjs with Node as the runner
 * would (`node <file>`, the environment of {@linkcode actionEnv}).
 */
export async function runEntry(
  name: "main" | "post",
  env: Record<string, string>,
): Promise<ScriptResult> {
  const output = await new Deno.Command(NODE, {
    args: [`${ROOT}/scripts/action/${name}.mjs`],
    cwd: env.RUNNER_TEMP,
    env: await actionEnv(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(180_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The environment of a live process as NAME=value entries (Linux: /proc); undefined elsewhere. */
export async function processEnv(pid: string): Promise<string[] | undefined> {
  if (Deno.build.os !== "linux") return undefined;
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/environ`], stdout: "piped" })
    .output();
  assert.ok(out.success, `cannot read /proc/${pid}/environ`);
  return new TextDecoder().decode(out.stdout).split("\0");
}
