/**
 * TieredCache against an in-memory bucket: hits, misses, corrupt entries, the throughput floor,
 * the breaker, collapsed lookups, the upload policy and close().
 */
import assert from "node:assert/strict";
import { LocalCache } from "../../../src/cache/local.ts";
import {
  actionKey,
  outputKey,
  parseActionRecord,
  TieredCache,
  type TieredCacheOptions,
} from "../../../src/cache/remote/mod.ts";
import { MemoryObjectStore, StoreError } from "../../../src/store/mod.ts";
import { ThroughputFloorStream, TooSlowError } from "../../../src/store/mod.ts";
import { Metrics } from "../../../src/metrics/mod.ts";
import { recordingLogger } from "../../_util/logger.ts";
import { TestStore } from "../../_util/test_store.ts";
import { repeatedId as id, sha256Hex as sha256 } from "../../_util/bytes.ts";
import { isHitNow } from "../../_util/script.ts";

const encoder = new TextEncoder();

/** `size` bytes that differ from call to call. */
function noise(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  return bytes;
}

async function setup(options: TieredCacheOptions = {}) {
  const dir = await Deno.makeTempDir({ prefix: "gcp-tiered-" });
  const local = await LocalCache.open(dir);
  const store = new TestStore();
  const metrics = new Metrics();
  const log = recordingLogger();
  const cache = new TieredCache(local, store, { metrics, log, ...options });
  return {
    dir,
    local,
    store,
    metrics,
    log,
    cache,
    async [Symbol.asyncDispose]() {
      await cache.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Puts an entry into the bucket the way tailscale's plugin writes it. */
async function seed(store: MemoryObjectStore, actionId: string, body: Uint8Array, nanos: bigint) {
  const outputId = await sha256(body);
  store.objects.set(outputKey(outputId), body);
  store.objects.set(actionKey(actionId), encoder.encode(`${outputId} ${nanos}`));
  return outputId;
}

Deno.test("TieredCache.get() fills the local tier from S3 and keeps the recorded time", async () => {
  await using t = await setup();
  const body = encoder.encode("remote output");
  const nanos = 1795507564959188659n;
  const outputId = await seed(t.store, id(1), body, nanos);

  const hit = await t.cache.get(id(1));
  assert.ok(hit);
  assert.equal(hit.outputId, outputId);
  assert.equal(hit.size, body.length);
  assert.equal(hit.timeNanos, nanos);
  assert.equal(hit.time?.getTime(), 1795507564959);
  assert.equal(hit.diskPath, t.local.outputPath(outputId));
  assert.deepEqual(await Deno.readFile(hit.diskPath), body);
  assert.equal(t.metrics.get("s3_get_hits"), 1);
  assert.equal(t.metrics.get("s3_bytes_down"), body.length);

  // Now local: the bucket is not asked again.
  const calls = t.store.calls.length;
  const again = await t.cache.get(id(1));
  assert.equal(again?.outputId, outputId);
  assert.equal(t.store.calls.length, calls);
  assert.equal(t.metrics.get("local_hits"), 1);
  assert.equal((await t.local.readAction(id(1)))?.time.getTime(), 1795507564959);
});

Deno.test("TieredCache.get() serves an empty output from an empty object", async () => {
  await using t = await setup();
  const outputId = await seed(t.store, id(2), new Uint8Array(0), 1n);
  const hit = await t.cache.get(id(2));
  assert.equal(hit?.outputId, outputId);
  assert.equal(hit?.size, 0);
  assert.equal((await Deno.stat(hit!.diskPath)).size, 0);
});

Deno.test("TieredCache.get() misses when neither tier has the action, or the object is gone", async () => {
  await using t = await setup();
  assert.equal(await t.cache.get(id(3)), undefined);
  const outputId = await seed(t.store, id(4), encoder.encode("x"), 5n);
  t.store.objects.delete(outputKey(outputId));
  assert.equal(await t.cache.get(id(4)), undefined);
  assert.equal(t.metrics.get("s3_get_misses"), 2);
  assert.equal(t.metrics.get("s3_get_errors"), 0);
});

Deno.test("TieredCache.get() rejects an object whose SHA-256 differs: a counted miss, nothing stored", async () => {
  await using t = await setup();
  const body = encoder.encode("the real bytes");
  const outputId = await seed(t.store, id(5), body, 7n);
  t.store.objects.set(outputKey(outputId), encoder.encode("the fake bytes"));

  assert.equal(await t.cache.get(id(5)), undefined);
  assert.equal(t.metrics.get("s3_corrupt"), 1);
  assert.equal(t.metrics.get("s3_get_hits"), 0);
  await assert.rejects(Deno.stat(t.local.outputPath(outputId)), Deno.errors.NotFound);
  assert.equal(await t.local.readAction(id(5)), undefined);
  assert.match(t.log.warnings.join("\n"), /SHA-256/);
  // No leftover temporary files in the shard.
  const shard = `${t.dir}/output/${outputId.slice(0, 2)}`;
  const names = await Array.fromAsync(Deno.readDir(shard)).catch(() => []);
  assert.deepEqual(names, []);
  // Corruption is not a transport failure: the breaker stays closed.
  assert.equal(t.metrics.get("s3_breaker_open"), 0);
});

Deno.test("TieredCache.get() treats a malformed action record as corrupt", async () => {
  await using t = await setup();
  t.store.objects.set(actionKey(id(6)), encoder.encode("not a record"));
  assert.equal(await t.cache.get(id(6)), undefined);
  assert.equal(t.metrics.get("s3_corrupt"), 1);
});

Deno.test("TieredCache.get() warns about the first corrupt entry of a session and counts the rest", async () => {
  await using t = await setup();
  for (let n = 100; n < 110; n++) {
    t.store.objects.set(actionKey(id(n)), encoder.encode(`not a record ${n}`));
  }
  const outputId = await seed(t.store, id(110), encoder.encode("real"), 1n);
  t.store.objects.set(outputKey(outputId), encoder.encode("fake"));
  for (let n = 100; n <= 110; n++) assert.equal(await t.cache.get(id(n)), undefined);
  await t.cache.close();
  assert.equal(t.metrics.get("s3_corrupt"), 11, "every one is counted");
  assert.equal(t.log.warnings.length, 1, t.log.warnings.join("\n"));
  assert.match(t.log.warnings[0]!, /^Ignoring bucket action record "action\/64\/.*malformed/);
  assert.match(t.log.warnings[0]!, /further corrupt bucket entries are only counted/);
  // With -v each is still shown, and close sums them up in one line.
  assert.equal(t.log.infos.filter((l) => l.startsWith("Ignoring bucket ")).length, 10);
  assert.ok(
    t.log.infos.includes("ignored 11 corrupt bucket entries this session (see s3_corrupt)"),
  );
});

Deno.test("TieredCache.get() gives up on a download below the throughput floor: a counted miss", async () => {
  await using t = await setup({ slowGraceMs: 200 });
  const body = noise(1 << 20);
  const outputId = await seed(t.store, id(120), body, 1n);
  t.store.bodyRate = 128 << 10; // 128 KiB/s: 8 s for the object, longer than compiling it
  const started = performance.now();
  assert.equal(await t.cache.get(id(120)), undefined);
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 1_500, `gave up after ${elapsed.toFixed(0)}ms`);
  assert.equal(t.metrics.get("s3_too_slow"), 1);
  assert.equal(t.metrics.get("s3_get_errors"), 0);
  assert.equal(t.metrics.get("s3_breaker_open"), 0, "one slow object does not pause S3");
  await assert.rejects(Deno.stat(t.local.outputPath(outputId)), Deno.errors.NotFound);
  assert.equal(await t.local.readAction(id(120)), undefined);
  const shard = `${t.dir}/output/${outputId.slice(0, 2)}`;
  assert.deepEqual(await Array.fromAsync(Deno.readDir(shard)).catch(() => []), []);
});

Deno.test("TieredCache.get() never gives up on small objects, nor on fast ones", async () => {
  await using t = await setup({ slowGraceMs: 200 });
  // 48 KiB at 64 KiB/s: slow, but small objects are judged by their deadline only.
  const small = noise(48 << 10);
  const smallId = await seed(t.store, id(121), small, 1n);
  t.store.bodyRate = 64 << 10;
  assert.equal((await t.cache.get(id(121)))?.outputId, smallId);
  // 4 MiB at 64 MiB/s: far above the floor.
  const fast = noise(4 << 20);
  const fastId = await seed(t.store, id(122), fast, 1n);
  t.store.bodyRate = 64 << 20;
  assert.equal((await t.cache.get(id(122)))?.outputId, fastId);
  assert.equal(t.metrics.get("s3_too_slow"), 0);
  assert.equal(t.metrics.get("s3_get_hits"), 2);
});

Deno.test("ThroughputFloorStream keeps a slow body that is about to finish, not one far from it", async () => {
  const floor = { minBytesPerSecond: 1 << 20, graceMs: 200, key: "output/ab/ab", checkEveryMs: 50 };
  // 160 KiB at once, then nothing for 400 ms: below 1 MiB/s once the grace period is over.
  async function feed(size: number): Promise<unknown> {
    const stream = new ThroughputFloorStream(size, floor);
    const writer = stream.writable.getWriter();
    const read = new Response(stream.readable).bytes().then(() => undefined, (error) => error);
    const rest = async () => {
      await writer.write(new Uint8Array(160 << 10));
      await new Promise((resolve) => setTimeout(resolve, 400));
      await writer.write(new Uint8Array(size - (160 << 10)));
      await writer.close();
    };
    await rest().catch(() => {});
    return await read;
  }
  // 32 KiB left at that rate is 0.1 s away: kept.
  assert.equal(await feed(192 << 10), undefined);
  // 864 KiB left is seconds away: given up on.
  const error = await feed(1 << 20);
  assert.ok(error instanceof TooSlowError, String(error));
  assert.match(
    error.message,
    /^Giving up on bucket object "output\/ab\/ab": \d+ KiB\/s .*below the floor of 1024 KiB\/s$/,
  );
});

Deno.test("TieredCache: repeated slowness opens the breaker, which cuts the other downloads short", async () => {
  await using t = await setup({ slowGraceMs: 200 });
  const ids = [130, 131, 132];
  for (const n of ids) {
    await seed(t.store, id(n), noise(2 << 20), 1n);
  }
  t.store.bodyRate = 64 << 10;
  const started = performance.now();
  const results = await Promise.all(ids.map((n) => t.cache.get(id(n))));
  assert.deepEqual(results, [undefined, undefined, undefined]);
  assert.ok(performance.now() - started < 1_500);
  assert.ok(t.metrics.get("s3_too_slow") >= 2);
  assert.equal(t.metrics.get("s3_breaker_trips"), 1);
  assert.equal(t.log.warnings.length, 1);
  assert.match(t.log.warnings[0]!, /S3 tier paused .*Giving up on bucket object .*below the floor/);
  // Paused: the next lookup is not even tried.
  const calls = t.store.calls.length;
  assert.equal(await t.cache.get(id(133)), undefined);
  assert.equal(t.store.calls.length, calls);
});

Deno.test("TieredCache: lookups answered but slower than compiling open the breaker; the hits still count", async () => {
  await using t = await setup({ sluggishLookupMs: 80, breakerCooldownMs: 60_000 });
  for (let n = 30; n < 34; n++) await seed(t.store, id(n), encoder.encode(`out ${n}`), 1n);
  t.store.delayMs = 60; // two calls per lookup: 120 ms, past 80 ms
  assert.ok(await t.cache.get(id(30)), "a sluggish hit is still a hit");
  assert.ok(await t.cache.get(id(31)));
  assert.equal(t.metrics.get("s3_get_sluggish"), 2);
  assert.equal(t.metrics.get("s3_breaker_trips"), 1);
  const calls = t.store.calls.length;
  assert.equal(await t.cache.get(id(32)), undefined, "paused: compiling beats waiting");
  assert.equal(t.store.calls.length, calls, "no call while the breaker is open");
});

Deno.test("TieredCache: a quick bucket never counts as sluggish", async () => {
  await using t = await setup({ sluggishLookupMs: 200 });
  for (let n = 40; n < 46; n++) await seed(t.store, id(n), encoder.encode(`out ${n}`), 1n);
  t.store.delayMs = 5;
  for (let n = 40; n < 46; n++) assert.ok(await t.cache.get(id(n)));
  assert.equal(t.metrics.get("s3_get_sluggish"), 0);
  assert.equal(t.metrics.get("s3_breaker_trips"), 0);
});

Deno.test("TieredCache.get() collapses concurrent lookups of the same action", async () => {
  await using t = await setup();
  const outputId = await seed(t.store, id(7), encoder.encode("shared"), 9n);
  t.store.delayMs = 30;
  const hits = await Promise.all([1, 2, 3, 4, 5].map(() => t.cache.get(id(7))));
  for (const hit of hits) assert.equal(hit?.outputId, outputId);
  assert.equal(t.store.calls.filter((c) => c.startsWith("GET action/")).length, 1);
  assert.equal(t.metrics.get("s3_get_hits"), 1);
  assert.equal(t.metrics.get("s3_get_collapsed"), 4);
});

Deno.test("TieredCache.get() answers a miss when S3 fails, and the breaker opens after N failures", async () => {
  await using t = await setup({ breakerThreshold: 3, breakerCooldownMs: 60_000 });
  t.store.fail = new StoreError("Cannot GET: InternalError (HTTP 500): boom", "other");
  for (let n = 10; n < 15; n++) assert.equal(await t.cache.get(id(n)), undefined);
  assert.equal(t.metrics.get("s3_get_errors"), 3);
  assert.equal(t.metrics.get("s3_get_skipped"), 2);
  assert.equal(t.store.calls.length, 3, "no call while the breaker is open");
  assert.equal(t.metrics.get("s3_breaker_trips"), 1);
  assert.equal(t.metrics.get("s3_breaker_open"), 1);
  assert.equal(t.log.warnings.length, 1, "said once");
  assert.match(t.log.warnings[0]!, /S3 tier paused for 60s after 3 consecutive failures/);
});

Deno.test("TieredCache breaker half-opens after the cool-down and closes on success", async () => {
  await using t = await setup({ breakerThreshold: 1, breakerCooldownMs: 50 });
  t.store.fail = new StoreError("Cannot GET: connect ECONNREFUSED", "unreachable");
  assert.equal(await t.cache.get(id(20)), undefined);
  assert.equal(t.metrics.get("s3_breaker_open"), 1);
  assert.equal(await t.cache.get(id(21)), undefined);
  assert.equal(t.store.calls.length, 1);
  await new Promise((resolve) => setTimeout(resolve, 80));
  // Probe fails: open again, no second warning.
  assert.equal(await t.cache.get(id(22)), undefined);
  assert.equal(t.store.calls.length, 2);
  assert.equal(t.metrics.get("s3_breaker_open"), 1);
  await new Promise((resolve) => setTimeout(resolve, 80));
  t.store.fail = undefined;
  const outputId = await seed(t.store, id(23), encoder.encode("back"), 1n);
  assert.equal((await t.cache.get(id(23)))?.outputId, outputId);
  assert.equal(t.metrics.get("s3_breaker_open"), 0);
  assert.equal(t.metrics.get("s3_breaker_trips"), 1);
  assert.equal(t.log.warnings.length, 1);
});

Deno.test("TieredCache stops using S3 for the session on a configuration error, in one line", async () => {
  await using t = await setup();
  t.store.fail = new StoreError(
    "Cannot GET: NoSuchBucket: The specified bucket does not exist",
    "config",
  );
  assert.equal(await t.cache.get(id(30)), undefined);
  assert.equal(await t.cache.get(id(31)), undefined);
  await t.cache.put({
    actionId: id(32),
    outputId: await sha256(encoder.encode("y")),
    body: encoder.encode("y"),
  });
  await t.cache.close();
  assert.equal(t.store.calls.length, 1);
  assert.deepEqual(t.log.warnings.length, 1);
  assert.match(
    t.log.warnings[0]!,
    /^S3 tier disabled: .*NoSuchBucket.*serving the local tier only$/,
  );
  // The local tier still works.
  assert.ok(await t.cache.get(id(32)));
});

Deno.test("TieredCache.get() gives up on a stalled bucket at its deadline", async () => {
  await using t = await setup({ getTimeoutMs: 50 });
  await seed(t.store, id(33), encoder.encode("slow"), 1n);
  t.store.delayMs = 5_000;
  const started = performance.now();
  assert.equal(await t.cache.get(id(33)), undefined);
  assert.ok(performance.now() - started < 1_000);
  assert.equal(t.metrics.get("s3_get_errors"), 1);
});

Deno.test("TieredCache breaker opens after two missed deadlines, so a stalled S3 costs one wait", async () => {
  await using t = await setup({ getTimeoutMs: 40 });
  t.store.delayMs = 5_000;
  const started = performance.now();
  const misses = await Promise.all([90, 91, 92, 93, 94, 95].map((n) => t.cache.get(id(n))));
  assert.deepEqual(misses, new Array(6).fill(undefined));
  assert.ok(performance.now() - started < 1_000);
  assert.equal(t.metrics.get("s3_breaker_open"), 1);
  for (let n = 96; n < 100; n++) assert.equal(await t.cache.get(id(n)), undefined);
  assert.equal(t.store.calls.length, 6, "no request after the breaker opened");
  assert.equal(t.log.warnings.length, 1);
  assert.match(t.log.warnings[0]!, /deadline exceeded/);
});

Deno.test("TieredCache.put() replies once local is durable, then uploads object then record", async () => {
  await using t = await setup();
  const body = encoder.encode("fresh output");
  const outputId = await sha256(body);
  t.store.delayMs = 50;
  const started = performance.now();
  const diskPath = await t.cache.put({ actionId: id(40), outputId, body });
  assert.ok(performance.now() - started < 45, "did not wait for the upload");
  assert.deepEqual(await Deno.readFile(diskPath), body);
  assert.equal(t.cache.pendingUploads, 1);
  await t.cache.close();
  assert.deepEqual(t.store.calls, [
    `HEAD ${outputKey(outputId)}`,
    `PUT ${outputKey(outputId)}`,
    `PUT ${actionKey(id(40))}`,
  ]);
  assert.deepEqual(t.store.objects.get(outputKey(outputId)), body);
  const record = new TextDecoder().decode(t.store.objects.get(actionKey(id(40))));
  const parsed = parseActionRecord(record);
  assert.equal(parsed?.outputId, outputId);
  assert.match(record, /^[0-9a-f]{64} \d+$/);
  // The record's time is the local entry's put time.
  const local = await t.local.readAction(id(40));
  assert.equal(parsed!.nanos / 1_000_000n, BigInt(local!.time.getTime()));
  assert.equal(t.metrics.get("uploads_done"), 1);
});

Deno.test("TieredCache.put() skips an object the bucket already has, still writes the record", async () => {
  await using t = await setup();
  const body = encoder.encode("dup");
  const outputId = await seed(t.store, id(41), body, 1n);
  await t.cache.put({ actionId: id(42), outputId, body });
  await t.cache.close();
  assert.equal(t.store.calls.filter((c) => c.startsWith("PUT output/")).length, 0);
  assert.ok(t.store.objects.has(actionKey(id(42))));
  assert.equal(t.metrics.get("uploads_skipped"), 1);
  assert.equal(t.metrics.get("uploads_done"), 1);
});

Deno.test("TieredCache.put() keeps outputs below --min-upload-size local", async () => {
  await using t = await setup({ minUploadSize: 100 });
  const small = encoder.encode("small");
  const big = new Uint8Array(100).fill(1);
  await t.cache.put({ actionId: id(43), outputId: await sha256(small), body: small });
  await t.cache.put({ actionId: id(44), outputId: await sha256(big), body: big });
  await t.cache.close();
  assert.ok(!t.store.objects.has(actionKey(id(43))));
  assert.ok(t.store.objects.has(actionKey(id(44))));
  assert.equal(t.metrics.get("uploads_small"), 1);
  assert.ok(await t.cache.get(id(43)), "still a local hit");
});

Deno.test("TieredCache.put() runs at most -u uploads at once", async () => {
  await using t = await setup({ uploadConcurrency: 2 });
  let running = 0;
  let peak = 0;
  const inner = t.store.put.bind(t.store);
  t.store.put = async (key, body, options) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((resolve) => setTimeout(resolve, 10));
    try {
      return await inner(key, body, options);
    } finally {
      running--;
    }
  };
  for (let n = 50; n < 58; n++) {
    const body = encoder.encode(`output ${n}`);
    await t.cache.put({ actionId: id(n), outputId: await sha256(body), body });
  }
  await t.cache.close();
  assert.equal(t.metrics.get("uploads_done"), 8);
  assert.ok(peak <= 2, `peak ${peak}`);
});

Deno.test("TieredCache.close() waits a bounded time and counts uploads left", async () => {
  await using t = await setup({ closeTimeoutMs: 50, uploadConcurrency: 1, uploadTimeoutMs: 300 });
  t.store.delayMs = 10_000;
  for (let n = 60; n < 63; n++) {
    const body = encoder.encode(`left ${n}`);
    await t.cache.put({ actionId: id(n), outputId: await sha256(body), body });
  }
  const started = performance.now();
  await t.cache.close();
  assert.ok(performance.now() - started < 250);
  assert.equal(t.metrics.get("uploads_left"), 3);
  assert.match(t.log.warnings.join("\n"), /3 uploads to the bucket left undone/);
  // The running upload ends at its own deadline.
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(t.cache.pendingUploads, 0);
  assert.equal(t.metrics.get("uploads_failed"), 1);
});

Deno.test("TieredCache upload failures are counted, never thrown", async () => {
  await using t = await setup();
  t.store.fail = new StoreError("Cannot PUT: InternalError (HTTP 500)", "other");
  const body = encoder.encode("nope");
  const diskPath = await t.cache.put({ actionId: id(70), outputId: await sha256(body), body });
  await t.cache.close();
  assert.equal(t.metrics.get("uploads_failed"), 1);
  assert.deepEqual(await Deno.readFile(diskPath), body);
});

Deno.test("TieredCache remembers uploads it could not do and the next session resumes them", async () => {
  await using t = await setup({ breakerThreshold: 1, breakerCooldownMs: 60_000 });
  t.store.fail = new StoreError("Cannot HEAD: connect ECONNREFUSED", "unreachable");
  const bodies = [encoder.encode("one"), encoder.encode("two")];
  for (const [n, body] of bodies.entries()) {
    await t.cache.put({ actionId: id(80 + n), outputId: await sha256(body), body });
  }
  await t.cache.close();
  assert.equal(t.metrics.get("uploads_failed"), 2);
  const pending = (await Array.fromAsync(Deno.readDir(`${t.dir}/s3-pending`))).map((e) => e.name);
  assert.deepEqual(pending.sort(), [id(80), id(81)]);

  // A new session on the same directory, with S3 back.
  t.store.fail = undefined;
  const metrics = new Metrics();
  const next = new TieredCache(t.local, t.store, { metrics });
  assert.equal(await next.resumePending(), 2);
  await next.close();
  assert.equal(metrics.get("uploads_done"), 2);
  assert.deepEqual(t.store.objects.get(outputKey(await sha256(bodies[1]!))), bodies[1]);
  const record = new TextDecoder().decode(t.store.objects.get(actionKey(id(80))));
  assert.equal(parseActionRecord(record)?.outputId, await sha256(bodies[0]!));
  assert.deepEqual(await Array.fromAsync(Deno.readDir(`${t.dir}/s3-pending`)), []);
});

Deno.test("parseActionRecord() reads tailscale's format and rejects others", () => {
  const hex = "0a".repeat(32);
  assert.deepEqual(parseActionRecord(`${hex} 1795507564959188659`), {
    outputId: hex,
    nanos: 1795507564959188659n,
  });
  assert.equal(parseActionRecord(`${hex}`), undefined);
  assert.equal(parseActionRecord(`${hex} 12 3`), undefined);
  assert.equal(parseActionRecord(`XYZ 12`), undefined);
  assert.equal(parseActionRecord(`${hex} 1e9`), undefined);
});

Deno.test("get() starts the warm-up at the first local miss of a cold tier", async () => {
  await using t = await setup({ warm: { key: "test", keyHash: "00".repeat(8) } });
  assert.equal(t.cache.idle, true);
  assert.equal(await t.cache.get(id(90)), undefined);
  assert.ok(
    t.store.calls.some((call) => call.startsWith("GET warm/")),
    `a miss before any hit fetches the manifest: ${t.store.calls.join(", ")}`,
  );
});

Deno.test("get() leaves the warm-up alone while a warm tier misses only a few", async () => {
  await using t = await setup({ warm: { key: "test", keyHash: "00".repeat(8) } });
  const body = encoder.encode("warm output");
  const outputId = await sha256(body);
  await t.local.writeObject(outputId, body);
  await t.local.writeAction(id(91), { outputId, size: body.length, time: new Date() });
  assert.ok(isHitNow(t.cache.get(id(91))), "a local hit first, at once");
  for (let n = 0; n < 15; n++) assert.equal(await t.cache.get(id(n)), undefined);
  const manifestGets = () => t.store.calls.filter((call) => call.startsWith("GET warm/"));
  assert.deepEqual(manifestGets(), [], "15 misses after a hit: no manifest");
  assert.equal(
    t.store.calls.filter((call) => call.startsWith("GET action/")).length,
    15,
    "each miss is one lookup",
  );
  assert.equal(t.cache.idle, true, "nothing runs in the background after the lookups");
  assert.equal(await t.cache.get(id(15)), undefined);
  assert.equal(
    manifestGets().filter((call) => call.includes("/manifest.v2.")).length,
    1,
    "the 16th miss: the tier looks cold after all",
  );
});

Deno.test("TieredCache.idle is false while an upload runs", async () => {
  await using t = await setup();
  t.store.delayMs = 200;
  const body = encoder.encode("uploaded");
  await t.cache.put({ actionId: id(92), outputId: await sha256(body), body });
  assert.equal(t.cache.idle, false, "an upload is under way");
  await t.cache.close();
  assert.equal(t.cache.idle, true);
});

Deno.test("parseActionRecord() reads a put time in the future as now", () => {
  const hex = "0a".repeat(32);
  const before = BigInt(Date.now()) * 1_000_000n;
  const parsed = parseActionRecord(`${hex} 9999999999999999999`)!;
  assert.ok(parsed.nanos >= before && parsed.nanos <= BigInt(Date.now()) * 1_000_000n);
  assert.equal(parseActionRecord(`${hex} -5`)?.nanos, 0n);
});

Deno.test("TieredCache.get(): an object announcing 2.25e12 bytes is a miss, not a tripped breaker", async () => {
  await using t = await setup();
  const outputId = await seed(t.store, id(1), encoder.encode("abc"), 1n);
  const get = t.store.get.bind(t.store);
  t.store.get = async (key, options) => {
    const object = await get(key, options);
    return object && key === outputKey(outputId) ? { ...object, size: 2.25e12 } : object;
  };
  for (let n = 0; n < 3; n++) assert.equal(await t.cache.get(id(1)), undefined);
  const counters = t.metrics.counters();
  assert.equal(counters.s3_corrupt, 3);
  assert.equal(counters.s3_breaker_trips ?? 0, 0);
  assert.equal(counters.s3_get_errors ?? 0, 0);
});
