/**
 * The warm-up (warm.ts, warm_session.ts) through TieredCache against an in-memory bucket: bounds
 * and order, packs (verification, reuse), a get joining a running warm-up fetch and a get jumping
 * the queue, and one manifest written across sessions. The manifest's and the packs' own functions
 * are tested in manifest_test.ts and packs_test.ts.
 */
import assert from "node:assert/strict";
import { LocalCache } from "../../../src/cache/local.ts";
import {
  actionKey,
  decodeManifest,
  encodeManifest,
  legacyManifestKey,
  manifestKey,
  outputKey,
  packKey,
  type PackPolicy,
  TieredCache,
  type WarmEntry,
  warmKeyHash,
} from "../../../src/cache/remote/mod.ts";
import {
  MemoryObjectStore,
  type StoreCallOptions,
  type StoredObject,
  StoreError,
} from "../../../src/store/mod.ts";
import { Metrics } from "../../../src/metrics/mod.ts";
import { TestStore } from "../../_util/test_store.ts";
import { repeatedId, sha256Hex as sha256 } from "../../_util/bytes.ts";
import { isHitNow } from "../../_util/script.ts";
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";

const encoder = new TextEncoder();

function id(n: number): string {
  return repeatedId(n, 4);
}

/** A store that counts GETs and can hold back or slow down those of outputs and packs. */
class CountingStore extends MemoryObjectStore {
  gets: string[] = [];
  hold?: Promise<void>;
  holdPacks?: Promise<void>;
  packDelayMs = 0;
  packsRunning = 0;
  packsPeak = 0;
  /** Packs' bodies arrive in 16 slices, one every this many ms. */
  packTrickleMs = 0;
  override async get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    this.gets.push(key);
    if (this.hold && key.startsWith("output/")) await this.hold;
    if (key.includes(".pack")) {
      this.packsPeak = Math.max(this.packsPeak, ++this.packsRunning);
      try {
        await this.holdPacks;
        await new Promise((r) => setTimeout(r, this.packDelayMs));
      } finally {
        this.packsRunning--;
      }
    }
    const object = await super.get(key, options);
    if (!object || !key.includes(".pack") || this.packTrickleMs === 0) return object;
    const bytes = await new Response(object.body).bytes();
    const step = Math.ceil(bytes.length / 16);
    const trickle = this.packTrickleMs;
    const body = ReadableStream.from((async function* () {
      for (let at = 0; at < bytes.length; at += step) {
        await new Promise((r) => setTimeout(r, trickle));
        yield bytes.subarray(at, at + step);
      }
    })());
    return { ...object, body };
  }
}

/** Puts `count` entries in the bucket (tailscale's layout) and returns them. */
async function seed(store: MemoryObjectStore, count: number, size = 100) {
  const entries: WarmEntry[] = [];
  for (let n = 0; n < count; n++) {
    const body = encoder.encode(`output ${n} `.padEnd(size, "x"));
    const outputId = await sha256(body);
    const actionId = id(n);
    store.objects.set(outputKey(outputId), body);
    store.objects.set(actionKey(actionId), encoder.encode(`${outputId} ${1000n + BigInt(n)}`));
    entries.push({ actionId, outputId, size, nanos: 1000n + BigInt(n), seen: 1 });
  }
  return entries;
}

