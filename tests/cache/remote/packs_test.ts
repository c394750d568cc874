/** Packs (packs.ts): which to keep, building them, slicing outputs back out. */
import assert from "node:assert/strict";
import { buildPacks, planPacks, slicePack, type WarmEntry } from "../../../src/cache/remote/mod.ts";
import { repeatedId, sha256Hex as sha256 } from "../../_util/bytes.ts";
import { zstdDecompressSync } from "node:zlib";

const encoder = new TextEncoder();

function id(n: number): string {
  return repeatedId(n, 4);
}

function entry(n: number, seen = 1, size = 10): WarmEntry {
  return { actionId: id(n), outputId: id(n + 5000), size, nanos: 1000n * BigInt(n), seen };
}

Deno.test("planPacks() keeps mostly wanted compressed packs, never raw ones, and packs the rest", () => {
  const kept = { name: "aa".repeat(32), size: 12, raw: 30 };
  const dropped = { name: "bb".repeat(32), size: 40, raw: 100 };
  const raw = { name: "cc".repeat(32), size: 10 }; // an earlier version's: never kept
  const entries = [
    { ...entry(1), pack: kept.name, offset: 0 },
    { ...entry(2), pack: kept.name, offset: 10 },
    { ...entry(3), pack: dropped.name, offset: 0 },
    { ...entry(6), pack: raw.name, offset: 0 },
    entry(4),
    entry(5, 1, (1 << 20) + 1), // a pack of its own
    entry(7, 1, (32 << 20) + 1), // above maxLoneSize: fetched raw
  ];
  const plan = planPacks(entries, [kept, dropped, raw], { minNewEntries: 1 });
  assert.deepEqual(plan.keep, [kept]);
  assert.deepEqual(plan.toPack.map((e) => e.actionId), [id(3), id(6), id(4), id(5)]);
  assert.equal(plan.entries[2]!.pack, undefined);
  assert.equal(plan.entries[3]!.pack, undefined);
});

Deno.test("buildPacks() and slicePack(): every output comes back byte for byte", async () => {
  const bodies = new Map<string, Uint8Array>();
  const entries: WarmEntry[] = [];
  for (let n = 0; n < 50; n++) {
    const body = encoder.encode(`body ${n}`.repeat(n + 1));
    const e = { ...entry(n), size: body.length };
    bodies.set(e.actionId, body);
    entries.push(e);
  }
  const read = (e: WarmEntry, target: Uint8Array) => {
    const body = bodies.get(e.actionId);
    if (!body || body.length !== target.length) return false;
    target.set(body);
    return true;
  };
  let packs = 0;
  let raw = 0;
  // One buffer for every pack: each is checked before the next is asked for.
  for await (const pack of buildPacks(entries, read, { packBytes: 2000 })) {
    packs++;
    assert.equal(pack.info.name, await sha256(pack.bytes));
    assert.equal(pack.bytes.length, pack.info.size);
    const bytes = new Uint8Array(zstdDecompressSync(pack.bytes));
    assert.equal(bytes.length, pack.info.raw);
    assert.ok(pack.info.size < pack.info.raw!, "compressed");
    raw += bytes.length;
    for (const [actionId, offset] of pack.offsets) {
      const e = entries.find((x) => x.actionId === actionId)!;
      assert.deepEqual(slicePack(bytes, { ...e, offset }), bodies.get(actionId));
    }
  }
  assert.ok(packs > 1, "closed at about packBytes");
  assert.equal(raw, entries.reduce((sum, e) => sum + e.size, 0));
  // An output that is gone or has another size is left out.
  const gone = [...entries.slice(0, 3), { ...entries[3]!, size: entries[3]!.size + 1 }];
  bodies.delete(entries[0]!.actionId);
  const [only] = await Array.fromAsync(buildPacks(gone, read));
  assert.deepEqual([...only!.offsets.keys()], [entries[1]!.actionId, entries[2]!.actionId]);
  assert.equal(slicePack(new Uint8Array(3), { ...entry(1), offset: 0 }), undefined);
});
