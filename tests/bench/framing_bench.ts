/**
 * Micro-benchmarks of the protocol layer: framing throughput (get headers, large put bodies)
 * and a whole `serve()` session answering gets from memory.
 *
 * Run: `scripts/deno task bench` (or `scripts/deno bench --frozen --allow-read --allow-write
 * --allow-env tests/bench/framing_bench.ts`).
 *
 * @module
 */

import { type CacheHandler, FrameDecoderStream, serve } from "../../src/protocol/mod.ts";
import { hexId } from "../_util/script.ts";

const encoder = new TextEncoder();
const GETS = 10_000;

function b64(hex: string): string {
  return Uint8Array.fromHex(hex).toBase64();
}

/** `count` get requests as go writes them. */
function getRequests(count: number): Uint8Array {
  let text = "";
  for (let i = 1; i <= count; i++) {
    text += `{"ID":${i},"Command":"get","ActionID":"${b64(hexId(i))}"}\n`;
  }
  return encoder.encode(text);
}

/** `count` puts of `size`-byte bodies (the decoder checks sizes, not hashes). */
function putRequests(count: number, size: number): Uint8Array {
  const body = new Uint8Array(size).fill(7).toBase64();
  let text = "";
  for (let i = 1; i <= count; i++) {
    text += `{"ID":${i},"Command":"put","ActionID":"${b64(hexId(i))}","OutputID":"${
      b64(hexId(i + 1))
    }","BodySize":${size}}\n\n"${body}"\n`;
  }
  return encoder.encode(text);
}

/** Splits bytes into chunks as a pipe would deliver them. */
function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

async function decodeAll(parts: Uint8Array[]): Promise<number> {
  let frames = 0;
  await ReadableStream.from(parts).pipeThrough(new FrameDecoderStream()).pipeTo(
    new WritableStream({ write: () => void frames++ }),
  );
  return frames;
}

const getBytes = getRequests(GETS);
const getChunks = chunks(getBytes, 64 * 1024);
const putBytes = putRequests(16, 1 << 20);
const putChunks = chunks(putBytes, 64 * 1024);

Deno.bench({
  name: `decode ${GETS} get requests (64 KiB chunks)`,
  group: "framing",
  baseline: true,
  async fn() {
    if (await decodeAll(getChunks) !== GETS) throw new Error("lost frames");
  },
});

Deno.bench({
  name: `decode ${GETS} get requests (one 4 KiB-per-read pipe)`,
  group: "framing",
  async fn() {
    if (await decodeAll(chunks(getBytes, 4096)) !== GETS) throw new Error("lost frames");
  },
});

Deno.bench({
  name: "decode 16 puts of 1 MiB bodies (64 KiB chunks, ~21 MiB base64)",
  group: "framing",
  async fn() {
    if (await decodeAll(putChunks) !== 16) throw new Error("lost frames");
  },
});

/** Answers every get with the same hit, as a warm cache would. */
const memoryHandler: CacheHandler = {
  get: (actionId) =>
    Promise.resolve({
      outputId: actionId,
      size: 1234,
      diskPath: `/tmp/cache/output/${actionId.slice(0, 2)}/${actionId}`,
      time: new Date(0),
    }),
  put: () => Promise.reject(new Error("not used")),
};

Deno.bench({
  name: `serve() answers ${GETS} gets from memory (hits)`,
  group: "session",
  baseline: true,
  async fn() {
    let bytes = 0;
    const input = ReadableStream.from(
      [...getChunks, encoder.encode(`{"ID":${GETS + 1},"Command":"close"}\n`)],
    );
    await serve(
      input,
      new WritableStream({ write: (chunk) => void (bytes += chunk.length) }),
      memoryHandler,
      { maxRequests: 2 },
    );
    if (bytes < GETS * 100) throw new Error(`short output: ${bytes} bytes`);
  },
});
