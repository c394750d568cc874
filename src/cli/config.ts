/**
 * Command-line and environment configuration. One table ({@linkcode FLAGS}) drives parsing,
 * defaults and `help environment`; names and meanings follow tailscale's go-cache-plugin so its
 * users can switch by changing one path.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Raised for a bad flag or value; the program prints one line and exits with status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The value kinds a flag can take. */
export type FlagKind = "string" | "bool" | "int" | "duration" | "list";

/** One flag: its spelling, its environment twin, and how to read it. */
export interface FlagSpec {
  /** Name without dashes, as in `--cache-dir` or `-c`. */
  flag: string;
  /** Environment variable consulted when the flag is absent. */
  env: string;
  kind: FlagKind;
  /** Default shown by `help environment`. */
  shown: string;
  help: string;
  /** Only meaningful with `serve`. */
  serveOnly?: boolean;
  /** Only meaningful with `connect`. */
  connectOnly?: boolean;
}

/** Every flag the program accepts. Order is the order of `help environment`. */
export const FLAGS: readonly FlagSpec[] = Object.freeze(
  [
    {
      flag: "cache-dir",
      env: "GOCACHE_DIR",
      kind: "string",
      shown: "$GOCACHE/go-cache-plugin",
      help: "Local cache directory",
    },
    {
      flag: "bucket",
      env: "GOCACHE_S3_BUCKET",
      kind: "string",
      shown: "(local tier only)",
      help: "S3 bucket name; without it only the local tier is used",
    },
    {
      flag: "region",
      env: "GOCACHE_S3_REGION",
      kind: "string",
      shown: "AWS_REGION, else the bucket's",
      help: "S3 region",
    },
    {
      flag: "s3-endpoint-url",
      env: "GOCACHE_S3_ENDPOINT_URL",
      kind: "string",
      shown: "AWS_ENDPOINT_URL, else AWS",
      help: "S3-compatible endpoint URL",
    },
    {
      flag: "s3-path-style",
      env: "GOCACHE_S3_PATH_STYLE",
      kind: "bool",
      shown: "false",
      help: "Use path-style S3 URLs",
    },
    {
      flag: "prefix",
      env: "GOCACHE_KEY_PREFIX",
      kind: "string",
      shown: '""',
      help: "S3 key prefix",
    },
    {
      flag: "min-upload-size",
      env: "GOCACHE_MIN_SIZE",
      kind: "int",
      shown: "0",
      help: "Smallest output (bytes) uploaded to S3",
    },
    {
      flag: "c",
      env: "GOCACHE_CONCURRENCY",
      kind: "int",
      shown: "number of CPUs",
      help: "Requests handled at once",
    },
    {
      flag: "u",
      env: "GOCACHE_S3_CONCURRENCY",
      kind: "int",
      shown: "number of CPUs",
      help: "Uploads to S3 at once",
    },
    {
      flag: "metrics",
      env: "GOCACHE_METRICS",
      kind: "bool",
      shown: "false",
      help: "Print summary metrics to stderr at exit",
    },
    {
      flag: "expiry",
      env: "GOCACHE_EXPIRY",
      kind: "duration",
      shown: "0 (keep all)",
      help: "Prune local entries not used within this period (Go duration, e.g. 72h)",
    },
    {
      flag: "v",
      env: "GOCACHE_VERBOSE",
      kind: "bool",
      shown: "false",
      help: "Verbose lifecycle logging",
    },
    {
      flag: "debug",
      env: "GOCACHE_DEBUG",
      kind: "int",
      shown: "0",
      help: "Per-request trace bit mask: 1 build cache, 2 module proxy, 4 S3",
    },
    {
      flag: "reply-timeout",
      env: "GOCACHE_REPLY_TIMEOUT",
      kind: "duration",
      shown: "60s",
      help: "connect: answer locally when the server leaves requests unanswered this long",
      connectOnly: true,
    },
    {
      flag: "plugin",
      env: "GOCACHE_PLUGIN",
      kind: "string",
      shown: "(required)",
      help: "Plugin port on 127.0.0.1, or a Unix socket path",
      serveOnly: true,
    },
    {
      flag: "http",
      env: "GOCACHE_HTTP",
      kind: "string",
      shown: '""',
      help: "HTTP address [host]:port for status, metrics and the module proxy",
      serveOnly: true,
    },
    {
      flag: "modproxy",
      env: "GOCACHE_MODPROXY",
      kind: "bool",
      shown: "false",
      help: "Serve a caching Go module proxy under /mod/ (needs --http)",
      serveOnly: true,
    },
    {
      flag: "sumdb",
      env: "GOCACHE_SUMDB",
      kind: "list",
      shown: "sum.golang.org",
      help: "Checksum databases to proxy under /mod/sumdb/ (comma-separated)",
      serveOnly: true,
    },
    {
      flag: "upstream",
      env: "GOCACHE_UPSTREAM",
      kind: "string",
      shown: "GOPROXY, else go env GOPROXY",
      help: "Module proxy upstream, a GOPROXY-style list",
      serveOnly: true,
    },
  ] as const satisfies FlagSpec[],
);

