/**
 * The local tier's upkeep for `--max-size` and `clean` (src/cache/_upkeep.ts, _files.ts): a trim
 * that counts action records, keeps what is in use and takes turns across processes; emptying a
 * directory without touching foreign files; writes that survive a vanished shard directory.
 */
import assert from "node:assert/strict";
import { LocalCache, type LocalCacheOptions } from "../../src/cache/local.ts";
import { hexId, sha256Hex } from "../_util/script.ts";

const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `count` entries of `size` bytes used `hoursAgo` ago; returns their action ids. */
async function fill(
  cache: LocalCache,
  options: { from: number; count: number; size: number; hoursAgo: number },
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = options.from; i < options.from + options.count; i++) {
    const bytes = new Uint8Array(options.size).fill(i % 256);
    bytes[0] = i >> 8;
    const outputId = await sha256Hex(bytes);
    const time = ago(options.hoursAgo * HOUR);
    await cache.writeObject(outputId, bytes, { mtime: time });
    await cache.writeAction(hexId(i), { outputId, size: bytes.length, time });
    ids.push(hexId(i));
  }
  return ids;
}

/** Bytes of the files under action/ and output/. */
async function entryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const part of ["action", "output"]) {
    const shards = await Array.fromAsync(Deno.readDir(`${dir}/${part}`)).catch(() => []);
    for (const shard of shards) {
      for await (const entry of Deno.readDir(`${dir}/${part}/${shard.name}`)) {
        total += (await Deno.stat(`${dir}/${part}/${shard.name}/${entry.name}`)).size;
      }
    }
  }
  return total;
}

const capped = (dir: string, maxBytes: number, more: LocalCacheOptions["trimPolicy"] = {}) =>
  LocalCache.open(dir, { maxBytes, trimPolicy: { countRecords: true, onWrite: false, ...more } });

Deno.test("LocalCache.trimIfDue() keeps outputs and records under the cap, oldest out first", async () => {
  await withDir(async (dir) => {
    const cache = await capped(dir, 5000);
    const old = await fill(cache, { from: 0, count: 10, size: 1000, hoursAgo: 3 });
    const older = await fill(cache, { from: 10, count: 10, size: 1000, hoursAgo: 5 });
    assert.ok(await entryBytes(dir) > 20_000);
    const result = await cache.trimIfDue(); // no marker yet: due
    assert.ok(result);
    assert.ok(await entryBytes(dir) <= 5000, `${await entryBytes(dir)} bytes left`);
    for (const id of older) assert.equal(await cache.get(id), undefined, "the oldest went first");
    const kept = (await Promise.all(old.map((id) => cache.get(id)))).filter(Boolean);
    assert.equal(kept.length, 4, "4 × (1000 + a 67-byte record) fit in 5000");
    assert.equal(result.outputs, 16);
    assert.equal(result.actions, 16);
    assert.equal(await cache.trimIfDue(), undefined, "trimmed a moment ago, nothing written since");
  });
});

Deno.test("LocalCache.trimIfDue() never removes what is in use or was used within the hour", async () => {
  await withDir(async (dir) => {
    const setup = await LocalCache.open(dir);
    const stale = await fill(setup, { from: 0, count: 5, size: 1000, hoursAgo: 2 });
    const recent = await fill(setup, { from: 5, count: 5, size: 1000, hoursAgo: 0.5 });
    const held = (await setup.readAction(stale[0]!))!.outputId; // (a get would refresh it)
    const cache = await capped(dir, 100, { inUse: (outputId) => outputId === held });
    await cache.trimIfDue();
    assert.ok(await cache.get(stale[0]!), "in use by a running session");
    for (const id of stale.slice(1)) assert.equal(await cache.get(id), undefined);
    for (const id of recent) assert.ok(await cache.get(id), "used within the hour");
  });
});

Deno.test("LocalCache.trimIfDue() leaves the trim to a process that holds .last-trim", async () => {
  await withDir(async (dir) => {
    const cache = await capped(dir, 100);
    const ids = await fill(cache, { from: 0, count: 3, size: 1000, hoursAgo: 2 });
    using other = await Deno.open(`${dir}/.last-trim`, { write: true, create: true });
    other.lockSync(true);
    // An hour-old marker: the trim is due, but another process is running it.
    await Deno.utime(`${dir}/.last-trim`, ago(HOUR), ago(HOUR));
    assert.equal(await cache.trimIfDue(), undefined);
    assert.equal(ids.length, 3);
    assert.ok(await entryBytes(dir) > 3000, "nothing removed"); // (a get would refresh them)
    other.unlockSync();
    assert.equal((await cache.trimIfDue())?.outputs, 3);
  });
});

