/**
 * `help` text: an overview and topics, with the environment table generated from the same flag
 * table (`flags.ts`) the parser uses: each flag's spelling, variable, kind, default and scope.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { writeAll } from "../util/mod.ts";
import { type Config, UsageError } from "./config.ts";
import { FLAGS } from "./flags.ts";
import { VERSION } from "./version.ts";

const PERMISSIONS =
  "--allow-read --allow-write --allow-net --allow-sys=osRelease --allow-run=go,ps " +
  "--allow-env=GOCACHE,GOCACHE_*,GOPROXY,SSL_CERT_FILE,SSL_CERT_DIR,AWS_*,HOME,USERPROFILE,HOMEPATH,HOMEDRIVE,XDG_CACHE_HOME,_X_AMZN_TRACE_ID,GOOGLE_*,STORAGE_EMULATOR_HOST,GCE_METADATA_HOST,GCE_METADATA_IP,METADATA_SERVER_DETECTION,CLOUDSDK_CONFIG,CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE,APPDATA,HTTPS_PROXY,https_proxy,HTTP_PROXY,http_proxy,NO_PROXY,no_proxy,AZURE_*,IDENTITY_ENDPOINT,IDENTITY_HEADER,IDENTITY_SERVER_THUMBPRINT,IMDS_ENDPOINT,MSI_ENDPOINT,MSI_SECRET,DEBUG,TYPESPEC_RUNTIME_LOG_LEVEL,ProgramData,ProgramFiles,ALL_PROXY,all_proxy,ACTIONS_ID_TOKEN_REQUEST_URL,ACTIONS_ID_TOKEN_REQUEST_TOKEN";

const OVERVIEW =
  `go-cache-plugin: a Go build cache (GOCACHEPROG) with a local tier and an optional bucket
tier in S3, Google Cloud Storage or Azure Blob Storage

Usage:
  go-cache-plugin [flags]               serve the protocol on stdin/stdout (run by go as GOCACHEPROG)
  go-cache-plugin serve --plugin=PORT   serve many go commands from one process
  go-cache-plugin connect PORT          bridge stdin/stdout to a serve process
  go-cache-plugin stats [--http=ADDR]   print a server's account (--format=text|markdown|json|github|counters)
  go-cache-plugin clean                 empty the local cache directory (not while serve uses it)
  go-cache-plugin help [topic]          topics: a command (serve, connect, stats, clean, direct),
                                        configure, environment, direct-mode, serve-mode,
                                        module-proxy, reverse-proxy, debug, permissions
  go-cache-plugin version               also --version; CMD --help is "help CMD"

Example:
  GOCACHEPROG="go-cache-plugin --cache-dir=/var/cache/gcp" go build ./...

Without --bucket the plugin uses the local tier alone. Go 1.24+ honours GOCACHEPROG; 1.21-1.23
need a toolchain built with GOEXPERIMENT=cacheprog.`;

/** What each command does, for `help CMD` and `CMD --help`; its flags follow from the table. */
const COMMANDS: Record<string, { usage: string; text: string; scope?: string }> = {
  direct: {
    usage: "go-cache-plugin [flags]",
    text:
      `Serves the GOCACHEPROG protocol on stdin/stdout: go starts it, one process per go command.
At a terminal it prints this usage instead (go talks to it through pipes).`,
  },
  serve: {
    usage: "go-cache-plugin serve --plugin=PORT [--http=ADDR [--modproxy]] [flags]",
    text: `Serves many go commands from one process (they reach it with "connect"). Prints the lines
that point go at it plainly on stdout (export GOCACHEPROG=…, and GOPROXY/GOSUMDB with
--modproxy); --print-env prints only those and exits: eval "$(go-cache-plugin serve … --print-env)".
--http adds a status page at /, /metrics (Prometheus) and /debug/vars. SIGINT or SIGTERM stops
accepting, lets sessions finish, flushes uploads and exits 0.`,
    scope: "serve",
  },
  connect: {
    usage: "go-cache-plugin connect PORT|SOCKET",
    text: `Bridges go (stdin/stdout) to a serve process: GOCACHEPROG="go-cache-plugin connect 5930".
When the server cannot be reached it serves the local tier itself and warns once.`,
    scope: "connect",
  },
  stats: {
    usage:
      "go-cache-plugin stats [--http=ADDR] [--format=text|markdown|json|github|counters] [--reset]",
    text: `Prints a running server's account: hits by where they came from (local, warm-up, S3 on
demand, read prefixes), bytes from the store, uploads, faults with their first cause, the cache
directory with its size, entries and --max-size, and the time saved (measured, or an estimate
marked as one). --format=markdown is a CI job summary with a headline; --format=github prints
::error::/::warning:: annotations for faults (nothing when all is well); --format=counters the
raw counters, one "name value" line each (for scripts). --reset then sets the
server's counters back to zero (POST /debug/reset, accepted from this machine only).`,
    scope: "stats",
  },
  clean: {
    usage: "go-cache-plugin clean [--cache-dir=DIR]",
    text: `Empties the local cache directory (default: $GOCACHE/go-cache-plugin, GOCACHE as "go env"
tells it); never the bucket. Refuses while a serve process uses the directory.`,
  },
  help: { usage: "go-cache-plugin help [topic]", text: "Prints help on a command or topic." },
  version: { usage: "go-cache-plugin version", text: "Prints the version (also --version)." },
};

