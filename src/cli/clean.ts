/**
 * `clean`: empties the local cache directory (`--cache-dir`) of the plugin's own files: build
 * cache entries (`action/`, `output/`), the module proxy's files (`module/`), uploads still owed
 * to S3 (`s3-pending/`) and the markers; anything else in the directory stays. The bucket is
 * never touched: expire its objects with lifecycle rules.
 *
 * It refuses, in one line and with status 1, while a `serve` process uses the directory (the
 * lock in `.serve.pid`). go commands using it in direct mode (or through `connect`'s fallback)
 * may run meanwhile: then the entries they may still read (used within the last hour and five
 * minutes, the longest a hit leaves an output's mtime unrefreshed, plus a margin) are kept and
 * counted, and their plugins recreate what they write next.
 *
 * @module
 */

import { fallbackDir } from "../cache/fallback.ts";
import { LocalCache } from "../cache/local.ts";
import type { Logger } from "../log/mod.ts";
import { formatBytes } from "../server/summary.ts";
import { errorMessage, writeAll } from "../util/mod.ts";
import type { Config } from "./config.ts";
import { lockForClean } from "./_dir_locks.ts";

/** With go commands running, entries used within this period are kept. */
const KEEP_WHILE_BUSY_MS = 3_900_000;

/** The markers other parts keep in the cache directory. */
const MARKERS = [".last-prune", ".last-sweep", "s3-breaker"];

/** The parts other components keep in the cache directory, and their own files there. */
const PARTS = [
  { dir: "s3-pending", match: (relative: string) => /^[0-9a-f]{64}$/.test(relative) },
  { dir: "module", match: isModuleFile },
  // The caching proxy's objects and owed uploads; its CA (ca.pem, private/) stays trusted.
  {
    dir: "revproxy",
    match: (relative: string) =>
      /^([0-9a-f]{2}\/[0-9a-f]{64}(\.[0-9a-f]{8}\.tmp)?|\.pending\/[0-9a-f]{64})$/.test(relative),
  },
];

/**
 * Runs `clean`.
 *
 * @param config The parsed configuration (`cacheDir`).
 * @param log Where the refusal or a failure goes (stderr).
 * @returns The exit status: 0 when cleaned (or nothing to clean), 1 when refused or failed.
 */
export async function runClean(config: Config, log: Logger): Promise<number> {
  const dir = config.cacheDir;
  const info = await Deno.stat(dir).catch(() => undefined);
  if (!info?.isDirectory) {
    await print(`nothing to clean: ${JSON.stringify(dir)} does not exist`);
    return 0;
  }
  const locks = await lockForClean(dir);
  if (locks.state === "served") {
    log.warn(
      `Cannot clean ${JSON.stringify(dir)}: a serve process (pid ${locks.pid}) is using it; ` +
        "stop it first",
    );
    return 1;
  }
  try {
    const keep = locks.state === "busy" ? KEEP_WHILE_BUSY_MS : 0;
    const local = await LocalCache.open(dir);
    const result = await local.clean({ keepUsedWithinMs: keep, also: PARTS, files: MARKERS });
    let line = `cleaned ${JSON.stringify(dir)}: removed ${result.files} files (${
      formatBytes(result.bytes)
    })`;
    const spill = fallbackOf(dir);
    if (spill) {
      const spilled = await (await LocalCache.open(spill)).clean({ keepUsedWithinMs: keep });
      result.kept += spilled.kept;
      if (spilled.files > 0) line += ` and ${spilled.files} from ${JSON.stringify(spill)}`;
    }
    if (result.kept > 0) {
      line += locks.state === "busy"
        ? `; kept ${result.kept} recently used by go commands still running`
        : `; kept ${result.kept} temporary files being written`;
    }
    await print(line);
    return 0;
  } catch (error) {
    log.warn(`Cannot clean ${JSON.stringify(dir)}: ${errorMessage(error)}`);
    return 1;
  } finally {
    locks.release();
  }
}

/**
 * Whether a path under `module/` is one of the module proxy's files: the go download-cache
 * layout (`…/@v/…`, `…/@latest`), checksum-database files (`sumdb/…`), and owed uploads
 * (`.pending/…`). Module path elements never contain `@` or start with a dot.
 */
function isModuleFile(relative: string): boolean {
  const parts = relative.split("/");
  const last = parts.at(-1) ?? "";
  return parts[0] === "sumdb" || parts[0] === ".pending" || parts.includes("@v") ||
    last.startsWith("@latest");
}

/** The fallback directory of a cache directory, if it exists and is safe to use. */
function fallbackOf(dir: string): string | undefined {
  try {
    return fallbackDir(dir);
  } catch {
    return undefined; // someone else's, or not a directory: not ours to clean
  }
}

async function print(line: string): Promise<void> {
  await writeAll(Deno.stdout, new TextEncoder().encode(line + "\n"));
}
