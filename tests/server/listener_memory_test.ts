/**
 * Memory of abandoned puts, measured on a real `serve --plugin` process (spawned through the
 * launcher, as users run it): four clients each send 95% of a 255 MiB put and stall. Their bodies
 * must count against the one server-wide budget of 512 MiB from the first byte, so the server's
 * resident memory stays under its baseline plus that budget, and falls back once they hang up.
 */
import assert from "node:assert/strict";
import { Server } from "../_util/serve.ts";
import { getFrame, hexId } from "../_util/script.ts";

const MIB = 1 << 20;
const BODY = 255 * MIB;
/** The README's bound on put bodies held by all sessions together. */
const BUDGET = 512 * MIB;
/** Room for what is not a body: read buffers, decoder strings, heap growth under load. */
const SLACK = 64 * MIB;
const encoder = new TextEncoder();

/** VmRSS and VmHWM of a process, in bytes. */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number }> {
  // Through cat: Deno asks for every permission to read another process's /proc files.
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/status`] }).output();
  const status = new TextDecoder().decode(stdout);
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

/** Samples a process's RSS until stopped; `peak` is the largest sample. */
function sampler(pid: number): { peak: () => number; stop: () => void } {
  let peak = 0;
  const timer = setInterval(async () => {
    try {
      peak = Math.max(peak, (await memoryOf(pid)).rss);
    } catch {
      // exited
    }
  }, 50);
  return { peak: () => peak, stop: () => clearInterval(timer) };
}

/** A client of {@linkcode stallingPut}. */
interface StallingClient {
  conn: Deno.Conn;
  /** Set once the header and 95% of the body are written (the server took them). */
  finished: boolean;
  sent: Promise<void>;
}

/** A client that sends a put header of `BODY` bytes and 95% of its base64 text, then stalls. */
async function stallingPut(address: string, n: number): Promise<StallingClient> {
  const conn = await Deno.connect({ transport: "unix", path: address });
  const header =
    `{"ID":1,"Command":"put","ActionID":"${hexId(n)}","OutputID":"${hexId(100 + n)}",` +
    `"BodySize":${BODY}}\n\n"`;
  const chunk = encoder.encode("A".repeat(MIB)); // base64 of zeros, 4 characters per 3 bytes
  const chunks = Math.floor((BODY / 3) * 4 * 0.95 / MIB);
  const client: StallingClient = { conn, finished: false, sent: Promise.resolve() };
  client.sent = (async () => {
    await conn.write(encoder.encode(header));
    for (let i = 0; i < chunks; i++) {
      let done = 0;
      while (done < chunk.length) done += await conn.write(chunk.subarray(done));
    }
    client.finished = true;
  })();
  client.sent.catch(() => {}); // closed by the test
  return client;
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A short session: handshake, one get, close; resolves to what the server wrote. */
async function oneGet(address: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: address });
  await conn.write(encoder.encode(getFrame(1, hexId(7)) + '{"ID":2,"Command":"close"}\n\n'));
  const chunks: string[] = [];
  const buffer = new Uint8Array(65536);
  const decoder = new TextDecoder();
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(decoder.decode(buffer.subarray(0, n), { stream: true }));
  }
  conn.close();
  return chunks.join("");
}

Deno.test({
  name: "serve --plugin holds stalled put bodies of all sessions within 512 MiB, and frees them",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "gcp-mem-" });
  const socket = `${dir}/plugin.sock`;
  try {
    await using server = await Server.start([`--plugin=${socket}`, `--cache-dir=${dir}/cache`]);
    const pid = server.process.pid;
    assert.match(await oneGet(socket), /"Miss":true/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const baseline = (await memoryOf(pid)).rss;
    const samples = sampler(pid);
    try {
      const clients = await Promise.all([1, 2, 3, 4].map((n) => stallingPut(socket, n)));
      // Two bodies fit the budget; the other two wait with their bytes in the socket.
      const finished = () => clients.filter((c) => c.finished);
      await waitFor("two bodies to be read", 60_000, () => Promise.resolve(finished().length >= 2));
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const admitted = finished();
      assert.equal(admitted.length, 2, "only two bodies fit the budget");
      const waiting = clients.filter((c) => !c.finished);
      const held = (await memoryOf(pid)).rss;
      assert.ok(
        held - baseline > 400 * MIB,
        `two stalled bodies are held (RSS ${mib(held)}, baseline ${mib(baseline)})`,
      );
      // The first two leave mid-body: their memory goes, and the waiting two are read.
      for (const c of admitted) c.conn.close();
      await Promise.all(waiting.map((c) => c.sent));
      const after = (await memoryOf(pid)).rss;
      assert.ok(
        after - baseline < BUDGET + SLACK,
        `RSS ${mib(after)} with two new bodies, over baseline ${mib(baseline)} + 512 MiB`,
      );
      for (const c of waiting) c.conn.close();
      let now = 0;
      await waitFor("the server's memory to fall back", 15_000, async () => {
        now = (await memoryOf(pid)).rss;
        return now - baseline < SLACK;
      });
      const { hwm } = await memoryOf(pid);
      const peak = Math.max(samples.peak(), hwm);
      // deno-lint-ignore no-console
      console.error(
        `serve RSS: baseline ${mib(baseline)}, peak ${mib(peak)}, after the clients left ${
          mib(now)
        }`,
      );
      assert.ok(
        peak - baseline < BUDGET + SLACK,
        `peak RSS ${mib(peak)} over baseline ${mib(baseline)} + 512 MiB (+ ${mib(SLACK)})`,
      );
      assert.match(await oneGet(socket), /"Miss":true/, "the server still answers");
    } finally {
      samples.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(0)} MiB`;
}
