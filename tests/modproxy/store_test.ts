/**
 * ModuleStore on the shared store core, against an in-memory bucket: atomic local writes, the
 * breaker in front of remote fills, and uploads through the bounded queue with resume.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  MemoryObjectStore,
  type StoreCallOptions,
  type StoredObject,
  StoreError,
} from "../../src/store/mod.ts";
import { ReadThroughStore } from "../../src/store/mod.ts";
import { recordingLogger } from "../_util/logger.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { ModuleStore, type ModuleStoreOptions, TooLargeError } from "../../src/modproxy/store.ts";

const encoder = new TextEncoder();
const LIST = "example.com/!hello/@v/list";
const ZIP = "example.com/!hello/@v/v1.0.0.zip";

/** A store whose GETs can stall until their signal aborts, and whose PUTs can fail. */
class TestStore extends MemoryObjectStore {
  calls: string[] = [];
  stall = false;
  failPuts?: StoreError;

  override async get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    this.calls.push(`GET ${key}`);
    if (this.stall) {
      await new Promise<void>((_, reject) => {
        options?.signal?.addEventListener("abort", () => {
          reject(new StoreError(`Cannot GET ${key}: deadline exceeded`, "timeout"));
        }, { once: true });
      });
    }
    return super.get(key, options);
  }

  override async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    this.calls.push(`PUT ${key}`);
    if (this.failPuts) {
      if (body instanceof ReadableStream) await body.cancel();
      throw this.failPuts;
    }
    return super.put(key, body, options);
  }
}