/** What to run. */
export type Command = "direct" | "serve" | "connect" | "help" | "version";

/** The parsed configuration; frozen. */
export interface Config {
  command: Command;
  /** `help` topic, or "" for the overview. */
  helpTopic: string;
  /** `connect` target: a port or a Unix socket path. */
  connectTarget: string;
  /** Absolute local cache directory. */
  cacheDir: string;
  /** Why `cacheDir` is what it is, for `-v`. */
  cacheDirSource: string;
  bucket: string;
  region: string;
  endpoint: string;
  pathStyle: boolean;
  prefix: string;
  minUploadSize: number;
  concurrency: number;
  s3Concurrency: number;
  metrics: boolean;
  /** Milliseconds; 0 keeps everything. */
  expiryMs: number;
  verbose: boolean;
  debug: number;
  /** `connect`: milliseconds of server silence, with requests waiting, before falling back. */
  replyTimeoutMs: number;
  serve: {
    plugin: string;
    http: string;
    modproxy: boolean;
    sumdb: string[];
    /** Explicit upstream; "" means resolve from GOPROXY / `go env` at start. */
    upstream: string;
  };
}

const SUBCOMMANDS: readonly string[] = ["serve", "connect", "help", "version"];

/**
 * Parses arguments and environment into a {@linkcode Config}. Precedence: flag, then
 * environment, then default. Pure: the environment is passed in.
 *
 * @param args Command-line arguments after the program name.
 * @param env Reads one environment variable.
 * @returns The frozen configuration.
 * @throws {UsageError} For an unknown flag, a bad value or a missing required setting.
 */