async function withCache(
  store: MemoryObjectStore,
  fn: (cache: TieredCache, metrics: Metrics, dir: string) => Promise<void>,
  options: {
    readOnly?: boolean;
    dir?: string;
    maxInFlightBytes?: number;
    scope?: string;
    packs?: PackPolicy;
  } = {},
) {
  const dir = options.dir ?? await Deno.makeTempDir();
  const metrics = new Metrics();
  const keyHash = await warmKeyHash("test");
  const cache = new TieredCache(await LocalCache.open(dir), store, {
    metrics,
    warm: {
      key: "test",
      keyHash,
      maxInFlightBytes: options.maxInFlightBytes,
      scope: options.scope,
      packs: options.packs,
    },
  });
  try {
    await fn(cache, metrics, dir);
  } finally {
    await cache.close();
    if (!options.dir) await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("TieredCache writes a manifest; a fresh machine warms from it with packs and no action GETs", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 200);
  const keyHash = await warmKeyHash("test");
  await withCache(store, async (cache, metrics) => {
    for (const e of entries) assert.ok(await cache.get(e.actionId));
    await cache.finishSession();
    assert.equal(metrics.counters().warm_manifest_writes, 1);
  });
  const manifest = await decodeManifest(store.objects.get(manifestKey(keyHash))!);
  assert.deepEqual(manifest?.entries.map((e) => e.actionId), entries.map((e) => e.actionId));
  assert.ok(manifest!.packs.length >= 1);
  assert.ok(manifest!.entries.every((e) => e.pack));
  for (const p of manifest!.packs) assert.ok(store.objects.has(packKey(keyHash, p)));

  store.gets = [];
  await withCache(store, async (cache, metrics) => {
    await cache.startWarmUp();
    const c = metrics.counters();
    assert.equal(c.warm_entries, 200);
    assert.ok(store.gets.length <= 3, `${store.gets.length} GETs: ${store.gets.slice(0, 5)}`);
    for (const e of entries) assert.equal((await cache.get(e.actionId))?.outputId, e.outputId);
    assert.equal(metrics.counters().warm_hits, 200);
    assert.equal(metrics.counters().s3_get_hits ?? 0, 0);
    await cache.finishSession();
    assert.equal(metrics.counters().warm_wasted_bytes, 0);
  });
});

Deno.test("TieredCache warm-up: corrupt pack bytes and missing outputs are misses, never wrong hits", async () => {
  const store = new MemoryObjectStore();
  const entries = await seed(store, 40);
  const keyHash = await warmKeyHash("test");
  await withCache(store, async (cache) => {
    for (const e of entries) await cache.get(e.actionId);
    await cache.finishSession();
  });
  const manifest = (await decodeManifest(store.objects.get(manifestKey(keyHash))!))!;
  // A well-formed zstd pack whose first entries' bytes are now wrong: each slice is still
  // checked against its SHA-256 once decompressed.
  const info = manifest.packs[0]!;
  const pack = new Uint8Array(zstdDecompressSync(store.objects.get(packKey(keyHash, info))!));
  pack.fill(0x41, 0, 250);
  const recompressed = new Uint8Array(zstdCompressSync(pack));
  store.objects.set(packKey(keyHash, info), recompressed);
  manifest.packs[0] = { ...info, size: recompressed.length };
  // An output that is gone from both the pack's reach and the bucket: its action too.
  const gone = entries[39]!;
  store.objects.delete(actionKey(gone.actionId));
  const damaged = { ...manifest, entries: manifest.entries.map((e) => ({ ...e })) };
  damaged.entries[39]!.pack = undefined;
  damaged.entries[39]!.offset = undefined;
  store.objects.delete(outputKey(gone.outputId));
  store.objects.set(manifestKey(keyHash), await encodeManifest(damaged));
  await withCache(store, async (cache, metrics) => {
    await cache.startWarmUp();
    for (const e of entries) {
      const hit = await cache.get(e.actionId);
      if (e === gone) assert.equal(hit, undefined);
      else {
        assert.equal(hit?.outputId, e.outputId);
        assert.equal(await sha256(await Deno.readFile(hit!.diskPath)), e.outputId);
      }
    }
    assert.ok((metrics.counters().s3_corrupt ?? 0) >= 2);
    assert.ok((metrics.counters().s3_get_hits ?? 0) >= 2, "corrupt slices fell back to the bucket");
  });
});

