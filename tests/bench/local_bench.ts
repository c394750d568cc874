/**
 * Micro-benchmarks of the local tier: put (small and large outputs) and get (hit, miss) on a
 * real temporary directory.
 *
 * Run: `scripts/deno task bench` (or `scripts/deno bench --frozen --allow-read --allow-write
 * --allow-env tests/bench/local_bench.ts`).
 *
 * @module
 */

import { LocalCache } from "../../src/cache/local.ts";
import { sha256Hex } from "../_util/bytes.ts";

const dir = await Deno.makeTempDir({ prefix: "gcp-bench-local-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // already gone
  }
});
const cache = await LocalCache.open(dir);

let seq = 0;
function actionId(): string {
  return (++seq).toString(16).padStart(64, "a");
}

const small = crypto.getRandomValues(new Uint8Array(1024));
const large = new Uint8Array(1 << 20).fill(3);
const smallId = await sha256Hex(small);
const largeId = await sha256Hex(large);

// a warm entry for the hit benchmark
const hitAction = actionId();
await cache.put({ actionId: hitAction, outputId: smallId, body: small });

Deno.bench({
  name: "get: hit (action record + stat)",
  group: "get",
  baseline: true,
  async fn() {
    if (!(await cache.get(hitAction))) throw new Error("expected a hit");
  },
});

Deno.bench({
  name: "get: miss",
  group: "get",
  async fn() {
    if (await cache.get("f".repeat(64))) throw new Error("expected a miss");
  },
});

Deno.bench({
  name: "put: 1 KiB output, new action (output already stored)",
  group: "put",
  baseline: true,
  async fn() {
    await cache.put({ actionId: actionId(), outputId: smallId, body: small });
  },
});

Deno.bench({
  name: "put: 1 MiB output, new action (output already stored)",
  group: "put",
  async fn() {
    await cache.put({ actionId: actionId(), outputId: largeId, body: large });
  },
});

Deno.bench({
  name: "put: 1 KiB output, new output",
  group: "put",
  async fn(b) {
    const body = crypto.getRandomValues(new Uint8Array(1024));
    const outputId = await sha256Hex(body);
    b.start();
    await cache.put({ actionId: actionId(), outputId, body });
    b.end();
  },
});
