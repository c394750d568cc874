/**
 * The S3 adapter's PUT bodies on the pinned runtime: `SizedBody` makes `fetch` send our
 * Content-Length (never chunked, which S3 rejects) while it streams the body; a wrong-sized
 * stream fails with its own error; through `AwsObjectStore`, small stream bodies are buffered and
 * retried once, big ones streamed without being buffered whole.
 */
import assert from "node:assert/strict";
import { AwsObjectStore } from "../../../src/store/mod.ts";
import { putPayload, SizedBody } from "../../../src/store/s3/_signed_fetch.ts";

/** What the fake bucket saw of one request. */
interface Seen {
  method: string;
  path: string;
  contentLength: string | null;
  transferEncoding: string | null;
  bytes: Uint8Array;
}

/** A local HTTP server standing in for S3: records each request, answers `answer(n)`. */
function fakeBucket(answer: (n: number, req: Request) => number = () => 200) {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const bytes = await req.bytes();
    seen.push({
      method: req.method,
      path: new URL(req.url).pathname,
      contentLength: req.headers.get("content-length"),
      transferEncoding: req.headers.get("transfer-encoding"),
      bytes,
    });
    const status = answer(seen.length, req);
    return new Response(status === 200 ? null : "<Error><Code>InternalError</Code></Error>", {
      status,
    });
  });
  return {
    seen,
    url: `http://127.0.0.1:${server.addr.port}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

function pattern(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 0xff;
  return bytes;
}

/** A stream of `bytes` in chunks of `chunk` bytes. */
function chunked(bytes: Uint8Array, chunk = 64 << 10): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
      if (at >= bytes.length) controller.close();
    },
  }, { highWaterMark: 0 });
}

Deno.test("SizedBody: fetch sends bytes and streams with our Content-Length, never chunked", async () => {
  await using bucket = fakeBucket();
  const bytes = pattern(300_000);
  for (const source of [bytes, chunked(bytes)]) {
    const response = await fetch(bucket.url, {
      method: "PUT",
      body: new SizedBody(source, bytes.length),
    });
    await response.body?.cancel();
  }
  assert.equal(bucket.seen.length, 2);
  for (const seen of bucket.seen) {
    assert.equal(seen.contentLength, "300000");
    assert.equal(seen.transferEncoding, null);
    assert.deepEqual(seen.bytes, bytes);
  }
});

Deno.test("SizedBody: a stream is sent as it is read, not buffered whole first", async () => {
  // The last chunk is produced only once the server has seen the first: a body buffered whole
  // before sending would never get there (the test would time out).
  const firstArrived = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const reader = req.body!.getReader();
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      firstArrived.resolve();
    }
    return new Response(String(total));
  });
  await using _ = { [Symbol.asyncDispose]: () => server.shutdown() };
  const chunk = new Uint8Array(64 << 10);
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 1) await firstArrived.promise;
      controller.enqueue(chunk);
      if (++sent === 2) controller.close();
    },
  }, { highWaterMark: 0 });
  const response = await fetch(`http://127.0.0.1:${server.addr.port}`, {
    method: "PUT",
    body: new SizedBody(stream, 2 * chunk.length),
  });
  assert.equal(await response.text(), String(2 * chunk.length));
});

Deno.test("SizedBody: a stream shorter or longer than its size fails with its own RangeError", async () => {
  await using bucket = fakeBucket();
  for (const [size, actual] of [[1000, 500], [1000, 1500]] as const) {
    const body = new SizedBody(chunked(pattern(actual), 250), size);
    await assert.rejects(fetch(bucket.url, { method: "PUT", body }));
    assert.ok(body.failure instanceof RangeError, `size ${size}, sent ${actual}: ${body.failure}`);
  }
  assert.throws(() => new SizedBody(new Uint8Array(3), 4), RangeError);
});

Deno.test("putPayload: a small stream becomes one buffer, freed by release(); a big one stays a stream", async () => {
  const small = await putPayload(chunked(pattern(100_000)), 100_000);
  assert.ok(small.body instanceof Uint8Array);
  assert.deepEqual(small.body, pattern(100_000));
  small.release();
  assert.equal(small.body.byteLength, 0, "the buffer is freed (detached)");
  const stream = chunked(pattern(5 << 20));
  const big = await putPayload(stream, 5 << 20);
  assert.equal(big.body, stream);
  await stream.cancel();
  const bytes = pattern(10);
  const given = await putPayload(bytes, 10);
  given.release();
  assert.equal(bytes.length, 10, "the caller's bytes are never freed");
  await assert.rejects(putPayload(chunked(pattern(10)), 11), RangeError);
});

/** An AwsObjectStore on the fake bucket (static keys: no SDK), env restored afterwards. */
function storeOn(url: string) {
  const names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_CA_BUNDLE"];
  const saved = names.map((name) => [name, Deno.env.get(name)] as const);
  Deno.env.set("AWS_ACCESS_KEY_ID", "test");
  Deno.env.set("AWS_SECRET_ACCESS_KEY", "test-secret");
  Deno.env.delete("AWS_PROFILE");
  Deno.env.delete("AWS_CA_BUNDLE");
  const store = new AwsObjectStore({
    bucket: "b",
    region: "us-east-1",
    endpoint: url,
    pathStyle: true,
    timeoutMs: 10_000,
  });
  return {
    store,
    [Symbol.dispose]() {
      for (const [name, value] of saved) {
        if (value === undefined) Deno.env.delete(name);
        else Deno.env.set(name, value);
      }
    },
  };
}

Deno.test("AwsObjectStore.put sends bytes, small and big streams, and empty bodies with Content-Length", async () => {
  await using bucket = fakeBucket();
  using s = storeOn(bucket.url);
  const small = pattern(200_000);
  const big = pattern((4 << 20) + 12345);
  await s.store.put("bytes", small, { size: small.length });
  await s.store.put("small", chunked(small), { size: small.length });
  await s.store.put("big", chunked(big), { size: big.length });
  await s.store.put("empty", chunked(new Uint8Array(0)), { size: 0 });
  assert.deepEqual(
    bucket.seen.map((r) => [r.method, r.path, r.contentLength, r.transferEncoding, r.bytes.length]),
    [
      ["PUT", "/b/bytes", "200000", null, 200_000],
      ["PUT", "/b/small", "200000", null, 200_000],
      ["PUT", "/b/big", String(big.length), null, big.length],
      ["PUT", "/b/empty", "0", null, 0],
    ],
  );
  assert.deepEqual(bucket.seen[1]!.bytes, small);
  assert.deepEqual(bucket.seen[2]!.bytes, big);
  assert.equal(small.length, 200_000, "the caller's bytes are left as they were");
});

Deno.test("AwsObjectStore.put retries a small stream once after a 5xx; a big stream is not retried", async () => {
  await using bucket = fakeBucket((n) => (n === 1 || n === 3 ? 500 : 200));
  using s = storeOn(bucket.url);
  const small = pattern(100_000);
  await s.store.put("small", chunked(small), { size: small.length });
  assert.equal(bucket.seen.length, 2, "sent again after the 500");
  assert.deepEqual(bucket.seen[1]!.bytes, small);
  const big = pattern((4 << 20) + 1);
  await assert.rejects(s.store.put("big", chunked(big), { size: big.length }), {
    name: "StoreError",
  });
  assert.equal(bucket.seen.length, 3, "a stream is read once");
});
