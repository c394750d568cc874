import assert from "node:assert/strict";
import { bridge } from "../../src/server/connect.ts";
import { PluginListener } from "../../src/server/listener.ts";
import { serve } from "../../src/protocol/mod.ts";
import {
  closeFrame,
  getFrame,
  hexId,
  MemoryHandler,
  putFrame,
  type Reply,
  sha256Hex,
} from "../_util/script.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** go's stdin as the bridge reads it: bytes pushed by the test, in whatever chunks. */
class Input {
  #queue: Uint8Array[] = [];
  #ended = false;
  #wake?: () => void;

  push(bytes: Uint8Array | string): void {
    this.#queue.push(typeof bytes === "string" ? encoder.encode(bytes) : bytes);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const head = this.#queue[0]!;
    const n = Math.min(head.length, buffer.length);
    buffer.set(head.subarray(0, n));
    if (n === head.length) this.#queue.shift();
    else this.#queue[0] = head.subarray(n);
    return n;
  }
}

/** go's stdout: every byte the bridge wrote, checked to be whole JSON lines. */
class Output {
  text = "";
  write(bytes: Uint8Array): Promise<void> {
    this.text += decoder.decode(bytes);
    return Promise.resolve();
  }
  replies(): Reply[] {
    assert.ok(this.text === "" || this.text.endsWith("\n"), "output ends with a whole line");
    return this.text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
  }
}

function splitEvery(text: string, size: number): Uint8Array[] {
  const bytes = encoder.encode(text);
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.slice(i, i + size));
  return out;
}

async function frames(count: number): Promise<{ text: string; bodies: Uint8Array[] }> {
  let text = "";
  const bodies: Uint8Array[] = [];
  for (let i = 1; i <= count; i++) {
    const body = new Uint8Array(i * 997).fill(i);
    bodies.push(body);
    text += putFrame(2 * i - 1, hexId(i), body, await sha256Hex(body));
    text += getFrame(2 * i, hexId(i));
  }
  return { text, bodies };
}

function localFallback(handler: MemoryHandler, seen: { handshake?: boolean; count: number }) {
  return async (
    input: ReadableStream<Uint8Array>,
    output: WritableStream<Uint8Array>,
    handshake: boolean,
  ) => {
    seen.handshake = handshake;
    seen.count++;
    await serve(input, output, handler, { handshake });
  };
}

Deno.test("bridge() copies a session to the server and back byte for byte", async () => {
  const handler = new MemoryHandler();
  await using listener = await PluginListener.listen("0", { handler });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(listener.address.split(":")[1]),
  });
  const { text } = await frames(20);
  const input = new Input();
  for (const chunk of splitEvery(text + closeFrame(99), 1000)) input.push(chunk);
  const output = new Output();
  const seen = { count: 0 };
  const result = await bridge(conn, {
    read: (b) => input.read(b),
    write: (b) => output.write(b),
    fallback: localFallback(new MemoryHandler(), seen),
  });
  input.end();
  assert.equal(result.fellBack, false);
  assert.equal(seen.count, 0);
  const replies = output.replies();
  assert.deepEqual(replies[0], { ID: 0, KnownCommands: ["get", "put", "close"] });
  assert.deepEqual(replies.map((r) => r.ID).sort((a, b) => a - b), [
    0,
    ...Array.from({ length: 40 }, (_, i) => i + 1),
    99,
  ]);
  assert.equal(handler.entries.size, 20);
  assert.equal(handler.closed, 0, "a session's close does not close the shared cache");
});

Deno.test("bridge() finishes the session locally when the server dies mid-reply", async () => {
  // A server that answers the handshake and request 1, half of request 2's reply, then dies.
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serverDone = (async () => {
    const conn = await server.accept();
    await conn.write(encoder.encode('{"ID":0,"KnownCommands":["get","put","close"]}\n'));
    const buffer = new Uint8Array(65536);
    let seen = "";
    while (!seen.includes('"ID":2,')) {
      const n = await conn.read(buffer);
      if (n === null) break;
      seen += decoder.decode(buffer.subarray(0, n));
    }
    await conn.write(encoder.encode('{"ID":1,"Miss":true}\n{"ID":2,"Mi'));
    conn.close();
  })();
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (server.addr as Deno.NetAddr).port,
  });
  const { text, bodies } = await frames(6);
  const input = new Input();
  const chunks = splitEvery(text, 1500);
  // Half now; the rest after the server is gone.
  for (const chunk of chunks.slice(0, chunks.length / 2)) input.push(chunk);
  const output = new Output();
  const local = new MemoryHandler();
  const seen: { handshake?: boolean; count: number } = { count: 0 };
  const bridged = bridge(conn, {
    read: (b) => input.read(b),
    write: (b) => output.write(b),
    fallback: localFallback(local, seen),
  });
  await serverDone;
  server.close();
  await new Promise((r) => setTimeout(r, 50));
  for (const chunk of chunks.slice(chunks.length / 2)) input.push(chunk);
  input.push(closeFrame(50));
  input.end();
  const result = await bridged;
  assert.equal(result.fellBack, true);
  assert.equal(seen.count, 1);
  assert.equal(seen.handshake, false, "go already has the server's handshake");
  const replies = output.replies();
  const ids = replies.map((r) => r.ID).sort((a, b) => a - b);
  assert.deepEqual(ids, [0, ...Array.from({ length: 12 }, (_, i) => i + 1), 50], "one reply each");
  // Every put the server did not answer (all but the first) reached the local cache whole.
  assert.equal(local.entries.size, 5);
  for (const [i, body] of bodies.entries()) {
    if (i > 0) assert.deepEqual(local.entries.get(hexId(i + 1))?.body, body);
  }
});

