/** The warm-up manifest (manifest.ts): merging entries, encoding and decoding. */
import assert from "node:assert/strict";
import {
  decodeManifest,
  encodeManifest,
  mergeEntries,
  type WarmEntry,
} from "../../../src/cache/remote/mod.ts";
import { repeatedId } from "../../_util/bytes.ts";

const encoder = new TextEncoder();

function id(n: number): string {
  return repeatedId(n, 4);
}

function entry(n: number, seen = 1, size = 10): WarmEntry {
  return { actionId: id(n), outputId: id(n + 5000), size, nanos: 1000n * BigInt(n), seen };
}

Deno.test("mergeEntries() puts this session first in asked order, keeps packs, drops idle ones", () => {
  const previous = [
    { ...entry(1, 5), pack: "p", offset: 0 },
    entry(2, 4),
    entry(3, 1),
    entry(4, 5),
  ];
  const used = [entry(4), entry(1), entry(9)].map(({ seen: _, ...e }) => e);
  const merged = mergeEntries(previous, used, { session: 10, maxIdleSessions: 8 });
  assert.deepEqual(merged.map((e) => e.actionId), [id(4), id(1), id(9), id(2)]);
  assert.deepEqual(merged.map((e) => e.seen), [10, 10, 10, 4]);
  assert.equal(merged[1]!.pack, "p", "an unchanged output keeps its pack place");
  const capped = mergeEntries(previous, used, { session: 10, maxEntries: 2 });
  assert.equal(capped.length, 2);
  const byBytes = mergeEntries(previous, used, { session: 10, maxBytes: 25 });
  assert.equal(byBytes.length, 2);
});

Deno.test("encodeManifest() and decodeManifest() round-trip; malformed entries are left out", async () => {
  const manifest = {
    key: "k",
    session: 3,
    entries: [
      { ...entry(1), pack: "ab".repeat(32), offset: 7 },
      entry(2),
      { ...entry(3), pack: "cd".repeat(32), offset: 40 },
    ],
    packs: [{ name: "ab".repeat(32), size: 17 }, { name: "cd".repeat(32), size: 20, raw: 50 }],
  };
  const encoded = await encodeManifest(manifest);
  assert.deepEqual([...encoded.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd], "zstd");
  const decoded = await decodeManifest(encoded);
  assert.deepEqual(decoded, { ...manifest, version: 2 });
  assert.equal(await decodeManifest(encoder.encode("{}")), undefined);
  const bad = new Response(
    ReadableStream.from([encoder.encode(JSON.stringify({
      version: 1,
      entries: [{ action: "zz", output: id(1), size: 1, time: "1" }, {
        action: id(1),
        output: id(2),
        size: 1,
        time: "5",
        pack: "cd".repeat(32), // not a listed pack: the place is dropped
        offset: 0,
      }],
    }))]).pipeThrough(new CompressionStream("gzip")),
  );
  const partial = await decodeManifest(await bad.bytes());
  assert.equal(partial?.entries.length, 1);
  assert.equal(partial?.entries[0]?.pack, undefined);
});
