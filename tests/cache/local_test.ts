import assert from "node:assert/strict";
import { fallbackDir, fallbackPath } from "../../src/cache/fallback.ts";
import { type FallbackOptions, LocalCache } from "../../src/cache/local.ts";
import { recordingLogger } from "../_util/logger.ts";
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
    assert.deepEqual(result, { actions: 1, outputs: 1, bytes: 3, temps: 0 });
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

/** A cache directory that refuses every write: its `action` and `output` are plain files. */
async function refusingDir(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/action`, "");
  await Deno.writeTextFile(`${dir}/output`, "");
  return dir;
}

/** A fallback at `dir`, counting how often it was asked for. */
function fallbackAt(dir: string): FallbackOptions & { asked: boolean[] } {
  const asked: boolean[] = [];
  return {
    asked,
    dir({ create }) {
      asked.push(create);
      return dir;
    },
  };
}

async function withRefusingCache(
  fn: (
    cache: LocalCache,
    dirs: { dir: string; spill: string; log: ReturnType<typeof recordingLogger> },
  ) => Promise<void>,
): Promise<void> {
  const dir = await refusingDir();
  const spill = await Deno.makeTempDir();
  const log = recordingLogger();
  try {
    await fn(await LocalCache.open(dir, { fallback: fallbackAt(spill), log }), { dir, spill, log });
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(spill, { recursive: true });
  }
}

const ago = (ms: number) => new Date(Date.now() - ms);
const HOUR = 3_600_000;

Deno.test("LocalCache.put() answers from the fallback when the directory refuses writes, warning once", async () => {
  await withRefusingCache(async (cache, { dir, spill, log }) => {
    const bodies = ["one", "two", "three"].map((text) => new TextEncoder().encode(text));
    const paths: string[] = [];
    for (const [i, bytes] of bodies.entries()) {
      const outputId = await sha256Hex(bytes);
      const path = await cache.put({ actionId: hexId(i + 1), outputId, body: bytes });
      assert.equal(path, `${spill}/output/${outputId.slice(0, 2)}/${outputId}`);
      assert.deepEqual(await Deno.readFile(path), bytes);
      paths.push(path);
    }
    assert.equal(log.warnings.length, 1, log.warnings.join("\n"));
    assert.match(
      log.warnings[0]!,
      new RegExp(
        `^Cannot store output "[0-9a-f]{6}" in "${dir}": .+; storing puts in "${spill}" instead$`,
      ),
    );
    for (const [i, path] of paths.entries()) {
      assert.equal((await cache.get(hexId(i + 1)))?.diskPath, path);
    }
    // The next process finds those entries before it writes anything.
    const next = await LocalCache.open(dir, { fallback: fallbackAt(spill) });
    assert.equal((await next.get(hexId(2)))?.diskPath, paths[1]);
    assert.equal(await next.get(hexId(9)), undefined);
  });
});

Deno.test("LocalCache serves a warm directory that refuses writes, with new records in the fallback", async () => {
  const dir = await Deno.makeTempDir();
  const spill = await Deno.makeTempDir();
  try {
    const warm = await LocalCache.open(dir);
    const outputId = await sha256Hex(body);
    const stored = await warm.put({ actionId: hexId(1), outputId, body });
    // From now on the directory takes no writes, but its files stay readable.
    await Deno.rename(`${dir}/action`, `${dir}/action-moved`);
    await Deno.writeTextFile(`${dir}/action`, "");
    const fallback = fallbackAt(spill);
    const cache = await LocalCache.open(dir, { fallback });
    assert.equal(await cache.get(hexId(1)), undefined, "its record is out of reach now");
    // A put of an output the directory already has: only the record moves to the fallback.
    assert.equal(await cache.put({ actionId: hexId(2), outputId, body }), stored);
    assert.equal(await Deno.readTextFile(`${spill}/action/00/${hexId(2)}`), `${outputId} 16`);
    assert.equal((await cache.get(hexId(2)))?.diskPath, stored);
    await Deno.remove(`${dir}/action`);
    await Deno.rename(`${dir}/action-moved`, `${dir}/action`);
    const hit = await cache.get(hexId(1));
    assert.equal(hit?.diskPath, stored, "a hit in the directory itself");
    assert.deepEqual(fallback.asked, [false], "an existing fallback is looked up once, on a miss");
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(spill, { recursive: true });
  }
});

Deno.test("LocalCache.writeObject() streams to the fallback and still rejects a stream of the wrong length", async () => {
  await withRefusingCache(async (cache, { spill }) => {
    const big = new Uint8Array(3 << 20).fill(7);
    const outputId = await sha256Hex(big);
    const path = await cache.writeObject(outputId, ReadableStream.from([big]), {
      size: big.length,
    });
    assert.equal(path, `${spill}/output/${outputId.slice(0, 2)}/${outputId}`);
    assert.equal((await Deno.stat(path)).size, big.length);
    await assert.rejects(
      cache.writeObject(hexId(5), ReadableStream.from([body]), { size: body.length + 1 }),
      (error: Error) =>
        error instanceof RangeError && /got 16 bytes, expected 17/.test(error.message),
    );
    const left = await Array.fromAsync(Deno.readDir(`${spill}/output/00`));
    assert.deepEqual(left, [], "nothing half-written");
  });
});

Deno.test("LocalCache.put() fails with both reasons when the fallback cannot be used either", async () => {
  const dir = await refusingDir();
  try {
    const cache = await LocalCache.open(dir, {
      fallback: {
        dir() {
          throw new Error(`Cannot use fallback directory "/tmp/x": owned by uid 1000, not 0`);
        },
      },
    });
    await assert.rejects(
      cache.put({ actionId: hexId(1), outputId: await sha256Hex(body), body }),
      new RegExp(
        `^Error: Cannot store output "[0-9a-f]{6}" in "${dir}": .+; ` +
          `cannot use fallback directory "/tmp/x": owned by uid 1000, not 0$`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalCache.trim() removes the least recently used outputs over the cap, never recent ones", async () => {
  await withCache(async (cache, dir) => {
    const ids: string[] = [];
    for (const [i, hoursAgo] of [3, 2, 0, 0].entries()) {
      const bytes = new TextEncoder().encode(`output number ${i}`); // 15 bytes
      const outputId = await sha256Hex(bytes);
      const time = ago(hoursAgo * HOUR);
      await cache.writeObject(outputId, bytes, { mtime: time });
      await cache.writeAction(hexId(i), { outputId, size: bytes.length, time });
      ids.push(outputId);
    }
    const result = await cache.trim(20);
    assert.deepEqual(result, { outputs: 2, bytes: 30, actions: 2, temps: 0 });
    assert.equal(await cache.get(hexId(0)), undefined);
    assert.equal(await cache.get(hexId(1)), undefined);
    assert.ok(await cache.get(hexId(2)), "kept: used within the hour, over the cap or not");
    assert.ok(await cache.get(hexId(3)));
    await assert.rejects(Deno.stat(`${dir}/action/00/${hexId(0)}`), Deno.errors.NotFound);
  });
});

Deno.test("LocalCache with maxBytes trims in the background after writes", async () => {
  await withCache(async (_, dir) => {
    const old = await LocalCache.open(dir);
    for (let i = 0; i < 4; i++) {
      const bytes = new Uint8Array(100).fill(i);
      await old.writeObject(await sha256Hex(bytes), bytes, { mtime: ago(2 * HOUR) });
    }
    const capped = await LocalCache.open(dir, { maxBytes: 250 });
    const fresh = new Uint8Array(100).fill(9);
    await capped.put({ actionId: hexId(1), outputId: await sha256Hex(fresh), body: fresh });
    await capped.idle();
    let total = 0;
    for await (const shard of Deno.readDir(`${dir}/output`)) {
      for await (const entry of Deno.readDir(`${dir}/output/${shard.name}`)) {
        total += (await Deno.stat(`${dir}/output/${shard.name}/${entry.name}`)).size;
      }
    }
    assert.equal(total, 200, "the two oldest outputs went");
    assert.ok(await capped.get(hexId(1)));
  });
});

Deno.test("LocalCache.sweepTemps() removes temporary files a killed writer left, not live ones", async () => {
  await withCache(async (cache, dir) => {
    const outputId = await sha256Hex(body);
    const path = await cache.put({ actionId: hexId(1), outputId, body });
    const stale = `${path}.0123abcd.tmp`;
    const live = `${path}.4567cdef.tmp`;
    const staleAction = `${dir}/action/00/${hexId(1)}.89abcdef.tmp`;
    for (const file of [stale, live, staleAction]) await Deno.writeFile(file, body);
    for (const file of [stale, staleAction]) await Deno.utime(file, ago(2 * HOUR), ago(2 * HOUR));
    assert.equal(await cache.sweepTemps(), 2);
    await assert.rejects(Deno.stat(stale), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(staleAction), Deno.errors.NotFound);
    assert.ok((await Deno.stat(live)).isFile, "a writer may still be writing it");
    assert.equal((await cache.get(hexId(1)))?.diskPath, path);
  });
});

Deno.test("LocalCache.prune() removes stale temporary files but never one a live writer may own", async () => {
  await withCache(async (cache, dir) => {
    await cache.put({ actionId: hexId(1), outputId: await sha256Hex(body), body });
    const live = `${dir}/action/00/${hexId(2)}.4567cdef.tmp`;
    const stale = `${dir}/action/00/${hexId(3)}.0123abcd.tmp`;
    await Deno.writeTextFile(live, "in progress");
    await Deno.writeTextFile(stale, "left behind");
    await Deno.utime(stale, ago(2 * HOUR), ago(2 * HOUR));
    const result = await cache.prune(60_000);
    assert.deepEqual(result, { actions: 0, outputs: 0, bytes: 0, temps: 1 });
    assert.ok((await Deno.stat(live)).isFile);
    await assert.rejects(Deno.stat(stale), Deno.errors.NotFound);
  });
});

Deno.test("fallbackDir() is one owner-only directory per cache directory in the system temp directory", async () => {
  const cacheDir = await Deno.makeTempDir();
  const other = `${cacheDir}-other`;
  const probe = await Deno.makeTempDir();
  const tempDir = probe.slice(0, probe.lastIndexOf("/"));
  await Deno.remove(probe);
  const path = fallbackPath(cacheDir);
  try {
    assert.equal(path, fallbackPath(`${cacheDir}/`), "the same in every process");
    assert.notEqual(path, fallbackPath(other));
    assert.equal(path.slice(0, path.lastIndexOf("/")), tempDir);
    assert.equal(fallbackDir(cacheDir), undefined, "not made until a write needs it");
    assert.equal(fallbackDir(cacheDir, { create: true }), path);
    assert.equal(fallbackDir(cacheDir, { create: true }), path, "reused");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o700);
    await Deno.chmod(path, 0o777);
    assert.throws(
      () => fallbackDir(cacheDir),
      /^Error: Cannot use fallback directory ".+": writable by others \(mode 777\)$/,
    );
    await Deno.remove(path);
    await Deno.symlink(cacheDir, path);
    assert.throws(() => fallbackDir(cacheDir, { create: true }), /it is a symbolic link/);
  } finally {
    await Deno.remove(path, { recursive: true }).catch(() => {});
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("LocalCache with rememberActions: hits read no record file, and a moved or pruned output is never handed out", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const server = await LocalCache.open(dir, { rememberActions: 100 });
    const outputId = await sha256Hex(body);
    await server.put({ actionId: hexId(1), outputId, body });
    // The record file goes away (another process pruned it): the remembered record still hits,
    // because its output is there with its size.
    await Deno.remove(`${dir}/action/00/${hexId(1)}`);
    assert.equal(server.get(hexId(1))?.outputId, outputId);
    // go renamed the output away (`go build -o` outside $GOCACHE): a miss, at once.
    const path = `${dir}/output/${outputId.slice(0, 2)}/${outputId}`;
    await Deno.rename(path, `${dir}/moved`);
    assert.equal(server.get(hexId(1)), undefined);
    // Back with another size (truncated by something): still a miss.
    await Deno.writeFile(path, body.subarray(0, 3));
    assert.equal(server.get(hexId(1)), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalCache with rememberActions stays consistent with another process sharing the directory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const server = await LocalCache.open(dir, { rememberActions: 100 });
    const other = await LocalCache.open(dir); // a direct-mode go command next to the server
    const first = await sha256Hex(body);
    await server.put({ actionId: hexId(2), outputId: first, body });
    assert.equal(server.get(hexId(2))?.outputId, first);
    // The other process puts a different output for the action and prunes the first one.
    const next = new TextEncoder().encode("rebuilt package");
    const second = await sha256Hex(next);
    await other.put({ actionId: hexId(2), outputId: second, body: next });
    await Deno.remove(`${dir}/output/${first.slice(0, 2)}/${first}`);
    const hit = server.get(hexId(2));
    assert.equal(
      hit?.outputId,
      second,
      "the server reads the record again once its output is gone",
    );
    assert.equal(hit?.size, next.length);
    // And what the other process puts, the server finds.
    await other.put({ actionId: hexId(3), outputId: second, body: next });
    assert.equal(server.get(hexId(3))?.outputId, second);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalCache rememberActions keeps at most its capacity", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cache = await LocalCache.open(dir, { rememberActions: 2 });
    const outputId = await sha256Hex(body);
    for (let n = 10; n < 15; n++) await cache.put({ actionId: hexId(n), outputId, body });
    // All still hit (from the files); only the memory is bounded.
    for (let n = 10; n < 15; n++) assert.equal(cache.get(hexId(n))?.outputId, outputId);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
