/**
 * Checks a local cache directory the way go would trust it: every action record names an output
 * that exists with the recorded size, and every output hashes to its name.
 *
 * @module
 */

import { sha256Hex } from "./bytes.ts";

/** What {@linkcode verifyCacheDir} found. */
export interface CacheDirCheck {
  actions: number;
  outputs: number;
  /** Entries that would hand go wrong or missing bytes, described. */
  bad: string[];
}

/**
 * Reads a whole cache directory (`action/<xx>/<id>`, `output/<xx>/<id>`).
 *
 * @param dir The cache directory; a missing one counts as empty.
 * @returns Counts and the bad entries.
 */
export async function verifyCacheDir(dir: string): Promise<CacheDirCheck> {
  const check: CacheDirCheck = { actions: 0, outputs: 0, bad: [] };
  for (const path of await files(`${dir}/output`)) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    if (!/^[0-9a-f]{64}$/.test(name)) continue; // temporary files are never handed out
    check.outputs++;
    if (await sha256Hex(await Deno.readFile(path)) !== name) check.bad.push(`output ${name}`);
  }
  for (const path of await files(`${dir}/action`)) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    if (!/^[0-9a-f]{64}$/.test(name)) continue;
    check.actions++;
    const [outputId, size] = (await Deno.readTextFile(path)).trim().split(" ");
    const info = await Deno.stat(`${dir}/output/${outputId?.slice(0, 2)}/${outputId}`).catch(
      () => undefined,
    );
    // A record whose output is gone is a miss, not a wrong hit; a size mismatch is also a miss.
    if (!/^[0-9a-f]{64}$/.test(outputId ?? "") || !/^\d+$/.test(size ?? "")) {
      check.bad.push(`action ${name}: malformed record`);
    } else if (info && !info.isFile) {
      check.bad.push(`action ${name}: output is not a file`);
    }
  }
  return check;
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return out;
  }
  for (const entry of entries) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...await files(path));
    else if (entry.isFile) out.push(path);
  }
  return out;
}
