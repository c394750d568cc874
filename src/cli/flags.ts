/**
 * The flag table: every flag the program accepts, with its environment twin, its kind, its
 * default, the `Config` field it fills and the text `help environment` shows. The
 * parser (`config.ts`) and the help (`help.ts`) both read it, so a flag is added in one place.
 * Names and meanings follow tailscale's go-cache-plugin, so its users can switch by changing one
 * path.
 *
 * The shown default is derived from the default where that is a plain value (`false`, `0`, `""`,
 * `60s`, `sum.golang.org`); defaults computed from the environment or the machine carry their own
 * text.
 *
 * @module
 */

import { formatGoDuration, formatSize } from "./_values.ts";

/** The value kinds a flag can take. */
export type FlagKind = "string" | "bool" | "int" | "duration" | "size" | "list";

/** The commands a flag can be limited to. */
export type FlagScope = "serve" | "connect" | "stats";

/** What a computed default may look at. */
export interface DefaultContext {
  /** Reads one environment variable. */
  env(name: string): string | undefined;
  /** The number of CPUs (`navigator.hardwareConcurrency`, else 4). */
  cpus: number;
}

/** A default: a value, or a function of the environment and the machine. */
export type FlagDefault<T> = T | ((context: DefaultContext) => T);

/** A parsed flag value. */
export type FlagValue = string | number | boolean | string[];

/**
 * The `Config` fields flags fill: top-level names, or `serve.<name>`. (Spelled out rather than
 * derived from `Config`, so this file does not import `config.ts`; `config.ts` checks at compile
 * time that the two agree.)
 */
export type FlagField =
  | "cacheDir"
  | "bucket"
  | "region"
  | "endpoint"
  | "pathStyle"
  | "storage"
  | "gcsBucket"
  | "gcsKeyFile"
  | "gcsEndpoint"
  | "prefix"
  | "readPrefixes"
  | "readOnly"
  | "minUploadSize"
  | "warmKey"
  | "warmBytes"
  | "warmConcurrency"
  | "concurrency"
  | "s3Concurrency"
  | "metrics"
  | "expiryMs"
  | "maxSize"
  | "verbose"
  | "debug"
  | "replyTimeoutMs"
  | "statsFormat"
  | "statsReset"
  | "serve.printEnv"
  | "serve.plugin"
  | "serve.http"
  | "serve.modproxy"
  | "serve.sumdb"
  | "serve.upstream"
  | "serve.revproxy"
  | "serve.revproxyAllow";

/** What every flag has, whatever its kind. */
interface FlagCommon {
  /** Name without dashes, as in `--cache-dir` or `-c`. */
  flag: string;
  /** Environment variable consulted when the flag is absent. */
  env: string;
  /** The `Config` field the value goes to. */
  field: FlagField;
  /** Default as `help environment` shows it. */
  shown: string;
  /** One line for `help environment`. */
  help: string;
  /**
   * The only commands the flag is meaningful with; given explicitly with another it is an error.
   * @default every command
   */
  scope?: readonly FlagScope[];
}

/** One flag: its spelling, its environment twin, how to read it and what it defaults to. */
export type FlagSpec =
  | FlagCommon & {
    kind: "string";
    default: FlagDefault<string>;
    /** Tidies a given value (not the default). */
    normalize?(value: string): string;
  }
  | FlagCommon & { kind: "bool"; default: FlagDefault<boolean> }
  | FlagCommon & {
    kind: "int";
    default: FlagDefault<number>;
    /** The smallest value accepted. */
    min: number;
  }
  | FlagCommon & {
    kind: "duration";
    /** Milliseconds. */
    default: FlagDefault<number>;
  }
  | FlagCommon & {
    kind: "size";
    /** Bytes. */
    default: FlagDefault<number>;
  }
  | FlagCommon & { kind: "list"; default: FlagDefault<readonly string[]> };

