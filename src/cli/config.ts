/**
 * Command-line and environment configuration: {@linkcode parseConfig} turns arguments and
 * variables into a frozen {@linkcode Config}. The flag table (`flags.ts`) drives it: each flag is
 * read from its spelling, else its `GOCACHE_*` variable, else its default, and checked by its
 * kind (`_values.ts`). What is left here is the command line's shape (subcommand and positional
 * arguments, Go's `-flag` spellings) and the rules that span several flags: the cache directory's
 * resolution, `serve`'s listen targets, `--modproxy` needing `--http`, `stats`' address and
 * format, and which store `--bucket` names (`_store_spec.ts`).
 *
 * @module
 */

import { type Command, HELP_FLAGS, SUBCOMMANDS } from "./commands.ts";
import { defaultOf, type FlagField, FLAGS, type FlagSpec, type FlagValue } from "./flags.ts";
import { bucketUrl, type StoreSpec } from "../store/spec.ts";
import { isAbsolute } from "../util/files.ts";
import { storeSpecOf } from "./_store_spec.ts";
import {
  checkHttpAddress,
  checkListenTarget,
  toBool,
  toDuration,
  toInt,
  toList,
  toSize,
  UsageError,
} from "./_values.ts";

export type { Command } from "./commands.ts";
export { parseGoDuration, parseSize, UsageError } from "./_values.ts";

/** What `stats --format` takes. */
export type StatsFormat = "text" | "markdown" | "json" | "github" | "counters";

const STATS_FORMATS: readonly StatsFormat[] = ["text", "markdown", "json", "github", "counters"];

/** `cacheDirSource` when no directory was given and go did not pass GOCACHE: ask `go env`. */
export const ASK_GO_ENV = "the user cache directory (no GOCACHE set; go env GOCACHE not asked)";

/** Where `stats` asks when neither `--http` nor `GOCACHE_HTTP` is set. */
export const DEFAULT_STATS_HTTP = "127.0.0.1:5970";

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
  /** `--bucket` as given (a name or a URL), else `gs://` and `--gcs-bucket`; "" is the local tier alone. */
  bucket: string;
  /** The store `--bucket` names, with its settings; `undefined` without a bucket. */
  store: StoreSpec | undefined;
  region: string;
  endpoint: string;
  pathStyle: boolean;
  /** `--storage`: `s3` or `gcs`; "" goes by `--bucket`'s scheme. */
  storage: string;
  /** `--gcs-bucket`: a Google Cloud Storage bucket, as `--bucket=gs://NAME`. */
  gcsBucket: string;
  /** `--gcs-key-file`: GCS credentials file; "" finds them as Google's tools do. */
  gcsKeyFile: string;
  /** `--gcs-endpoint-url`: a private GCS endpoint; "" is Google's, or the emulator's. */
  gcsEndpoint: string;
  prefix: string;
  /** `--read-prefixes`: looked up in order after a miss under `prefix`, never written. */
  readPrefixes: string[];
  /** `--read-only`: nothing is written to the bucket. */
  readOnly: boolean;
  minUploadSize: number;
  /** `--warm-key`: `auto` derives it from the working directory; `off` or "" disables it. */
  warmKey: string;
  /** `--warm-bytes`: bytes the warm-up fetches at most. */
  warmBytes: number;
  /** `--warm-concurrency`: warm-up fetches at once. */
  warmConcurrency: number;
  concurrency: number;
  s3Concurrency: number;
  metrics: boolean;
  /** Milliseconds; 0 keeps everything. */
  expiryMs: number;
  /** Bytes the local tier's entries are kept under; 0 means no limit. */
  maxSize: number;
  verbose: boolean;
  debug: number;
  /** `connect`: milliseconds of server silence, with requests waiting, before falling back. */
  replyTimeoutMs: number;
  /** `stats`: how to print the counters. */
  statsFormat: StatsFormat;
  /** `stats`: the server's HTTP address, `host:port`. */
  statsAddress: string;
  /** `stats --reset`: reset the server's counters after printing them. */
  statsReset: boolean;
  serve: {
    /** `--print-env`: print the export lines and exit. */
    printEnv: boolean;
    plugin: string;
    http: string;
    modproxy: boolean;
    sumdb: string[];
    /** Explicit upstream; "" means resolve from GOPROXY / `go env` at start. */
    upstream: string;
    /** `--revproxy`: hosts (`host` or `host:port`) the caching proxy serves; empty: off. */
    revproxy: string[];
    /** `--revproxy-allow`: proxy clients allowed besides loopback (addresses, CIDRs, `*`). */
    revproxyAllow: string[];
  };
}

