import assert from "node:assert/strict";
import {
  type Config,
  parseConfig,
  parseGoDuration,
  parseSize,
  UsageError,
} from "../../src/cli/config.ts";
import { NOT_DIRECT, SUBCOMMANDS } from "../../src/cli/commands.ts";
import { defaultOf, FLAGS, type FlagSpec, showDefault } from "../../src/cli/flags.ts";
import { helpText } from "../../src/cli/help.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const base = { GOCACHE: "/home/u/.cache/go-build" };

Deno.test("parseConfig() defaults the cache dir under the GOCACHE go passes in", () => {
  const config = parseConfig([], env(base));
  assert.equal(config.command, "direct");
  assert.equal(config.cacheDir, "/home/u/.cache/go-build/go-cache-plugin");
  assert.equal(config.bucket, "");
  assert.equal(config.concurrency, navigator.hardwareConcurrency);
  assert.ok(Object.isFrozen(config));
});

Deno.test("parseConfig() takes a flag over its environment twin over the default", () => {
  const vars = {
    ...base,
    GOCACHE_DIR: "/env/dir",
    GOCACHE_S3_BUCKET: "b",
    GOCACHE_CONCURRENCY: "3",
    GOCACHE_METRICS: "true",
  };
  const fromEnv = parseConfig([], env(vars));
  assert.deepEqual([fromEnv.cacheDir, fromEnv.bucket, fromEnv.concurrency, fromEnv.metrics], [
    "/env/dir",
    "b",
    3,
    true,
  ]);
  const fromFlags = parseConfig([
    "--cache-dir=/flag/dir",
    "-c",
    "5",
    "--metrics=false",
    "-bucket",
    "x",
  ], env(vars));
  assert.deepEqual(
    [fromFlags.cacheDir, fromFlags.bucket, fromFlags.concurrency, fromFlags.metrics],
    ["/flag/dir", "x", 5, false],
  );
});

Deno.test("parseConfig() reads every tailscale flag and its variable", () => {
  const config = parseConfig([
    "--region=eu-west-1",
    "--s3-endpoint-url=http://127.0.0.1:9000",
    "--s3-path-style",
    "--prefix=/ci/",
    "--min-upload-size=100",
    "-u",
    "7",
    "--expiry=72h",
    "-v",
    "--debug=5",
  ], env(base));
  assert.equal(config.region, "eu-west-1");
  assert.equal(config.endpoint, "http://127.0.0.1:9000");
  assert.equal(config.pathStyle, true);
  assert.equal(config.prefix, "ci");
  assert.equal(config.minUploadSize, 100);
  assert.equal(config.s3Concurrency, 7);
  assert.equal(config.expiryMs, 72 * 3_600_000);
  assert.equal(config.verbose, true);
  assert.equal(config.debug, 5);
  const fromAws = parseConfig(
    [],
    env({ ...base, AWS_REGION: "us-east-2", AWS_ENDPOINT_URL: "http://e" }),
  );
  assert.deepEqual([fromAws.region, fromAws.endpoint], ["us-east-2", "http://e"]);
});

Deno.test("parseConfig() parses serve and connect", () => {
  const serve = parseConfig([
    "serve",
    "--plugin=5930",
    "--http=:5970",
    "--modproxy",
    "--sumdb=a.example,b.example",
  ], env(base));
  assert.equal(serve.command, "serve");
  assert.deepEqual(serve.serve, {
    printEnv: false,
    plugin: "5930",
    http: ":5970",
    modproxy: true,
    sumdb: ["a.example", "b.example"],
    upstream: "",
    revproxy: [],
    revproxyAllow: [],
  });
  assert.equal(
    parseConfig(["serve"], env({ ...base, GOCACHE_PLUGIN: "/run/gcp.sock" })).serve.plugin,
    "/run/gcp.sock",
  );
  const connect = parseConfig(["connect", "5930"], env(base));
  assert.deepEqual([connect.command, connect.connectTarget], ["connect", "5930"]);
});

