import assert from "node:assert/strict";
import {
  type ByteSource,
  type CacheHandler,
  HANDSHAKE_LINE,
  serve,
} from "../../src/protocol/mod.ts";
import {
  closeFrame,
  getFrame,
  hexId,
  MemoryHandler,
  putFrame,
  runSession,
  sha256Hex,
} from "../_util/script.ts";

const enc = new TextEncoder();

Deno.test("serve() writes the handshake first", async () => {
  const { text } = await runSession("", new MemoryHandler());
  assert.equal(text, HANDSHAKE_LINE);
});

Deno.test("serve() answers get for unknown action with Miss", async () => {
  const { replies, closed } = await runSession(getFrame(1, hexId(1)), new MemoryHandler());
  assert.deepEqual(replies[1], { ID: 1, Miss: true });
  assert.equal(closed, false, "EOF without close is a normal end");
});

Deno.test("serve() stores a verified put and hits it with OutputID, Size, Time, DiskPath", async () => {
  const body = enc.encode("archive");
  const out = await sha256Hex(body);
  const handler = new MemoryHandler();
  const { replies } = await runSession(
    putFrame(1, hexId(1), body, out) + getFrame(2, hexId(1)) + closeFrame(3),
    handler,
    { maxRequests: 1 },
  );
  assert.deepEqual(replies[1], { ID: 1, DiskPath: `/mem/${out}` });
  assert.deepEqual(replies[2], {
    ID: 2,
    OutputID: Uint8Array.fromHex(out).toBase64(),
    Size: 7,
    DiskPath: `/mem/${out}`,
    Time: "1970-01-01T00:00:00.000Z",
  });
  assert.deepEqual(replies[3], { ID: 3 });
  assert.equal(handler.closed, 1);
});

Deno.test("serve() refuses a put whose body does not hash to its OutputID", async () => {
  const handler = new MemoryHandler();
  const { replies } = await runSession(
    putFrame(1, hexId(1), enc.encode("abc"), hexId(99)),
    handler,
  );
  assert.match(String(replies[1]!.Err), /does not hash to OutputID/);
  assert.equal(handler.entries.size, 0, "nothing stored");
});

Deno.test("serve() answers an unknown command with Err and goes on", async () => {
  const input = JSON.stringify({ ID: 1, Command: "frobnicate" }) + "\n\n" + getFrame(2, hexId(2));
  const { replies } = await runSession(input, new MemoryHandler());
  assert.deepEqual(replies[1], { ID: 1, Err: 'unknown command "frobnicate"' });
  assert.deepEqual(replies[2], { ID: 2, Miss: true });
});

Deno.test("serve() replies out of order, each once, and close comes last", async () => {
  const handler = new MemoryHandler();
  handler.delays.set(hexId(1), 60);
  handler.delays.set(hexId(2), 5);
  const input = getFrame(1, hexId(1)) + getFrame(2, hexId(2)) + getFrame(3, hexId(3)) +
    closeFrame(4);
  const { replies } = await runSession(input, handler, { maxRequests: 4 });
  const ids = replies.slice(1).map((r) => r.ID);
  assert.deepEqual(ids, [3, 2, 1, 4]);
});

Deno.test("serve() keeps at most maxRequests pending", async () => {
  let active = 0;
  let peak = 0;
  const handler = new MemoryHandler();
  handler.get = async () => {
    peak = Math.max(peak, ++active);
    await new Promise((r) => setTimeout(r, 5));
    active--;
    return undefined;
  };
  let input = "";
  for (let i = 1; i <= 20; i++) input += getFrame(i, hexId(i));
  const { replies } = await runSession(input, handler, { maxRequests: 3 });
  assert.equal(replies.length, 21);
  assert.equal(peak, 3);
});

Deno.test("serve() finishes pending requests, then throws ProtocolError on a malformed frame", async () => {
  const handler = new MemoryHandler();
  handler.delays.set(hexId(1), 20);
  const { replies, error } = await runSession(getFrame(1, hexId(1)) + "garbage\n", handler);
  assert.equal(error?.name, "ProtocolError");
  assert.deepEqual(replies[1], { ID: 1, Miss: true });
});

Deno.test("serve() turns a handler failure into an Err reply", async () => {
  const handler = new MemoryHandler();
  handler.get = () => Promise.reject(new Error("disk on fire"));
  const { replies } = await runSession(getFrame(1, hexId(1)), handler);
  assert.match(String(replies[1]!.Err), /disk on fire/);
});

Deno.test("serve() rejects a get with a short ActionID as an Err, not a crash", async () => {
  const input = JSON.stringify({ ID: 1, Command: "get", ActionID: "AAAA" }) + "\n\n";
  const { replies, error } = await runSession(input, new MemoryHandler());
  assert.equal(error, undefined);
  assert.match(String(replies[1]!.Err), /invalid ActionID/);
});

