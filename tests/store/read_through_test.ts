/**
 * Trust tiers against in-memory buckets: ReadThroughStore on its own, and TieredCache with read
 * prefixes (lookup order, verification, writes to the own prefix only) and read-only mode (not
 * one PUT or HEAD).
 */
import assert from "node:assert/strict";
import { LocalCache } from "../../src/cache/local.ts";
import { actionKey, outputKey, TieredCache } from "../../src/cache/remote/mod.ts";
import {
  MemoryObjectStore,
  type ReadThroughOptions,
  ReadThroughStore,
  type StoreCallOptions,
  type StoredObject,
  StoreError,
} from "../../src/store/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { repeatedId as id, sha256Hex as sha256 } from "../_util/bytes.ts";

const encoder = new TextEncoder();

/** An in-memory prefix whose calls go to one log shared by all prefixes of a test. */
class PrefixStore extends MemoryObjectStore {
  readonly #name: string;
  readonly #log: string[];

  constructor(name: string, log: string[]) {
    super();
    this.#name = name;
    this.#log = log;
  }

  override get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    this.#log.push(`${this.#name} GET ${key}`);
    return super.get(key, options);
  }

  override has(key: string, options?: StoreCallOptions): Promise<boolean> {
    this.#log.push(`${this.#name} HEAD ${key}`);
    return super.has(key, options);
  }

  override put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    this.#log.push(`${this.#name} PUT ${key}`);
    return super.put(key, body, options);
  }
}

/** Puts an entry into a prefix the way tailscale's plugin writes it; returns its output id. */
async function seed(store: MemoryObjectStore, actionId: string, body: Uint8Array, nanos = 1n) {
  const outputId = await sha256(body);
  store.objects.set(outputKey(outputId), body);
  store.objects.set(actionKey(actionId), encoder.encode(`${outputId} ${nanos}`));
  return outputId;
}