Deno.test("LocalCache with onWrite false counts writes and trims only when asked", async () => {
  await withDir(async (dir) => {
    const setup = await LocalCache.open(dir);
    await fill(setup, { from: 0, count: 4, size: 1000, hoursAgo: 2 });
    await Deno.writeTextFile(`${dir}/.last-trim`, "just now"); // another process trimmed
    const cache = await capped(dir, 5000);
    assert.equal(await cache.trimIfDue(), undefined, "nothing written, trimmed a moment ago");
    const fresh = new Uint8Array(2000).fill(7);
    await cache.put({ actionId: hexId(99), outputId: await sha256Hex(fresh), body: fresh });
    await cache.idle();
    assert.equal(await entryBytes(dir) > 6000, true, "writes did not trim");
    // 2000 bytes written: past an eighth of the cap, so due whatever the marker says.
    const result = await cache.trimIfDue();
    assert.ok(result && result.outputs > 0);
    assert.ok(await cache.get(hexId(99)));
  });
});

Deno.test("LocalCache.put() recreates a shard directory that vanished after it was made", async () => {
  await withDir(async (dir) => {
    const cache = await LocalCache.open(dir); // no fallback: a failed write would throw
    const a = new TextEncoder().encode("first");
    await cache.put({ actionId: hexId(1), outputId: await sha256Hex(a), body: a });
    // `clean` in another process: everything, directories included.
    await Deno.remove(`${dir}/action`, { recursive: true });
    await Deno.remove(`${dir}/output`, { recursive: true });
    for (const size of [5, 2 << 20]) { // the synchronous and the asynchronous write
      const body = new Uint8Array(size).fill(size & 255);
      const outputId = await sha256Hex(body);
      const path = await cache.put({ actionId: hexId(size), outputId, body });
      assert.equal((await Deno.stat(path)).size, size);
      assert.equal((await cache.get(hexId(size)))?.diskPath, path);
      await Deno.remove(`${dir}/output`, { recursive: true });
    }
  });
});

Deno.test("LocalCache.clean() empties its entries and markers, and nothing else", async () => {
  await withDir(async (dir) => {
    const cache = await LocalCache.open(dir);
    await fill(cache, { from: 0, count: 3, size: 100, hoursAgo: 2 });
    await fill(cache, { from: 3, count: 2, size: 100, hoursAgo: 0 });
    const live = `${dir}/output/00/${"0".repeat(64)}.0123abcd.tmp`;
    await Deno.mkdir(`${dir}/output/00`, { recursive: true });
    await Deno.writeTextFile(live, "being written");
    await Deno.writeTextFile(`${dir}/.last-trim`, "x");
    await Deno.writeTextFile(`${dir}/notes.txt`, "not the cache's");
    await Deno.mkdir(`${dir}/output/mine`);
    await Deno.writeTextFile(`${dir}/output/mine/keep`, "not in the layout");
    await Deno.mkdir(`${dir}/extra/@v`, { recursive: true });
    await Deno.writeTextFile(`${dir}/extra/@v/list`, "v1\n");
    await Deno.writeTextFile(`${dir}/extra/README`, "foreign");

    const busy = await cache.clean({ keepUsedWithinMs: HOUR });
    assert.equal(busy.kept, 5, "two recent outputs, their records, the live temporary file");
    assert.ok(await cache.get(hexId(3)));
    assert.equal(await cache.get(hexId(0)), undefined);

    const result = await cache.clean({
      also: [{ dir: "extra", match: (relative) => relative.includes("@v/") }],
      files: ["notes-that-are-not-there"],
    });
    assert.equal(result.kept, 1, "the live temporary file");
    assert.equal(await cache.get(hexId(3)), undefined);
    await assert.rejects(Deno.stat(`${dir}/.last-trim`), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(`${dir}/action`), Deno.errors.NotFound, "empty: removed");
    await assert.rejects(Deno.stat(`${dir}/extra/@v`), Deno.errors.NotFound);
    for (
      const kept of [live, `${dir}/notes.txt`, `${dir}/output/mine/keep`, `${dir}/extra/README`]
    ) {
      assert.ok((await Deno.stat(kept)).isFile, kept);
    }
  });
});