Deno.test("serve() with freePutBodies frees each put body once its put has settled", async () => {
  const body = enc.encode("archive bytes");
  const out = await sha256Hex(body);
  const handler = new MemoryHandler();
  const seen: { during: number; bytes: Uint8Array }[] = [];
  const put = handler.put.bind(handler);
  handler.put = async (object) => {
    seen.push({ during: object.body.length, bytes: object.body });
    return await put(object);
  };
  const refused = enc.encode("not this");
  const { replies } = await runSession(
    putFrame(1, hexId(1), body, out) + putFrame(2, hexId(2), refused, hexId(9)) + closeFrame(3),
    handler,
    { freePutBodies: true },
  );
  const reply = (id: number) => replies.find((r) => r.ID === id);
  assert.deepEqual(reply(1), { ID: 1, DiskPath: `/mem/${out}` });
  assert.match(String(reply(2)?.Err), /does not hash/);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.during, body.length, "whole while the handler has it");
  assert.equal(seen[0]!.bytes.length, 0, "freed (detached) once the put settled");
});

Deno.test("serve() leaves put bodies to the handler unless asked to free them", async () => {
  const body = enc.encode("kept");
  const handler = new MemoryHandler();
  await runSession(putFrame(1, hexId(1), body, await sha256Hex(body)), handler);
  assert.deepEqual(handler.entries.get(hexId(1))?.body, body);
});

Deno.test("serve() reads with a blocking call only while blockingReads() answers true", async () => {
  const input = enc.encode(getFrame(1, hexId(1)) + getFrame(2, hexId(2)) + closeFrame(3));
  const chunks = [input.subarray(0, 40), input.subarray(40, 100), input.subarray(100)];
  const used: string[] = [];
  const take = (buffer: Uint8Array, how: string) => {
    used.push(how);
    const chunk = chunks.shift();
    if (!chunk) return null;
    buffer.set(chunk);
    return chunk.length;
  };
  const source: ByteSource = {
    read: (buffer) => Promise.resolve(take(buffer, "async")),
    readSync: (buffer) => take(buffer, "sync"),
  };
  let idle = false;
  let asked = 0;
  const output: Uint8Array[] = [];
  await serve(source, { write: (bytes) => void output.push(bytes) }, new MemoryHandler(), {
    blockingReads: () => {
      asked++;
      const answer = idle;
      idle = true; // background work ends after the first read
      return answer;
    },
  });
  assert.equal(used[0], "async", "not idle: the event loop keeps turning");
  assert.ok(used.includes("sync"), `idle: a blocking read (${used.join(",")})`);
  assert.ok(asked >= used.filter((how) => how === "sync").length * 2, "asked again after flushing");
});

Deno.test("serve() answers a get the handler answers at once before an earlier one that waits", async () => {
  const handler = new MemoryHandler();
  const hit = { outputId: "ab".repeat(32), size: 3, diskPath: "/mem/now" };
  handler.delays.set(hexId(1), 30);
  // A value for hexId(2) (no promise), a promise for everything else.
  const cache: CacheHandler = {
    get: (actionId) => actionId === hexId(2) ? hit : handler.get(actionId),
    put: (object) => handler.put(object),
  };
  const { replies } = await runSession(getFrame(1, hexId(1)) + getFrame(2, hexId(2)), cache, {
    maxRequests: 2,
  });
  assert.deepEqual(replies.slice(1).map((r) => r.ID), [2, 1], "the answer at once goes first");
  assert.equal(replies[1]!.DiskPath, "/mem/now");
});

Deno.test("serve() turns a get that throws at once into an Err reply and goes on", async () => {
  const handler: CacheHandler = {
    get: (actionId) => {
      if (actionId === hexId(1)) throw new Error("disk on fire");
      return undefined;
    },
    put: () => Promise.resolve("/mem/x"),
  };
  const { replies } = await runSession(getFrame(1, hexId(1)) + getFrame(2, hexId(2)), handler);
  assert.deepEqual(replies[1], { ID: 1, Err: `get ${hexId(1)}: disk on fire` });
  assert.deepEqual(replies[2], { ID: 2, Miss: true });
});

Deno.test("serve() with closeHandler: false answers close without closing the handler", async () => {
  const handler = new MemoryHandler();
  const shared = await runSession(closeFrame(1), handler, { closeHandler: false });
  assert.equal(shared.closed, true);
  assert.equal(handler.closed, 0, "a shared cache stays open");
  await runSession(closeFrame(1), handler);
  assert.equal(handler.closed, 1, "by default close reaches the handler");
});
