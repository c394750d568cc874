import assert from "node:assert/strict";
import {
  type Frame,
  FrameDecoderStream,
  FrameParser,
  ProtocolError,
} from "../../src/protocol/mod.ts";
import { closeFrame, getFrame, hexId, putFrame, sha256Hex } from "../_util/script.ts";

async function decode(input: string | Uint8Array, chunkSize = 0): Promise<Frame[]> {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  const size = chunkSize || bytes.length || 1;
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
  return await Array.fromAsync(ReadableStream.from(chunks).pipeThrough(new FrameDecoderStream()));
}

Deno.test("FrameDecoderStream skips the blank line after each request", async () => {
  const frames = await decode(getFrame(1, hexId(1)) + "\n\n  \r\n" + closeFrame(2));
  assert.deepEqual(frames.map((f) => [f.request.id, f.request.command]), [[1, "get"], [
    2,
    "close",
  ]]);
  assert.equal(frames[0]!.request.actionId, hexId(1));
});

Deno.test("FrameDecoderStream decodes a put at every split point", async () => {
  const body = new TextEncoder().encode("go object bytes\n");
  const input = putFrame(7, hexId(7), body, await sha256Hex(body)) + closeFrame(8);
  for (let size = 1; size <= input.length; size++) {
    const frames = await decode(input, size);
    assert.equal(frames.length, 2, `chunk size ${size}`);
    assert.deepEqual(frames[0]!.body, body, `chunk size ${size}`);
    assert.equal(frames[0]!.request.bodySize, body.length);
  }
});

Deno.test("FrameDecoderStream reads a 20 MB body on one line", async () => {
  const body = new Uint8Array(20_000_000).map((_, i) => i * 31);
  const input = putFrame(1, hexId(1), body, await sha256Hex(body));
  const frames = await decode(input, 65536);
  assert.equal(frames[0]!.body!.length, body.length);
  assert.deepEqual(frames[0]!.body!.subarray(0, 1000), body.subarray(0, 1000));
});

Deno.test("FrameDecoderStream gives an empty body to a put without BodySize", async () => {
  const empty = new Uint8Array(0);
  const frames = await decode(
    putFrame(3, hexId(3), empty, await sha256Hex(empty)) + getFrame(4, hexId(4)),
  );
  assert.equal(frames[0]!.body!.length, 0);
  assert.equal(frames[1]!.request.command, "get");
});

Deno.test("FrameDecoderStream reads ObjectID when OutputID is absent (Go 1.21-1.23)", async () => {
  const id = hexId(9);
  const line = JSON.stringify({
    ID: 1,
    Command: "put",
    ActionID: Uint8Array.fromHex(id).toBase64(),
    ObjectID: Uint8Array.fromHex(id).toBase64(),
  });
  const frames = await decode(line + "\n\n");
  assert.equal(frames[0]!.request.outputId, id);
});

Deno.test("FrameDecoderStream rejects malformed frames with one-line errors", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["not JSON", "hello\n", /is not JSON/],
    ["string ID", '{"ID":"1","Command":"get"}\n', /"ID" must be/],
    ["array", "[1,2]\n", /expected a JSON object/],
    ["bad base64 id", '{"ID":1,"Command":"get","ActionID":"@@@"}\n', /not base64/],
    [
      "bad base64 body",
      '{"ID":1,"Command":"put","ActionID":"","BodySize":3}\n\n"!!!!"\n',
      /invalid base64/,
    ],
    ["short body", '{"ID":1,"Command":"put","BodySize":5}\n\n"YWJj"\n', /got 3 bytes, expected 5/],
    [
      "body not a string",
      '{"ID":1,"Command":"put","BodySize":3}\n\n{"x":1}\n',
      /not a JSON string/,
    ],
    ["missing body", '{"ID":1,"Command":"put","BodySize":3}\n\n', /ended before its body/],
    ["negative size", '{"ID":1,"Command":"put","BodySize":-3}\n', /non-negative/],
    ["huge header", "{" + " ".repeat(70_000) + "}\n", /exceeds/],
  ];
  for (const [name, input, pattern] of cases) {
    await t.step(name, async () => {
      const error = await decode(input).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof ProtocolError, `${name}: got ${error}`);
      assert.match(error.message, pattern);
      assert.ok(!error.message.includes("\n"), "one line");
    });
  }
});

Deno.test("FrameDecoderStream rejects a body longer than announced before buffering it all", async () => {
  const header = '{"ID":1,"Command":"put","BodySize":3}\n\n"';
  const input = header + "A".repeat(10_000) + '"\n';
  await assert.rejects(decode(input, 100), /more than the 3 bytes announced/);
});

Deno.test("FrameDecoderStream accepts JSON's escaped slash and a final line without newline", async () => {
  const body = new Uint8Array([0xff, 0xff, 0xff, 0xfb, 0xef]); // base64 "////++8="
  const header = JSON.stringify({ ID: 1, Command: "put", ActionID: "", BodySize: 5 });
  const frames = await decode(`${header}\n\n"\\/\\/\\/\\/++8="`, 3);
  assert.deepEqual(frames[0]!.body, body);
});

Deno.test("FrameDecoderStream rejects bytes after a body on its line", async () => {
  const input = '{"ID":1,"Command":"put","BodySize":3}\n\n"YWJj" x\n';
  await assert.rejects(decode(input), /unexpected bytes after the body/);
});

Deno.test("FrameParser stops in front of a body without room and resumes with it", async () => {
  const body = new TextEncoder().encode("go object bytes\n");
  const input = new TextEncoder().encode(
    getFrame(1, hexId(1)) + putFrame(2, hexId(2), body, await sha256Hex(body)) + closeFrame(3),
  );
  const asked: number[] = [];
  let room = false;
  let released = 0;
  const parser = new FrameParser({
    reserve: (size) => {
      asked.push(size);
      return room ? () => released++ : undefined;
    },
  });
  const copy = input.slice();
  const first = parser.push(copy);
  copy.fill(0); // the caller reuses its buffer: the parser must have kept its own copy
  assert.deepEqual(first.map((f) => f.request.command), ["get"]);
  assert.deepEqual(parser.wanted, { id: 2, size: body.length });
  assert.throws(() => parser.push(new Uint8Array(1)), TypeError);
  room = true;
  const rest = parser.resume(() => released++);
  assert.deepEqual(rest.map((f) => f.request.command), ["put", "close"]);
  assert.deepEqual(rest[0]!.body, body);
  assert.equal(parser.wanted, undefined);
  rest[0]!.release!();
  assert.equal(released, 1);
  assert.deepEqual(asked, [body.length]);
});

Deno.test("FrameParser.discard() frees a body read in part and gives its room back", async () => {
  const body = new Uint8Array(3000).fill(9);
  const text = putFrame(1, hexId(1), body, await sha256Hex(body));
  let held = 0;
  const parser = new FrameParser({
    reserve: (size) => {
      held += size;
      return () => held -= size;
    },
  });
  assert.deepEqual(parser.push(new TextEncoder().encode(text.slice(0, 1000))), []);
  assert.equal(held, 3000);
  parser.discard();
  parser.discard();
  assert.equal(held, 0);
  assert.equal(parser.midFrame, false);
});
