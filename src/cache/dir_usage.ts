/**
 * What a cache directory holds, as `stats` reports it beside a server's counters: the bytes of its
 * outputs and the number of its action records, counted by walking the layout's two sharded
 * directories.
 *
 * @module
 */

import { ACTION_DIR, OUTPUT_DIR } from "./dir_layout.ts";

/** What {@linkcode cacheDirUsage} counted. */
export interface CacheDirUsage {
  /** Bytes of the outputs. */
  bytes: number;
  /** Action records. */
  entries: number;
}

/**
 * Counts the outputs' bytes and the action records under a cache directory.
 *
 * @param dir The cache directory.
 * @returns The counts; `undefined` when the directory cannot be read.
 */
export async function cacheDirUsage(dir: string): Promise<CacheDirUsage | undefined> {
  try {
    await Deno.lstat(dir);
    const [actions, outputs] = await Promise.all([
      countShards(`${dir}/${ACTION_DIR}`, { sizes: false }),
      countShards(`${dir}/${OUTPUT_DIR}`, { sizes: true }),
    ]);
    return { bytes: outputs.bytes, entries: actions.files };
  } catch {
    return undefined;
  }
}

/** The files of a sharded directory (`<xx>/<id>`), with their bytes when `sizes` is set. */
async function countShards(
  base: string,
  options: { sizes: boolean },
): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  try {
    await Deno.lstat(base);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { files, bytes }; // nothing stored yet
    throw error;
  }
  for await (const shard of Deno.readDir(base)) {
    if (!shard.isDirectory) continue;
    for await (const entry of Deno.readDir(`${base}/${shard.name}`)) {
      if (!entry.isFile) continue;
      files++;
      if (options.sizes) bytes += (await Deno.lstat(`${base}/${shard.name}/${entry.name}`)).size;
    }
  }
  return { files, bytes };
}