Deno.test("bridge() sends its own handshake when the server hangs up before its handshake", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = server.accept().then((c) => c.close());
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (server.addr as Deno.NetAddr).port,
  });
  const input = new Input();
  const output = new Output();
  const seen: { handshake?: boolean; count: number } = { count: 0 };
  const bridged = bridge(conn, {
    read: (b) => input.read(b),
    write: (b) => output.write(b),
    fallback: localFallback(new MemoryHandler(), seen),
  });
  await accepted;
  server.close();
  input.push(getFrame(1, hexId(1)) + closeFrame(2));
  input.end();
  assert.equal((await bridged).fellBack, true);
  assert.equal(seen.handshake, true);
  assert.deepEqual(output.replies(), [
    { ID: 0, KnownCommands: ["get", "put", "close"] },
    { ID: 1, Miss: true },
    { ID: 2 },
  ]);
});

Deno.test("bridge() with handshakeSent drops the server's handshake and never sends another", async () => {
  const handler = new MemoryHandler();
  await using listener = await PluginListener.listen("0", { handler });
  const port = Number(listener.address.split(":")[1]);
  const input = new Input();
  input.push(getFrame(1, hexId(1)) + closeFrame(2));
  const output = new Output();
  const seen: { handshake?: boolean; count: number } = { count: 0 };
  const result = await bridge(await Deno.connect({ hostname: "127.0.0.1", port }), {
    read: (b) => input.read(b),
    write: (b) => output.write(b),
    fallback: localFallback(new MemoryHandler(), seen),
    handshakeSent: true,
  });
  input.end();
  assert.equal(result.fellBack, false);
  assert.deepEqual(output.replies(), [{ ID: 1, Miss: true }, { ID: 2 }]);

  // And when the server hangs up before anything, the fallback does not repeat the handshake.
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = server.accept().then((c) => c.close());
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (server.addr as Deno.NetAddr).port,
  });
  const input2 = new Input();
  const output2 = new Output();
  const bridged = bridge(conn, {
    read: (b) => input2.read(b),
    write: (b) => output2.write(b),
    fallback: localFallback(new MemoryHandler(), seen),
    handshakeSent: true,
  });
  await accepted;
  server.close();
  input2.push(closeFrame(1));
  input2.end();
  assert.equal((await bridged).fellBack, true);
  assert.equal(seen.handshake, false);
  assert.deepEqual(output2.replies(), [{ ID: 1 }]);
});

Deno.test("bridge() answers locally when the server accepts but never replies (replyTimeoutMs)", async () => {
  // A wedged server: it reads everything and answers nothing, not even the handshake.
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const draining = (async () => {
    const conn = await server.accept();
    held.push(conn);
    const buffer = new Uint8Array(65536);
    try {
      while (await conn.read(buffer) !== null) {
        // swallow
      }
    } catch {
      // closed by the test
    }
  })();
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (server.addr as Deno.NetAddr).port,
  });
  const input = new Input();
  input.push(getFrame(1, hexId(1)) + getFrame(2, hexId(2)) + closeFrame(3));
  const output = new Output();
  const seen: { handshake?: boolean; count: number } = { count: 0 };
  const started = performance.now();
  const result = await bridge(conn, {
    read: (b) => input.read(b),
    write: (b) => output.write(b),
    fallback: localFallback(new MemoryHandler(), seen),
    handshakeSent: true,
    replyTimeoutMs: 200,
  });
  input.end();
  const took = performance.now() - started;
  for (const c of held) c.close();
  server.close();
  await draining;
  assert.equal(result.fellBack, true);
  assert.ok(took < 3000, `fell back after ${took.toFixed(0)}ms`);
  assert.equal(seen.handshake, false, "go already had connect's handshake");
  assert.deepEqual(output.replies(), [{ ID: 1, Miss: true }, { ID: 2, Miss: true }, { ID: 3 }]);
});

Deno.test("bridge() does not fall back while a slow server keeps answering within the deadline", async () => {
  const handler = new MemoryHandler();
  handler.delays.set(hexId(1), 150);
  handler.delays.set(hexId(2), 150);
  await using listener = await PluginListener.listen("0", { handler });
  const port = Number(listener.address.split(":")[1]);
  const input = new Input();
  input.push(getFrame(1, hexId(1)));
  const output = new Output();
  const seen: { handshake?: boolean; count: number } = { count: 0 };
  const bridged = bridge(await Deno.connect({ hostname: "127.0.0.1", port }), {
    read: (b) => input.read(b),
    write: (b) => output.write(b),
    fallback: localFallback(new MemoryHandler(), seen),
    handshakeSent: true,
    replyTimeoutMs: 400,
  });
  // Idle between requests for longer than the deadline: silence with nothing asked is fine.
  await new Promise((r) => setTimeout(r, 600));
  input.push(getFrame(2, hexId(2)) + closeFrame(3));
  const result = await bridged;
  input.end();
  assert.equal(result.fellBack, false);
  assert.equal(seen.count, 0);
});
