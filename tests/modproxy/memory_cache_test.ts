/** The byte-bounded memory of small immutable files behind the module proxy's warm path. */
import assert from "node:assert/strict";
import { MemoryCache } from "../../src/modproxy/_memory_cache.ts";

const file = (size: number, fill = 1) => ({ bytes: new Uint8Array(size).fill(fill), mtimeMs: 7 });

Deno.test("MemoryCache stays within its byte bound, evicting the least recently used first", () => {
  const cache = new MemoryCache(4096, 1024);
  for (let i = 0; i < 20; i++) {
    cache.set(`k${i}`, file(1000, i));
    assert.ok(cache.bytes <= 4096, `over the bound after ${i + 1} files: ${cache.bytes}`);
  }
  assert.ok(cache.size >= 2 && cache.size < 20);
  assert.equal(cache.get("k0"), undefined, "the oldest went first");
  assert.equal(cache.get("k19")?.bytes[0], 19);
  // A read makes an entry the most recently used: it outlives later ones.
  const survivor = `k${20 - cache.size}`;
  assert.ok(cache.get(survivor));
  cache.set("new1", file(1000));
  assert.ok(cache.get(survivor), "a recently read entry is kept");
  assert.equal(cache.get(`k${21 - cache.size}`), undefined);
});

Deno.test("MemoryCache holds nothing above its entry cap, and nothing at all with a bound of 0", () => {
  const cache = new MemoryCache(1 << 20, 100);
  assert.equal(cache.fits(100), true);
  assert.equal(cache.fits(101), false);
  cache.set("big", file(101));
  assert.equal(cache.get("big"), undefined);
  assert.equal(cache.bytes, 0);
  const off = new MemoryCache(0);
  off.set("a", file(0));
  off.set("b", file(1));
  assert.equal(off.size, 0);
  assert.equal(off.bytes, 0);
});

Deno.test("MemoryCache.delete() and a replacing set() return the old entry's bytes", () => {
  const cache = new MemoryCache(1 << 20);
  cache.set("a", file(500, 1));
  const charged = cache.bytes;
  assert.ok(charged >= 500);
  cache.set("a", file(500, 2));
  assert.equal(cache.bytes, charged, "a replacement is charged once");
  assert.equal(cache.get("a")?.bytes[0], 2);
  cache.delete("a");
  cache.delete("missing");
  assert.equal(cache.bytes, 0);
  assert.equal(cache.size, 0);
  assert.equal(cache.get("a"), undefined);
});