Deno.test("parseConfig() takes --revproxy and GOCACHE_REVPROXY, and needs --http for them", () => {
  const serve = parseConfig(
    ["serve", "--plugin=5930", "--http=:5970", "--revproxy=a.example,b.example:8443"],
    env(base),
  );
  assert.deepEqual(serve.serve.revproxy, ["a.example", "b.example:8443"]);
  const fromEnv = parseConfig(
    ["serve"],
    env({
      ...base,
      GOCACHE_PLUGIN: "5930",
      GOCACHE_HTTP: ":5970",
      GOCACHE_REVPROXY: "c.example",
      GOCACHE_REVPROXY_ALLOW: "10.0.0.0/8",
    }),
  );
  assert.deepEqual(fromEnv.serve.revproxy, ["c.example"]);
  assert.deepEqual(fromEnv.serve.revproxyAllow, ["10.0.0.0/8"]);
  assert.throws(
    () => parseConfig(["serve", "--plugin=5930", "--revproxy=a.example"], env(base)),
    (error: unknown) =>
      error instanceof UsageError && /--revproxy needs --http/.test(error.message),
  );
  assert.throws(
    () => parseConfig(["serve", "--plugin=5930", "--http=:1", "--revproxy=a b"], env(base)),
    (error: unknown) => error instanceof UsageError && /Invalid host "a b"/.test(error.message),
  );
});

Deno.test("parseConfig() rejects bad flags and values with one-line UsageErrors", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--nope"], /Unknown flag "--nope"/],
    [["-c", "zero"], /Invalid value "zero" for -c/],
    [["-c", "0"], /want an integer >= 1/],
    [["--expiry=3 days"], /Go duration/],
    [["--metrics=maybe"], /want true or false/],
    [["--cache-dir=relative"], /absolute path/],
    [["serve"], /needs --plugin/],
    [["serve", "--plugin=70000"], /out of range/],
    [["serve", "--plugin=5930", "--modproxy"], /needs --http/],
    [["--plugin=5930"], /only for the serve command/],
    [["connect"], /exactly one argument/],
    [["connect", "nonsense"], /neither a port nor a socket path/],
    [["frobnicate"], /Unknown command "frobnicate"/],
    [["--cache-dir"], /Flag --cache-dir needs a value/],
    [["serve", "--plugin=5930", "--http=notanaddr"], /not \[host\]:port/],
    [["serve", "--plugin=5930", "--http=127.0.0.1:99999"], /out of range/],
    [["--bucket=b", "--s3-endpoint-url=ftp://x"], /must start with http:\/\/ or https:\/\//],
    [["--bucket=b", "--s3-endpoint-url=not a url"], /is not a URL/],
    [["--reply-timeout=5s"], /only for the connect command/],
    [["connect", "5930", "--reply-timeout=soon"], /Go duration/],
  ];
  for (const [args, pattern] of cases) {
    await t.step(args.join(" "), () => {
      assert.throws(() => parseConfig(args, env(base)), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, pattern);
        assert.ok(!error.message.includes("\n"));
        return true;
      });
    });
  }
});

Deno.test("parseConfig() accepts the --http spellings and reads connect's reply deadline", () => {
  for (const http of [":5970", "127.0.0.1:5970", "[::1]:5970", "0.0.0.0:0", "localhost:80"]) {
    assert.equal(
      parseConfig(["serve", "--plugin=1", `--http=${http}`], env(base)).serve.http,
      http,
    );
  }
  assert.equal(parseConfig(["connect", "5930"], env(base)).replyTimeoutMs, 60_000);
  assert.equal(
    parseConfig(["connect", "5930", "--reply-timeout=2s"], env(base)).replyTimeoutMs,
    2000,
  );
  const fromEnv = parseConfig(["connect", "5930"], env({ ...base, GOCACHE_REPLY_TIMEOUT: "0" }));
  assert.equal(fromEnv.replyTimeoutMs, 0);
  assert.throws(
    () => parseConfig(["--bucket=b"], env({ ...base, AWS_ENDPOINT_URL: "s3.example.com" })),
    /is not a URL|must start with/,
  );
});

Deno.test("parseGoDuration() follows Go's syntax", () => {
  assert.equal(parseGoDuration("300ms"), 300);
  assert.equal(parseGoDuration("1.5h"), 5_400_000);
  assert.equal(parseGoDuration("2h45m"), 9_900_000);
  assert.equal(parseGoDuration("0"), 0);
  assert.throws(() => parseGoDuration("10"), SyntaxError);
  assert.throws(() => parseGoDuration("1d"), SyntaxError);
});