/** A table row as written: `shown` may be left out when the default is a plain value. */
type FlagRow = RowOf<FlagSpec>;

/** Distributes over the kinds, so each row keeps its own kind's default type. */
type RowOf<S> = S extends FlagSpec ? Omit<S, "shown"> & { shown?: string } : never;

const ROWS: readonly FlagRow[] = [
  {
    flag: "cache-dir",
    env: "GOCACHE_DIR",
    kind: "string",
    field: "cacheDir",
    // Resolved by parseConfig from GOCACHE, XDG_CACHE_HOME or HOME when not given.
    default: "",
    shown: "$GOCACHE/go-cache-plugin",
    help: "Local cache directory",
  },
  {
    flag: "bucket",
    env: "GOCACHE_S3_BUCKET",
    kind: "string",
    field: "bucket",
    default: "",
    shown: "(local tier only)",
    help: "Bucket: NAME or s3://NAME (S3), gs://NAME (Google Cloud Storage); " +
      "without it only the local tier is used",
  },
  {
    flag: "region",
    env: "GOCACHE_S3_REGION",
    kind: "string",
    field: "region",
    default: ({ env }) => env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "",
    shown: "AWS_REGION, else the bucket's",
    help: "S3 region",
  },
  {
    flag: "s3-endpoint-url",
    env: "GOCACHE_S3_ENDPOINT_URL",
    kind: "string",
    field: "endpoint",
    default: ({ env }) => env("AWS_ENDPOINT_URL_S3") ?? env("AWS_ENDPOINT_URL") ?? "",
    shown: "AWS_ENDPOINT_URL, else AWS",
    help: "S3-compatible endpoint URL",
  },
  {
    flag: "s3-path-style",
    env: "GOCACHE_S3_PATH_STYLE",
    kind: "bool",
    field: "pathStyle",
    default: false,
    help: "Use path-style S3 URLs",
  },
  {
    flag: "storage",
    env: "GOCACHE_STORAGE",
    kind: "string",
    field: "storage",
    default: "",
    shown: "(by --bucket: s3://, gs://; plain: s3)",
    help: "Which store --bucket names: s3 or gcs",
  },
  // Google Cloud Storage, with the names of tailscale's PR #18 (--bucket=gs://NAME works too).
  {
    flag: "gcs-bucket",
    env: "GOCACHE_GCS_BUCKET",
    kind: "string",
    field: "gcsBucket",
    default: "",
    help: "Google Cloud Storage bucket name (the same as --bucket=gs://NAME)",
  },
  {
    flag: "gcs-key-file",
    env: "GOCACHE_GCS_KEY_FILE",
    kind: "string",
    field: "gcsKeyFile",
    default: ({ env }) => env("GOOGLE_APPLICATION_CREDENTIALS") ?? "",
    shown: "GOOGLE_APPLICATION_CREDENTIALS, else gcloud's ADC, else the metadata server",
    help: "GCS credentials: a service-account key or workload identity federation file",
  },
  {
    flag: "gcs-endpoint-url",
    env: "GOCACHE_GCS_ENDPOINT_URL",
    kind: "string",
    field: "gcsEndpoint",
    default: "",
    shown: "Google's (STORAGE_EMULATOR_HOST: an emulator, no credentials)",
    help: "GCS JSON API endpoint URL, such as a Private Service Connect one (credentials sent)",
  },
  {
    flag: "prefix",
    env: "GOCACHE_KEY_PREFIX",
    kind: "string",
    field: "prefix",
    default: "",
    normalize: (value) => value.replace(/^\/+|\/+$/g, ""),
    help: "S3 key prefix",
  },
  {
    flag: "read-prefixes",
    env: "GOCACHE_READ_PREFIXES",
    kind: "list",
    field: "readPrefixes",
    default: [],
    help: "Prefixes also looked up, in order, after a miss under --prefix; never written",
  },
  {
    flag: "read-only",
    env: "GOCACHE_READ_ONLY",
    kind: "bool",
    field: "readOnly",
    default: false,
    help: "Never write to the bucket: no uploads, owed uploads neither sent nor recorded",
  },
  {
    flag: "warm-key",
    env: "GOCACHE_WARM_KEY",
    kind: "string",
    field: "warmKey",
    // "auto" is resolved by the S3 wiring from the working directory (the go command's).
    default: "auto",
    help: "Working-set manifest key for the warm-up from S3 (auto: the working directory); " +
      "off or empty: no warm-up",
  },
  {
    flag: "warm-bytes",
    env: "GOCACHE_WARM_BYTES",
    kind: "size",
    field: "warmBytes",
    default: 1 << 30,
    help: "Bytes the warm-up fetches at most (K/M/G)",
  },
  {
    flag: "warm-concurrency",
    env: "GOCACHE_WARM_CONCURRENCY",
    kind: "int",
    field: "warmConcurrency",
    default: 16,
    min: 1,
    help: "Warm-up fetches at once",
  },
  {
    flag: "min-upload-size",
    env: "GOCACHE_MIN_SIZE",
    kind: "int",
    field: "minUploadSize",
    default: 0,
    min: 0,
    help: "Smallest output (bytes) uploaded to S3",
  },
  {
    flag: "c",
    env: "GOCACHE_CONCURRENCY",
    kind: "int",
    field: "concurrency",
    default: ({ cpus }) => cpus,
    min: 1,
    shown: "number of CPUs",
    help: "Requests handled at once",
  },
  {
    flag: "u",
    env: "GOCACHE_S3_CONCURRENCY",
    kind: "int",
    field: "s3Concurrency",
    default: ({ cpus }) => cpus,
    min: 1,
    shown: "number of CPUs",
    help: "Uploads to S3 at once",
  },
  {
    flag: "metrics",
    env: "GOCACHE_METRICS",
    kind: "bool",
    field: "metrics",
    default: false,
    help: "Print summary metrics to stderr at exit",
  },
  {
    flag: "expiry",
    env: "GOCACHE_EXPIRY",
    kind: "duration",
    field: "expiryMs",
    default: 0,
    shown: "0 (keep all)",
    help: "Prune local entries not used within this period (Go duration, e.g. 72h)",
  },
  {
    flag: "max-size",
    env: "GOCACHE_MAX_SIZE",
    kind: "size",
    field: "maxSize",
    default: 0,
    help:
      "Keep the local cache under this size, least recently used first out; 0: no limit (K/M/G)",
  },
  {
    flag: "v",
    env: "GOCACHE_VERBOSE",
    kind: "bool",
    field: "verbose",
    default: false,
    help: "Verbose lifecycle logging",
  },
  {
    flag: "debug",
    env: "GOCACHE_DEBUG",
    kind: "int",
    field: "debug",
    default: 0,
    min: 0,
    help: "Per-request trace bit mask: 1 build cache, 2 module proxy, 4 S3",
  },
  {
    flag: "reply-timeout",
    env: "GOCACHE_REPLY_TIMEOUT",
    kind: "duration",
    field: "replyTimeoutMs",
    default: 60_000,
    help: "connect: answer locally when the server leaves requests unanswered this long",
    scope: ["connect"],
  },
  {
    flag: "plugin",
    env: "GOCACHE_PLUGIN",
    kind: "string",
    field: "serve.plugin",
    default: "",
    shown: "(required)",
    help: "Plugin port on 127.0.0.1, or a Unix socket path",
    scope: ["serve"],
  },
  {
    flag: "http",
    env: "GOCACHE_HTTP",
    kind: "string",
    field: "serve.http",
    default: "",
    help:
      "HTTP address [host]:port for status, metrics and the module proxy (stats: 127.0.0.1:5970)",
    scope: ["serve", "stats"],
  },
  {
    flag: "modproxy",
    env: "GOCACHE_MODPROXY",
    kind: "bool",
    field: "serve.modproxy",
    default: false,
    help: "Serve a caching Go module proxy under /mod/ (needs --http)",
    scope: ["serve"],
  },
  {
    flag: "sumdb",
    env: "GOCACHE_SUMDB",
    kind: "list",
    field: "serve.sumdb",
    default: ["sum.golang.org"],
    help: "Checksum databases to proxy under /mod/sumdb/ (comma-separated)",
    scope: ["serve"],
  },
  {
    flag: "upstream",
    env: "GOCACHE_UPSTREAM",
    // Resolved from GOPROXY or `go env GOPROXY` at start, not here: that may run go.
    kind: "string",
    field: "serve.upstream",
    default: "",
    shown: "GOPROXY, else go env GOPROXY",
    help: "Module proxy upstream, a GOPROXY-style list",
    scope: ["serve"],
  },
  {
    flag: "revproxy",
    env: "GOCACHE_REVPROXY",
    kind: "list",
    field: "serve.revproxy",
    default: [],
    help: "Caching HTTPS proxy on --http for these hosts (comma-separated host or host:port)",
    scope: ["serve"],
  },
  {
    flag: "revproxy-allow",
    env: "GOCACHE_REVPROXY_ALLOW",
    kind: "list",
    field: "serve.revproxyAllow",
    default: [],
    help: "Proxy clients allowed besides loopback: addresses, IPv4 CIDRs, or *",
    scope: ["serve"],
  },
  {
    flag: "format",
    env: "GOCACHE_STATS_FORMAT",
    kind: "string",
    field: "statsFormat",
    default: "text",
    help: "stats: text (a table), markdown (a CI job summary), json, github " +
      "(::error::/::warning:: annotations for faults), or counters (the raw counters, " +
      "one `name value` line each)",
    scope: ["stats"],
  },
  {
    flag: "reset",
    env: "GOCACHE_STATS_RESET",
    kind: "bool",
    field: "statsReset",
    default: false,
    help: "stats: after printing, set the server's counters and faults back to zero",
    scope: ["stats"],
  },
  {
    flag: "print-env",
    env: "GOCACHE_PRINT_ENV",
    kind: "bool",
    field: "serve.printEnv",
    default: false,
    help: 'serve: print the export lines for these flags and exit: eval "$(… serve … --print-env)"',
    scope: ["serve"],
  },
];

