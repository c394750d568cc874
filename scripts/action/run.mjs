// deno-lint-ignore-file explicit-module-boundary-types -- plain JavaScript run by Node: the types
// are in JSDoc.
// Shared by the JavaScript action's entry points (main.mjs, post.mjs; action.yml `runs:`): runs one
// of this directory's bash scripts (setup.sh, stop.sh) as the composite action did, with the
// action's inputs in the environment, and never fails the job. No dependencies: Node's built-ins
// only, no npm install and no bundler.
import { spawn } from "node:child_process";
import { appendFileSync, existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The action's inputs (action.yml), as the scripts name them: INPUT_<NAME> with `-` as `_`. */
const INPUTS = [
  "bucket",
  "region",
  "endpoint",
  "path-style",
  "gcs-key-file",
  "prefix",
  "read-prefixes",
  "read-only",
  "warm-key",
  "module-proxy",
  "version",
  "cache-dir",
  "sha256",
  "verify-attestation",
  "token",
];

/** How long a script may run before it is ended (with a warning): bounds no step should reach. */
const LIMIT_MS = { setup: 20 * 60_000, stop: 10 * 60_000 };

/**
 * The scripts' environment: the runner's, with each input also under the name bash can read
 * (the runner passes `path-style` as `INPUT_PATH-STYLE`; the scripts read `INPUT_PATH_STYLE`), and
 * the action's own repository and ref as setup.sh reads them.
 *
 * @param {NodeJS.ProcessEnv} env The runner's environment.
 * @returns {Record<string, string>}
 */
export function scriptEnv(env) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) out[name] = value;
  for (const input of INPUTS) {
    const given = `INPUT_${input.replace(/ /g, "_").toUpperCase()}`;
    const read = `INPUT_${input.toUpperCase().replace(/-/g, "_")}`;
    if (given in out && given !== read) {
      out[read] = out[given];
      delete out[given];
    }
  }
  out.GCP_ACTION_REPOSITORY ??= env.GITHUB_ACTION_REPOSITORY ?? "";
  out.GCP_ACTION_REF ??= env.GITHUB_ACTION_REF ?? "";
  return out;
}

/** bash: Git for Windows' on Windows (as GitHub's `shell: bash` there), else the one on PATH. */
function bash() {
  if (process.platform === "win32") {
    for (const base of [process.env.ProgramFiles, "C:\\Program Files"]) {
      const path = base && join(base, "Git", "bin", "bash.exe");
      if (path && existsSync(path)) return path;
    }
  }
  return "bash";
}

/**
 * Prints one `::warning::` workflow command, its message escaped as GitHub requires.
 *
 * @param {unknown} message
 */
export function warn(message) {
  const text = String(message).replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
  process.stdout.write(`::warning title=go-cache-plugin::${text}\n`);
}

/**
 * Appends NAME=VALUE to $GITHUB_OUTPUT in GitHub's NAME<<DELIMITER form (a fresh random
 * delimiter); ignores failures.
 *
 * @param {string} name
 * @param {string} value
 */
export function setOutput(name, value) {
  const file = process.env.GITHUB_OUTPUT;
  if (!file) return;
  const delimiter = `ghadelimiter_${randomBytes(16).toString("hex")}`;
  try {
    appendFileSync(file, `${name}<<${delimiter}\n${value}\n${delimiter}\n`);
  } catch {
    // Nothing else to tell: the warning already says the cache is off.
  }
}

/**
 * Runs scripts/action/<name>.sh with bash, its output on this step's, and resolves to a problem
 * to report (undefined when it ran and exited 0). Never rejects.
 *
 * @param {"setup" | "stop"} name
 * @returns {Promise<string | undefined>}
 */
export function runScript(name) {
  const script = join(here, `${name}.sh`).replace(/\\/g, "/");
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(bash(), ["--noprofile", "--norc", script], {
        env: scriptEnv(process.env),
        stdio: ["ignore", "inherit", "inherit"],
      });
    } catch (error) {
      resolve(`Cannot run bash: ${error?.message ?? error}`);
      return;
    }
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(`${name}.sh did not finish within ${LIMIT_MS[name] / 60_000} minutes and was ended`);
    }, LIMIT_MS[name]);
    child.on("error", (error) => {
      clearTimeout(timer);
      resolve(`Cannot run bash: ${error?.message ?? error}`);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(
        code === 0
          ? undefined
          : `${name}.sh ended with ${signal ? `signal ${signal}` : `status ${code}`}`,
      );
    });
  });
}
