/**
 * The release permissions are written in three places (the deno run launcher, the compile task,
 * the `permissions` help topic) and read by a fourth (scripts/release.sh); they must agree.
 */
import assert from "node:assert/strict";
import { helpText } from "../../src/cli/help.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Permission flags among whitespace-separated words, sorted; duplicates kept to be caught. */
function permissionFlags(text: string): string[] {
  return text.split(/\s+/).filter((word) => /^(--allow-|--deny-|-A$)/.test(word)).sort();
}

/** The runtime's V8 flags among whitespace-separated words. */
function v8Flags(text: string): string[] {
  return text.split(/\s+/).filter((word) => word.startsWith("--v8-flags="));
}

async function launcherCommand(): Promise<string> {
  const script = await Deno.readTextFile(`${ROOT}/scripts/go-cache-plugin`);
  const exec = script.slice(script.indexOf("\nexec "));
  return exec.replace(/\\\n/g, " ").split("\n")[1]!;
}

async function launcherFlags(): Promise<string[]> {
  return permissionFlags(await launcherCommand());
}

async function compileTaskFlags(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const command: string = config.tasks.compile.command;
  assert.match(command, /^deno compile /);
  return permissionFlags(command);
}

Deno.test("permission flags: launcher, compile task and help topic are the same set", async () => {
  const compile = await compileTaskFlags();
  const launcher = await launcherFlags();
  const help = permissionFlags(helpText("permissions"));
  assert.ok(compile.length >= 5, `compile task flags: ${compile}`);
  assert.equal(new Set(compile).size, compile.length, "no duplicate flags");
  assert.deepEqual(launcher, compile, "scripts/go-cache-plugin vs deno.json compile task");
  assert.deepEqual(help, compile, "help permissions vs deno.json compile task");
  for (const flags of [compile, launcher, help]) {
    assert.ok(!flags.includes("-A") && !flags.includes("--allow-all"), "never all permissions");
  }
  // The release binary runs with the V8 settings the launcher was measured with.
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  assert.deepEqual(v8Flags(await launcherCommand()), v8Flags(config.tasks.compile.command));
  assert.deepEqual(v8Flags(await launcherCommand()), ["--v8-flags=--max-semi-space-size=1"]);
});

Deno.test("permission flags: scripts/release.sh compiles every target with the task's flags", async () => {
  const output = await new Deno.Command("bash", {
    args: [`${ROOT}/scripts/release.sh`, "--dry-run", "v0.0.0-test"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const compiles = stdout.split("\n").filter((line) => / compile /.test(line));
  const targets = compiles.map((line) => /--target (\S+)/.exec(line)?.[1]).sort();
  assert.deepEqual(targets, [
    "aarch64-apple-darwin",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "x86_64-pc-windows-msvc",
    "x86_64-unknown-linux-gnu",
  ]);
  const compile = await compileTaskFlags();
  for (const line of compiles) {
    assert.deepEqual(permissionFlags(line), compile, line);
    assert.deepEqual(v8Flags(line), ["--v8-flags=--max-semi-space-size=1"], line);
    assert.match(line, / --frozen /);
    assert.match(line, / main\.ts$/);
  }
  const release = await Deno.readTextFile(`${ROOT}/scripts/release.sh`);
  assert.doesNotMatch(
    release,
    /--allow-(read|write|net|env|run|sys)/,
    "release.sh reads the flags, it does not copy them",
  );
});