function commandHelp(name: string): string {
  const { usage, text, scope } = COMMANDS[name]!;
  const flags = FLAGS.filter((spec) =>
    scope ? spec.scope?.includes(scope as never) : name === "direct" && !spec.scope
  );
  const list = flags.map((spec) => {
    const flag = (spec.flag.length === 1 ? "-" : "--") + spec.flag;
    return `  ${flag.padEnd(19)} ${spec.help} (${spec.env}; default ${spec.shown})`;
  });
  return `Usage: ${usage}

${text}` + (list.length > 0 ? `\n\nFlags:\n${list.join("\n")}` : "") +
    (scope || name === "direct"
      ? `\n\nEvery flag with its variable: go-cache-plugin help environment`
      : "");
}

const TOPICS: Record<string, () => string> = {
  configure: () =>
    `How to configure the plugin.

Set GOCACHEPROG to the plugin's command line (a path, or a name on PATH). Settings come from flags
or their environment twins ("help environment"); a flag wins over its variable.

The local cache directory defaults to $GOCACHE/go-cache-plugin: go passes its GOCACHE to the
plugin, and files under it are copied, not renamed, by "go build -o".

The S3 tier needs --bucket and credentials from the standard AWS chain (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws files, or instance/container roles). For MinIO or
another S3-compatible server, set --s3-endpoint-url and usually --s3-path-style.

Google Cloud Storage: --bucket=gs://NAME (or --storage=gcs --gcs-bucket=NAME). Credentials as
Google's tools find them: --gcs-key-file or GOOGLE_APPLICATION_CREDENTIALS (a service-account
key, or a workload identity federation file), gcloud's application-default credentials, the
metadata server. STORAGE_EMULATOR_HOST points it at an emulator, without credentials.

When S3 is slow, down or misconfigured the plugin keeps serving the local tier: a remote error
is a miss, never a failed build.

Trust tiers: --prefix is where this build reads first and writes; --read-prefixes=a,b are read
after a miss there, never written; --read-only writes nothing to the bucket. Whoever can write a
prefix decides what builds reading it link in: see the README's "Security model" for bucket
policies (main writes main/, pull requests read it).

--max-size=10G keeps the local directory's entries under 10 GiB (K, M, G: base 1024), least
recently used out first; entries used within the last hour stay even over the cap. A server
trims as it writes; in direct mode a go command trims after it has its last reply. --expiry
works beside it. "clean" empties the directory (never the bucket: use lifecycle rules there);
it refuses while a serve process uses the directory.`,
  environment: environmentTable,
  "direct-mode": () =>
    `Run the plugin as a subprocess of each go command (the default).

  export GOCACHEPROG="go-cache-plugin --cache-dir=/tmp/gocache --bucket=my-bucket"
  go build ./...

or with variables:

  export GOCACHE_DIR=/tmp/gocache GOCACHE_S3_BUCKET=my-bucket GOCACHEPROG=go-cache-plugin`,
  "serve-mode": () =>
    `Run one long-lived server that many go commands share.

  go-cache-plugin serve --plugin=5930 --cache-dir=/var/cache/gcp --bucket=$B
  export GOCACHEPROG="go-cache-plugin connect 5930"

--plugin takes a port on 127.0.0.1 or a Unix socket path (connect takes the same). Only the server
needs S3 credentials. If connect cannot reach the server it serves the local tier itself and
warns once. --http=ADDR adds /debug/vars, /metrics (Prometheus) and a status page at /;
"go-cache-plugin stats --http=ADDR" prints the same summary (--format=markdown for a CI job
summary, --format=json). SIGINT or SIGTERM stops accepting, lets sessions finish, flushes
uploads and exits 0.`,
  "module-proxy": () =>
    `Run a caching Go module proxy and checksum-database proxy.

  go-cache-plugin serve --plugin=5930 --http=127.0.0.1:5970 --modproxy
  export GOPROXY=http://127.0.0.1:5970/mod
  export GOSUMDB="sum.golang.org http://127.0.0.1:5970/mod/sumdb/sum.golang.org"

The upstream is --upstream (a GOPROXY-style list), else $GOPROXY, else "go env GOPROXY".
"direct" and "off" entries are never fetched. Module files are kept in the cache directory and,
with --bucket, under <prefix>/module/ in S3. --sumdb lists the checksum databases to proxy.`,
  "reverse-proxy": () =>
    `Run a caching HTTPS proxy for listed hosts (tailscale's --revproxy).

  go-cache-plugin serve --plugin=5930 --http=127.0.0.1:5970 --revproxy=dl.example.com,api.example.com
  export HTTPS_PROXY=http://127.0.0.1:5970 HTTP_PROXY=http://127.0.0.1:5970
  curl --cacert <cache-dir>/revproxy/ca.pem https://dl.example.com/tool-1.2.tar.gz
  export SSL_CERT_FILE=<cache-dir>/revproxy/ca.pem    # go and most tools; or SSL_CERT_DIR

The --http listener then also takes CONNECT and absolute-form requests. CONNECT to a listed host
(host, or host:port for that port only) is answered with a certificate signed by the proxy's own
CA, <cache-dir>/revproxy/ca.pem (made once and kept; its key, private/ca-key.pem, is mode 0600
and never leaves the machine); the request goes through the cache. CONNECT to any other host is
tunnelled unchanged. Trust the CA with SSL_CERT_DIR=<cache-dir>/revproxy (go: adds it to the
system roots), SSL_CERT_FILE (replaces the roots: use a copy of the system bundle with ca.pem
appended), curl --cacert, or the system store (update-ca-certificates); the proxy never changes
the system store itself. Origins behind a private CA: set SSL_CERT_FILE or SSL_CERT_DIR for serve.

Kept on disk and in the bucket (<prefix>/revproxy/): GET answered 200 with Cache-Control immutable,
or must-revalidate with max-age over 60 days. Kept in memory until it expires: max-age under an
hour. Never kept: no-store, no-cache, private, Set-Cookie, Vary other than Accept-Encoding, or a
request with Authorization or Cookie (unless the answer is public). Responses say X-Cache: hit,
memory | hit, local | hit, remote | fetch, cached | fetch, uncached.

Only loopback clients may use the proxy; --revproxy-allow=10.0.0.0/8,192.168.1.7 (or *) allows
more. CONNECT to the proxy's own ports is refused. --max-size, --expiry, --read-only and
--read-prefixes apply.`,
  debug: () =>
    `Per-request debug logging to stderr.

--debug takes a bit mask:
   1  build cache requests (B/E lines with request id, action id, timing)
   2  module proxy and checksum database requests
   4  S3 calls
   8  caching proxy requests (--revproxy)

-v logs lifecycle events; --metrics prints counters to stderr at exit.`,
  permissions: () =>
    `Deno permissions the program runs with (deno compile bakes them in):

  ${PERMISSIONS}

read/write: the cache directory (chosen at run time); net: S3, listeners, module upstream, proxy
origins; env SSL_CERT_FILE/SSL_CERT_DIR: CAs the proxy trusts for origins; env GOOGLE_*,
STORAGE_EMULATOR_HOST, GCE_METADATA_*, CLOUDSDK_*, APPDATA and the proxy variables: Google
Cloud Storage credentials, emulator and CA as Google's libraries read them;
run=go: only for "go env GOCACHE" (serve and clean's default directory) and "go env GOPROXY"
(when the module proxy has no other upstream); run=ps: serve reads the process table once per
session to show which go command it serves on the status page.`,
};

