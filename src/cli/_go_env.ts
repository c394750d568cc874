/**
 * The default cache directory of `serve` and `clean`, the same as direct mode's: under the go
 * command's GOCACHE (`$GOCACHE/go-cache-plugin`). go passes GOCACHE to a plugin it starts; a
 * command run by hand asks `go env GOCACHE`, so that `clean` empties the directory direct mode
 * fills and a server's outputs are under GOCACHE (`go build -o` then copies them instead of
 * renaming them away). Without go, the user cache directory stays.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { ASK_GO_ENV, type Config } from "./config.ts";

/** How long `go env GOCACHE` may take, in ms. */
const GO_ENV_TIMEOUT_MS = 10_000;

/**
 * Resolves the default cache directory through `go env GOCACHE` when no directory was given and
 * go did not pass GOCACHE.
 *
 * @param config The parsed configuration.
 * @param log Where `-v` says what was chosen.
 * @returns The configuration, with `cacheDir` under GOCACHE when go could tell it.
 */
export async function withGoCacheDir(config: Config, log: Logger): Promise<Config> {
  if (config.cacheDirSource !== ASK_GO_ENV) return config;
  if (config.command !== "serve" && config.command !== "clean") return config;
  let gocache = "";
  try {
    const output = await new Deno.Command("go", {
      args: ["env", "GOCACHE"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(GO_ENV_TIMEOUT_MS),
    }).output();
    if (output.success) gocache = new TextDecoder().decode(output.stdout).trim();
  } catch {
    // No go on PATH (or no permission to run it): the user cache directory it is.
  }
  if (!/^(\/|[A-Za-z]:[\\/])/.test(gocache)) {
    log.info(
      `cache directory ${config.cacheDir}: the user cache directory (go env GOCACHE unknown)`,
    );
    return Object.freeze({ ...config, cacheDirSource: "the user cache directory (no go GOCACHE)" });
  }
  const cacheDir = `${gocache.replace(/[\\/]+$/, "")}/go-cache-plugin`;
  log.info(`cache directory ${cacheDir}: under go env GOCACHE`);
  return Object.freeze({ ...config, cacheDir, cacheDirSource: "under go env GOCACHE" });
}