/** The top-level fields one flag each fills; the rest come from the positionals. */
type FromFlags = Omit<
  Config,
  "command" | "helpTopic" | "connectTarget" | "cacheDirSource" | "statsAddress" | "serve" | "store"
>;

/** True when A and B are the same set of names. */
type Same<A, B> = [A] extends [B] ? [B] extends [A] ? true : false : false;

// A compile error here means the flag table and Config disagree on the fields flags fill.
const _fieldsAgree: Same<FlagField, keyof FromFlags | `serve.${keyof Config["serve"]}`> = true;

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
  const { values, positionals, help, version } = parseFlags(args);
  const named = positionals[0];
  let command: Command = named && (SUBCOMMANDS as readonly string[]).includes(named)
    ? named as Command
    : "direct";
  let rest = command === "direct" ? positionals : positionals.slice(1);
  if (help || version) {
    // `CMD --help` is `help CMD`; `--version` anywhere is `version`.
    if (help && command !== "help") rest = command === "direct" ? [] : [command];
    command = help ? "help" : "version";
    if (command === "version") rest = [];
  }
  checkPositionals(command, rest);
  // With --help or --version, the flags are checked against the command they were given with.
  const given = help || version ? named ?? "direct" : command;
  for (const spec of FLAGS) {
    const scope = spec.scope as readonly string[] | undefined;
    if (values[spec.flag] !== undefined && scope && !scope.includes(given)) {
      const names = scope.length === 1
        ? `the ${scope[0]} command`
        : `the ${scope.slice(0, -1).join(", ")} and ${scope.at(-1)} commands`;
      throw new UsageError(`Flag --${spec.flag} is only for ${names}`);
    }
  }

  const context = { env, cpus: navigator.hardwareConcurrency || 4 };
  const top: Record<string, FlagValue> = {};
  const serveFields: Record<string, FlagValue> = {};
  for (const spec of FLAGS) {
    const text = values[spec.flag] ?? env(spec.env);
    // An empty variable means unset, except for strings, where "" is a value.
    const value = text === undefined || (text === "" && spec.kind !== "string")
      ? defaultOf(spec, context)
      : readValue(spec, text);
    if (spec.field.startsWith("serve.")) serveFields[spec.field.slice("serve.".length)] = value;
    else top[spec.field] = value;
  }
  const flags = top as unknown as FromFlags;
  const serve = serveFields as unknown as Config["serve"];

  const cacheDir = resolveCacheDir(flags.cacheDir, env);
  if (command === "serve") {
    if (!serve.plugin) throw new UsageError("serve needs --plugin PORT (or GOCACHE_PLUGIN)");
    checkListenTarget("--plugin", serve.plugin);
    if (serve.modproxy && !serve.http) throw new UsageError("--modproxy needs --http ADDR");
    if (serve.revproxy.length > 0 && !serve.http) {
      throw new UsageError("--revproxy needs --http ADDR: the proxy listens there");
    }
    for (const host of serve.revproxy) checkRevproxyHost(host);
    if (serve.http) checkHttpAddress(serve.http);
  }
  if (command === "connect") checkListenTarget("connect", rest[0]!);
  if (!STATS_FORMATS.includes(flags.statsFormat)) {
    throw new UsageError(
      `Invalid value ${
        JSON.stringify(flags.statsFormat)
      } for --format: want text, markdown, json, github or counters`,
    );
  }
  const statsAddress = command === "stats" ? serve.http || DEFAULT_STATS_HTTP : "";
  if (command === "stats") checkHttpAddress(statsAddress);
  const store = storeSpecOf(flags, env);
  return Object.freeze({
    command,
    helpTopic: command === "help" ? rest.join(" ") : "",
    connectTarget: command === "connect" ? rest[0]! : "",
    statsAddress,
    ...flags,
    // `--gcs-bucket` alone names the bucket too.
    bucket: flags.bucket || (store ? bucketUrl(store) : ""),
    store: store && Object.freeze(store),
    cacheDir: cacheDir.path,
    cacheDirSource: cacheDir.source,
    serve: Object.freeze(serve),
  });
}