/** The Config field a flag fills. */
function fieldOf(config: Config, spec: FlagSpec): unknown {
  const [head, tail] = spec.field.split(".") as [string, string | undefined];
  const record = (tail ? config.serve : config) as unknown as Record<string, unknown>;
  return record[tail ?? head];
}

/** Arguments that make a flag's (first) command valid: serve needs a plugin, connect a target. */
function commandFor(spec: FlagSpec): string[] {
  const command = spec.scope?.[0];
  if (command === "serve") return spec.flag === "plugin" ? ["serve"] : ["serve", "--plugin=1"];
  if (command === "connect") return ["connect", "1"];
  return command ? [command] : [];
}

Deno.test("helpText() lists every FLAGS entry with its variable, kind, default and scope", () => {
  const rows = helpText("environment").split("\n");
  for (const spec of FLAGS) {
    const flag = (spec.flag.length === 1 ? "-" : "--") + spec.flag;
    const row = rows.find((line) => line.trimStart().startsWith(`${flag} `));
    assert.ok(row, flag);
    const cells = row.trim().split(/\s{2,}/);
    assert.deepEqual(
      cells,
      [flag, spec.env, spec.kind, spec.shown, ...spec.scope ? [`(${spec.scope})`] : []],
      flag,
    );
    assert.equal(rows[rows.indexOf(row) + 1]!.trim(), spec.help, flag);
  }
  assert.equal(new Set(FLAGS.map((spec) => spec.flag)).size, FLAGS.length, "no flag twice");
  assert.equal(new Set(FLAGS.map((spec) => spec.env)).size, FLAGS.length, "no variable twice");
});

Deno.test("parseConfig() defaults are the flag table's defaults, as help shows them", async (t) => {
  const vars = { ...base, AWS_REGION: "us-east-2", AWS_ENDPOINT_URL: "http://e" };
  const context = { env: env(vars), cpus: navigator.hardwareConcurrency || 4 };
  // Defaults help describes in words, each checked against what parseConfig does.
  const described: Record<string, unknown> = {
    "cache-dir": "$GOCACHE/go-cache-plugin".replace("$GOCACHE", base.GOCACHE),
    bucket: "",
    region: "us-east-2",
    "s3-endpoint-url": "http://e",
    c: navigator.hardwareConcurrency,
    u: navigator.hardwareConcurrency,
    expiry: 0,
    plugin: "5930",
    upstream: "",
    storage: "",
    "gcs-key-file": "",
    "gcs-endpoint-url": "",
  };
  for (const spec of FLAGS) {
    await t.step(spec.flag, () => {
      const args = commandFor(spec);
      const plugin: Record<string, string> = spec.flag === "plugin"
        ? { GOCACHE_PLUGIN: "5930" }
        : {};
      const config = parseConfig(args, env({ ...vars, ...plugin }));
      if (spec.flag in described) {
        assert.deepEqual(fieldOf(config, spec), described[spec.flag]);
        if (spec.flag !== "cache-dir" && spec.flag !== "plugin") {
          assert.deepEqual(fieldOf(config, spec), defaultOf(spec, context));
        }
        return;
      }
      // A plain default: help shows it derived from the value, and reading it back is the default.
      assert.notEqual(typeof spec.default, "function", "a computed default is described above");
      assert.equal(spec.shown, showDefault(spec.kind, defaultOf(spec, context)));
      assert.deepEqual(fieldOf(config, spec), defaultOf(spec, context));
      const literal = spec.shown === '""' ? "" : spec.shown;
      const explicit = parseConfig([...args, `--${spec.flag}=${literal}`], env(vars));
      assert.deepEqual(fieldOf(explicit, spec), fieldOf(config, spec));
    });
  }
});

Deno.test("NOT_DIRECT holds exactly the arguments parseConfig() reads as another command", () => {
  for (const arg of NOT_DIRECT) {
    const args = arg === "serve" ? [arg, "--plugin=1"] : arg === "connect" ? [arg, "1"] : [arg];
    assert.notEqual(parseConfig(args, env(base)).command, "direct", arg);
  }
  for (const command of SUBCOMMANDS) assert.ok(NOT_DIRECT.has(command), command);
  for (const arg of ["-h", "--h", "-help", "--help"]) {
    assert.equal(parseConfig([arg], env(base)).command, "help", arg);
    assert.ok(NOT_DIRECT.has(arg), arg);
  }
});

