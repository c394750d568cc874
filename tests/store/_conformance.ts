/**
 * The store conformance suite: what every store behind `--bucket` must do, the same for the
 * in-memory store, S3 (MinIO), Google Cloud Storage and Azure Blob Storage. A store's test file
 * calls {@linkcode storeConformance} with a factory; the suite registers one Deno test whose
 * steps cover get/has/put, missing keys, sizes (empty, small, large), bodies given as bytes and as
 * streams, keys shaped like the cache's and the module proxy's, prefixes through `withPrefix`,
 * bodies cancelled unread, concurrent calls, and failures rejected as {@linkcode StoreError}s of
 * the right kind (a deadline is `timeout`, a closed port `unreachable`, a missing bucket
 * `config`).
 *
 * @example
 * ```ts ignore
 * storeConformance("S3 on MinIO", async () => {
 *   const minio = await startMinio();
 *   return { store: new AwsObjectStore({ ... }), async [Symbol.asyncDispose]() { await minio.stop(); } };
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { type ObjectStore, StoreError, type StoreErrorKind } from "../../src/store/mod.ts";
import { sha256Hex } from "../_util/bytes.ts";

/**
 * What the suite needs of a store: the {@linkcode ObjectStore} calls and `withPrefix`
 * (every `BucketStore` is one).
 */
export interface ConformanceStore extends ObjectStore {
  /** A store whose keys live under `sub/` within this one's prefix. */
  withPrefix(sub: string): ConformanceStore;
}

/** What a factory gives the suite; disposed when the test ends. */
export interface ConformanceTarget extends AsyncDisposable {
  /** The store under test, on a bucket (or container) the suite may write anywhere in. */
  store: ConformanceStore;
  /**
   * A store of the same kind whose endpoint refuses connections: its calls must reject with kind
   * `unreachable`. @default the step is not run (say why in the factory's file)
   */
  unreachable?: ConformanceStore;
  /**
   * A store on the same server whose bucket (or container) does not exist: its calls must reject
   * with kind `config`. @default the step is not run
   */
  missingBucket?: ConformanceStore;
}

/** Options for {@linkcode storeConformance}. */
export interface ConformanceOptions {
  /** Skip the test (a missing server outside CI; see `needs()` in tests/_util). @default {false} */
  ignore?: boolean;
  /** Size of the large object, streamed both ways. @default {12 MiB} */
  largeBytes?: number;
}

/**
 * Registers the conformance test of one kind of store.
 *
 * @param name The store's name in the test's name, such as `"S3 (MinIO)"`.
 * @param open Starts what the store needs and returns it; called once, when the test runs.
 * @param options Skipping and sizes.
 */