Deno.test("TieredCache warm-up: a get joins a running fetch and jumps the queue", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 20, (1 << 20) + 16); // too big to pack: one GET each
  const keyHash = await warmKeyHash("test");
  await withCache(store, async (cache) => {
    for (const e of entries) await cache.get(e.actionId);
    await cache.finishSession();
  }, { packs: { maxLoneSize: 1 << 20 } });
  let release!: () => void;
  store.hold = new Promise((resolve) => release = resolve);
  store.gets = [];
  const dir = await Deno.makeTempDir();
  const metrics = new Metrics();
  const cache = new TieredCache(await LocalCache.open(dir), store, {
    metrics,
    warm: { key: "test", keyHash, concurrency: 2 },
  });
  const warming = cache.startWarmUp();
  while (store.gets.filter((k) => k.startsWith("output/")).length < 2) {
    await new Promise((r) => setTimeout(r, 1));
  }
  const first = cache.get(entries[0]!.actionId); // being fetched: joins
  const last = cache.get(entries[19]!.actionId); // not reached: fetched at once
  await new Promise((r) => setTimeout(r, 5));
  assert.ok(store.gets.includes(outputKey(entries[19]!.outputId)), "jumped the queue");
  assert.equal(store.gets.filter((k) => k.startsWith("action/")).length, 0, "no action GETs");
  release();
  assert.equal((await first)?.outputId, entries[0]!.outputId);
  assert.equal((await last)?.outputId, entries[19]!.outputId);
  await warming;
  const outputGets = store.gets.filter((k) => k === outputKey(entries[0]!.outputId));
  assert.equal(outputGets.length, 1, "the joined fetch was not repeated");
  assert.equal(store.gets.filter((k) => k === outputKey(entries[19]!.outputId)).length, 1);
  assert.equal(metrics.counters().warm_jumped, 1);
  await cache.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("TieredCache: sessions one after another end with one manifest; read-only writes none", async () => {
  const store = new MemoryObjectStore();
  const entries = await seed(store, 30);
  const keyHash = await warmKeyHash("test");
  const dir = await Deno.makeTempDir();
  for (const part of [entries.slice(0, 10), entries.slice(10, 20), entries.slice(20)]) {
    await withCache(store, async (cache) => {
      cache.startWarmUp();
      for (const e of part) await cache.get(e.actionId);
      await cache.finishSession();
    }, { dir });
  }
  const manifest = (await decodeManifest(store.objects.get(manifestKey(keyHash))!))!;
  assert.equal(manifest.session, 3);
  assert.deepEqual(
    new Set(manifest.entries.map((e) => e.actionId)),
    new Set(entries.map((e) => e.actionId)),
  );
  assert.deepEqual(
    manifest.entries.slice(0, 10).map((e) => e.actionId),
    entries.slice(20).map((e) => e.actionId),
  );
  await Deno.remove(dir, { recursive: true });

  const readOnly = new MemoryObjectStore();
  await seed(readOnly, 5);
  const { ReadThroughStore } = await import("../../../src/store/mod.ts");
  const view = new ReadThroughStore(readOnly, { readOnly: true });
  const before = readOnly.objects.size;
  await withCache(view as unknown as MemoryObjectStore, async (cache) => {
    await cache.startWarmUp();
    await cache.put({
      actionId: id(77),
      outputId: await sha256(encoder.encode("x")),
      body: encoder.encode("x"),
    });
    await cache.finishSession();
  });
  assert.equal(readOnly.objects.size, before, "nothing written");
});

Deno.test("TieredCache warm-up: an earlier version's manifest (gzip, version 1) is still read", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 40);
  const keyHash = await warmKeyHash("test");
  const json = JSON.stringify({
    version: 1,
    key: "test",
    session: 1,
    packs: [],
    entries: entries.map((e) => ({
      action: e.actionId,
      output: e.outputId,
      size: e.size,
      time: String(e.nanos),
      seen: 1,
    })),
  });
  const gzip = await new Response(
    ReadableStream.from([encoder.encode(json)]).pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  store.objects.set(legacyManifestKey(keyHash), gzip);
  await withCache(store, async (cache, metrics) => {
    await cache.startWarmUp();
    assert.equal(metrics.counters().warm_entries, 40);
    for (const e of entries) assert.equal((await cache.get(e.actionId))?.outputId, e.outputId);
    assert.equal(metrics.counters().warm_hits, 40);
    await cache.finishSession();
  });
  assert.deepEqual(
    store.gets.filter((k) => k.includes("manifest")),
    [manifestKey(keyHash), legacyManifestKey(keyHash)],
    "the new key first, then the old one",
  );
  const written = await decodeManifest(store.objects.get(manifestKey(keyHash))!);
  assert.equal(written?.version, 2, "the next manifest is version 2, with zstd packs");
  assert.ok(written!.packs.length > 0 && written!.packs.every((p) => p.raw !== undefined));
});

