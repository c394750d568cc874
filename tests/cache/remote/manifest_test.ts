/**
 * Manifests read from a hostile bucket (`readManifest`): every number checked against the
 * documented caps (a manifest breaking one is skipped with its reason), times and `seen` values
 * clamped, and the decompression bounded in bytes and nesting whatever the declared size says.
 */
import assert from "node:assert/strict";
import {
  decodeManifest,
  encodeManifest,
  MANIFEST_LIMITS,
  readManifest,
  type WarmManifest,
} from "../../../src/cache/remote/mod.ts";

const HEX_A = "a".repeat(64);
const HEX_B = "b".repeat(64);
const HEX_P = "c".repeat(64);

/** Gzip of the given parts, streamed. */
async function gzip(...parts: (string | Uint8Array)[]): Promise<Uint8Array> {
  const bytes = parts.map((p) => typeof p === "string" ? new TextEncoder().encode(p) : p);
  const gz = new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>;
  return await new Response(ReadableStream.from(bytes).pipeThrough(gz)).bytes();
}

function raw(entries: unknown[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ version: 1, key: "k", session: 3, packs: [], entries, ...extra });
}

function rawEntry(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { action: HEX_A, output: HEX_B, size: 10, time: "1000", seen: 2, ...fields };
}

async function read(text: string, size?: number) {
  const bytes = await gzip(text);
  return await readManifest(ReadableStream.from([bytes]), size ?? bytes.length);
}

Deno.test("readManifest() skips a manifest whose numbers break a cap, with the reason", async () => {
  const pack = { name: HEX_P, size: 100 };
  const cases: [string, string, RegExp][] = [
    ["an entry of 2.25e12 bytes", raw([rawEntry({ size: 2.25e12 })]), /size 2250000000000, above/],
    [
      "a pack above 32 MiB",
      raw([], { packs: [{ name: HEX_P, size: 400 << 20 }] }),
      /pack cccccccccccc has size 419430400/,
    ],
    [
      "an offset outside its pack",
      raw([rawEntry({ pack: HEX_P, offset: 95 })], { packs: [pack] }),
      /lies at 95\+10, outside pack/,
    ],
    ["a session of 2^53-1", raw([], { session: 2 ** 53 - 1 }), /session 9007199254740991 is above/],
    [
      "more packs than the cap",
      raw([], {
        packs: Array.from({ length: 1025 }, (_, i) => ({ name: i.toString(16).padStart(64, "0") })),
      }),
      /1025 packs, above the cap of 1024/,
    ],
    [
      "entries of more than 2 GiB in all",
      raw(
        Array.from(
          { length: 3 },
          (_, i) => rawEntry({ action: String(i).repeat(64), size: 2 ** 30 }),
        ),
      ),
      /more than the cap of 2147483648 bytes/,
    ],
  ];
  for (const [what, text, problem] of cases) {
    const result = await read(text);
    assert.equal(result.manifest, undefined, what);
    assert.match(result.problem!, problem, what);
  }
  // Counts: one over the cap of entries (the same check at the real cap of 50,000).
  const many = Array.from(
    { length: MANIFEST_LIMITS.maxEntries + 1 },
    (_, i) => rawEntry({ action: i.toString(16).padStart(64, "0"), size: 0 }),
  );
  assert.match((await read(raw(many))).problem!, /50001 entries, above the cap of 50000/);
  // A declared size over the cap is not read at all.
  assert.match((await read(raw([]), 2.25e12)).problem!, /size of 2250000000000 bytes is above/);
});

Deno.test("readManifest() clamps times and seen values, and leaves malformed entries out", async () => {
  const future = String(BigInt(Date.now() + 10 * 365 * 86_400_000) * 1_000_000n);
  const { manifest } = await read(raw([
    rawEntry({ seen: 2 ** 53 - 1, time: future }),
    rawEntry({ action: "d".repeat(64), seen: -4, time: "-5" }),
    rawEntry({ action: "not hex" }),
    rawEntry(), // a duplicate action: the first one counts
  ]));
  assert.ok(manifest);
  assert.equal(manifest.entries.length, 2);
  const [first, second] = manifest.entries as [
    WarmManifest["entries"][0],
    WarmManifest["entries"][0],
  ];
  assert.equal(first.seen, 0, "a seen past the session is read as never used");
  assert.ok(first.nanos <= BigInt(Date.now()) * 1_000_000n, "a future time is read as now");
  assert.equal(second.seen, 0);
  assert.equal(second.nanos, 0n);
  // Round trip: what an honest writer writes is read back as written.
  const honest: WarmManifest = { key: "k", session: 4, packs: [], entries: [first] };
  assert.deepEqual((await decodeManifest(await encodeManifest(honest)))?.entries, [first]);
});

Deno.test("readManifest() abandons a gzip bomb and a nesting bomb at the default caps", async () => {
  // 1 GiB of spaces inside a JSON string: about 1 MiB compressed; abandoned after 32 MiB.
  const gib = 1 << 30;
  const chunk = new Uint8Array(1 << 24).fill(0x20);
  const parts: (string | Uint8Array)[] = ['{"version":1,"key":"'];
  for (let n = 0; n < gib; n += chunk.length) parts.push(chunk);
  parts.push('","entries":[]}');
  const bomb = await gzip(...parts);
  assert.ok(bomb.length < MANIFEST_LIMITS.maxObjectBytes, `${bomb.length} bytes compressed`);
  const before = Deno.memoryUsage().rss;
  const started = performance.now();
  const result = await readManifest(ReadableStream.from([bomb]), bomb.length);
  assert.match(result.problem!, /more than 33554432 bytes once decompressed/);
  const grew = Deno.memoryUsage().rss - before;
  assert.ok(grew < 256 << 20, `RSS grew by ${grew >> 20} MiB`);
  assert.ok(performance.now() - started < 5_000);

  // 39 KB of brackets: deeper than 16 is refused before JSON.parse sees it.
  const nest = await read(`{"version":1,"entries":[],"x":${"[".repeat(40_000)}`);
  assert.match(nest.problem!, /nested more than 16 deep/);
  // Not gzip at all.
  const plain = new TextEncoder().encode(raw([]));
  assert.match((await readManifest(ReadableStream.from([plain]), plain.length)).problem!, /gzip/);
});
