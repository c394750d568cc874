/**
 * UploadQueue against an in-memory bucket: object then record, skip-if-present, the concurrency
 * bound, the breaker gating and cutting uploads short, the bounded close, and pending markers
 * resumed by a later queue.
 */
import assert from "node:assert/strict";
import {
  CircuitBreaker,
  StoreError,
  type UploadEntry,
  UploadQueue,
  type UploadQueueOptions,
} from "../../src/store/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { recordingLogger } from "../_util/logger.ts";
import { TestStore } from "../_util/test_store.ts";

const encoder = new TextEncoder();

async function setup(
  options: Partial<UploadQueueOptions> & { breakerThreshold?: number } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "gcp-uploads-" });
  const store = new TestStore();
  const metrics = new Metrics();
  const log = recordingLogger();
  const breaker = new CircuitBreaker({ threshold: options.breakerThreshold, cooldownMs: 60_000 });
  const pendingDir = `${dir}/pending`;
  const make = (more: Partial<UploadQueueOptions> = {}) =>
    new UploadQueue(store, { breaker, pendingDir, metrics, log, ...options, ...more });
  const queue = make();
  /** Writes a local file and returns its entry. */
  const file = async (name: string, text: string, more: Partial<UploadEntry> = {}) => {
    const path = `${dir}/${name}`;
    await Deno.writeTextFile(path, text);
    return { marker: name, key: `obj/${name}`, path, ...more } satisfies UploadEntry;
  };
  const pending = async () =>
    (await Array.fromAsync(Deno.readDir(pendingDir)).catch(() => [])).map((e) => e.name).sort();
  return {
    dir,
    store,
    metrics,
    log,
    breaker,
    pendingDir,
    queue,
    make,
    file,
    pending,
    async [Symbol.asyncDispose]() {
      await queue.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("UploadQueue uploads the file, then its record, and counts both", async () => {
  await using t = await setup();
  const record = { key: "rec/a", bytes: encoder.encode("record") };
  t.queue.enqueue(await t.file("a", "hello", { size: 5, record }));
  await t.queue.close();
  assert.deepEqual(t.store.calls, ["PUT obj/a", "PUT rec/a"]);
  assert.equal(new TextDecoder().decode(t.store.objects.get("obj/a")), "hello");
  assert.equal(t.metrics.get("uploads_done"), 1);
  assert.equal(t.metrics.get("s3_bytes_up"), 5 + 6);
  assert.deepEqual(await t.pending(), []);
});

Deno.test("UploadQueue skips an object the store has when the entry allows it", async () => {
  await using t = await setup();
  t.store.objects.set("obj/b", encoder.encode("there"));
  const record = { key: "rec/b", bytes: encoder.encode("r") };
  t.queue.enqueue(await t.file("b", "there", { skipIfPresent: true, record }));
  await t.queue.close();
  assert.deepEqual(t.store.calls, ["HEAD obj/b", "PUT rec/b"]);
  assert.equal(t.metrics.get("uploads_skipped"), 1);
  assert.equal(t.metrics.get("uploads_done"), 1);
});

Deno.test("UploadQueue sends the file as it is when the upload starts, without a size", async () => {
  await using t = await setup({ concurrency: 1 });
  t.store.delayMs = 50;
  t.queue.enqueue(await t.file("first", "1"));
  const entry = await t.file("list", "v1.0.0\n");
  t.queue.enqueue(entry);
  // Replaced (as the proxy replaces a list: temp file and rename) before its upload starts.
  await Deno.writeTextFile(`${t.dir}/list.tmp`, "v1.0.0\nv1.1.0\n");
  await Deno.rename(`${t.dir}/list.tmp`, entry.path);
  await t.queue.close();
  assert.equal(new TextDecoder().decode(t.store.objects.get("obj/list")), "v1.0.0\nv1.1.0\n");
});

Deno.test("UploadQueue runs at most `concurrency` uploads at once", async () => {
  await using t = await setup({ concurrency: 2 });
  t.store.delayMs = 20;
  for (let n = 0; n < 6; n++) t.queue.enqueue(await t.file(`c${n}`, `body ${n}`));
  assert.equal(t.queue.pending, 6);
  await t.queue.close();
  assert.equal(t.metrics.get("uploads_done"), 6);
  assert.ok(t.store.peak <= 2, `peak ${t.store.peak}`);
  assert.equal(t.queue.pending, 0);
});

Deno.test("UploadQueue records a failed upload with its marker text and reports it", async () => {
  const failed: string[] = [];
  await using t = await setup({ onFailed: (entry) => failed.push(entry.key) });
  t.store.fail = new StoreError("Cannot PUT: InternalError (HTTP 500)", "other");
  t.queue.enqueue(await t.file("d", "data", { markerText: "the key" }));
  await t.queue.close();
  assert.equal(t.metrics.get("uploads_failed"), 1);
  assert.deepEqual(failed, ["obj/d"]);
  assert.deepEqual(await t.pending(), ["d"]);
  assert.equal(await Deno.readTextFile(`${t.pendingDir}/d`), "the key");
});

Deno.test("UploadQueue does not upload while the breaker is open: the entry is owed at once", async () => {
  await using t = await setup({ breakerThreshold: 1 });
  await t.breaker.ready();
  t.breaker.failed(new StoreError("connect ECONNREFUSED", "unreachable"));
  t.queue.enqueue(await t.file("e", "data"));
  await t.queue.close();
  assert.deepEqual(t.store.calls, []);
  assert.equal(t.metrics.get("uploads_failed"), 1);
  assert.match(t.log.infos.join("\n"), /not uploading "obj\/e": remote tier paused or disabled/);
  assert.deepEqual(await t.pending(), ["e"]);
});

Deno.test("UploadQueue: the breaker opening cuts running uploads short, owed, not reported", async () => {
  const failed: string[] = [];
  await using t = await setup({ concurrency: 2, onFailed: (entry) => failed.push(entry.key) });
  t.store.delayMs = 10_000;
  for (let n = 0; n < 2; n++) t.queue.enqueue(await t.file(`s${n}`, "x"));
  await new Promise((resolve) => setTimeout(resolve, 20));
  await t.breaker.ready();
  t.breaker.failed(new StoreError("connect ECONNREFUSED", "unreachable"));
  const started = performance.now();
  await t.queue.close();
  assert.ok(performance.now() - started < 1_000);
  assert.equal(t.metrics.get("uploads_failed"), 2);
  assert.deepEqual(failed, []);
  assert.deepEqual(await t.pending(), ["s0", "s1"]);
});

Deno.test("UploadQueue.close() waits a bounded time, counts what is left and records it", async () => {
  await using t = await setup({ closeTimeoutMs: 50, concurrency: 1, uploadTimeoutMs: 300 });
  t.store.delayMs = 10_000;
  for (let n = 0; n < 3; n++) t.queue.enqueue(await t.file(`l${n}`, "x"));
  const started = performance.now();
  await t.queue.close();
  assert.ok(performance.now() - started < 250);
  assert.equal(t.metrics.get("uploads_left"), 3);
  assert.match(t.log.warnings.join("\n"), /3 uploads to the bucket left undone after 50ms/);
  assert.deepEqual(await t.pending(), ["l0", "l1", "l2"]);
  // The running upload ends at its own deadline.
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(t.queue.pending, 0);
});

Deno.test("UploadQueue counts a file that is gone and records nothing for it", async () => {
  await using t = await setup();
  const entry = await t.file("gone", "x");
  await Deno.remove(entry.path);
  t.queue.enqueue(entry);
  await t.queue.close();
  assert.equal(t.metrics.get("uploads_failed"), 1);
  assert.match(t.log.infos.join("\n"), /not uploading "obj\/gone": local file is gone/);
  assert.deepEqual(await t.pending(), []);
});

Deno.test("UploadQueue.resume() queues what an earlier queue owed and removes the markers", async () => {
  await using t = await setup();
  t.store.fail = new StoreError("Cannot PUT: InternalError (HTTP 500)", "other");
  for (const name of ["r1", "r2"]) t.queue.enqueue(await t.file(name, name, { markerText: name }));
  await t.queue.close();
  assert.deepEqual(await t.pending(), ["r1", "r2"]);
  // Files the pattern does not take are left alone; a marker without an entry is removed, and
  // one whose rebuild fails is kept.
  await Deno.writeTextFile(`${t.pendingDir}/.tmp-other`, "");
  await Deno.writeTextFile(`${t.pendingDir}/stale`, "");
  await Deno.writeTextFile(`${t.pendingDir}/broken`, "");

  t.store.fail = undefined;
  const metrics = new Metrics();
  const next = t.make({ metrics });
  const queued = await next.resume(async (marker, text) => {
    if (marker === "stale") return undefined;
    if (marker === "broken") throw new Error("cannot tell");
    const key = await text();
    return { marker, key: `obj/${key}`, path: `${t.dir}/${key}` };
  });
  assert.equal(queued, 2);
  await next.close();
  assert.equal(metrics.get("uploads_resumed"), 2);
  assert.equal(metrics.get("uploads_done"), 2);
  assert.equal(new TextDecoder().decode(t.store.objects.get("obj/r2")), "r2");
  assert.deepEqual(await t.pending(), [".tmp-other", "broken"]);
});

Deno.test("UploadQueue.resume() leaves markers owed while the breaker is paused", async () => {
  await using t = await setup({ breakerThreshold: 1 });
  await t.breaker.ready();
  t.breaker.failed(new StoreError("connect ECONNREFUSED", "unreachable"));
  t.queue.enqueue(await t.file("p", "x"));
  await t.queue.close();
  let asked = 0;
  const queued = await t.make().resume(() => {
    asked++;
    return Promise.resolve(undefined);
  });
  assert.equal(queued, 0);
  assert.equal(asked, 0);
  assert.deepEqual(await t.pending(), ["p"]);
});

Deno.test("UploadQueue counts under the names its owner gives", async () => {
  await using t = await setup({
    noun: "module uploads",
    names: { done: "mod_puts", bytesUp: "mod_bytes", failed: "mod_errors" },
  });
  t.queue.enqueue(await t.file("n", "four"));
  await t.queue.close();
  assert.equal(t.metrics.get("mod_puts"), 1);
  assert.equal(t.metrics.get("mod_bytes"), 4);
  assert.equal(t.metrics.get("uploads_done"), 0);
});

Deno.test("UploadQueue streams a file to the store in chunks of at most 64 KiB, never whole", async () => {
  await using t = await setup({ concurrency: 2 });
  const size = (1 << 20) + 5;
  const chunks: number[] = [];
  t.store.put = async (key, body, options) => {
    assert.ok(body instanceof ReadableStream, "a stream, not the file read into memory");
    let total = 0;
    for await (const chunk of body) {
      chunks.push(chunk.length);
      total += chunk.length;
    }
    assert.equal(total, options.size);
    t.store.objects.set(key, new Uint8Array(total));
  };
  const path = `${t.dir}/big`;
  await Deno.writeFile(path, new Uint8Array(size));
  t.queue.enqueue({ marker: "big", key: "obj/big", path });
  await t.queue.close();
  assert.equal(t.metrics.get("uploads_done"), 1);
  assert.equal(chunks.reduce((a, b) => a + b, 0), size);
  assert.ok(Math.max(...chunks) <= 64 << 10, `largest chunk ${Math.max(...chunks)}`);
});
