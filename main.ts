/**
 * go-cache-plugin: a GOCACHEPROG plugin for the Go toolchain, with a local tier, an optional S3
 * tier, a server mode and a caching module proxy. This file only wires: see `src/`.
 *
 * @module
 */

import { parseConfig, UsageError } from "./src/cli/config.ts";
import { HANDSHAKE_LINE } from "./src/protocol/wire.ts";
import { createLogger } from "./src/log/mod.ts";

/** Runs the program; resolves to the exit status. */
export async function main(args: string[]): Promise<number> {
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
      // go waits for this line before sending anything: write it before any slow set-up.
      await Deno.stdout.write(new TextEncoder().encode(HANDSHAKE_LINE));
      const { runDirect } = await import("./src/cli/direct.ts");
      return await runDirect(config, log);
    }
    case "serve": {
      const { runServe } = await import("./src/server/mod.ts");
      return await runServe(config, log);
    }
    case "connect": {
      const { runConnect } = await import("./src/server/mod.ts");
      return await runConnect(config, log);
    }
    case "help":
    case "version": {
      const { helpText, VERSION } = await import("./src/cli/help.ts");
      try {
        await Deno.stdout.write(new TextEncoder().encode(
          (config.command === "version"
            ? `go-cache-plugin ${VERSION} (Deno ${Deno.version.deno})`
            : helpText(config.helpTopic)) + "\n",
        ));
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        log.warn(`usage: ${error.message}`);
        return 2;
      }
      return 0;
    }
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
