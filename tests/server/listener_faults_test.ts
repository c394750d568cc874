/**
 * The plugin listener against clients that misbehave: one that sends a request and `close` and
 * hangs up without reading, over TCP and over a Unix socket. Neither may wedge the server: later
 * sessions are still answered, and it drains promptly. A Unix socket is owner-only even with
 * umask 000.
 */
import assert from "node:assert/strict";
import { PluginListener } from "../../src/server/listener.ts";
import {
  closeFrame,
  getFrame,
  hexId,
  MemoryHandler,
  putFrame,
  sha256Hex,
} from "../_util/script.ts";

const encoder = new TextEncoder();

async function connectTo(address: string): Promise<Deno.Conn> {
  if (address.startsWith("/")) return await Deno.connect({ transport: "unix", path: address });
  return await Deno.connect({ hostname: "127.0.0.1", port: Number(address.split(":")[1]) });
}

/** One whole session: sends `text`, reads to the end, returns what came back. */
async function session(address: string, text: string): Promise<string> {
  const conn = await connectTo(address);
  await conn.write(encoder.encode(text));
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  conn.close();
  return new TextDecoder().decode(await new Blob(chunks as BlobPart[]).bytes());
}

for (const transport of ["tcp", "unix"] as const) {
  Deno.test(`PluginListener survives clients that hang up without reading (${transport})`, async () => {
    const dir = await Deno.makeTempDir();
    const handler = new MemoryHandler();
    handler.delays.set(hexId(1), 30); // the reply is written after the client has gone
    const listener = await PluginListener.listen(transport === "tcp" ? "0" : `${dir}/p.sock`, {
      handler,
    });
    try {
      for (let i = 0; i < 5; i++) {
        const conn = await connectTo(listener.address);
        await conn.write(
          encoder.encode(getFrame(1, hexId(1)) + getFrame(2, hexId(2)) + closeFrame(3)),
        );
        conn.close();
      }
      await new Promise((r) => setTimeout(r, 200));
      const body = encoder.encode("still serving");
      await session(
        listener.address,
        putFrame(1, hexId(7), body, await sha256Hex(body)) + closeFrame(9),
      );
      const reply = await session(listener.address, getFrame(2, hexId(7)) + closeFrame(99));
      assert.match(reply, /"ID":2,"OutputID"/, `a later session gets its hit: ${reply}`);
    } finally {
      const started = performance.now();
      await listener.drain(2000);
      assert.ok(performance.now() - started < 3000, "drain is not wedged");
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("PluginListener creates its Unix socket owner-only, even with umask 000", async () => {
  const dir = await Deno.makeTempDir();
  const old = Deno.umask(0);
  try {
    await using listener = await PluginListener.listen(`${dir}/p.sock`, {
      handler: new MemoryHandler(),
    });
    const info = await Deno.lstat(listener.address);
    assert.ok(info.isSocket);
    assert.equal((info.mode! & 0o777).toString(8), "600");
    const stray = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
    assert.deepEqual(stray, ["p.sock"], "no staging directory is left behind");
  } finally {
    Deno.umask(old);
    await Deno.remove(dir, { recursive: true });
  }
});
