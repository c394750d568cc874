import assert from "node:assert/strict";
import { FrameParser, HANDSHAKE_LINE, Relay } from "../../src/protocol/mod.ts";
import { closeFrame, getFrame, hexId, putFrame, sha256Hex } from "../_util/script.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function splitEvery(text: string, size: number): Uint8Array[] {
  const bytes = encoder.encode(text);
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.slice(i, i + size));
  return out;
}

function replayText(relay: Relay): string {
  return decoder.decode(new Uint8Array(relay.unanswered().flatMap((part) => [...part])));
}

/** Feeds reply text to the relay and returns what it passes on to go. */
function replies(relay: Relay, text: string): string {
  const lines = relay.onReplies(encoder.encode(text));
  return lines ? decoder.decode(lines) : "";
}

Deno.test("Relay keeps unanswered requests, bodies included, and forgets answered ones", async () => {
  const relay = new Relay();
  const body = new Uint8Array(30_000).fill(7);
  const put = putFrame(2, hexId(2), body, await sha256Hex(body));
  const input = getFrame(1, hexId(1)) + put + getFrame(3, hexId(3)) + '{"ID":4,"Comm';
  for (const chunk of splitEvery(input, 777)) relay.onRequests(chunk);
  assert.equal(relay.handshakeSeen, false);
  replies(relay, '{"ID":1,"Miss":true}\n{"ID":3,"Miss":true}\n');
  assert.equal(relay.handshakeSeen, true);
  const replay = replayText(relay);
  assert.ok(replay.startsWith('{"ID":2,"Command":"put"'), replay.slice(0, 40));
  assert.ok(replay.includes(`"${body.toBase64()}"\n`), "the body is replayed as sent");
  assert.ok(replay.endsWith('{"ID":4,"Comm'), "the partial request comes last");
  assert.ok(!replay.includes('"ID":1,') && !replay.includes('"ID":3,'));
  assert.equal(relay.waiting, true);
  assert.equal(relay.settled(true), false);
});

Deno.test("Relay.unanswered() replays to the same frames the server would have read", async () => {
  const relay = new Relay();
  const bodies = [new Uint8Array(100).fill(1), new Uint8Array(70_000).fill(2)];
  const input = putFrame(1, hexId(1), bodies[0]!, await sha256Hex(bodies[0]!)) +
    getFrame(2, hexId(2)) +
    putFrame(3, hexId(3), bodies[1]!, await sha256Hex(bodies[1]!)) + closeFrame(4);
  for (const chunk of splitEvery(input, 4096)) relay.onRequests(chunk);
  replies(relay, '{"ID":2,"Miss":true}\n');
  const parser = new FrameParser();
  const frames = relay.unanswered().flatMap((part) => parser.push(part));
  frames.push(...parser.end());
  assert.deepEqual(frames.map((f) => f.request.id), [1, 3, 4]);
  assert.deepEqual(frames[0]!.body, bodies[0]);
  assert.deepEqual(frames[1]!.body, bodies[1]);
});

Deno.test("Relay.settled() is true once close is answered", () => {
  const relay = new Relay();
  relay.onRequests(encoder.encode(getFrame(1, hexId(1)) + closeFrame(2)));
  assert.equal(relay.settled(false), false);
  replies(relay, '{"ID":2}\n');
  assert.equal(relay.settled(false), true);
});

Deno.test("Relay.settled() is true when input ended with nothing unanswered", () => {
  const relay = new Relay();
  relay.onRequests(encoder.encode(getFrame(1, hexId(1))));
  assert.equal(relay.settled(true), false);
  replies(relay, '{"ID":1,"Miss":true}\n');
  assert.equal(relay.settled(false), false, "input still open");
  assert.equal(relay.settled(true), true);
  assert.equal(relay.waiting, false);
});

Deno.test("Relay reads the ID of a reply line without the fast-path shape", () => {
  const relay = new Relay();
  relay.onRequests(encoder.encode(getFrame(3, hexId(3)) + getFrame(4, hexId(4))));
  const passed = replies(relay, '{ "ID" : 3, "Miss": true }\n  {"Miss":true,"ID":4}\n');
  assert.equal(passed, '{ "ID" : 3, "Miss": true }\n  {"Miss":true,"ID":4}\n');
  assert.equal(relay.waiting, false);
  assert.equal(replayText(relay), "");
});