export function storeConformance(
  name: string,
  open: () => Promise<ConformanceTarget>,
  options: ConformanceOptions = {},
): void {
  const largeBytes = options.largeBytes ?? 12 << 20;
  Deno.test({
    name: `store conformance: ${name}`,
    ignore: options.ignore ?? false,
    // Servers started for the test, SDK connections and keep-alive sockets outlive the steps.
    sanitizeResources: false,
    sanitizeOps: false,
    async fn(t) {
      await using target = await open();
      // A prefix of its own, so a reused bucket never answers from an earlier run.
      const store = target.store.withPrefix(`conformance-${crypto.randomUUID().slice(0, 8)}`);

      await t.step("put then get returns the bytes and their size; has sees them", async () => {
        const bytes = pattern(1000, 1);
        await store.put("action/ab/ab01", bytes, { size: bytes.length });
        assert.equal(await store.has("action/ab/ab01"), true);
        const object = await store.get("action/ab/ab01");
        assert.ok(object, "get after put finds the object");
        assert.equal(object.size, bytes.length);
        assert.deepEqual(await readAll(object.body), bytes);
      });

      await t.step("a missing key is undefined for get and false for has", async () => {
        assert.equal(await store.get("action/00/missing"), undefined);
        assert.equal(await store.has("action/00/missing"), false);
        assert.equal(await store.get("no/such/dir/at/all"), undefined);
      });

      await t.step("an empty object is stored, found and read as zero bytes", async () => {
        await store.put("output/e3/empty", new Uint8Array(0), { size: 0 });
        assert.equal(await store.has("output/e3/empty"), true);
        const object = await store.get("output/e3/empty");
        assert.ok(object);
        assert.equal(object.size, 0);
        assert.equal((await readAll(object.body)).length, 0);
        await store.put("output/e3/empty-stream", chunked(new Uint8Array(0), 1), { size: 0 });
        assert.equal((await store.get("output/e3/empty-stream"))?.size, 0);
      });

      await t.step("a body given as a stream is stored whole; a put replaces", async () => {
        const bytes = pattern(70_000, 2);
        await store.put("output/5t/stream", chunked(bytes, 4096), { size: bytes.length });
        const object = await store.get("output/5t/stream");
        assert.equal(object?.size, bytes.length);
        assert.deepEqual(await readAll(object!.body), bytes);
        const other = pattern(10, 3);
        await store.put("output/5t/stream", other, { size: other.length });
        assert.deepEqual(await readAll((await store.get("output/5t/stream"))!.body), other);
      });

      await t.step("a stream shorter than its size rejects and stores nothing", async () => {
        const bytes = pattern(100, 4);
        await assert.rejects(store.put("output/sh/short", chunked(bytes, 30), { size: 200 }));
        assert.equal(await store.has("output/sh/short"), false);
      });

      await t.step("keys shaped like the cache's and the module proxy's round-trip", async () => {
        const keys = [
          `action/${"c0ffee".padEnd(64, "0").slice(0, 2)}/${"c0ffee".padEnd(64, "0")}`,
          "warm/manifest-v1/linux-amd64/go1.26/4f.json",
          "module/cache/download/github.com/!burnt!sushi/toml/@v/v1.5.0+incompatible.zip",
          "module/sumdb/sum.golang.org/lookup/golang.org/x/tools@v0.30.0",
          "module/cache/download/example.com/a b/@v/list",
        ];
        for (const [i, key] of keys.entries()) {
          const bytes = pattern(50 + i, 10 + i);
          await store.put(key, bytes, { size: bytes.length });
          assert.equal(await store.has(key), true, key);
          assert.deepEqual(await readAll((await store.get(key))!.body), bytes, key);
        }
      });

      await t.step("withPrefix puts keys under sub/, nests, and trims slashes", async () => {
        const bytes = pattern(20, 5);
        const sub = store.withPrefix("module");
        await sub.put("cache/x", bytes, { size: bytes.length });
        assert.deepEqual(await readAll((await store.get("module/cache/x"))!.body), bytes);
        assert.equal(await sub.has("module/cache/x"), false, "a prefix applies once");
        assert.equal(
          await sub.get("action/ab/ab01"),
          undefined,
          "a prefix hides the parent's keys",
        );
        const nested = store.withPrefix("/a/").withPrefix("b/");
        await nested.put("k", bytes, { size: bytes.length });
        assert.equal(await store.has("a/b/k"), true);
        assert.equal(await store.withPrefix("a").has("b/k"), true);
        assert.equal(await store.withPrefix("").has("a/b/k"), true, "an empty prefix adds nothing");
      });

      await t.step(`a large body (${largeBytes} bytes) is streamed in and out intact`, async () => {
        const bytes = pattern(largeBytes, 6);
        const want = await sha256Hex(bytes);
        await store.put("output/1a/large", chunked(bytes, 64 << 10), { size: bytes.length });
        const object = await store.get("output/1a/large");
        assert.equal(object?.size, bytes.length);
        assert.equal(await sha256Hex(await readAll(object!.body)), want);
      });

      await t.step("bodies cancelled unread leave the store usable", async () => {
        for (let i = 0; i < 8; i++) {
          const object = await store.get("output/1a/large");
          assert.ok(object);
          await object.body.cancel();
        }
        const object = await store.get("action/ab/ab01");
        assert.equal((await readAll(object!.body)).length, 1000);
      });

      await t.step("concurrent puts and gets all complete", async () => {
        const items = Array.from({ length: 24 }, (_, i) => pattern(1000 + i * 97, 20 + i));
        await Promise.all(
          items.map((bytes, i) => store.put(`output/cc/${i}`, bytes, { size: bytes.length })),
        );
        const got = await Promise.all(
          items.map(async (_, i) => readAll((await store.get(`output/cc/${i}`))!.body)),
        );
        for (const [i, bytes] of items.entries()) assert.deepEqual(got[i], bytes, `object ${i}`);
      });

      await t.step("a call past its deadline rejects with kind timeout", async () => {
        const signal = AbortSignal.abort(new DOMException("deadline", "TimeoutError"));
        await rejectsWithKind(store.get("action/ab/ab01", { signal }), "timeout");
        await rejectsWithKind(store.has("action/ab/ab01", { signal }), "timeout");
        const bytes = pattern(10, 7);
        await rejectsWithKind(
          store.put("output/dl/late", bytes, { size: bytes.length, signal }),
          "timeout",
        );
        assert.equal(await store.has("output/dl/late"), false);
      });

      const { unreachable, missingBucket } = target;
      if (unreachable) {
        await t.step("a store that refuses connections rejects with kind unreachable", async () => {
          const signal = AbortSignal.timeout(20_000);
          await rejectsWithKind(unreachable.get("action/ab/ab01", { signal }), "unreachable");
          await rejectsWithKind(unreachable.has("action/ab/ab01", { signal }), "unreachable");
          const bytes = pattern(10, 8);
          await rejectsWithKind(
            unreachable.put("output/un/x", bytes, { size: bytes.length, signal }),
            "unreachable",
          );
        });
      }
      if (missingBucket) {
        await t.step("a store on a missing bucket rejects with kind config", async () => {
          const signal = AbortSignal.timeout(20_000);
          await rejectsWithKind(missingBucket.get("action/ab/ab01", { signal }), "config");
          await rejectsWithKind(missingBucket.has("action/ab/ab01", { signal }), "config");
          const bytes = pattern(10, 9);
          await rejectsWithKind(
            missingBucket.put("output/mb/x", bytes, { size: bytes.length, signal }),
            "config",
          );
        });
      }
    },
  });
}

/** Asserts that a call rejects with a {@linkcode StoreError} of `kind`. */
async function rejectsWithKind(call: Promise<unknown>, kind: StoreErrorKind): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof StoreError, `a StoreError, not ${String(error)}`);
    assert.equal(error.kind, kind, error.message);
    assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
    return true;
  });
}

/** Bytes that differ by `seed`, so a mixed-up object never passes for another. */
function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** A stream of `bytes` in chunks of `size`. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
  });
}

/** Reads a body to the end. */
async function readAll(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of body) {
    parts.push(chunk);
    length += chunk.length;
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}