export function parseConfig(args: string[], env: (name: string) => string | undefined): Config {
  const { values, positionals } = parseFlags(args);
  const command =
    (positionals[0] && SUBCOMMANDS.includes(positionals[0]) ? positionals[0] : "direct") as Command;
  const rest = command === "direct" ? positionals : positionals.slice(1);
  if (command === "direct" && rest.length > 0) {
    throw new UsageError(`Unknown command ${JSON.stringify(rest[0])}: try "help"`);
  }
  if (command === "connect" && rest.length !== 1) {
    throw new UsageError(`connect needs exactly one argument, a port or a socket path`);
  }
  if ((command === "serve" || command === "version") && rest.length > 0) {
    throw new UsageError(`${command} takes no arguments, got ${JSON.stringify(rest[0])}`);
  }
  for (const spec of FLAGS) {
    if (values[spec.flag] === undefined) continue;
    if (spec.serveOnly && command !== "serve") {
      throw new UsageError(`Flag --${spec.flag} is only for the serve command`);
    }
    if (spec.connectOnly && command !== "connect") {
      throw new UsageError(`Flag --${spec.flag} is only for the connect command`);
    }
  }
  const read = (flag: string): string | undefined => {
    const spec = FLAGS.find((s) => s.flag === flag)!;
    const value = values[flag] ?? env(spec.env);
    return value === "" && spec.kind !== "string" ? undefined : value;
  };
  const cpus = navigator.hardwareConcurrency || 4;
  const cacheDir = resolveCacheDir(read("cache-dir"), env);
  const serve = {
    plugin: read("plugin") ?? "",
    http: read("http") ?? "",
    modproxy: toBool("modproxy", read("modproxy"), false),
    sumdb: toList(read("sumdb") ?? "sum.golang.org"),
    upstream: read("upstream") ?? "",
  };
  if (command === "serve") {
    if (!serve.plugin) throw new UsageError("serve needs --plugin PORT (or GOCACHE_PLUGIN)");
    checkListenTarget("--plugin", serve.plugin);
    if (serve.modproxy && !serve.http) throw new UsageError("--modproxy needs --http ADDR");
    if (serve.http) checkHttpAddress(serve.http);
  }
  if (command === "connect") checkListenTarget("connect", rest[0]!);
  const endpoint = read("s3-endpoint-url") ?? env("AWS_ENDPOINT_URL_S3") ??
    env("AWS_ENDPOINT_URL") ?? "";
  const bucket = read("bucket") ?? "";
  if (bucket && endpoint) checkEndpoint(endpoint);
  const replyTimeout = read("reply-timeout");
  return Object.freeze({
    command,
    helpTopic: command === "help" ? rest.join(" ") : "",
    connectTarget: command === "connect" ? rest[0]! : "",
    cacheDir: cacheDir.path,
    cacheDirSource: cacheDir.source,
    bucket,
    region: read("region") ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "",
    endpoint,
    pathStyle: toBool("s3-path-style", read("s3-path-style"), false),
    prefix: (read("prefix") ?? "").replace(/^\/+|\/+$/g, ""),
    minUploadSize: toInt("min-upload-size", read("min-upload-size"), 0, 0),
    concurrency: toInt("c", read("c"), cpus, 1),
    s3Concurrency: toInt("u", read("u"), cpus, 1),
    metrics: toBool("metrics", read("metrics"), false),
    expiryMs: toDuration("expiry", read("expiry")),
    verbose: toBool("v", read("v"), false),
    debug: toInt("debug", read("debug"), 0, 0),
    replyTimeoutMs: replyTimeout === undefined ? 60_000 : toDuration("reply-timeout", replyTimeout),
    serve: Object.freeze(serve),
  });
}

/**
 * Parses a Go duration (`300ms`, `1.5h`, `2h45m`) into milliseconds.
 *
 * @param text The duration.
 * @returns Milliseconds.
 * @throws {SyntaxError} When the text is not a Go duration.
 */
export function parseGoDuration(text: string): number {
  const units: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    "µs": 1e-3,
    "μs": 1e-3,
    ms: 1,
    s: 1e3,
    m: 60e3,
    h: 3600e3,
  };
  if (text === "0") return 0;
  const match = /^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.test(text);
  if (!match) {
    throw new SyntaxError(
      `Cannot parse duration ${JSON.stringify(text)}: use Go syntax such as 30m or 72h`,
    );
  }
  let total = 0;
  for (const [, number, unit] of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(number) * units[unit!]!;
  }
  return text.startsWith("-") ? -total : total;
}