/** Every flag the program accepts. Order is the order of `help environment`. */
export const FLAGS: readonly FlagSpec[] = Object.freeze(ROWS.map(withShown));

/**
 * The default of a flag, computed when it is a function.
 *
 * @param spec The flag.
 * @param context The environment and the machine.
 * @returns The value the flag has when neither it nor its variable is set.
 */
export function defaultOf(spec: FlagSpec, context: DefaultContext): FlagValue {
  const value = typeof spec.default === "function" ? spec.default(context) : spec.default;
  return Array.isArray(value) ? [...value] : value as string | number | boolean;
}

/**
 * A plain default as `help environment` shows it: `""` for the empty string (and an empty list),
 * a list joined with commas, a duration in Go syntax.
 *
 * @param kind The flag's kind.
 * @param value The default.
 * @returns The text.
 */
export function showDefault(
  kind: FlagKind,
  value: string | number | boolean | readonly string[],
): string {
  if (kind === "duration") return formatGoDuration(value as number);
  if (kind === "size") return formatSize(value as number);
  if (Array.isArray(value)) return value.length > 0 ? value.join(",") : '""';
  return value === "" ? '""' : String(value);
}

function withShown(row: FlagRow): FlagSpec {
  if (row.shown !== undefined) return Object.freeze({ ...row, shown: row.shown }) as FlagSpec;
  if (typeof row.default === "function") {
    throw new TypeError(`Cannot show the default of --${row.flag}: a computed default needs shown`);
  }
  return Object.freeze({ ...row, shown: showDefault(row.kind, row.default) }) as FlagSpec;
}
