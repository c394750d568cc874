/**
 * zstd level and threshold for the warm-up's packs, measured on real build outputs: every output
 * of a cache directory (say the warm-up benchmark's seed, or any `--cache-dir`) packed as the
 * manifest writer packs them (small ones into packs of about 4 MiB, larger ones alone), each
 * pack compressed at each level. Prints the ratio and the compression time per level (on the
 * runtime's thread pool, as the writer runs it), and the ratio by output size class.
 *
 * Usage: scripts/deno run --allow-read --allow-env scripts/bench/zstd_levels.ts <cache-dir> [levels=1,3,6]
 *
 * @module
 */

import { zstdCompress } from "../../src/store/mod.ts";
import { print, table } from "./_lib.ts";

const dir = Deno.args[0];
if (!dir) throw new Error("Usage: zstd_levels.ts <cache-dir> [levels]");
const levels = (Deno.args[1] ?? "1,3,6").split(",").map(Number);

const outputs: Uint8Array[] = [];
for await (const shard of Deno.readDir(`${dir}/output`)) {
  if (!shard.isDirectory) continue;
  for await (const file of Deno.readDir(`${dir}/output/${shard.name}`)) {
    if (file.isFile && /^[0-9a-f]{64}$/.test(file.name)) {
      outputs.push(await Deno.readFile(`${dir}/output/${shard.name}/${file.name}`));
    }
  }
}
const raw = outputs.reduce((n, o) => n + o.length, 0);

/** Packs as the writer makes them: outputs up to 1 MiB share ~4 MiB packs, larger ones alone. */
function packs(): Uint8Array[] {
  const result: Uint8Array[] = [];
  let current: Uint8Array[] = [];
  let size = 0;
  const close = () => {
    if (size === 0) return;
    const pack = new Uint8Array(size);
    let at = 0;
    for (const o of current) {
      pack.set(o, at);
      at += o.length;
    }
    result.push(pack);
    current = [];
    size = 0;
  };
  for (const output of outputs) {
    if (output.length === 0) continue;
    if (output.length > 1 << 20) {
      result.push(output);
      continue;
    }
    current.push(output);
    size += output.length;
    if (size >= 4 << 20) close();
  }
  close();
  return result;
}

const all = packs();
const rows: string[][] = [];
for (const level of levels) {
  const started = performance.now();
  let compressed = 0;
  for (const pack of all) compressed += (await zstdCompress(pack, { level })).length;
  const ms = performance.now() - started;
  rows.push([
    String(level),
    `${(compressed / 1048576).toFixed(1)} MiB`,
    `${(raw / compressed).toFixed(2)}×`,
    `${Math.round(ms)} ms`,
    `${(raw / 1048576 / (ms / 1000)).toFixed(0)} MiB/s`,
  ]);
}
print(
  `### zstd on ${outputs.length} outputs, ${
    (raw / 1048576).toFixed(1)
  } MiB, in ${all.length} packs\n`,
);
print(table(["level", "packs", "ratio", "time (one thread)", "rate"], rows));

// By size class, each output alone at level 3: what a threshold would skip.
const classes: [string, number, number][] = [
  ["< 200 B", 0, 200],
  ["200 B – 4 KiB", 200, 4096],
  ["4 KiB – 1 MiB", 4096, 1 << 20],
  ["≥ 1 MiB", 1 << 20, Infinity],
];
const classRows: string[][] = [];
for (const [name, low, high] of classes) {
  const members = outputs.filter((o) => o.length >= low && o.length < high && o.length > 0);
  let before = 0;
  let after = 0;
  for (const o of members) {
    before += o.length;
    after += (await zstdCompress(o, { level: 3 })).length;
  }
  classRows.push([
    name,
    String(members.length),
    `${(before / 1048576).toFixed(2)} MiB`,
    after > 0 ? `${(before / after).toFixed(2)}×` : "—",
  ]);
}
print("\nEach output alone, level 3, by size:\n");
print(table(["size", "outputs", "bytes", "ratio alone"], classRows));
