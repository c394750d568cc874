/**
 * go-cache-plugin: a GOCACHEPROG plugin for the Go toolchain, with a local tier, an optional S3
 * tier, a server mode and a caching module proxy. This file only wires: see `src/`.
 *
 * @module
 */

import { writeHandshake } from "./src/protocol/wire.ts";
import { createLogger } from "./src/log/mod.ts";
import { NOT_DIRECT } from "./src/cli/commands.ts";

/** Runs the program; resolves to the exit status. */
export async function main(args: string[]): Promise<number> {
  // go waits for the handshake on every invocation: in direct mode send it before importing the
  // flag parser (node:util alone costs tens of milliseconds) or anything else. At a terminal it is
  // a person, not go: they get usage instead.
  const person = Deno.stdin.isTerminal();
  let handshakeSent = false;
  if (!person && !args.some((arg) => NOT_DIRECT.has(arg))) {
    handshakeSent = true;
    await writeHandshake(Deno.stdout);
  }
  const { parseConfig, UsageError } = await import("./src/cli/config.ts");
  let config;
  try {
    config = parseConfig(args, (name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    createLogger().warn(`usage: ${error.message}`);
    if (person) await (await import("./src/cli/help.ts")).printUsage();
    return 2;
  }
  const log = createLogger({ verbose: config.verbose, debug: config.debug });
  config = await (await import("./src/cli/_go_env.ts")).withGoCacheDir(config, log);
  switch (config.command) {
    case "direct": {
      if (person) return await (await import("./src/cli/help.ts")).printUsage();
      if (!handshakeSent) await writeHandshake(Deno.stdout);
      // A line about one object is logged once per shape; the rest are counted, said at the end.
      const once = (await import("./src/metrics/faults.ts")).collapsingLogger(log);
      const status = await (await import("./src/cli/direct.ts")).runDirect(config, once);
      once.flush();
      return status;
    }
    case "serve": {
      const serve = await import("./src/cli/serve.ts");
      return await (config.serve.printEnv ? serve.printEnv(config) : serve.runServe(config, log));
    }
    case "connect":
      return await (await import("./src/cli/connect.ts")).runConnect(config, log);
    case "stats":
      return await (await import("./src/cli/stats.ts")).runStats(config, log);
    case "clean":
      return await (await import("./src/cli/clean.ts")).runClean(config, log);
    case "help":
    case "version":
      return await (await import("./src/cli/help.ts")).printHelp(config, log);
  }
}

if (import.meta.main) {
  Deno.exit(
    await main(Deno.args).catch((error) => {
      createLogger().warn(`error: ${error instanceof Error ? error.message : String(error)}`);
      return 1;
    }),
  );
}
