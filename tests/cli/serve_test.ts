import assert from "node:assert/strict";
import { runServer } from "../../src/cli/serve.ts";
import { parseConfig } from "../../src/cli/config.ts";
import { LocalCache } from "../../src/cache/local.ts";
import type { CacheStack } from "../../src/cli/stack.ts";
import { recordingLogger } from "../_util/logger.ts";
import { closeFrame, getFrame, hexId, MemoryHandler } from "../_util/script.ts";
import { freePort } from "../_util/net.ts";

async function readLines(conn: Deno.Conn, count: number): Promise<string[]> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(4096);
  let text = "";
  while (text.split("\n").length - 1 < count) {
    const n = await conn.read(buffer);
    if (n === null) break;
    text += decoder.decode(buffer.subarray(0, n));
  }
  return text.split("\n").filter((l) => l);
}

async function started(
  args: string[],
  options: { openStack?: () => Promise<CacheStack>; flushTimeoutMs?: number } = {},
) {
  const log = recordingLogger();
  const lines = log.lines;
  const controller = new AbortController();
  const ready = Promise.withResolvers<{ plugin: string; http?: string }>();
  const config = parseConfig(["serve", ...args], () => undefined);
  const done = runServer(config, log, {
    signal: controller.signal,
    onReady: ready.resolve,
    openStack: options.openStack,
    sessionGraceMs: 2000,
    flushTimeoutMs: options.flushTimeoutMs,
  });
  const addresses = await Promise.race([ready.promise, done.then(() => undefined)]);
  assert.ok(addresses, `server did not start: ${lines.join("\n")}`);
  return { addresses, lines, stop: () => controller.abort(), done };
}

Deno.test("runServer() shutdown: stops accepting, lets sessions finish, then flushes, exit 0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const events: string[] = [];
    const handler = new MemoryHandler();
    handler.delays.set(hexId(1), 400);
    const port = freePort();
    const server = await started([`--plugin=${port}`, `--cache-dir=${dir}`, "--http=127.0.0.1:0"], {
      openStack: async () => ({
        handler,
        local: await LocalCache.open(dir),
        shutdown: async () => {
          events.push("flush started");
          await new Promise((r) => setTimeout(r, 100));
          events.push("flush done");
        },
      }),
    });
    assert.equal(server.addresses.plugin, `127.0.0.1:${port}`);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.equal((await readLines(conn, 1)).length, 1, "handshake");
    await conn.write(new TextEncoder().encode(getFrame(1, hexId(1))));
    await new Promise((r) => setTimeout(r, 50));
    server.stop();
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), "no new sessions");
    const [reply] = await readLines(conn, 1);
    events.push("session answered");
    assert.deepEqual(JSON.parse(reply!), { ID: 1, Miss: true });
    await conn.write(new TextEncoder().encode(closeFrame(2)));
    assert.deepEqual(await readLines(conn, 1), ['{"ID":2}']);
    conn.close();
    assert.equal(await server.done, 0);
    events.push("exited");
    assert.deepEqual(events, ["session answered", "flush started", "flush done", "exited"]);
    assert.equal(handler.closed, 0, "the shared cache's close is not a session's business");
    assert.ok(
      server.lines.some((l) => l.includes("the local tier alone")),
      server.lines.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runServer() exits 0 with a warning when the upload flush overruns its bound", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const server = await started([`--plugin=${freePort()}`, `--cache-dir=${dir}`], {
      flushTimeoutMs: 100,
      openStack: async () => ({
        handler: new MemoryHandler(),
        local: await LocalCache.open(dir),
        shutdown: () => new Promise(() => {}),
      }),
    });
    server.stop();
    assert.equal(await server.done, 0);
    assert.ok(server.lines.some((l) => /uploads still pending/.test(l)), server.lines.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runServer() with --expiry prunes entries not used within the period", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cache = await LocalCache.open(dir);
    const body = new TextEncoder().encode("old");
    const outputId = new Uint8Array(await crypto.subtle.digest("SHA-256", body)).toHex();
    await cache.put({ actionId: hexId(1), outputId, body });
    const fresh = new TextEncoder().encode("fresh");
    const freshId = new Uint8Array(await crypto.subtle.digest("SHA-256", fresh)).toHex();
    await cache.put({ actionId: hexId(2), outputId: freshId, body: fresh });
    const old = new Date(Date.now() - 3 * 3_600_000);
    await Deno.utime(cache.actionPath(hexId(1)), old, old);
    await Deno.utime(cache.outputPath(outputId), old, old);

    const server = await started([`--plugin=${freePort()}`, `--cache-dir=${dir}`, "--expiry=1h"]);
    const deadline = Date.now() + 5000;
    const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
    // Poll the files, not cache.get(): a hit refreshes the output's mtime.
    while (await exists(cache.actionPath(hexId(1))) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await exists(cache.actionPath(hexId(1))), false, "the old entry was pruned");
    assert.equal(await exists(cache.outputPath(outputId)), false);
    assert.ok(await cache.get(hexId(2)), "the fresh entry stays");
    server.stop();
    assert.equal(await server.done, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