Deno.test("Relay skips blank lines between requests and keeps none of them", () => {
  const relay = new Relay();
  const get1 = JSON.stringify({ ID: 1, Command: "get", ActionID: "AAAA" });
  const get2 = JSON.stringify({ ID: 2, Command: "get", ActionID: "AAAA" });
  for (const chunk of splitEvery(`\n\n${get1}\n \r\n\t\n\n${get2}\n\n\n`, 3)) {
    relay.onRequests(chunk);
  }
  assert.equal(replayText(relay), `${get1}\n${get2}\n`);
  replies(relay, '{"ID":1,"Miss":true}\n');
  assert.equal(replayText(relay), `${get2}\n`);
});

Deno.test("Relay passes whole reply lines only and carries the rest to the next chunk", () => {
  const relay = new Relay();
  relay.onRequests(encoder.encode(getFrame(1, hexId(1)) + getFrame(22, hexId(22))));
  assert.equal(replies(relay, '{"ID":1,"Mi'), "");
  assert.equal(relay.handshakeSeen, false);
  assert.equal(replies(relay, 'ss":true}\n{"ID":2'), '{"ID":1,"Miss":true}\n');
  assert.equal(replies(relay, '2,"Miss":true}\n'), '{"ID":22,"Miss":true}\n');
  assert.equal(relay.waiting, false);
});

Deno.test("Relay with handshakeSent drops the server's handshake only", () => {
  const relay = new Relay({ handshakeSent: true });
  assert.equal(relay.handshakeSeen, true);
  relay.onRequests(encoder.encode(getFrame(1, hexId(1))));
  assert.equal(replies(relay, HANDSHAKE_LINE), "");
  assert.equal(replies(relay, '{"ID":1,"Miss":true}\n'), '{"ID":1,"Miss":true}\n');

  const second = new Relay({ handshakeSent: true });
  second.onRequests(encoder.encode(getFrame(1, hexId(1))));
  const both = HANDSHAKE_LINE + '{"ID":1,"Miss":true}\n';
  assert.equal(replies(second, both), '{"ID":1,"Miss":true}\n');
  assert.equal(second.waiting, false);
});

Deno.test("Relay.onRequests() copies small pieces and reports large ones kept in place", async () => {
  const relay = new Relay();
  assert.equal(relay.onRequests(encoder.encode(getFrame(1, hexId(1)))), false);
  const body = new Uint8Array(60_000).fill(9);
  const put = encoder.encode(putFrame(2, hexId(2), body, await sha256Hex(body)));
  assert.equal(relay.onRequests(put), true, "the body's 80 KB of base64 stay in the chunk");
  put.fill(0x20); // a reused buffer must not change the small pieces
  assert.ok(replayText(relay).startsWith(getFrame(1, hexId(1)).trimEnd() + "\n"));
});

Deno.test("Relay keeps input it cannot frame, verbatim, for a replay that fails alike", () => {
  const relay = new Relay();
  const get = getFrame(1, hexId(1));
  relay.onRequests(encoder.encode(get + "not json\n" + getFrame(2, hexId(2))));
  relay.onRequests(encoder.encode("more"));
  assert.equal(relay.waiting, true);
  replies(relay, '{"ID":1,"Miss":true}\n');
  assert.equal(replayText(relay), "not json\n" + getFrame(2, hexId(2)) + "more");
  assert.equal(relay.settled(true), true, "nothing the server accepted is unanswered");
  assert.throws(() => new FrameParser().push(relay.unanswered()[0]!), /not JSON/);
});

Deno.test("Relay keeps a header line longer than the server accepts for the replay", () => {
  const relay = new Relay();
  const long = "x".repeat(40_000);
  relay.onRequests(encoder.encode(long));
  relay.onRequests(encoder.encode(long + "\n" + closeFrame(1)));
  assert.equal(relay.waiting, true);
  assert.equal(replayText(relay), long + long + "\n" + closeFrame(1));
  assert.equal(relay.settled(false), false);
});
