/**
 * `_verify.ts`: a module zip's go.sum hash, inflating one entry at a time, bounded by each
 * entry's declared size (a zip bomb is refused, never inflated whole).
 */
import assert from "node:assert/strict";
import { hashZip } from "../../src/modproxy/_verify.ts";
import { tempDir } from "../_util/go.ts";

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A zip of one entry: stored, or deflated with `declared` as its uncompressed size. */
async function oneEntryZip(
  name: string,
  data: Uint8Array,
  options: { deflate: boolean; declared?: number },
): Promise<Uint8Array> {
  const body = options.deflate ? await deflateRaw(data) : data;
  const size = options.declared ?? data.length;
  const nameBytes = new TextEncoder().encode(name);
  const local = new Uint8Array(30 + nameBytes.length + body.length);
  const lv = new DataView(local.buffer);
  lv.setUint32(0, 0x04034b50, true);
  lv.setUint16(4, 20, true);
  lv.setUint16(8, options.deflate ? 8 : 0, true);
  lv.setUint32(18, body.length, true);
  lv.setUint32(22, size, true);
  lv.setUint16(26, nameBytes.length, true);
  local.set(nameBytes, 30);
  local.set(body, 30 + nameBytes.length);
  const central = new Uint8Array(46 + nameBytes.length);
  const cv = new DataView(central.buffer);
  cv.setUint32(0, 0x02014b50, true);
  cv.setUint16(4, 20, true);
  cv.setUint16(6, 20, true);
  cv.setUint16(10, options.deflate ? 8 : 0, true);
  cv.setUint32(20, body.length, true);
  cv.setUint32(24, size, true);
  cv.setUint16(28, nameBytes.length, true);
  central.set(nameBytes, 46);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, 1, true);
  ev.setUint16(10, 1, true);
  ev.setUint32(12, central.length, true);
  ev.setUint32(16, local.length, true);
  const out = new Uint8Array(local.length + central.length + end.length);
  out.set(local, 0);
  out.set(central, local.length);
  out.set(end, local.length + central.length);
  return out;
}

Deno.test("hashZip() hashes a deflated entry as its stored twin", async () => {
  await using dir = await tempDir("gcp-verify-");
  const data = new TextEncoder().encode("package x\n".repeat(1000));
  await Deno.writeFile(
    `${dir.path}/stored.zip`,
    await oneEntryZip("m@v1/x.go", data, { deflate: false }),
  );
  await Deno.writeFile(
    `${dir.path}/deflated.zip`,
    await oneEntryZip("m@v1/x.go", data, { deflate: true }),
  );
  const stored = await hashZip(`${dir.path}/stored.zip`);
  assert.match(stored, /^h1:/);
  assert.equal(await hashZip(`${dir.path}/deflated.zip`), stored);
});

Deno.test("hashZip() refuses an entry that inflates past its declared size (a zip bomb)", async () => {
  await using dir = await tempDir("gcp-verify-");
  // 64 MiB of zeros deflate to about 64 KiB; the entry claims 1 KiB.
  const bomb = await oneEntryZip("m@v1/bomb.go", new Uint8Array(64 << 20), {
    deflate: true,
    declared: 1024,
  });
  await Deno.writeFile(`${dir.path}/bomb.zip`, bomb);
  const before = Deno.memoryUsage().rss;
  await assert.rejects(() => hashZip(`${dir.path}/bomb.zip`), /inflates past its 1024 bytes/);
  const grew = Deno.memoryUsage().rss - before;
  assert.ok(grew < 48 << 20, `RSS grew ${grew >> 20} MiB inflating a bomb`);
});
