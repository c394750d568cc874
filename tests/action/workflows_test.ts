/**
 * The GitHub workflow files (.github/workflows/*.yml) pass actionlint, which also parses the
 * local actions they use (action.yml, stop/action.yml) and checks the inputs given to them; the
 * action's bash scripts parse.
 *
 * actionlint comes from scripts/install_test_servers.sh (`$GCP_TOOLS_DIR/bin/actionlint`);
 * `ACTIONLINT_BIN` overrides the path. It runs shellcheck on `run:` scripts when that is on PATH.
 */
import assert from "node:assert/strict";
import { IN_CI, ROOT } from "../_util/go.ts";
import { toolsBin } from "../_util/minio.ts";

const ACTIONLINT = Deno.env.get("ACTIONLINT_BIN") ?? toolsBin("actionlint");

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function workflowFiles(): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(`${ROOT}/.github/workflows`)) {
    if (entry.isFile && /\.ya?ml$/.test(entry.name)) files.push(`.github/workflows/${entry.name}`);
  }
  return files.sort();
}

const actionlintReady = IN_CI || await exists(ACTIONLINT);
if (!actionlintReady) {
  // deno-lint-ignore no-console
  console.error(
    `skipping: ${ACTIONLINT} is missing (scripts/install_test_servers.sh; CI would fail)`,
  );
}

Deno.test({
  name: "actionlint passes .github/workflows/*.yml and the local actions they use",
  ignore: !actionlintReady,
  async fn() {
    const files = await workflowFiles();
    assert.ok(files.includes(".github/workflows/ci.yml"), files.join(" "));
    assert.ok(files.includes(".github/workflows/release.yml"), files.join(" "));
    const ci = await Deno.readTextFile(`${ROOT}/.github/workflows/ci.yml`);
    // actionlint reads action.yml and stop/action.yml only through a workflow that uses them.
    assert.match(ci, /uses: \.\/\s*$/m, "ci.yml runs the action from the checkout");
    assert.match(ci, /uses: \.\/stop\s*$/m, "ci.yml runs the stop action from the checkout");
    const out = await new Deno.Command(ACTIONLINT, {
      args: ["-no-color", ...files],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
  },
});

Deno.test("workflows pin every action they use to a version tag", async () => {
  for (const file of [...await workflowFiles(), "action.yml", "stop/action.yml"]) {
    const text = await Deno.readTextFile(`${ROOT}/${file}`);
    for (const [, ref] of text.matchAll(/^\s*(?:-\s+)?uses:\s*(\S+)/gm)) {
      if (ref!.startsWith("./")) continue;
      assert.match(ref!, /^[\w.-]+\/[\w./-]+@v\d+(\.\d+)*$/, `${file}: ${ref}`);
    }
  }
});

Deno.test("scripts/action/*.sh and tests/action/standin.sh parse (bash -n)", async () => {
  const scripts = [`${ROOT}/tests/action/standin.sh`];
  for await (const entry of Deno.readDir(`${ROOT}/scripts/action`)) {
    if (entry.name.endsWith(".sh")) scripts.push(`${ROOT}/scripts/action/${entry.name}`);
  }
  assert.ok(scripts.length >= 4, scripts.join(" "));
  for (const script of scripts) {
    const out = await new Deno.Command("bash", { args: ["-n", script], stderr: "piped" }).output();
    assert.equal(out.code, 0, `${script}: ${new TextDecoder().decode(out.stderr)}`);
  }
});

Deno.test("action.yml is a node24 JavaScript action with a post step, its entry points dependency-free", async () => {
  const yml = await Deno.readTextFile(`${ROOT}/action.yml`);
  const runs = yml.slice(yml.indexOf("\nruns:\n"));
  assert.match(runs, /^ {2}using: node24$/m, "GitHub's supported Node runtime (node20 is retired)");
  assert.match(runs, /^ {2}post-if: always\(\)$/m);
  const entries = [...runs.matchAll(/^ {2}(main|post): (\S+)$/gm)].map((m) => m[2]!);
  assert.deepEqual(entries, ["scripts/action/main.mjs", "scripts/action/post.mjs"]);
  // Every module they load: Node's built-ins or a file next to them, nothing to install.
  const seen = new Set<string>();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = await Deno.readTextFile(`${ROOT}/${file}`);
    for (const [, specifier] of text.matchAll(/\bfrom\s+"([^"]+)"|\bimport\(\s*"([^"]+)"/g)) {
      if (specifier!.startsWith("node:")) continue;
      assert.match(specifier!, /^\.\/[\w-]+\.mjs$/, `${file} imports ${specifier}`);
      queue.push(`scripts/action/${specifier!.slice(2)}`);
    }
  }
  assert.ok(seen.has("scripts/action/run.mjs"), [...seen].join(" "));
});

Deno.test("release.yml attests build provenance and publishes through release.sh, never clobbering", async () => {
  const yml = await Deno.readTextFile(`${ROOT}/.github/workflows/release.yml`);
  const job = yml.slice(yml.indexOf("\n  release:\n"));
  for (const permission of ["contents: write", "id-token: write", "attestations: write"]) {
    assert.match(job, new RegExp(`^ {6}${permission}\\b`, "m"), permission);
  }
  assert.match(
    job,
    /uses: actions\/attest-build-provenance@v\d+\n\s+with:\n\s+subject-path: \|\n\s+dist\/go-cache-plugin-\*\n\s+dist\/SHA256SUMS\n/,
  );
  const build = job.indexOf('scripts/release.sh "$GITHUB_REF_NAME"');
  const attest = job.indexOf("actions/attest-build-provenance");
  const publish = job.indexOf('scripts/release.sh --publish "$GITHUB_REF_NAME"');
  assert.ok(build > 0 && build < attest && attest < publish, "build, attest, then publish");
  for (const file of [".github/workflows/release.yml", "scripts/release.sh"]) {
    assert.doesNotMatch(await Deno.readTextFile(`${ROOT}/${file}`), /--clobber/, file);
  }
});
