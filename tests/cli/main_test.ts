/** The entry point as users run it: spawned through the launcher with the release permissions. */
import assert from "node:assert/strict";
import { HANDSHAKE_LINE } from "../../src/protocol/mod.ts";
import { fallbackPath } from "../../src/cache/fallback.ts";
import { PLUGIN } from "../_util/go.ts";

async function run(
  args: string[],
  stdin = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(PLUGIN, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(stdin));
  await writer.close();
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("main: help prints the overview and topics, version its version", async () => {
  const help = await run(["help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /GOCACHEPROG=/);
  const env = await run(["help", "environment"]);
  for (
    const name of [
      "GOCACHE_DIR",
      "GOCACHE_S3_BUCKET",
      "GOCACHE_S3_REGION",
      "GOCACHE_S3_ENDPOINT_URL",
      "GOCACHE_S3_PATH_STYLE",
      "GOCACHE_KEY_PREFIX",
      "GOCACHE_MIN_SIZE",
      "GOCACHE_CONCURRENCY",
      "GOCACHE_S3_CONCURRENCY",
      "GOCACHE_METRICS",
      "GOCACHE_EXPIRY",
      "GOCACHE_VERBOSE",
      "GOCACHE_DEBUG",
      "GOCACHE_PLUGIN",
      "GOCACHE_HTTP",
      "GOCACHE_MODPROXY",
      "GOCACHE_SUMDB",
    ]
  ) {
    assert.ok(env.stdout.includes(name), name);
  }
  for (
    const topic of [
      "configure",
      "direct-mode",
      "serve-mode",
      "module-proxy",
      "reverse-proxy",
      "debug",
      "permissions",
    ]
  ) {
    assert.equal((await run(["help", topic])).code, 0, topic);
  }
  const version = await run(["version"]);
  assert.match(version.stdout, /^go-cache-plugin \d+\.\d+\.\d+/);
});

Deno.test("main: a bad flag is one usage line on stderr, exit 2, nothing but the handshake on stdout", async () => {
  for (
    const args of [
      ["--bogus"],
      ["-c", "x"],
      ["help", "nope"],
      ["--expiry=forever"],
      ["serve", "--plugin=5930", "--revproxy=example.com"], // --revproxy needs --http
    ]
  ) {
    const result = await run(args);
    assert.equal(result.code, 2, args.join(" "));
    // Direct mode writes the handshake before it even parses flags (go waits for it).
    assert.ok(result.stdout === "" || result.stdout === HANDSHAKE_LINE, result.stdout);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr, /usage: /);
  }
});

Deno.test("main: direct mode writes the handshake first and ends cleanly at EOF", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const get = '{"ID":1,"Command":"get","ActionID":"' + new Uint8Array(32).toBase64() + '"}\n\n';
    const result = await run([`--cache-dir=${dir}`], get);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, HANDSHAKE_LINE + '{"ID":1,"Miss":true}\n');
    assert.equal(result.stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main: a malformed frame ends the session with one stderr line and exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const result = await run([`--cache-dir=${dir}`], "this is not json\n");
    assert.equal(result.code, 1);
    assert.equal(result.stdout, HANDSHAKE_LINE);
    assert.equal(result.stderr.trim().split("\n").length, 1);
    assert.match(result.stderr, /is not JSON/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main: close is answered and the process exits promptly, with --metrics on stderr", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const result = await run([`--cache-dir=${dir}`, "--metrics"], '{"ID":1,"Command":"close"}\n\n');
    assert.equal(result.code, 0);
    assert.equal(result.stdout, HANDSHAKE_LINE + '{"ID":1}\n');
    assert.match(result.stderr, /metrics \{.*\}/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main: an unusable cache directory falls back to a temporary one, never failing go", async () => {
  const file = await Deno.makeTempFile();
  try {
    const get = '{"ID":1,"Command":"get","ActionID":"' + new Uint8Array(32).toBase64() + '"}\n\n';
    const result = await run([`--cache-dir=${file}/sub`], get);
    assert.equal(result.code, 0);
    assert.equal(result.stdout, HANDSHAKE_LINE + '{"ID":1,"Miss":true}\n');
    assert.match(result.stderr, /Cannot use cache directory/);
  } finally {
    await Deno.remove(file);
    await Deno.remove(fallbackPath(`${file}/sub`), { recursive: true }).catch(() => {});
  }
});

Deno.test("main: --expiry prunes entries unused within the period after close", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const old = new Date(Date.now() - 48 * 3_600_000);
    const outputId = "ab".repeat(32);
    await Deno.mkdir(`${dir}/output/ab`, { recursive: true });
    await Deno.mkdir(`${dir}/action/cd`, { recursive: true });
    await Deno.writeTextFile(`${dir}/output/ab/${outputId}`, "stale");
    await Deno.writeTextFile(`${dir}/action/cd/${"cd".repeat(32)}`, `${outputId} 5`);
    await Deno.utime(`${dir}/output/ab/${outputId}`, old, old);
    await Deno.utime(`${dir}/action/cd/${"cd".repeat(32)}`, old, old);
    const result = await run(
      [`--cache-dir=${dir}`, "--expiry=24h", "-v"],
      '{"ID":1,"Command":"close"}\n\n',
    );
    assert.equal(result.code, 0);
    assert.match(result.stderr, /pruned 1 actions and 1 outputs \(5 bytes\)/);
    await assert.rejects(Deno.stat(`${dir}/output/ab/${outputId}`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main: direct mode exits promptly when go stops reading its replies (killed build)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const child = new Deno.Command(PLUGIN, {
      args: [`--cache-dir=${dir}`],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.getReader();
    await reader.read(); // the handshake
    await reader.cancel(); // go is gone: every reply write now fails with a broken pipe
    const writer = child.stdin.getWriter();
    const get = (id: number) =>
      `{"ID":${id},"Command":"get","ActionID":"${new Uint8Array(32).fill(id).toBase64()}"}\n\n`;
    await writer.write(new TextEncoder().encode(get(1) + get(2) + get(3)));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await writer.write(new TextEncoder().encode('{"ID":4,"Command":"close"}\n\n')).catch(() => {});
    await writer.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 10_000)),
    ]);
    clearTimeout(timer);
    if (!exited) child.kill("SIGKILL");
    await child.status;
    assert.ok(exited, "the plugin spun instead of exiting after its output went away");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main: every command has help, as `help CMD` and as `CMD --help`", async () => {
  for (const command of ["serve", "connect", "stats", "clean", "direct", "help", "version"]) {
    const topic = await run(["help", command]);
    assert.equal(topic.code, 0, `help ${command}: ${topic.stderr}`);
    const usage = command === "direct" ? "go-cache-plugin [flags]" : `go-cache-plugin ${command}`;
    assert.ok(topic.stdout.startsWith(`Usage: ${usage}`), topic.stdout);
    if (command === "direct") continue;
    for (const flag of ["--help", "-h"]) {
      const args = command === "help" ? [flag] : [command, flag];
      const result = await run(args);
      assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
      assert.equal(result.stderr, "");
      if (command !== "help") assert.equal(result.stdout, topic.stdout, args.join(" "));
    }
  }
  // Flags given with --help are checked against their command, not against "help".
  const serve = await run(["serve", "--plugin=5930", "--modproxy", "--help"]);
  assert.equal(serve.code, 0, serve.stderr);
  assert.match(serve.stdout, /--print-env/);
  const stats = await run(["stats", "--help"]);
  assert.match(stats.stdout, /--reset/);
  assert.match(stats.stdout, /--format/);
});

Deno.test("main: --version prints the version, never the handshake", async () => {
  for (const args of [["--version"], ["-version"], ["serve", "--version"]]) {
    const result = await run(args);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^go-cache-plugin \d+\.\d+\.\d+ \(Deno [\d.]+\)\n$/);
  }
});

/** Runs the launcher with stdin, stdout and stderr on a pseudo-terminal (util-linux `script`). */
async function atTerminal(args: string[]): Promise<{ code: number; output: string }> {
  const line = [PLUGIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  const output = await new Deno.Command("script", {
    args: ["-qec", line, "/dev/null"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, output: decode(output.stdout) + decode(output.stderr) };
}

Deno.test({
  name: "main: at a terminal direct mode prints usage, not the handshake",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const bad = await atTerminal(["--bogus"]);
    assert.equal(bad.code, 2);
    assert.doesNotMatch(bad.output, /KnownCommands/);
    assert.match(bad.output, /usage: Unknown flag "--bogus"/);
    assert.match(bad.output, /Usage:\r?\n +go-cache-plugin \[flags\]/);
    const plain = await atTerminal([]);
    assert.equal(plain.code, 2);
    assert.doesNotMatch(plain.output, /KnownCommands/);
    assert.match(plain.output, /run by go as GOCACHEPROG/);
    const version = await atTerminal(["--version"]);
    assert.equal(version.code, 0);
    assert.match(version.output, /^go-cache-plugin \d+\.\d+\.\d+/);
  },
});

Deno.test("main: serve --print-env prints export lines a shell can eval", async () => {
  const result = await run([
    "serve",
    "--plugin=5930",
    "--http=:5970",
    "--modproxy",
    "--print-env",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  const lines = result.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 3, result.stdout);
  for (const line of lines) assert.match(line, /^export GO[A-Z]+=/);
  const shell = await new Deno.Command("bash", {
    args: [
      "-c",
      `eval "$1"; printf '%s\\n' "$GOCACHEPROG" "$GOPROXY" "$GOSUMDB"`,
      "-",
      result.stdout,
    ],
    stdout: "piped",
  }).output();
  assert.deepEqual(new TextDecoder().decode(shell.stdout).trimEnd().split("\n"), [
    `${PLUGIN} connect 5930`,
    "http://127.0.0.1:5970/mod",
    "sum.golang.org http://127.0.0.1:5970/mod/sumdb/sum.golang.org",
  ]);
});

Deno.test("main: serve and clean default to $GOCACHE/go-cache-plugin, as go env tells it", async () => {
  const home = await Deno.makeTempDir({ prefix: "gcp-home-" });
  try {
    const output = await new Deno.Command(PLUGIN, {
      args: ["clean", "-v"],
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: home,
        XDG_CACHE_HOME: `${home}/xdg`,
        DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    // go's own default GOCACHE here is $XDG_CACHE_HOME/go-build: direct mode, run by go, uses
    // the same parent.
    assert.match(stderr, new RegExp(`${home}/xdg/go-build/go-cache-plugin`));
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
