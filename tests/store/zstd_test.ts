/**
 * zstd helpers: compression round-trips, and decompression is bounded whatever the body says
 * (declared size exceeded, a bomb, a frame cut short, not zstd at all).
 */
import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  BoundError,
  CorruptError,
  isZstd,
  zstdCompress,
  zstdDecompress,
  zstdDecompressed,
} from "../../src/store/mod.ts";

function sample(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 % 251) & (i % 3 ? 255 : 15);
  return bytes;
}

async function inflate(bytes: Uint8Array, maxOutputBytes: number): Promise<Uint8Array> {
  // Delivered in small chunks, as a network body is.
  const chunks = [];
  for (let at = 0; at < bytes.length; at += 1000) chunks.push(bytes.subarray(at, at + 1000));
  const stream = zstdDecompressed(ReadableStream.from(chunks), {
    maxOutputBytes,
    maxInputBytes: 1 << 20,
    key: "k",
  });
  return await new Response(stream).bytes();
}

/** One zstd frame without its content size (as a streaming writer makes them). */
async function streamedFrame(parts: Iterable<Uint8Array>): Promise<Uint8Array> {
  const out: Uint8Array[] = [];
  const compressor = zlib.createZstdCompress();
  compressor.on("data", (chunk: Uint8Array) => out.push(chunk));
  const ended = new Promise((resolve) => compressor.on("end", resolve));
  for (const part of parts) compressor.write(part);
  compressor.end();
  await ended;
  const frame = new Uint8Array(out.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of out) {
    frame.set(chunk, at);
    at += chunk.length;
  }
  return frame;
}

Deno.test("zstdCompress() and zstdDecompressed() round-trip, in chunks", async () => {
  const data = sample(3 << 20);
  const frame = await zstdCompress(data, { level: 1 });
  assert.ok(isZstd(frame));
  assert.ok(frame.length < data.length / 2, `${frame.length} bytes`);
  assert.deepEqual(await inflate(frame, data.length), data);
  assert.deepEqual(await inflate(await zstdCompress(new Uint8Array(0)), 0), new Uint8Array(0));
});

Deno.test("zstdDecompressed() refuses a frame declaring more than the bound before inflating", async () => {
  const frame = await zstdCompress(sample(1 << 20));
  await assert.rejects(inflate(frame, 1000), BoundError);
});

Deno.test("zstdDecompressed() stops at the bound when the frame declares no size", async () => {
  const frame = await streamedFrame([sample(1 << 20)]);
  await assert.rejects(inflate(frame, 1000), /more than 1000 bytes once decompressed/);
  await assert.rejects(
    new Response(zstdDecompressed(ReadableStream.from([frame]), {
      maxOutputBytes: 1 << 20,
      maxInputBytes: 10,
    })).bytes(),
    /more than 10 compressed bytes/,
  );
});

Deno.test("zstdDecompress() abandons a bomb (1 GiB of zeros in a few KB) at its bound", async () => {
  const zeros = new Uint8Array(16 << 20);
  const bomb = await streamedFrame(Array.from({ length: 64 }, () => zeros));
  assert.ok(bomb.length < 256 << 10, `${bomb.length} bytes`);
  const before = Deno.memoryUsage().rss;
  assert.throws(() => zstdDecompress(bomb, { maxOutputBytes: 4 << 20 }), BoundError);
  const grown = Deno.memoryUsage().rss - before;
  assert.ok(grown < 64 << 20, `RSS grew ${grown >> 20} MiB`);
});

Deno.test("zstdDecompress(): corrupt frames throw to the caller, never past it", () => {
  // The runtime's asynchronous decoder throws some of these outside any handler.
  const data = sample(1 << 18);
  const frame = new Uint8Array(
    zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 } }),
  );
  let thrown = 0;
  for (let k = 0; k < 300; k++) {
    const bad = frame.slice();
    bad[6 + (k * 7919) % (bad.length - 6)]! ^= 1 << (k % 8);
    try {
      const out = zstdDecompress(bad, { maxOutputBytes: data.length });
      assert.ok(out.length <= data.length);
    } catch (error) {
      assert.ok(error instanceof CorruptError || error instanceof BoundError, String(error));
      thrown++;
    }
  }
  assert.ok(thrown > 250, `${thrown} of 300 thrown`);
});

Deno.test("zstdDecompressed() errors on a frame cut short and on bytes that are not zstd", async () => {
  const data = sample(1 << 20);
  const frame = await zstdCompress(data);
  await assert.rejects(inflate(frame.subarray(0, frame.length >> 1), data.length), CorruptError);
  await assert.rejects(inflate(frame.subarray(0, 3), data.length), CorruptError);
  await assert.rejects(inflate(new Uint8Array(0), data.length), CorruptError);
  await assert.rejects(inflate(new Uint8Array(100).fill(3), data.length), CorruptError);
  const flipped = frame.slice();
  flipped[flipped.length >> 1]! ^= 0xff;
  await assert.rejects(inflate(flipped, data.length));
});

Deno.test("zstdDecompressed(): cancelling it cancels the body", async () => {
  let cancelled = false;
  const frame = await zstdCompress(sample(4 << 20));
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(frame.subarray(0, 1000));
    },
    cancel() {
      cancelled = true;
    },
  });
  const reader = zstdDecompressed(body, { maxOutputBytes: 4 << 20, maxInputBytes: 1 << 20 })
    .getReader();
  await reader.cancel();
  assert.ok(cancelled);
});
