/**
 * Tests of `src/store/bucket_tier.ts`: fills in read-through order behind the tier's breaker,
 * which counts the bucket's failures only; uploads, read-only mode and owed uploads.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BucketTier,
  type BucketTierOptions,
  MemoryObjectStore,
  ReadThroughStore,
  StoreError,
} from "../../src/store/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { recordingLogger } from "../_util/logger.ts";
import { TestStore } from "../_util/test_store.ts";

/** A tier on `store` with a pending directory of its own; `written` collects what fills wrote. */
async function tierOn(store: ConstructorParameters<typeof BucketTier>[0], extra = {}) {
  const dir = await Deno.makeTempDir({ prefix: "gcp-tier-" });
  const metrics = new Metrics();
  const log = recordingLogger();
  const options: BucketTierOptions = {
    name: "t_store",
    logPrefix: "t: ",
    serving: "the local files",
    noun: "test uploads",
    pendingDir: `${dir}/.pending`,
    markerPattern: /^[a-z0-9]+$/,
    rebuild: (marker) => Promise.resolve({ marker, key: marker, path: `${dir}/${marker}` }),
    describeUpload: (entry) => `test file ${entry.key}`,
    log,
    metrics,
    ...extra,
  };
  const tier = new BucketTier(store, options);
  return {
    tier,
    dir,
    metrics,
    log,
    async [Symbol.asyncDispose]() {
      await tier.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function readAll(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Response(body).bytes();
}

Deno.test("BucketTier.fill looks in the own prefix, then each read prefix, and counts the hit", async () => {
  const own = new MemoryObjectStore();
  const other = new MemoryObjectStore();
  other.objects.set("k", new Uint8Array([1, 2, 3]));
  await using t = await tierOn(new ReadThroughStore(own, { readStores: [other] }));
  let written: Uint8Array | undefined;
  const filled = await t.tier.fill("k", {
    what: "test file k",
    write: async (object) => {
      written = await readAll(object.body);
      return written.length;
    },
  });
  assert.equal(filled, true);
  assert.deepEqual(written, new Uint8Array([1, 2, 3]));
  assert.equal(t.metrics.get("t_store_fills"), 1);
  assert.equal(t.metrics.get("t_store_fill_bytes"), 3);
  assert.equal(t.metrics.get("t_store_read_prefix_hits"), 1);
  assert.equal(
    await t.tier.fill("missing", { what: "test file missing", write: () => Promise.resolve(1) }),
    false,
  );
});

Deno.test("BucketTier.fill: a failed check is not the bucket's failure; a bucket's failure opens the breaker", async () => {
  const store = new TestStore();
  store.objects.set("k", new Uint8Array([1]));
  await using t = await tierOn(store);
  for (let i = 0; i < 3; i++) {
    const bad = await t.tier.fill("k", {
      what: "test file k",
      write: () => Promise.reject(new RangeError("bad")),
    });
    assert.equal(bad, false);
  }
  assert.equal(t.metrics.get("t_store_errors"), 3);
  assert.equal(t.metrics.get("t_store_breaker_trips"), 0, "checks failing tell nothing");
  assert.match(t.log.warnings[0]!, /^Cannot read test file k from the object store: bad/);
  store.fail = new StoreError("Cannot GET k: deadline exceeded", "timeout");
  assert.equal(
    await t.tier.fill("k", { what: "test file k", write: () => Promise.resolve(1) }),
    false,
  );
  assert.equal(t.metrics.get("t_store_breaker_trips"), 1, "one missed deadline opens it");
  const calls = store.calls.length;
  assert.equal(
    await t.tier.fill("k", { what: "test file k", write: () => Promise.resolve(1) }),
    false,
  );
  assert.equal(store.calls.length, calls, "skipped while open: no call");
  assert.equal(t.metrics.get("t_store_skipped"), 1);
});

Deno.test("BucketTier.upload sends in the background; read-only it sends nothing", async () => {
  const store = new MemoryObjectStore();
  {
    await using t = await tierOn(store);
    await Deno.writeTextFile(`${t.dir}/a`, "abc");
    t.tier.upload({ marker: "a", key: "up/a", path: `${t.dir}/a` });
    await t.tier.close();
    assert.deepEqual(store.objects.get("up/a"), new TextEncoder().encode("abc"));
    assert.equal(t.metrics.get("t_store_puts"), 1);
  }
  await using ro = await tierOn(new ReadThroughStore(store, { readOnly: true }));
  await Deno.writeTextFile(`${ro.dir}/b`, "b");
  ro.tier.upload({ marker: "b", key: "up/b", path: `${ro.dir}/b` });
  await ro.tier.close();
  assert.equal(store.objects.has("up/b"), false);
  assert.equal(ro.metrics.get("t_store_uploads_skipped_read_only"), 1);
});
