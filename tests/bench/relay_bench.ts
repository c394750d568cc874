/**
 * Micro-benchmarks of the relay behind `connect`: what following a session costs on top of
 * moving its bytes. Input is a recorded go 1.26 session (`go test` of a cached module: 606 gets,
 * one put) and the replies the server gave it.
 *
 * Run: `scripts/deno task bench` (or `scripts/deno bench --frozen --allow-read
 * tests/bench/relay_bench.ts`).
 *
 * @module
 */

import { Relay } from "../../src/protocol/mod.ts";

const encoder = new TextEncoder();
const dir = new URL("../testdata/gocacheprog/go1.26/", import.meta.url);
const stdin = await Deno.readTextFile(new URL("test-cached.stdin", dir));
const stdout = await Deno.readTextFile(new URL("test-cached.stdout", dir));

/** The requests one by one, as go writes them: header, blank line, body line for a put. */
function requestFrames(text: string): Uint8Array[] {
  const frames: string[] = [];
  for (const line of text.split(/(?<=\n)/)) {
    if (line.startsWith("{") || frames.length === 0) frames.push(line);
    else frames[frames.length - 1] += line;
  }
  return frames.map((frame) => encoder.encode(frame));
}

const requests = requestFrames(stdin);
const replyLines = stdout.split(/(?<=\n)/).map((line) => encoder.encode(line));
const requestChunks = chunks(encoder.encode(stdin), 64 * 1024);
const replyChunks = chunks(encoder.encode(stdout), 64 * 1024);

function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

function check(relay: Relay): void {
  if (!relay.settled(true)) throw new Error("requests left unanswered");
}

Deno.bench({
  name: `relay ${requests.length} requests one by one, each reply on its own`,
  group: "relay",
  baseline: true,
  fn() {
    const relay = new Relay({ handshakeSent: true });
    relay.onReplies(replyLines[0]!); // the handshake
    for (let i = 0; i < requests.length; i++) {
      relay.onRequests(requests[i]!);
      relay.onReplies(replyLines[i + 1]!);
    }
    check(relay);
  },
});

Deno.bench({
  name: `relay ${requests.length} requests, then their replies, in 64 KiB chunks`,
  group: "relay",
  fn() {
    const relay = new Relay({ handshakeSent: true });
    for (const chunk of requestChunks) relay.onRequests(chunk);
    for (const chunk of replyChunks) relay.onReplies(chunk);
    check(relay);
  },
});