/** Reads a flag's text (never empty unless the kind is string) by its kind. */
function readValue(spec: FlagSpec, text: string): FlagValue {
  switch (spec.kind) {
    case "string":
      return spec.normalize ? spec.normalize(text) : text;
    case "bool":
      return toBool(spec.flag, text);
    case "int":
      return toInt(spec.flag, text, spec.min);
    case "duration":
      return toDuration(spec.flag, text);
    case "size":
      return toSize(spec.flag, text);
    case "list":
      return toList(text);
  }
}

function checkPositionals(command: Command, rest: string[]): void {
  if (command === "direct" && rest.length > 0) {
    throw new UsageError(`Unknown command ${JSON.stringify(rest[0])}: try "help"`);
  }
  if (command === "connect" && rest.length !== 1) {
    throw new UsageError(`connect needs exactly one argument, a port or a socket path`);
  }
  if (["serve", "version", "stats", "clean"].includes(command) && rest.length > 0) {
    throw new UsageError(`${command} takes no arguments, got ${JSON.stringify(rest[0])}`);
  }
}

function parseFlags(
  args: string[],
): {
  values: Record<string, string | undefined>;
  positionals: string[];
  help: boolean;
  version: boolean;
} {
  // Go's flag package's spellings: -name and --name alike, -name=value, -name value (the next
  // argument, whatever it looks like), and a bare -name for booleans. Hand-written because
  // node:util's parser costs several milliseconds to load, paid before go's first reply.
  const values: Record<string, string | undefined> = {};
  const positionals: string[] = [];
  let onlyPositionals = false;
  let help = false;
  let version = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const match = onlyPositionals ? null : /^--?([A-Za-z][\w-]*)(=(.*))?$/s.exec(arg);
    if (!match) {
      if (arg === "--" && !onlyPositionals) onlyPositionals = true;
      else positionals.push(arg);
      continue;
    }
    const [, name, hasValue, value] = match;
    if (HELP_FLAGS.includes(name!)) {
      help = true;
      continue;
    }
    if (name === "version" && !hasValue) {
      version = true;
      continue;
    }
    const spec = FLAGS.find((s) => s.flag === name);
    if (!spec) {
      throw new UsageError(
        `Unknown flag ${JSON.stringify(arg.split("=")[0])}: see "help environment"`,
      );
    }
    if (hasValue) {
      values[name!] = value!;
    } else if (spec.kind === "bool") {
      values[name!] = "true";
    } else if (i + 1 < args.length) {
      values[name!] = args[++i]!;
    } else {
      throw new UsageError(`Flag ${arg} needs a value: see "help environment"`);
    }
  }
  return { values, positionals, help, version };
}

/** The cache directory: as given (absolute), else under GOCACHE, else the user cache directory. */
function resolveCacheDir(
  given: string,
  env: (name: string) => string | undefined,
): { path: string; source: string } {
  if (given) {
    if (!isAbsolute(given)) {
      throw new UsageError(`--cache-dir must be an absolute path, got ${JSON.stringify(given)}`);
    }
    return { path: given, source: "--cache-dir / GOCACHE_DIR" };
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
  // `main.ts` asks `go env GOCACHE` for this source (serve, clean): one directory for every mode.
  return { path: `${base}/go-cache-plugin`, source: ASK_GO_ENV };
}

/** A `--revproxy` entry: a host name or address, optionally with `:port`. */
function checkRevproxyHost(host: string): void {
  if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252}))(:\d{1,5})?$/.test(host)) {
    throw new UsageError(
      `Invalid host ${JSON.stringify(host)} in --revproxy: want host or host:port, comma-separated`,
    );
  }
}