function parseFlags(
  args: string[],
): { values: Record<string, string | undefined>; positionals: string[] } {
  // Go's flag package accepts -name and --name alike, and -name=value for booleans.
  const normalized: string[] = [];
  const booleans: Record<string, string> = {};
  let onlyPositionals = false;
  for (const arg of args) {
    const match = onlyPositionals ? null : /^--?([A-Za-z][\w-]*)(=(.*))?$/s.exec(arg);
    if (arg === "--") onlyPositionals = true;
    if (!match) {
      normalized.push(arg);
      continue;
    }
    const [, name, hasValue, value] = match;
    const spec = FLAGS.find((s) => s.flag === name);
    if (name === "h" || name === "help") {
      normalized.push("help");
      continue;
    }
    if (!spec) {
      throw new UsageError(
        `Unknown flag ${JSON.stringify(arg.split("=")[0])}: see "help environment"`,
      );
    }
    if (spec.kind === "bool") booleans[name!] = hasValue ? value! : "true";
    else normalized.push(hasValue ? `--${name}=${value}` : `--${name}`);
  }
  const options = Object.fromEntries(
    FLAGS.filter((s) => s.kind !== "bool").map((s) => [s.flag, { type: "string" as const }]),
  );
  let parsed;
  try {
    parsed = parseArgs({ args: normalized, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(firstLine(error), { cause: error });
  }
  return {
    values: { ...parsed.values as Record<string, string | undefined>, ...booleans },
    positionals: parsed.positionals,
  };
}

function resolveCacheDir(
  flagOrEnv: string | undefined,
  env: (name: string) => string | undefined,
): { path: string; source: string } {
  if (flagOrEnv) {
    if (!isAbsolute(flagOrEnv)) {
      throw new UsageError(
        `--cache-dir must be an absolute path, got ${JSON.stringify(flagOrEnv)}`,
      );
    }
    return { path: flagOrEnv, source: "--cache-dir / GOCACHE_DIR" };
  }
  const gocache = env("GOCACHE");
  if (gocache && isAbsolute(gocache)) {
    // Under $GOCACHE, `go build -o` copies cache files instead of renaming them away.
    return {
      path: `${gocache.replace(/\/+$/, "")}/go-cache-plugin`,
      source: "under the GOCACHE go passed in",
    };
  }
  const base = env("XDG_CACHE_HOME") || (env("HOME") ? `${env("HOME")}/.cache` : "") ||
    (env("USERPROFILE") ?? "");
  if (!base) {
    throw new UsageError("Cannot choose a cache directory: set --cache-dir or GOCACHE_DIR");
  }
  return { path: `${base}/go-cache-plugin`, source: "the user cache directory (no GOCACHE set)" };
}

function checkListenTarget(what: string, value: string): void {
  if (/^\d+$/.test(value)) {
    const port = Number(value);
    if (port < 1 || port > 65535) {
      throw new UsageError(`${what}: port ${value} is out of range 1-65535`);
    }
    return;
  }
  if (!value.includes("/")) {
    throw new UsageError(`${what}: ${JSON.stringify(value)} is neither a port nor a socket path`);
  }
}

/** `[host]:port` as `--http` takes it: an empty host means 127.0.0.1. */
function checkHttpAddress(value: string): void {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]/\s]*)):(\d+)$/.exec(value);
  if (!match) {
    throw new UsageError(
      `--http: ${JSON.stringify(value)} is not [host]:port (e.g. 127.0.0.1:5970)`,
    );
  }
  const port = Number(match[3]);
  if (port > 65535) throw new UsageError(`--http: port ${match[3]} is out of range 0-65535`);
}

/** An S3 endpoint must be an http(s) URL; anything else would fail every call unseen. */
function checkEndpoint(value: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--s3-endpoint-url: ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(
      `--s3-endpoint-url: ${JSON.stringify(value)} must start with http:// or https://`,
    );
  }
}

function toBool(flag: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (["1", "t", "T", "true", "TRUE", "True"].includes(value)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(value)) return false;
  throw new UsageError(`Invalid value ${JSON.stringify(value)} for -${flag}: want true or false`);
}

function toInt(flag: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!/^[-+]?\d+$/.test(value.trim()) || !Number.isSafeInteger(number) || number < min) {
    throw new UsageError(
      `Invalid value ${JSON.stringify(value)} for -${flag}: want an integer >= ${min}`,
    );
  }
  return number;
}

function toDuration(flag: string, value: string | undefined): number {
  if (value === undefined) return 0;
  try {
    const ms = parseGoDuration(value);
    if (ms < 0) throw new SyntaxError("negative");
    return ms;
  } catch {
    throw new UsageError(
      `Invalid value ${JSON.stringify(value)} for --${flag}: want a Go duration such as 72h`,
    );
  }
}

function toList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

function isAbsolute(path: string): boolean {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path);
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
}
