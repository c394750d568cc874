/**
 * serve() against peers that misbehave: one that stops reading, one that goes away, one whose
 * input stalls mid-request, and many large puts at once. Each must end the session in bounded
 * time; none may leave the process spinning.
 */
import assert from "node:assert/strict";
import { ProtocolError, serve } from "../../src/protocol/mod.ts";
import { ByteBudget } from "../../src/util/byte_budget.ts";
import {
  closeFrame,
  getFrame,
  hexId,
  MemoryHandler,
  putFrame,
  sha256Hex,
} from "../_util/script.ts";

const enc = new TextEncoder();
const LARGE_BODY = 8 << 20;

/** Rejects within `ms`, so a regression shows as a failure instead of a hung test run. */
function within<T>(ms: number, work: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms}ms`)), ms);
    }),
  ]);
}

Deno.test("serve() ends when every write fails after the first (peer gone before close)", async () => {
  let writes = 0;
  const writable = new WritableStream<Uint8Array>({
    write() {
      writes++;
      if (writes > 1) throw new Error("Broken pipe");
    },
  });
  const handler = new MemoryHandler();
  handler.delays.set(hexId(1), 5);
  const input = ReadableStream.from([enc.encode(getFrame(1, hexId(1)) + getFrame(2, hexId(2)))])
    .pipeThrough(
      new TransformStream({
        async flush(controller) {
          // close arrives after the failed write, as when go is killed mid-build
          await new Promise((resolve) => setTimeout(resolve, 30));
          controller.enqueue(enc.encode(getFrame(3, hexId(3)) + closeFrame(4)));
        },
      }),
    );
  const result = await within(2000, serve(input, writable, handler), "serve()");
  assert.equal(result.closed, true);
  assert.ok(writes >= 2, "the failing write was attempted");
});

Deno.test("serve() gives up on a peer that stops reading once writeTimeoutMs passes", async () => {
  let writes = 0;
  const writable = new WritableStream<Uint8Array>({
    write(): Promise<void> | undefined {
      writes++;
      return writes > 1 ? new Promise(() => {}) : undefined; // the second is never accepted
    },
  }, { highWaterMark: 1 });
  const input = ReadableStream.from([enc.encode(getFrame(1, hexId(1)) + closeFrame(2))]);
  const started = performance.now();
  const result = await within(
    3000,
    serve(input, writable, new MemoryHandler(), { writeTimeoutMs: 100 }),
    "serve()",
  ).then((r) => r, (e) => e);
  assert.ok(performance.now() - started < 2000);
  assert.ok(result instanceof ProtocolError || result.closed === true, String(result));
});

Deno.test("serve() ends a session whose input stops inside a put body (stallTimeoutMs)", async () => {
  const body = new Uint8Array(1000).fill(7);
  const frame = putFrame(1, hexId(1), body, await sha256Hex(body));
  const half = enc.encode(frame.slice(0, frame.length - 200));
  const input = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(half); // and then nothing, and no end
    },
  });
  const sink = new WritableStream<Uint8Array>();
  const error = await within(
    3000,
    serve(input, sink, new MemoryHandler(), { stallTimeoutMs: 100 }).then(
      () => undefined,
      (e) => e,
    ),
    "serve()",
  );
  assert.ok(error instanceof ProtocolError);
  assert.match(error.message, /inside a request/);
});

Deno.test("serve() ends an idle session after idleTimeoutMs, answering what it was asked", async () => {
  const out: string[] = [];
  const sink = new WritableStream<Uint8Array>({
    write: (chunk) => void out.push(new TextDecoder().decode(chunk)),
  });
  const input = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(enc.encode(getFrame(1, hexId(1))));
    },
  });
  const error = await within(
    3000,
    serve(input, sink, new MemoryHandler(), { idleTimeoutMs: 100 }).then(() => undefined, (e) => e),
    "serve()",
  );
  assert.match(String(error), /no request for/);
  assert.match(out.join(""), /"ID":1,"Miss":true/);
});

Deno.test("serve() reads a put body only once it fits the shared byte budget", async () => {
  const budget = new ByteBudget(LARGE_BODY);
  const release = await budget.acquire(LARGE_BODY); // another session holds it all
  const body = new Uint8Array(LARGE_BODY).fill(1);
  const frame = enc.encode(putFrame(1, hexId(1), body, await sha256Hex(body)) + closeFrame(2));
  let offered = 0;
  const input = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offered >= frame.length) return controller.close();
      controller.enqueue(frame.subarray(offered, offered + 65536));
      offered += 65536;
    },
  }, { highWaterMark: 0 });
  const handler = new MemoryHandler();
  const session = serve(input, new WritableStream(), handler, { bodyBudget: budget });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(offered < 1 << 20, `read ${offered} bytes while the budget was full`);
  assert.equal(budget.waiting, 1);
  release();
  const result = await within(10_000, session, "serve()");
  assert.equal(result.closed, true);
  assert.equal(handler.entries.size, 1);
  assert.equal(budget.held, 0, "the body's bytes are given back after its put");
});

Deno.test("serve() counts a small put body against the budget from its first byte and gives it back when the session stalls", async () => {
  const budget = new ByteBudget(1 << 20);
  const body = new Uint8Array(3000).fill(7);
  const frame = putFrame(1, hexId(1), body, await sha256Hex(body));
  const cut = frame.length - 500; // inside the body
  const input = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(enc.encode(frame.slice(0, cut))); // then nothing, never closed
    },
  });
  const session = serve(input, new WritableStream(), new MemoryHandler(), {
    bodyBudget: budget,
    stallTimeoutMs: 200,
  }).then(() => undefined, (e) => e);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(budget.held, body.length, "the partial body holds its size");
  const error = await within(3000, session, "serve()");
  assert.match(String(error), /input stopped inside a request/);
  assert.equal(budget.held, 0, "the watchdog's end gives the bytes back");
});

Deno.test("serve() gives back the budget of bodies that arrive after close", async () => {
  const budget = new ByteBudget(1 << 20);
  const body = new Uint8Array(100).fill(1);
  const text = closeFrame(1) + putFrame(2, hexId(2), body, await sha256Hex(body));
  const input = ReadableStream.from([enc.encode(text)]);
  const result = await within(
    3000,
    serve(input, new WritableStream(), new MemoryHandler(), {
      bodyBudget: budget,
    }),
    "serve()",
  );
  assert.equal(result.closed, true);
  assert.equal(budget.held, 0);
});