/**
 * Returns the help text for a topic.
 *
 * @param topic A topic name, or "" for the overview.
 * @returns The text.
 * @throws {UsageError} For an unknown topic.
 */
export function helpText(topic: string): string {
  if (!topic) return OVERVIEW;
  if (topic in COMMANDS) return commandHelp(topic);
  const render = TOPICS[topic];
  if (!render) {
    throw new UsageError(
      `Unknown help topic ${JSON.stringify(topic)}: try ${
        [...Object.keys(COMMANDS), ...Object.keys(TOPICS)].join(", ")
      }`,
    );
  }
  return render();
}

/**
 * Prints the overview to stderr, for a person who ran the plugin at a terminal (or gave a bad
 * flag there).
 *
 * @returns The exit status, 2.
 */
export async function printUsage(): Promise<number> {
  await writeAll(Deno.stderr, new TextEncoder().encode(OVERVIEW + "\n"));
  return 2;
}

function environmentTable(): string {
  const rows = FLAGS.map((spec) => {
    const flag = (spec.flag.length === 1 ? "-" : "--") + spec.flag;
    return `  ${flag.padEnd(19)} ${spec.env.padEnd(25)} ${spec.kind.padEnd(9)} ${spec.shown}` +
      (spec.scope ? `  (${spec.scope.join(",")})` : "") +
      `\n      ${spec.help}`;
  });
  return `Flags and their environment variables (a flag wins over its variable).

  flag                variable                  kind      default
${rows.join("\n")}

Also read: GOCACHE (the default cache directory's parent), AWS_REGION / AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL, AWS_CA_BUNDLE (or the profile's ca_bundle: CAs trusted for S3 over TLS),
the AWS credential chain, GOPROXY (module proxy upstream).`;
}

/**
 * Prints `help [topic]` or `version` to stdout.
 *
 * @param config The parsed configuration (`command` is help or version).
 * @param log For the usage line of an unknown topic.
 * @returns The exit status: 0, or 2 for an unknown topic.
 */
export async function printHelp(config: Config, log: Logger): Promise<number> {
  let text: string;
  try {
    text = config.command === "version"
      ? `go-cache-plugin ${VERSION} (Deno ${Deno.version.deno})`
      : helpText(config.helpTopic);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    log.warn(`usage: ${error.message}`);
    return 2;
  }
  await writeAll(Deno.stdout, new TextEncoder().encode(text + "\n"));
  return 0;
}