async function setup(options: ModuleStoreOptions = {}) {
  const dir = await Deno.makeTempDir({ prefix: "gcp-modstore-" });
  const remote = new TestStore();
  const metrics = new Metrics();
  const log = recordingLogger();
  const open = (more: ModuleStoreOptions = {}) =>
    new ModuleStore(join(dir, "module"), { store: remote, metrics, log, ...options, ...more });
  const store = open();
  return {
    dir,
    remote,
    metrics,
    log,
    store,
    open,
    async pending(): Promise<string[]> {
      const entries = await Array.fromAsync(Deno.readDir(join(dir, "module", ".pending")))
        .catch(() => []);
      return entries.map((e) => e.name);
    },
    async [Symbol.asyncDispose]() {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("ModuleStore.writeStream() renames a checked temp file into place, else leaves nothing", async () => {
  await using t = await setup();
  const size = await t.store.writeStream(LIST, ReadableStream.from([encoder.encode("v1.0.0\n")]), {
    maxBytes: 100,
  });
  assert.equal(size, 7);
  assert.equal(await Deno.readTextFile(t.store.localPath(LIST)), "v1.0.0\n");
  await assert.rejects(
    t.store.writeStream(ZIP, ReadableStream.from([new Uint8Array(11)]), { maxBytes: 10 }),
    TooLargeError,
  );
  await assert.rejects(
    t.store.writeStream(ZIP, ReadableStream.from([new Uint8Array(5)]), {
      maxBytes: 10,
      check: () => Promise.reject(new RangeError("bad zip")),
    }),
    /bad zip/,
  );
  const names = await Array.fromAsync(Deno.readDir(join(t.dir, "module/example.com/!hello/@v")));
  assert.deepEqual(names.map((e) => e.name), ["list"]);
});

const MOD = "example.com/!hello/@v/v1.0.0.mod";
const text = (entry: { bytes?: Uint8Array } | undefined) =>
  entry?.bytes && new TextDecoder().decode(entry.bytes);

Deno.test("ModuleStore.read() keeps small immutable entries in memory until a write or removal", async () => {
  await using t = await setup();
  await t.store.writeBytes(MOD, encoder.encode("module one\n"));
  const first = t.store.read(MOD, { immutable: true });
  assert.equal(text(first), "module one\n");
  assert.equal(first?.size, 11);
  assert.ok(first!.mtimeMs > 0);
  // Memory saves the read, not the check: the same size and mtime are answered from memory...
  const path = t.store.localPath(MOD);
  await Deno.writeTextFile(path, "module ONE\n");
  await Deno.utime(path, first!.mtimeMs / 1000, first!.mtimeMs / 1000);
  assert.equal(text(t.store.read(MOD, { immutable: true })), "module one\n");
  assert.equal(text(t.store.read(MOD, { immutable: false })), "module ONE\n", "mutable: the disk");
  // ...and a file changed or removed behind the store's back is seen at once.
  await Deno.utime(path, 1, 1);
  assert.equal(text(t.store.read(MOD, { immutable: true })), "module ONE\n");
  await Deno.remove(path);
  assert.equal(t.store.read(MOD, { immutable: true }), undefined);
  // Every change through the store is seen at once.
  await t.store.writeBytes(MOD, encoder.encode("module two\n"));
  assert.equal(text(t.store.read(MOD, { immutable: true })), "module two\n");
  await t.store.writeStream(MOD, ReadableStream.from([encoder.encode("module three\n")]), {
    maxBytes: 100,
  });
  assert.equal(text(t.store.read(MOD, { immutable: true })), "module three\n");
  t.remote.objects.set(MOD, encoder.encode("module four\n"));
  assert.equal(await t.store.fillFromRemote(MOD, { maxBytes: 100 }), true);
  assert.equal(text(t.store.read(MOD, { immutable: true })), "module four\n");
  await t.store.removeLocal(MOD);
  assert.equal(t.store.read(MOD, { immutable: true }), undefined);
});

Deno.test("ModuleStore.read(): mutable entries and memoryBytes 0 always read the disk", async () => {
  await using t = await setup({ memoryBytes: 0 });
  await t.store.writeBytes(MOD, encoder.encode("module one\n"));
  const first = t.store.read(MOD, { immutable: true });
  assert.equal(text(first), "module one\n");
  const path = t.store.localPath(MOD);
  await Deno.writeTextFile(path, "module ONE\n");
  await Deno.utime(path, first!.mtimeMs / 1000, first!.mtimeMs / 1000);
  assert.equal(text(t.store.read(MOD, { immutable: true })), "module ONE\n");
  // A mutable entry's mtime is the disk's, read each time: markStale() is seen at once.
  await t.store.writeBytes(LIST, encoder.encode("v1.0.0\n"));
  assert.ok(t.store.read(LIST, { immutable: false })!.mtimeMs > 0);
  await t.store.markStale(LIST);
  assert.equal(t.store.read(LIST, { immutable: false })!.mtimeMs, 0);
});

Deno.test("ModuleStore.read() hands large entries over as open files, never into memory", async () => {
  await using t = await setup();
  const big = new Uint8Array((256 << 10) + 1).fill(7);
  await t.store.writeBytes(ZIP, big);
  const entry = t.store.read(ZIP, { immutable: true });
  assert.equal(entry?.bytes, undefined);
  assert.equal(entry?.size, big.length);
  assert.deepEqual(await new Response(entry!.file!.readable).bytes(), big);
  await Deno.remove(t.store.localPath(ZIP));
  assert.equal(t.store.read(ZIP, { immutable: true }), undefined);
  assert.equal(
    t.store.read("example.com/!hello/@v", { immutable: true }),
    undefined,
    "a directory",
  );
});

Deno.test("ModuleStore.fillFromRemote() copies an entry and checks its size", async () => {
  await using t = await setup();
  t.remote.objects.set(ZIP, encoder.encode("zip bytes"));
  assert.equal(await t.store.fillFromRemote(ZIP, { maxBytes: 100 }), true);
  assert.equal(await Deno.readTextFile(t.store.localPath(ZIP)), "zip bytes");
  assert.equal(t.metrics.get("modproxy_store_fills"), 1);
  assert.equal(await t.store.fillFromRemote(LIST, { maxBytes: 100 }), false, "not in the bucket");
  assert.equal(await t.store.fillFromRemote(ZIP, { maxBytes: 4 }), false, "over the cap");
  assert.match(t.log.lines.join("\n"), /warn: Cannot read module file .*larger than 4 bytes/);
});

Deno.test("ModuleStore: one missed lookup deadline opens the breaker; later fills skip the bucket", async () => {
  await using t = await setup({ getTimeoutMs: 100 });
  t.remote.stall = true;
  const started = performance.now();
  assert.equal(await t.store.fillFromRemote(ZIP, { maxBytes: 100 }), false);
  const first = performance.now() - started;
  assert.ok(first >= 90 && first < 1_000, `first fill took ${first.toFixed(0)}ms`);
  assert.equal(t.metrics.get("modproxy_store_breaker_trips"), 1);
  assert.equal(t.metrics.get("modproxy_store_breaker_open"), 1);
  assert.match(t.log.lines.join("\n"), /warn: modproxy: S3 tier paused for 30s after 1/);

  const later = performance.now();
  for (let n = 0; n < 5; n++) {
    assert.equal(
      await t.store.fillFromRemote(`example.com/m${n}/@v/v1.0.0.mod`, { maxBytes: 9 }),
      false,
    );
  }
  assert.ok(performance.now() - later < 100);
  assert.deepEqual(t.remote.calls, [`GET ${ZIP}`]);
  assert.equal(t.metrics.get("modproxy_store_skipped"), 5);
});

Deno.test("ModuleStore: a failed check or cap is not the bucket's failure", async () => {
  await using t = await setup();
  t.remote.objects.set(ZIP, encoder.encode("zip bytes"));
  const check = () => Promise.reject(new RangeError("zip contradicts the checksum database"));
  for (let n = 0; n < 8; n++) {
    assert.equal(await t.store.fillFromRemote(ZIP, { maxBytes: 100, check }), false);
  }
  assert.equal(t.metrics.get("modproxy_store_breaker_trips"), 0);
  assert.equal(t.remote.calls.length, 8, "every fill still asked the bucket");
  await assert.rejects(Deno.stat(t.store.localPath(ZIP)), Deno.errors.NotFound);
});

Deno.test("ModuleStore.upload() sends the local file through the queue", async () => {
  await using t = await setup();
  await t.store.writeBytes(LIST, encoder.encode("v1.0.0\n"));
  t.store.upload(LIST);
  await t.store.close();
  assert.equal(new TextDecoder().decode(t.remote.objects.get(LIST)), "v1.0.0\n");
  assert.equal(t.metrics.get("modproxy_store_puts"), 1);
  assert.equal(t.metrics.get("modproxy_store_bytes_up"), 7);
});

Deno.test("ModuleStore records uploads it could not do; the next one sends them", async () => {
  await using t = await setup();
  t.remote.failPuts = new StoreError("Cannot PUT: InternalError (HTTP 500)", "other");
  for (const key of [LIST, ZIP]) {
    await t.store.writeBytes(key, encoder.encode(key));
    t.store.upload(key);
  }
  await t.store.close();
  assert.equal(t.metrics.get("modproxy_store_errors"), 2);
  assert.match(t.log.lines.join("\n"), /warn: Cannot upload module file ".*" to the object store/);
  const markers = await t.pending();
  assert.equal(markers.length, 2);
  assert.ok(markers.every((name) => /^[0-9a-f]{64}$/.test(name)), markers.join(" "));
  // A marker that does not match its key is dropped, not sent.
  await Deno.writeTextFile(join(t.dir, "module/.pending", "0".repeat(64)), "../../etc/passwd");

  t.remote.failPuts = undefined;
  const metrics = new Metrics();
  const next = t.open({ metrics });
  await next.close();
  assert.equal(metrics.get("modproxy_store_uploads_resumed"), 2);
  assert.equal(metrics.get("modproxy_store_puts"), 2);
  assert.equal(new TextDecoder().decode(t.remote.objects.get(ZIP)), ZIP);
  assert.deepEqual(await t.pending(), []);
});

Deno.test("ModuleStore without a remote tier stays local", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gcp-modstore-" });
  try {
    const store = new ModuleStore(dir);
    assert.equal(store.hasRemote, false);
    assert.equal(await store.fillFromRemote(ZIP, { maxBytes: 10 }), false);
    await store.writeBytes(LIST, encoder.encode("x"));
    store.upload(LIST);
    await store.close();
    assert.deepEqual(await store.readLocal(LIST), encoder.encode("x"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A bucket prefix that also records HEADs. */
class PrefixStore extends TestStore {
  override has(key: string, options?: StoreCallOptions): Promise<boolean> {
    this.calls.push(`HEAD ${key}`);
    return super.has(key, options);
  }
}

Deno.test("ModuleStore with read prefixes fills from them in order, uploads to the own prefix only", async () => {
  const own = new PrefixStore();
  const a = new PrefixStore();
  const b = new PrefixStore();
  b.objects.set(ZIP, encoder.encode("b's zip"));
  a.objects.set(LIST, encoder.encode("a's list\n"));
  b.objects.set(LIST, encoder.encode("b's list\n"));
  await using t = await setup({ store: new ReadThroughStore(own, { readStores: [a, b] }) });
  assert.equal(t.store.hasRemote, true);
  assert.equal(await t.store.fillFromRemote(ZIP, { maxBytes: 100 }), true);
  assert.equal(await Deno.readTextFile(t.store.localPath(ZIP)), "b's zip");
  assert.equal(await t.store.fillFromRemote(LIST, { maxBytes: 100 }), true);
  assert.equal(await Deno.readTextFile(t.store.localPath(LIST)), "a's list\n");
  assert.deepEqual([own.calls, a.calls, b.calls], [
    [`GET ${ZIP}`, `GET ${LIST}`],
    [`GET ${ZIP}`, `GET ${LIST}`],
    [`GET ${ZIP}`],
  ]);
  assert.equal(t.metrics.get("modproxy_store_read_prefix_hits"), 2);
  // A check applies to a read prefix's copy as to any other.
  const check = () => Promise.reject(new RangeError("zip contradicts the checksum database"));
  await t.store.removeLocal(ZIP);
  assert.equal(await t.store.fillFromRemote(ZIP, { maxBytes: 100, check }), false);

  t.store.upload(LIST);
  await t.store.close();
  assert.deepEqual(own.calls.slice(-1), [`PUT ${LIST}`]);
  assert.equal(new TextDecoder().decode(own.objects.get(LIST)), "a's list\n");
  assert.equal(a.calls.filter((c) => !c.startsWith("GET ")).length, 0);
  assert.equal(b.calls.filter((c) => !c.startsWith("GET ")).length, 0);
});

Deno.test("ModuleStore read-only: fills read through, not one PUT or HEAD, .pending left alone", async () => {
  const own = new PrefixStore();
  const main = new PrefixStore();
  main.objects.set(ZIP, encoder.encode("main's zip"));
  const view = new ReadThroughStore(own, { readStores: [main], readOnly: true });
  await using t = await setup({ store: view });
  // A writing session left an owed upload behind.
  await t.store.writeBytes(LIST, encoder.encode("v1.0.0\n"));
  const marker = join(t.dir, "module/.pending", "1".repeat(64));
  await Deno.mkdir(join(t.dir, "module/.pending"));
  await Deno.writeTextFile(marker, LIST);
  const next = t.open();
  assert.equal(await next.fillFromRemote(ZIP, { maxBytes: 100 }), true);
  next.upload(LIST);
  next.upload(ZIP);
  await next.close();
  assert.deepEqual([...own.calls, ...main.calls], [`GET ${ZIP}`, `GET ${ZIP}`]);
  assert.equal(t.metrics.get("modproxy_store_uploads_skipped_read_only"), 2);
  assert.equal(t.metrics.get("modproxy_store_uploads_resumed"), 0);
  assert.equal(t.metrics.get("modproxy_store_puts"), 0);
  assert.deepEqual(await t.pending(), ["1".repeat(64)]);
  assert.equal(own.objects.size, 0);
});
