/**
 * The HTTP side against clients that hold connections: idle ones, ones that send half a header,
 * more than the cap. Each is closed within its bound and the server keeps answering; requests
 * on a kept-alive connection, and a slow answer, are not cut.
 */
import assert from "node:assert/strict";
import { startHttpServer } from "../../src/server/http.ts";
import { freePort } from "../_util/net.ts";
import { Server } from "../_util/serve.ts";

const encoder = new TextEncoder();

/** Resolves to the ms until the server closes `conn` (reads and discards what it sends). */
async function closedAfter(conn: Deno.Conn, started: number): Promise<number> {
  const buffer = new Uint8Array(4096);
  try {
    while (await conn.read(buffer) !== null) {
      // discard
    }
  } catch {
    // reset
  }
  conn.close();
  return performance.now() - started;
}

async function holders(port: number, idle: number, half: number): Promise<Promise<number>[]> {
  const started = performance.now();
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < idle + half; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    if (i >= idle) await conn.write(encoder.encode("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
    conns.push(conn);
  }
  return conns.map((conn) => closedAfter(conn, started));
}

async function get(url: string): Promise<Response> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  await response.body?.cancel();
  return response;
}

Deno.test("startHttpServer() closes idle and half-header connections within their bounds", async () => {
  await using server = await startHttpServer(
    "127.0.0.1:0",
    () => Promise.resolve(new Response("ok")),
    { headerTimeoutMs: 300, idleTimeoutMs: 600 },
  );
  const port = Number(server.address.split(":")[1]);
  const closes = await holders(port, 50, 50);
  const times = await Promise.all(closes);
  assert.ok(Math.max(...times) < 2000, `all closed within 2 s (slowest ${Math.max(...times)} ms)`);
  assert.ok(Math.min(...times) >= 250, "none before the header timeout");
  assert.equal((await get(`${server.url}/`)).status, 200, "the server still answers");
});

Deno.test("startHttpServer() closes connections over the cap at once and still answers later", async () => {
  await using server = await startHttpServer(
    "127.0.0.1:0",
    () => Promise.resolve(new Response("ok")),
    { maxConnections: 20, headerTimeoutMs: 500, idleTimeoutMs: 1000 },
  );
  const port = Number(server.address.split(":")[1]);
  const closes = await holders(port, 30, 0);
  const times = await Promise.all(closes);
  const early = times.filter((t) => t < 400).length;
  assert.equal(early, 10, `the 10 over the cap are closed at once (${times.map(Math.round)})`);
  assert.equal((await get(`${server.url}/`)).status, 200);
});

Deno.test("startHttpServer() keeps a kept-alive connection through requests and a slow answer", async () => {
  await using server = await startHttpServer(
    "127.0.0.1:0",
    async (request) => {
      if (new URL(request.url).pathname === "/slow") {
        await new Promise((resolve) => setTimeout(resolve, 1200)); // longer than both timeouts
      }
      return new Response("ok");
    },
    { headerTimeoutMs: 300, idleTimeoutMs: 600 },
  );
  const port = Number(server.address.split(":")[1]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buffer = new Uint8Array(4096);
  const decoder = new TextDecoder();
  async function ask(path: string): Promise<string> {
    await conn.write(encoder.encode(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
    let text = "";
    while (!/\r\n\r\nok$/.test(text)) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error(`closed after ${JSON.stringify(text)}`);
      text += decoder.decode(buffer.subarray(0, n));
    }
    return text;
  }
  assert.match(await ask("/"), /^HTTP\/1.1 200/);
  await new Promise((resolve) => setTimeout(resolve, 300)); // idle, under the bound
  assert.match(await ask("/slow"), /^HTTP\/1.1 200/);
  assert.match(await ask("/"), /^HTTP\/1.1 200/);
  const started = performance.now();
  const after = await closedAfter(conn, started);
  assert.ok(after > 400 && after < 2000, `closed ${Math.round(after)} ms after going idle`);
});

Deno.test({
  name: "serve --http closes 200 idle and half-header connections within 10 s and still answers",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "gcp-http-guard-" });
  try {
    const port = freePort();
    await using _server = await Server.start([
      `--plugin=${dir}/plugin.sock`,
      `--http=127.0.0.1:${port}`,
      `--cache-dir=${dir}/cache`,
    ]);
    const closes = await holders(port, 100, 100);
    const times = await Promise.all(closes);
    const slowest = Math.max(...times);
    // deno-lint-ignore no-console
    console.error(`200 held connections closed after at most ${(slowest / 1000).toFixed(1)} s`);
    assert.ok(slowest < 12_000, `all closed within the 10 s header bound (slowest ${slowest} ms)`);
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /go_cache_plugin_/);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