Deno.test("TieredCache warm-up: a get waiting on a pack still arriving is not hedged (no byte twice)", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 40);
  await withCache(store, async (cache) => {
    for (const e of entries) await cache.get(e.actionId);
    await cache.finishSession();
  });
  store.packTrickleMs = 100; // 1.6 s in all, far past the stall bound, never silent that long
  store.gets = [];
  await withCache(store, async (cache, metrics) => {
    const warming = cache.startWarmUp();
    const last = entries.at(-1)!;
    assert.equal((await cache.get(last.actionId))?.outputId, last.outputId);
    await warming;
    const c = metrics.counters();
    assert.equal(c.warm_hedged ?? 0, 0);
    assert.equal(c.s3_get_hits ?? 0, 0, "no lookup fetched what the pack brings");
    assert.equal(store.gets.filter((k) => k.startsWith("output/")).length, 0);
    assert.equal(c.warm_hits, 1);
  });
});

Deno.test("TieredCache warm-up: a get waiting on a crawling pack looks up itself after the hedge", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 40);
  await withCache(store, async (cache) => {
    for (const e of entries) await cache.get(e.actionId);
    await cache.finishSession();
  });
  let release!: () => void;
  store.holdPacks = new Promise((resolve) => release = resolve);
  store.gets = [];
  await withCache(store, async (cache, metrics) => {
    const warming = cache.startWarmUp();
    while (!store.gets.some((k) => k.includes(".pack"))) {
      await new Promise((r) => setTimeout(r, 1));
    }
    const started = performance.now();
    const hit = await cache.get(entries[0]!.actionId);
    const waited = performance.now() - started;
    assert.equal(hit?.outputId, entries[0]!.outputId);
    assert.ok(waited < 1_000, `waited ${Math.round(waited)} ms on a pack that never came`);
    assert.equal(metrics.counters().warm_hedged, 1);
    assert.equal(metrics.counters().s3_get_hits, 1, "answered by its own lookup");
    assert.equal(metrics.counters().warm_hits ?? 0, 0);
    release();
    await warming;
    // The pack came in the end: the other entries are warm hits.
    assert.equal((await cache.get(entries[1]!.actionId))?.outputId, entries[1]!.outputId);
    assert.equal(metrics.counters().warm_hits, 1);
  });
});

Deno.test("TieredCache warm-up: packs in memory stay within maxInFlightBytes", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 240, 50_000); // about 12 MB: three packs of about 4 MiB
  await withCache(store, async (cache) => {
    for (const e of entries) await cache.get(e.actionId);
    await cache.finishSession();
  });
  const keyHash = await warmKeyHash("test");
  const manifest = (await decodeManifest(store.objects.get(manifestKey(keyHash))!))!;
  assert.equal(manifest.packs.length, 3);
  // Long enough that the warm-up's paced local work (checking each pack's entries) ends first.
  store.packDelayMs = 300;
  for (const [bound, peak] of [[undefined, 3], [1, 1]] as const) {
    store.packsPeak = 0;
    await withCache(store, async (cache, metrics) => {
      await cache.startWarmUp();
      assert.equal(metrics.counters().warm_entries, 240);
    }, { maxInFlightBytes: bound });
    assert.equal(store.packsPeak, peak, `bound ${bound}`);
  }
});