Deno.test("parseSize() reads bytes with K, M and G suffixes, base 1024", () => {
  assert.equal(parseSize("0"), 0);
  assert.equal(parseSize("4096"), 4096);
  assert.equal(parseSize("512K"), 512 * 1024);
  assert.equal(parseSize("512k"), 512 * 1024);
  assert.equal(parseSize("100M"), 100 * 1024 ** 2);
  assert.equal(parseSize("10G"), 10 * 1024 ** 3);
  assert.equal(parseSize("1.5G"), 1.5 * 1024 ** 3);
  assert.equal(parseSize("2GiB"), 2 * 1024 ** 3);
  assert.equal(parseSize("3MB"), 3 * 1024 ** 2);
  assert.equal(parseSize("7B"), 7);
  for (const bad of ["", "-1", "1T", "ten", "1 0M", "1e3", "M", "0x10"]) {
    assert.throws(() => parseSize(bad), SyntaxError, bad);
  }
});

Deno.test("parseConfig() reads --max-size and GOCACHE_MAX_SIZE, 0 meaning no limit", () => {
  assert.equal(parseConfig([], env(base)).maxSize, 0);
  assert.equal(parseConfig(["--max-size=2G"], env(base)).maxSize, 2 * 1024 ** 3);
  assert.equal(parseConfig([], env({ ...base, GOCACHE_MAX_SIZE: "300M" })).maxSize, 300 << 20);
  assert.equal(
    parseConfig(["-max-size", "1K"], env({ ...base, GOCACHE_MAX_SIZE: "300M" })).maxSize,
    1024,
  );
  const served = parseConfig(["serve", "--plugin=1", "--max-size=64M"], env(base));
  assert.equal(served.maxSize, 64 << 20);
  assert.throws(
    () => parseConfig(["--max-size=lots"], env(base)),
    (error: unknown) =>
      error instanceof UsageError && /Invalid value "lots" for --max-size/.test(error.message),
  );
});

Deno.test("parseConfig() parses stats and clean", () => {
  const stats = parseConfig(["stats"], env(base));
  assert.deepEqual([stats.command, stats.statsAddress, stats.statsFormat], [
    "stats",
    "127.0.0.1:5970",
    "text",
  ]);
  const fromEnv = parseConfig(["stats"], env({ ...base, GOCACHE_HTTP: ":6000" }));
  assert.equal(fromEnv.statsAddress, ":6000");
  const given = parseConfig(["stats", "--http=127.0.0.1:7000", "--format=markdown"], env(base));
  assert.deepEqual([given.statsAddress, given.statsFormat], ["127.0.0.1:7000", "markdown"]);
  assert.equal(parseConfig(["stats", "-format", "json"], env(base)).statsFormat, "json");
  assert.equal(parseConfig(["serve", "--plugin=1"], env(base)).statsAddress, "");
  const clean = parseConfig(["clean", "--cache-dir=/c"], env(base));
  assert.deepEqual([clean.command, clean.cacheDir], ["clean", "/c"]);
});

Deno.test("parseConfig() rejects bad stats and clean arguments with one-line UsageErrors", () => {
  const cases: [string[], RegExp][] = [
    [
      ["stats", "--format=html"],
      /Invalid value "html" for --format: want text, markdown, json, github or counters/,
    ],
    [["stats", "--http=nowhere"], /not \[host\]:port/],
    [["stats", "extra"], /stats takes no arguments/],
    [["clean", "now"], /clean takes no arguments/],
    [["--format=json"], /only for the stats command/],
    [["--http=:1"], /only for the serve and stats commands/],
    [["clean", "--plugin=5930"], /only for the serve command/],
  ];
  for (const [args, pattern] of cases) {
    assert.throws(() => parseConfig(args, env(base)), (error: unknown) => {
      assert.ok(error instanceof UsageError, args.join(" "));
      assert.match(error.message, pattern);
      assert.ok(!error.message.includes("\n"));
      return true;
    });
  }
});
