import assert from "node:assert/strict";
import { LocalCache } from "../../src/cache/local.ts";
import { hexId, sha256Hex } from "../_util/script.ts";

async function withCache(fn: (cache: LocalCache, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(await LocalCache.open(dir), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const body = new TextEncoder().encode("compiled package");

Deno.test("LocalCache.put() writes the cachedir layout and get() hits with the put time", async () => {
  await withCache(async (cache, dir) => {
    const outputId = await sha256Hex(body);
    const before = Date.now();
    const path = await cache.put({ actionId: hexId(1), outputId, body });
    assert.equal(path, `${dir}/output/${outputId.slice(0, 2)}/${outputId}`);
    assert.equal(
      await Deno.readTextFile(`${dir}/action/00/${hexId(1)}`),
      `${outputId} ${body.length}`,
    );
    const hit = await cache.get(hexId(1));
    assert.equal(hit?.outputId, outputId);
    assert.equal(hit?.size, body.length);
    assert.equal(hit?.diskPath, path);
    assert.ok(hit!.time!.getTime() >= before - 1000);
  });
});

Deno.test("LocalCache.get() misses when go has moved the output away (go build -o)", async () => {
  await withCache(async (cache) => {
    const outputId = await sha256Hex(body);
    const path = await cache.put({ actionId: hexId(2), outputId, body });
    await Deno.rename(path, path + ".moved");
    assert.equal(await cache.get(hexId(2)), undefined);
  });
});

Deno.test("LocalCache.get() misses when the output has the wrong size", async () => {
  await withCache(async (cache) => {
    const outputId = await sha256Hex(body);
    const path = await cache.put({ actionId: hexId(3), outputId, body });
    await Deno.writeFile(path, body.subarray(1));
    assert.equal(await cache.get(hexId(3)), undefined);
  });
});

Deno.test("LocalCache.get() treats a malformed action record as a miss", async () => {
  await withCache(async (cache, dir) => {
    await Deno.mkdir(`${dir}/action/00`, { recursive: true });
    await Deno.writeTextFile(`${dir}/action/00/${hexId(4)}`, "not a record");
    assert.equal(await cache.get(hexId(4)), undefined);
    assert.equal(await cache.get("../../etc/passwd"), undefined);
  });
});

Deno.test("LocalCache.writeObject() rejects a stream of the wrong length and leaves no file", async () => {
  await withCache(async (cache, dir) => {
    const outputId = hexId(5);
    await assert.rejects(
      cache.writeObject(outputId, ReadableStream.from([body]), { size: body.length + 1 }),
      /got 16 bytes, expected 17/,
    );
    const left = await Array.fromAsync(Deno.readDir(`${dir}/output/00`));
    assert.deepEqual(left, []);
  });
});

Deno.test("LocalCache.writeAction() keeps the given time as the entry's Time", async () => {
  await withCache(async (cache) => {
    const outputId = await sha256Hex(body);
    await cache.writeObject(outputId, body);
    const time = new Date("2025-01-02T03:04:05.678Z");
    await cache.writeAction(hexId(6), { outputId, size: body.length, time });
    assert.equal((await cache.get(hexId(6)))?.time?.getTime(), time.getTime());
  });
});

Deno.test("LocalCache.prune() removes entries unused within the period and keeps the rest", async () => {
  await withCache(async (cache) => {
    const oldBody = new TextEncoder().encode("old");
    const oldId = await sha256Hex(oldBody);
    const old = new Date(Date.now() - 10 * 86_400_000);
    await cache.writeObject(oldId, oldBody, { mtime: old });
    await cache.writeAction(hexId(7), { outputId: oldId, size: 3, time: old });
    const fresh = await cache.put({ actionId: hexId(8), outputId: await sha256Hex(body), body });
    const result = await cache.prune(86_400_000);
    assert.deepEqual(result, { actions: 1, outputs: 1, bytes: 3 });
    assert.equal(await cache.get(hexId(7)), undefined);
    assert.equal((await cache.get(hexId(8)))?.diskPath, fresh);
  });
});

Deno.test("LocalCache.open() refuses a relative directory", async () => {
  await assert.rejects(LocalCache.open("relative/dir"), TypeError);
});

Deno.test("LocalCache keeps a consistent directory under concurrent puts of the same entries", async () => {
  await withCache(async (cache, dir) => {
    const other = await LocalCache.open(dir);
    const outputId = await sha256Hex(body);
    await Promise.all(
      Array.from(
        { length: 40 },
        (_, i) => (i % 2 ? cache : other).put({ actionId: hexId(i % 4), outputId, body }),
      ),
    );
    for (let i = 0; i < 4; i++) assert.equal((await cache.get(hexId(i)))?.size, body.length);
    const stray = await Array.fromAsync(Deno.readDir(`${dir}/output/${outputId.slice(0, 2)}`));
    assert.deepEqual(stray.map((e) => e.name), [outputId], "no temp files left");
  });
});