Deno.test("TieredCache: a warm machine re-running the same build writes no new manifest", async () => {
  const store = new MemoryObjectStore();
  const entries = await seed(store, 30);
  const keyHash = await warmKeyHash("test");
  const dir = await Deno.makeTempDir();
  const results: { writes: number; skipped: number }[] = [];
  for (const extra of [undefined, undefined, 1, undefined]) {
    let result = { writes: 0, skipped: 0 };
    await withCache(store, async (cache, metrics) => {
      cache.startWarmUp();
      for (const e of entries) await cache.get(e.actionId);
      if (extra !== undefined) {
        const body = encoder.encode(`new ${extra}`);
        await cache.put({ actionId: id(900 + extra), outputId: await sha256(body), body });
      }
      await cache.finishSession();
      // The warm-up's paced local work may still be writing: let it end before the next round.
      cache.stopWarmUp();
      await cache.startWarmUp();
      const c = metrics.counters();
      result = { writes: c.warm_manifest_writes ?? 0, skipped: c.warm_manifest_skipped ?? 0 };
    }, { dir });
    results.push(result);
  }
  assert.deepEqual(results, [
    { writes: 1, skipped: 0 },
    { writes: 0, skipped: 1 },
    { writes: 1, skipped: 0 },
    { writes: 0, skipped: 1 },
  ]);
  const manifest = (await decodeManifest(store.objects.get(manifestKey(keyHash))!))!;
  assert.equal(manifest.session, 2);
  assert.equal(manifest.entries.length, 31);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("TieredCache: no manifest is written while the remote tier is paused", async () => {
  const store = new TestStore();
  const entries = await seed(store, 20);
  await withCache(store, async (cache, metrics) => {
    for (const e of entries) await cache.get(e.actionId);
    // The bucket goes away before the session ends: the first call fails and pauses S3.
    store.fail = new StoreError("Cannot reach the bucket: connection refused", "unreachable");
    assert.equal(await cache.get(id(999)), undefined);
    const puts = store.calls.filter((c) => c.startsWith("PUT")).length;
    await cache.finishSession();
    assert.equal(metrics.counters().warm_manifest_skipped, 1);
    assert.equal(metrics.counters().warm_manifest_writes ?? 0, 0);
    assert.equal(store.calls.filter((c) => c.startsWith("PUT")).length, puts, "no PUT tried");
  });
});

Deno.test("TieredCache: slow lookups while the warm-up downloads do not pause S3", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 40);
  await withCache(store, async (cache) => {
    for (const e of entries.slice(0, 30)) await cache.get(e.actionId);
    await cache.finishSession();
  });
  let release!: () => void;
  store.holdPacks = new Promise((resolve) => release = resolve);
  const dir = await Deno.makeTempDir();
  const metrics = new Metrics();
  const cache = new TieredCache(await LocalCache.open(dir), store, {
    metrics,
    sluggishLookupMs: 0, // every lookup is "slow"
    warm: { key: "test", keyHash: await warmKeyHash("test") },
  });
  const warming = cache.startWarmUp();
  while (!store.gets.some((k) => k.includes(".pack"))) await new Promise((r) => setTimeout(r, 1));
  // Entries the manifest does not name: ordinary lookups, slow while the packs are coming.
  for (const e of entries.slice(30, 35)) {
    assert.equal((await cache.get(e.actionId))?.outputId, e.outputId);
  }
  assert.equal(metrics.counters().s3_breaker_trips ?? 0, 0, JSON.stringify(metrics.counters()));
  release();
  await warming;
  // The warm-up is over: slow answers count again.
  for (const e of entries.slice(35, 40)) await cache.get(e.actionId);
  assert.equal(metrics.counters().s3_breaker_trips, 1, JSON.stringify(metrics.counters()));
  await cache.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("TieredCache warm-up: a pack larger than the manifest says is never read; misses only", async () => {
  const store = new CountingStore();
  const entries = await seed(store, 40);
  const keyHash = await warmKeyHash("test");
  await withCache(store, async (cache) => {
    for (const e of entries) await cache.get(e.actionId);
    await cache.finishSession();
  });
  const manifest = (await decodeManifest(store.objects.get(manifestKey(keyHash))!))!;
  // The pack's object is now 16 MiB; the manifest still says about 1 KB.
  store.objects.set(packKey(keyHash, manifest.packs[0]!), new Uint8Array(16 << 20));
  await withCache(store, async (cache, metrics) => {
    await cache.startWarmUp();
    assert.equal(metrics.counters().warm_bytes ?? 0, 0, "nothing of the pack was kept");
    assert.ok((metrics.counters().s3_corrupt ?? 0) >= 1);
    for (const e of entries) assert.equal((await cache.get(e.actionId))?.outputId, e.outputId);
    assert.equal(metrics.counters().s3_get_hits, 40, "each entry fell back to its lookup");
    assert.equal(metrics.counters().breaker_trips ?? 0, 0);
  });
});

Deno.test("TieredCache: a manifest past a cap is skipped with one line and costs only misses", async () => {
  const store = new MemoryObjectStore();
  const entries = await seed(store, 5);
  const keyHash = await warmKeyHash("test");
  const huge = entries.map((e) => ({ ...e, size: 2.25e12 }));
  store.objects.set(
    manifestKey(keyHash),
    await encodeManifest({ key: "test", session: 1, packs: [], entries: huge }),
  );
  const lines: string[] = [];
  const dir = await Deno.makeTempDir();
  const cache = new TieredCache(await LocalCache.open(dir), store, {
    metrics: new Metrics(),
    log: { info: (line: string) => lines.push(line) } as never,
    warm: { key: "test", keyHash },
  });
  try {
    const started = performance.now();
    await cache.startWarmUp();
    for (const e of entries) assert.equal((await cache.get(e.actionId))?.outputId, e.outputId);
    assert.ok(performance.now() - started < 2_000);
    const skipped = lines.filter((l) => l.includes("ignoring the warm-up manifest"));
    assert.equal(skipped.length, 1, lines.join("\n"));
    assert.match(skipped[0]!, /size 2250000000000, above the cap of 1073741824/);
    assert.ok(!lines.some((l) => /deadline|pause|breaker/i.test(l)), lines.join("\n"));
  } finally {
    await cache.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TieredCache: a shared directory keeps manifests within their trust tier", async (t) => {
  const pr = new MemoryObjectStore();
  const main = new MemoryObjectStore();
  const dir = await Deno.makeTempDir();
  const keyHash = await warmKeyHash("test");
  const bodies = Array.from({ length: 30 }, (_, n) => encoder.encode(`pr output ${n}`));
  const prEntries = await Promise.all(bodies.map(async (body, n) => ({
    actionId: id(100 + n),
    outputId: await sha256(body),
    body,
  })));
  try {
    await t.step(
      "a pull-request job stores 30 entries (and packs them under its prefix)",
      async () => {
        await withCache(pr, async (cache) => {
          for (const e of prEntries) await cache.put(e);
          await cache.close();
          await cache.finishSession();
        }, { dir, scope: "pr/5" });
        const manifest = (await decodeManifest(pr.objects.get(manifestKey(keyHash))!))!;
        assert.equal(manifest.entries.length, 30);
        assert.ok(manifest.packs.length >= 1);
      },
    );
    await t.step(
      "main, same directory: its manifest names none of them, nor their packs",
      async () => {
        const mine = await seed(main, 3);
        await withCache(main, async (cache, metrics) => {
          // Local hits on the PR's entries: go would use them, but main cannot vouch for them.
          for (const e of prEntries) assert.ok(await cache.get(e.actionId));
          for (const e of mine) assert.ok(await cache.get(e.actionId));
          await cache.finishSession();
          assert.equal(metrics.counters().warm_unvouched, 30);
        }, { dir, scope: "main" });
        const manifest = (await decodeManifest(main.objects.get(manifestKey(keyHash))!))!;
        assert.deepEqual(manifest.entries.map((e) => e.actionId), mine.map((e) => e.actionId));
        assert.deepEqual(manifest.packs, []);
      },
    );
    await t.step(
      "a manifest spoilt by an earlier version is repaired by the next writer",
      async () => {
        // What the earlier version wrote: the PR's entries and packs, and seen = 2^53-1.
        const spoilt = (await decodeManifest(pr.objects.get(manifestKey(keyHash))!))!;
        const entries = spoilt.entries.map((e, i) => ({
          ...e,
          seen: i < 2 ? Number.MAX_SAFE_INTEGER : 7,
        }));
        main.objects.set(
          manifestKey(keyHash),
          await encodeManifest({ ...spoilt, session: 7, entries }),
        );
        const extra = await seed(main, 35);
        await withCache(main, async (cache, metrics) => {
          await cache.startWarmUp();
          for (const e of extra.slice(30)) assert.ok(await cache.get(e.actionId));
          await cache.finishSession();
          assert.equal(metrics.counters().warm_packs_missing, spoilt.packs.length);
        }, { scope: "main" });
        const repaired = (await decodeManifest(main.objects.get(manifestKey(keyHash))!))!;
        for (const p of repaired.packs) assert.ok(main.objects.has(packKey(keyHash, p)));
        const ids = new Set(repaired.entries.map((e) => e.actionId));
        assert.ok(prEntries.every((e) => !ids.has(e.actionId)), "the PR's entries are gone");
        assert.ok(repaired.entries.every((e) => e.seen <= repaired.session));
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TieredCache warm-up: 8,000 empty outputs never hold the event loop long", async () => {
  const store = new MemoryObjectStore();
  const keyHash = await warmKeyHash("test");
  const empty = await sha256(new Uint8Array(0));
  const entries = Array.from({ length: 8_000 }, (_, n) => ({
    actionId: n.toString(16).padStart(64, "0"),
    outputId: empty,
    size: 0,
    nanos: 1n,
    seen: 1,
  }));
  store.objects.set(
    manifestKey(keyHash),
    await encodeManifest({ key: "test", session: 1, packs: [], entries }),
  );
  await withCache(store, async (cache, metrics) => {
    let worst = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last - 10);
      last = now;
    }, 10);
    try {
      await cache.startWarmUp();
    } finally {
      clearInterval(timer);
    }
    assert.equal(metrics.counters().warm_entries, 8_000);
    // Synchronous file calls, paced: other work gets a turn every few ms (it was seconds).
    assert.ok(worst < 500, `the event loop was held for ${Math.round(worst)} ms`);
  });
});

Deno.test("TieredCache: a warm machine whose warm-up never started merges with the bucket's manifest", async () => {
  const store = new TestStore();
  const entries = await seed(store, 20);
  const keyHash = await warmKeyHash("test");
  // Machine A, fresh: warms up (nothing in the bucket's manifest yet) and writes one naming all 20.
  await withCache(store, async (cache) => {
    for (const e of entries) await cache.get(e.actionId);
    await cache.finishSession();
    cache.stopWarmUp();
    await cache.startWarmUp();
  });
  assert.equal(
    (await decodeManifest(store.objects.get(manifestKey(keyHash))!))!.entries.length,
    20,
  );
  // Machine B: warm already (a local hit first, so no warm-up) and no manifest copy of its own.
  const dir = await Deno.makeTempDir();
  const first = entries[0]!;
  const local = await LocalCache.open(dir);
  const body = store.objects.get(outputKey(first.outputId))!;
  await local.writeObject(first.outputId, body);
  await local.writeAction(first.actionId, {
    outputId: first.outputId,
    size: body.length,
    time: new Date(),
  });
  const manifestGets = () => store.calls.filter((c) => c === `GET ${manifestKey(keyHash)}`).length;
  const before = manifestGets();
  await withCache(store, async (cache) => {
    assert.ok(isHitNow(cache.get(first.actionId)), "a local hit, at once");
    const fresh = encoder.encode("a new output");
    await cache.put({ actionId: id(950), outputId: await sha256(fresh), body: fresh });
    await cache.finishSession();
  }, { dir });
  assert.equal(manifestGets(), before + 1, "the write fetched the bucket's manifest as its base");
  const merged = (await decodeManifest(store.objects.get(manifestKey(keyHash))!))!;
  assert.equal(merged.entries.length, 21, "machine A's entries kept, the new one added");
  // Again on B, nothing new: its own copy decides, and the bucket is not asked.
  await withCache(store, async (cache) => {
    assert.ok(isHitNow(cache.get(first.actionId)), "a local hit, at once");
    await cache.finishSession();
  }, { dir });
  assert.equal(manifestGets(), before + 1, "no manifest request on a warm re-run");
  await Deno.remove(dir, { recursive: true });
});
