/**
 * A fake upstream module proxy on 127.0.0.1 for tests: serves a static fixture tree (keys are
 * escaped paths, like a module download cache) under several base paths that inject failures,
 * and records every request. Also a tiny zip writer for fixtures.
 *
 * Base paths: `/ok/…` serves the tree; `/404/…`, `/410/…`, `/500/…` always answer that status;
 * `/slow/…` waits `slowMs` first; `/trunc/…` sends half of the body and then breaks the
 * connection. `overrides` replaces single files (keys relative to the tree, such as
 * `example.com/!hello/@v/v1.0.0.zip`) in every base.
 *
 * @module
 */

import { join } from "node:path";

/** A replacement answer for one file. */
export interface Override {
  status: number;
  body?: Uint8Array | string;
}

/** A running fake upstream. */
export interface FakeUpstream {
  /** `http://127.0.0.1:<port>` (append `/ok` and so on). */
  readonly url: string;
  readonly port: number;
  /** Decoded request paths, in order (`/ok/example.com/!hello/@v/list`). */
  readonly requests: string[];
  /** Per-file replacements. */
  readonly overrides: Map<string, Override>;
  /** Delay for `/slow/` in ms. */
  slowMs: number;
  /** Stops the server; later requests to it fail with connection refused. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a fake upstream serving `root`.
 *
 * @param root The fixture tree (escaped paths).
 * @param options `port` to listen on (to restart on the same port). @default {0}
 * @returns The running server.
 */
export function startFakeUpstream(root: string, options: { port?: number } = {}): FakeUpstream {
  const requests: string[] = [];
  const overrides = new Map<string, Override>();
  const state = { slowMs: 2000 };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 0, onListen() {} },
    async (req) => {
      const raw = new URL(req.url).pathname;
      let path: string;
      try {
        path = decodeURIComponent(raw);
      } catch {
        return new Response("bad escape\n", { status: 400 });
      }
      requests.push(path);
      const m = /^\/([a-z0-9]+)\/(.*)$/.exec(path);
      if (!m || path.includes("..") || path.includes("\\")) {
        return new Response("not found\n", { status: 404 });
      }
      const [, base, rel] = m as unknown as [string, string, string];
      if (base === "404" || base === "410" || base === "500") {
        return new Response(`fake ${base}: ${rel}\n`, {
          status: Number(base),
          headers: { "content-type": "text/plain; charset=utf-8" },
        });
      }
      if (base === "slow") await new Promise((r) => setTimeout(r, state.slowMs));
      let body: Uint8Array;
      const override = overrides.get(rel);
      if (override) {
        if (override.status !== 200) {
          return new Response(String(override.body ?? "overridden\n"), {
            status: override.status,
            headers: { "content-type": "text/plain; charset=utf-8" },
          });
        }
        body = typeof override.body === "string"
          ? new TextEncoder().encode(override.body)
          : override.body ?? new Uint8Array();
      } else {
        try {
          body = await Deno.readFile(join(root, rel));
        } catch {
          return new Response(`not found: ${rel}\n`, {
            status: 404,
            headers: { "content-type": "text/plain; charset=utf-8" },
          });
        }
      }
      if (base === "trunc") {
        const half = body.subarray(0, body.length >> 1);
        return new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(half);
              setTimeout(() => controller.error(new Error("truncated on purpose")), 20);
            },
          }),
          { headers: { "content-length": String(body.length) } },
        );
      }
      return new Response(body as Uint8Array<ArrayBuffer>);
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}`;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.shutdown();
  };
  return {
    url,
    port: server.addr.port,
    requests,
    overrides,
    get slowMs() {
      return state.slowMs;
    },
    set slowMs(value: number) {
      state.slowMs = value;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Writes a zip with stored (uncompressed) entries, in the given order.
 *
 * @param files Entry name → content.
 * @returns The zip bytes.
 */
export function makeZip(files: Record<string, string | Uint8Array>): Uint8Array {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const nameBytes = enc.encode(name);
    const data = typeof content === "string" ? enc.encode(content) : content;
    const crc = crc32(data);
    const local = new Uint8Array(30 + nameBytes.length + data.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, 0, true);
    lv.setUint16(12, 0x21, true); // 1980-01-01
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, nameBytes.length, true);
    local.set(nameBytes, 30);
    local.set(data, 30 + nameBytes.length);
    const central = new Uint8Array(46 + nameBytes.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(14, 0x21, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint32(42, offset, true);
    central.set(nameBytes, 46);
    locals.push(local);
    centrals.push(central);
    offset += local.length;
  }
  const cdSize = centrals.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, centrals.length, true);
  ev.setUint16(10, centrals.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let at = 0;
  for (const part of [...locals, ...centrals, end]) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