/** A tiered cache over an own prefix and read prefixes `a` and `b`, in a temp dir. */
async function setup(options: Omit<ReadThroughOptions, "readStores"> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "gcp-trust-" });
  const local = await LocalCache.open(dir);
  const calls: string[] = [];
  const own = new PrefixStore("own", calls);
  const a = new PrefixStore("a", calls);
  const b = new PrefixStore("b", calls);
  const metrics = new Metrics();
  const view = new ReadThroughStore(own, { ...options, readStores: [a, b] });
  const cache = new TieredCache(local, view, { metrics });
  return {
    dir,
    local,
    calls,
    own,
    a,
    b,
    metrics,
    cache,
    async [Symbol.asyncDispose]() {
      await cache.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("ReadThroughStore reads through in order, asks has() of the own prefix, writes only there", async () => {
  const calls: string[] = [];
  const own = new PrefixStore("own", calls);
  const a = new PrefixStore("a", calls);
  const b = new PrefixStore("b", calls);
  a.objects.set("k", encoder.encode("from a"));
  b.objects.set("k", encoder.encode("from b"));
  const view = new ReadThroughStore(own, { readStores: [a, b] });
  assert.equal(await new Response((await view.get("k"))!.body).text(), "from a");
  assert.equal(await view.has("k"), false);
  await view.put("k", encoder.encode("mine"), { size: 4 });
  assert.equal(await new Response((await view.get("k"))!.body).text(), "mine");
  assert.equal(await view.get("missing"), undefined);
  assert.deepEqual(calls, [
    "own GET k",
    "a GET k",
    "own HEAD k",
    "own PUT k",
    "own GET k",
    "own GET missing",
    "a GET missing",
    "b GET missing",
  ]);
  assert.equal(ReadThroughStore.of(view), view);
  assert.deepEqual(ReadThroughStore.of(own).lookupOrder, [own]);
});

Deno.test("ReadThroughStore.put() read-only rejects without a request and cancels a stream body", async () => {
  const calls: string[] = [];
  const view = new ReadThroughStore(new PrefixStore("own", calls), { readOnly: true });
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({ cancel: () => void (cancelled = true) });
  await assert.rejects(
    view.put("k", body, { size: 1 }),
    (error: unknown) => error instanceof StoreError && /read-only/.test(error.message),
  );
  await assert.rejects(view.put("k", encoder.encode("x"), { size: 1 }), StoreError);
  assert.ok(cancelled);
  assert.deepEqual(calls, []);
});

Deno.test("TieredCache.get() asks no read prefix when the own prefix has the entry", async () => {
  await using t = await setup();
  const outputId = await seed(t.own, id(1), encoder.encode("own output"));
  await seed(t.a, id(1), encoder.encode("a's output"));
  const hit = await t.cache.get(id(1));
  assert.equal(hit?.outputId, outputId);
  assert.deepEqual(t.calls, [`own GET ${actionKey(id(1))}`, `own GET ${outputKey(outputId)}`]);
  assert.equal(t.metrics.get("s3_read_prefix_hits"), 0);
});

Deno.test("TieredCache.get() looks the read prefixes up in order after a miss under the own prefix", async () => {
  await using t = await setup();
  const fromA = await seed(t.a, id(2), encoder.encode("a's output"), 1795507564959188659n);
  await seed(t.b, id(2), encoder.encode("b's output"));
  const hit = await t.cache.get(id(2));
  assert.equal(hit?.outputId, fromA);
  assert.equal(hit?.timeNanos, 1795507564959188659n);
  assert.deepEqual(await Deno.readFile(hit!.diskPath), encoder.encode("a's output"));
  assert.deepEqual(t.calls, [
    `own GET ${actionKey(id(2))}`,
    `a GET ${actionKey(id(2))}`,
    `a GET ${outputKey(fromA)}`,
  ]);
  assert.equal(t.metrics.get("s3_read_prefix_hits"), 1);
  assert.equal(t.metrics.get("s3_get_hits"), 1);
  // Now local: the next get asks nobody.
  t.calls.length = 0;
  assert.equal((await t.cache.get(id(2)))?.outputId, fromA);
  assert.deepEqual(t.calls, []);
});

Deno.test("TieredCache.get() takes record and object from one prefix: a record whose object is gone is a miss there", async () => {
  await using t = await setup();
  const body = encoder.encode("output");
  const outputId = await seed(t.own, id(3), body);
  t.own.objects.delete(outputKey(outputId));
  t.a.objects.set(outputKey(outputId), body); // the object alone does not make a hit under a
  await seed(t.b, id(3), body);
  assert.equal((await t.cache.get(id(3)))?.outputId, outputId);
  assert.deepEqual(t.calls, [
    `own GET ${actionKey(id(3))}`,
    `own GET ${outputKey(outputId)}`,
    `a GET ${actionKey(id(3))}`,
    `b GET ${actionKey(id(3))}`,
    `b GET ${outputKey(outputId)}`,
  ]);
});

Deno.test("TieredCache.get() verifies a read prefix's object: a mismatch is counted and the next prefix asked", async () => {
  await using t = await setup();
  const body = encoder.encode("the real output");
  const outputId = await seed(t.a, id(4), body);
  t.a.objects.set(outputKey(outputId), encoder.encode("the poisoned one")); // not its SHA-256
  await seed(t.b, id(4), body);
  const hit = await t.cache.get(id(4));
  assert.equal(hit?.outputId, outputId);
  assert.deepEqual(await Deno.readFile(hit!.diskPath), body);
  assert.equal(t.metrics.get("s3_corrupt"), 1);
  assert.equal(t.metrics.get("s3_read_prefix_hits"), 1);
});

Deno.test("TieredCache.get() misses when every prefix's copy is corrupt, and stores nothing", async () => {
  await using t = await setup();
  const outputId = await seed(t.a, id(5), encoder.encode("x"));
  t.a.objects.set(outputKey(outputId), encoder.encode("y"));
  t.b.objects.set(actionKey(id(5)), encoder.encode("not a record"));
  assert.equal(await t.cache.get(id(5)), undefined);
  assert.equal(t.metrics.get("s3_corrupt"), 2);
  assert.equal(t.metrics.get("s3_get_misses"), 0);
  assert.equal(await t.local.get(id(5)), undefined);
});

Deno.test("TieredCache.get() with read prefixes: a failed call ends the lookup as a miss", async () => {
  await using t = await setup();
  await seed(t.b, id(6), encoder.encode("b's output"));
  t.a.get = () => Promise.reject(new StoreError("Cannot GET: socket hang up", "other"));
  assert.equal(await t.cache.get(id(6)), undefined);
  assert.equal(t.metrics.get("s3_get_errors"), 1);
  assert.ok(!t.calls.some((call) => call.startsWith("b ")), t.calls.join("\n"));
});

Deno.test("TieredCache.put() uploads to the own prefix only, even an object a read prefix has", async () => {
  await using t = await setup();
  const body = encoder.encode("built here");
  const outputId = await seed(t.a, id(7), body);
  const before = new Map(t.a.objects);
  await t.cache.put({ actionId: id(8), outputId, body });
  await t.cache.close();
  assert.deepEqual(t.calls, [
    `own HEAD ${outputKey(outputId)}`,
    `own PUT ${outputKey(outputId)}`,
    `own PUT ${actionKey(id(8))}`,
  ]);
  assert.deepEqual(t.a.objects, before);
  assert.equal(t.b.objects.size, 0);
  assert.equal(t.metrics.get("uploads_done"), 1);
});

Deno.test("TieredCache read-only: hits through every prefix, not one PUT or HEAD, owed uploads left alone", async () => {
  await using t = await setup({ readOnly: true });
  // An earlier, writing session owes an upload.
  const owedBody = encoder.encode("owed");
  const owedId = await sha256(owedBody);
  await t.local.writeObject(owedId, owedBody);
  await t.local.writeAction(id(9), { outputId: owedId, size: owedBody.length, time: new Date() });
  await Deno.mkdir(`${t.dir}/s3-pending`);
  await Deno.writeTextFile(`${t.dir}/s3-pending/${id(9)}`, "");

  assert.equal(await t.cache.resumePending(), 0);
  const fromB = await seed(t.b, id(10), encoder.encode("b's output"));
  assert.equal((await t.cache.get(id(10)))?.outputId, fromB);
  const body = encoder.encode("built by a pull request");
  const diskPath = await t.cache.put({ actionId: id(11), outputId: await sha256(body), body });
  assert.deepEqual(await Deno.readFile(diskPath), body);
  assert.equal((await t.local.get(id(11)))?.diskPath, diskPath);
  assert.equal(t.cache.pendingUploads, 0);
  await t.cache.close();

  assert.deepEqual(t.calls.filter((call) => !/ GET /.test(call)), []);
  assert.equal(t.metrics.get("uploads_skipped_read_only"), 1);
  for (const name of ["uploads_done", "uploads_skipped", "uploads_failed", "uploads_resumed"]) {
    assert.equal(t.metrics.get(name), 0, name);
  }
  assert.equal(t.own.objects.size, 0);
  // The marker stays for a writing session; the put left none.
  assert.deepEqual(
    (await Array.fromAsync(Deno.readDir(`${t.dir}/s3-pending`))).map((e) => e.name),
    [id(9)],
  );
});

Deno.test("TieredCache: each read prefix asked widens the sluggish budget by one request's share", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gcp-trust-" });
  const calls: string[] = [];
  /** Every call takes 60 ms. */
  class SlowStore extends PrefixStore {
    override async get(key: string, options?: StoreCallOptions) {
      await new Promise((resolve) => setTimeout(resolve, 60));
      return super.get(key, options);
    }
  }
  const [own, a, b] = [
    new SlowStore("own", calls),
    new SlowStore("a", calls),
    new SlowStore("b", calls),
  ];
  const metrics = new Metrics();
  // Budget 180 ms for a lookup under the own prefix (2 calls: 120 ms); each read prefix adds 90.
  const cache = new TieredCache(
    await LocalCache.open(dir),
    new ReadThroughStore(own, { readStores: [a, b] }),
    { metrics, sluggishLookupMs: 180 },
  );
  try {
    await seed(own, id(20), encoder.encode("own"));
    await seed(b, id(21), encoder.encode("b")); // 4 calls: 240 ms, within 180 + 2 × 90
    assert.ok(await cache.get(id(20)));
    assert.ok(await cache.get(id(21)));
    assert.equal(await cache.get(id(22)), undefined); // 3 calls: 180 ms
    assert.equal(metrics.get("s3_get_sluggish"), 0);
  } finally {
    await cache.close();
    await Deno.remove(dir, { recursive: true });
  }
});
