/**
 * The command line: reads the configuration and wires the components below into one of three
 * modes, or runs one of the maintenance commands: it parses, wires and reports, and holds no
 * cache policy (that is in `cache/`). `cli/` is the only place that reads {@linkcode Config} and
 * the only importer of everything under it (`server/`, `modproxy/`, `revproxy/`, `cache/`,
 * `store/`, `protocol/`, and `log/`, `metrics/`, `util/`); nothing under `src/` imports `cli/`.
 * Components take plain options. Start reading at `direct.ts`.
 *
 * Where to look:
 *
 * - Modes: `direct.ts` ({@linkcode runDirect}, the default: the protocol on stdin/stdout, as go
 *   runs GOCACHEPROG), `serve.ts` ({@linkcode runServe}: one long-lived server for many go
 *   commands, with the HTTP side and the module proxy), `connect.ts` ({@linkcode runConnect}:
 *   bridges stdin/stdout to a server, serving the local tier itself when there is none).
 * - Maintenance: `stats.ts` ({@linkcode runStats}: a running server's counters as a table,
 *   Markdown or JSON, from its `/debug/vars`), `clean.ts` ({@linkcode runClean}: reports what
 *   `cache/clean_dir.ts` removed from the local cache directory, or why it refused).
 * - Configuration: `flags.ts` ({@linkcode FLAGS}, the one flag table: spelling, `GOCACHE_*`
 *   variable, kind, default, scope, and the `Config` field each fills), `config.ts`
 *   ({@linkcode parseConfig}: the table read in order flag > variable > default, plus the rules
 *   that span flags), `_values.ts` (reading and checking values), `commands.ts` (the subcommands;
 *   no imports, so `main.ts` can read it before the handshake).
 * - Help: `help.ts` (`help [topic]`, with `help environment` generated from the flag table),
 *   `version.ts` ({@linkcode VERSION}).
 * - Wiring the cache: `stack.ts` ({@linkcode openCacheStack}: the local tier from
 *   `cache/local_tier.ts`), `remote_stack.ts` (the remote tier on top, loaded only with
 *   `--bucket`), `cache_stack.ts` (the {@linkcode CacheStack} type both build).
 *
 * This file re-exports the public entry points for readers and tests. `main.ts` does not import
 * it: go waits for the handshake on every build step, so `main.ts` imports `commands.ts` alone
 * before writing it, then loads `config.ts` and the one mode file it needs dynamically.
 *
 * @example
 * ```ts ignore
 * import { parseConfig, runDirect } from "./mod.ts";
 * import { createLogger } from "../log/mod.ts";
 *
 * const config = parseConfig(Deno.args, (name) => Deno.env.get(name));
 * if (config.command === "direct") Deno.exit(await runDirect(config, createLogger()));
 * ```
 *
 * @module
 */

export { type Command, NOT_DIRECT, SUBCOMMANDS } from "./commands.ts";
export {
  type Config,
  parseConfig,
  parseGoDuration,
  parseSize,
  type StatsFormat,
  UsageError,
} from "./config.ts";
export { type FlagKind, FLAGS, type FlagSpec } from "./flags.ts";
export { helpText, printHelp } from "./help.ts";
export { VERSION } from "./version.ts";
export { runDirect } from "./direct.ts";
export { runServe, runServer, type ServerOptions } from "./serve.ts";
export { runConnect } from "./connect.ts";
export { formatSummary, runStats } from "./stats.ts";
export { runClean } from "./clean.ts";
export type { CacheStack } from "./cache_stack.ts";
export { openCacheStack, type OpenStackOptions } from "./stack.ts";
