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
  // flag parser (node:util alone costs tens of milliseconds) or anything else.
  let handshakeSent = false;
  const sendHandshake = async () => {
    handshakeSent = true;
    await writeHandshake(Deno.stdout);
  };
  if (!args.some((arg) => NOT_DIRECT.has(arg))) await sendHandshake();

  const { parseConfig, UsageError } = await import("./src/cli/config.ts");
  let config;
  try {
    config = parseConfig(args, (name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    createLogger().warn(`usage: ${error.message}`);
    return 2;
  }
  const log = createLogger({ verbose: config.verbose, debug: config.debug });
  switch (config.command) {
    case "direct": {
      if (!handshakeSent) await sendHandshake();
      const { runDirect } = await import("./src/cli/direct.ts");
      return await runDirect(config, log);
    }
    case "serve":
      return await (await import("./src/cli/serve.ts")).runServe(config, log);
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
