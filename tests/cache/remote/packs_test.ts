/** Packs (packs.ts): which to keep, building them, slicing outputs back out. */
import assert from "node:assert/strict";
import { buildPacks, planPacks, slicePack, type WarmEntry } from "../../../src/cache/remote/mod.ts";
import { repeatedId, sha256Hex as sha256 } from "../../_util/bytes.ts";

const encoder = new TextEncoder();

function id(n: number): string {
  return repeatedId(n, 4);
}

function entry(n: number, seen = 1, size = 10): WarmEntry {
  return { actionId: id(n), outputId: id(n + 5000), size, nanos: 1000n * BigInt(n), seen };
}

Deno.test("planPacks() keeps mostly wanted packs and packs only new small outputs", () => {
  const kept = { name: "aa".repeat(32), size: 30 };
  const dropped = { name: "bb".repeat(32), size: 100 };
  const entries = [
    { ...entry(1), pack: kept.name, offset: 0 },
    { ...entry(2), pack: kept.name, offset: 10 },
    { ...entry(3), pack: dropped.name, offset: 0 },
    entry(4),
    entry(5, 1, (1 << 20) + 1), // too big for a pack
  ];
  const plan = planPacks(entries, [kept, dropped], { minNewEntries: 1 });
  assert.deepEqual(plan.keep, [kept]);
  assert.deepEqual(plan.toPack.map((e) => e.actionId), [id(3), id(4)]);
  assert.equal(plan.entries[2]!.pack, undefined);
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
  // One buffer for every pack: each is checked before the next is asked for.
  for await (const pack of buildPacks(entries, read, { packBytes: 2000 })) {
    packs++;
    assert.equal(pack.info.name, await sha256(pack.bytes));
    assert.equal(pack.bytes.length, pack.info.size);
    for (const [actionId, offset] of pack.offsets) {
      const e = entries.find((x) => x.actionId === actionId)!;
      assert.deepEqual(slicePack(pack.bytes, { ...e, offset }), bodies.get(actionId));
    }
  }
  assert.ok(packs > 1, "closed at about packBytes");
  // An output that is gone or has another size is left out.
  const gone = [...entries.slice(0, 3), { ...entries[3]!, size: entries[3]!.size + 1 }];
  bodies.delete(entries[0]!.actionId);
  const [only] = await Array.fromAsync(buildPacks(gone, read));
  assert.deepEqual([...only!.offsets.keys()], [entries[1]!.actionId, entries[2]!.actionId]);
  assert.equal(slicePack(new Uint8Array(3), { ...entry(1), offset: 0 }), undefined);
});
