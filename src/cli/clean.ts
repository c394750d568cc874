/**
 * `clean`: empties the local cache directory (`--cache-dir`) of the plugin's own files and
 * reports what it did (the policy, and the list of what is the plugin's, are in
 * `cache/clean_dir.ts` and `cache/dir_layout.ts`). The bucket is never touched: expire its objects
 * with lifecycle rules.
 *
 * It refuses, in one line and with status 1, while a `serve` process uses the directory. go
 * commands using it in direct mode may run meanwhile: then the entries they may still read are
 * kept and counted, and their plugins recreate what they write next.
 *
 * @module
 */

import { cleanCacheDir } from "../cache/clean_dir.ts";
import type { Logger } from "../log/mod.ts";
import { errorMessage, formatBytes, writeAll } from "../util/mod.ts";
import type { Config } from "./config.ts";

/**
 * Runs `clean`.
 *
 * @param config The parsed configuration (`cacheDir`).
 * @param log Where the refusal or a failure goes (stderr).
 * @returns The exit status: 0 when cleaned (or nothing to clean), 1 when refused or failed.
 */
export async function runClean(config: Config, log: Logger): Promise<number> {
  const dir = config.cacheDir;
  try {
    const outcome = await cleanCacheDir(dir);
    if (outcome.state === "missing") {
      await print(`nothing to clean: ${JSON.stringify(dir)} does not exist`);
      return 0;
    }
    if (outcome.state === "served") {
      log.warn(
        `Cannot clean ${JSON.stringify(dir)}: a serve process (pid ${outcome.pid}) is using it; ` +
          "stop it first",
      );
      return 1;
    }
    let line = `cleaned ${JSON.stringify(dir)}: removed ${outcome.files} files (${
      formatBytes(outcome.bytes)
    })`;
    if (outcome.spill && outcome.spill.files > 0) {
      line += ` and ${outcome.spill.files} from ${JSON.stringify(outcome.spill.dir)}`;
    }
    if (outcome.kept > 0) {
      line += outcome.busy
        ? `; kept ${outcome.kept} recently used by go commands still running`
        : `; kept ${outcome.kept} temporary files being written`;
    }
    await print(line);
    return 0;
  } catch (error) {
    log.warn(`Cannot clean ${JSON.stringify(dir)}: ${errorMessage(error)}`);
    return 1;
  }
}

async function print(line: string): Promise<void> {
  await writeAll(Deno.stdout, new TextEncoder().encode(line + "\n"));
}
