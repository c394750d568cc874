import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MemoryObjectStore } from "../../src/store/mod.ts";
import { createLogger } from "../../src/log/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import {
  createModuleProxy,
  type ModuleProxy,
  type ModuleProxyOptions,
  resolveUpstream,
} from "../../src/modproxy/mod.ts";
import { type FakeUpstream, startFakeUpstream } from "../_util/fake_upstream.ts";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../testdata/modproxy");
const TREE = join(FIXTURES, "upstream");
const HELLO_ZIP = "example.com/!hello/@v/v1.0.0.zip";

interface Harness {
  upstream: FakeUpstream;
  proxy: ModuleProxy;
  metrics: Metrics;
  dir: string;
  get(path: string, method?: string): Promise<Response>;
  text(path: string): Promise<{ status: number; body: string }>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function harness(
  options: Partial<ModuleProxyOptions> & { upstreamList?: (url: string) => string } = {},
): Promise<Harness> {
  const upstream = startFakeUpstream(TREE);
  const dir = await Deno.makeTempDir({ prefix: "modproxy-test-" });
  const metrics = new Metrics();
  const proxy = await createModuleProxy({
    cacheDir: join(dir, "module"),
    upstream: options.upstreamList?.(upstream.url) ?? `${upstream.url}/ok`,
    sumdbs: ["sum.test.local"],
    metrics,
    ...options,
  });
  const get = (path: string, method = "GET") =>
    proxy.handle(new Request(`http://127.0.0.1:1${path}`, { method }));
  return {
    upstream,
    proxy,
    metrics,
    dir,
    get,
    async text(path) {
      const r = await get(path);
      return { status: r.status, body: await r.text() };
    },
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await upstream.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function count(requests: string[], suffix: string): number {
  return requests.filter((r) => r.endsWith(suffix)).length;
}

Deno.test("handle() serves an immutable zip from upstream once, then from the cache", async () => {
  await using h = await harness();
  const want = await Deno.readFile(join(TREE, HELLO_ZIP));
  const first = await h.get("/mod/example.com/%21hello/@v/v1.0.0.zip");
  assert.equal(first.status, 200);
  assert.equal(first.headers.get("content-type"), "application/zip");
  assert.equal(first.headers.get("content-length"), String(want.length));
  assert.deepEqual(await first.bytes(), want);
  const second = await h.get("/mod/example.com/%21hello/@v/v1.0.0.zip");
  assert.deepEqual(await second.bytes(), want);
  assert.match(second.headers.get("cache-control")!, /immutable/);
  const head = await h.get("/mod/example.com/%21hello/@v/v1.0.0.zip", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), String(want.length));
  assert.equal(head.body, null);
  assert.equal(count(h.upstream.requests, "v1.0.0.zip"), 1);
  assert.equal(h.metrics.get("modproxy_immutable_misses"), 1);
  assert.equal(h.metrics.get("modproxy_immutable_hits"), 2);
  assert.equal(h.metrics.get("modproxy_bytes_served"), 2 * want.length);
  // Cached under the escaped path, in the download-cache layout.
  assert.deepEqual(await Deno.readFile(join(h.dir, "module", HELLO_ZIP)), want);
});

Deno.test("handle() collapses concurrent misses into one upstream fetch", async () => {
  await using h = await harness({ upstreamList: (u) => `${u}/slow` });
  h.upstream.slowMs = 200;
  const responses = await Promise.all(
    Array.from({ length: 8 }, () => h.get("/mod/example.com/%21hello/@v/v1.0.0.zip")),
  );
  for (const r of responses) assert.equal((await r.bytes()).length > 0, true);
  assert.equal(count(h.upstream.requests, "v1.0.0.zip"), 1);
});

Deno.test("handle() refreshes mutable files after the TTL and serves them stale on outage", async () => {
  await using h = await harness({ mutableTtlMs: 200 });
  assert.deepEqual(await h.text("/mod/example.com/%21hello/@v/list"), {
    status: 200,
    body: "v1.0.0\nv1.1.0\n",
  });
  await h.text("/mod/example.com/%21hello/@v/list");
  assert.equal(count(h.upstream.requests, "/list"), 1, "fresh copy served within the TTL");
  await new Promise((r) => setTimeout(r, 250));
  h.upstream.overrides.set("example.com/!hello/@v/list", { status: 200, body: "v1.0.0\n" });
  assert.equal((await h.text("/mod/example.com/%21hello/@v/list")).body, "v1.0.0\n");
  assert.equal(count(h.upstream.requests, "/list"), 2);
  await new Promise((r) => setTimeout(r, 250));
  await h.upstream.close();
  const stale = await h.get("/mod/example.com/%21hello/@v/list");
  assert.equal(stale.status, 200);
  assert.equal(await stale.text(), "v1.0.0\n");
  assert.equal(h.metrics.get("modproxy_mutable_stale"), 1);
  assert.equal(h.metrics.get("modproxy_upstream_errors"), 1);
  // Nothing cached: the outage is an error, as a one-line text body.
  const miss = await h.get("/mod/example.com/%21hello/@v/v1.1.0.zip");
  assert.equal(miss.status, 502);
  assert.equal(miss.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.match(
    await miss.text(),
    /^Cannot fetch example\.com\/!hello\/@v\/v1\.1\.0\.zip from upstream: cannot reach upstream/,
  );
});

Deno.test("handle() caches 404 answers briefly and serves query .info as mutable", async () => {
  await using h = await harness();
  for (let i = 0; i < 3; i++) {
    const r = await h.text("/mod/example.com/%21hello/sub/pkg/@v/list");
    assert.equal(r.status, 404);
    assert.match(r.body, /^Not found: not found: example\.com\/!hello\/sub\/pkg\/@v\/list/);
  }
  assert.equal(count(h.upstream.requests, "sub/pkg/@v/list"), 1);
  assert.equal(h.metrics.get("modproxy_mutable_negative_hits"), 2);
  const master = await h.text("/mod/example.com/pseudo/@v/master.info");
  assert.equal(master.status, 200);
  assert.match(master.body, /v0\.0\.0-20240102030405-abcdefabcdef/);
  assert.equal(h.metrics.get("modproxy_mutable_misses"), 2);
  assert.equal((await h.text("/mod/example.com/pseudo/@latest")).status, 200);
  assert.equal((await h.text("/mod/example.com/nolatest/@latest")).status, 404);
  // The toolchain is not in the fake upstream: a plain 404.
  const tc = await h.text("/mod/golang.org/toolchain/@v/v0.0.1-go1.99.0.linux-amd64.zip");
  assert.equal(tc.status, 404);
});

Deno.test("handle() follows GOPROXY-list fallback rules for , and |", async (t) => {
  const cases: [string, (u: string) => string, number][] = [
    ["404 then ok with ,", (u) => `${u}/404,${u}/ok`, 200],
    ["410 then ok with ,", (u) => `${u}/410,${u}/ok`, 200],
    ["500 then ok with , is terminal", (u) => `${u}/500,${u}/ok`, 502],
    ["500 then ok with | falls through", (u) => `${u}/500|${u}/ok`, 200],
    ["dead then ok with , is terminal", (u) => `http://127.0.0.1:9/x,${u}/ok`, 502],
    ["dead then ok with | falls through", (u) => `http://127.0.0.1:9/x|${u}/ok`, 200],
    ["404 then direct is not fetched", (u) => `${u}/404,direct`, 404],
    ["off only", () => "off", 404],
  ];
  for (const [name, list, status] of cases) {
    await t.step(name, async () => {
      await using h = await harness({ upstreamList: list });
      const r = await h.text("/mod/example.com/%21hello/@v/v1.0.0.info");
      assert.equal(r.status, status, r.body);
    });
  }
});

Deno.test("handle() caches only complete bodies within the caps", async () => {
  await using h = await harness({ upstreamList: (u) => `${u}/trunc` });
  const r = await h.get("/mod/example.com/%21hello/@v/v1.0.0.zip");
  assert.equal(r.status, 502);
  await r.body?.cancel();
  await assert.rejects(Deno.stat(join(h.dir, "module", HELLO_ZIP)), Deno.errors.NotFound);
  const entries = [];
  for await (const e of Deno.readDir(join(h.dir, "module", "example.com/!hello/@v"))) {
    entries.push(e.name);
  }
  assert.deepEqual(entries, [], "no temp file left behind");
});

Deno.test("handle() refuses bodies over the caps and malformed zips", async () => {
  await using h = await harness();
  h.upstream.overrides.set("example.com/!hello/@v/v1.1.0.mod", {
    status: 200,
    body: new Uint8Array((16 << 20) + 1),
  });
  const big = await h.text("/mod/example.com/%21hello/@v/v1.1.0.mod");
  assert.equal(big.status, 502);
  assert.match(big.body, /larger than 16777216 bytes/);
  // A structurally bad zip (entries outside module@version/) is refused too.
  h.upstream.overrides.set("example.com/!hello/@v/v1.1.0.zip", {
    status: 200,
    body: await Deno.readFile(join(TREE, HELLO_ZIP)),
  });
  const wrong = await h.text("/mod/example.com/%21hello/@v/v1.1.0.zip");
  assert.equal(wrong.status, 502);
  assert.match(wrong.body, /outside prefix/);
});

Deno.test("handle() rejects methods, foreign paths and bad module paths", async () => {
  await using h = await harness();
  assert.equal((await h.get("/mod/example.com/%21hello/@v/list", "POST")).status, 405);
  assert.equal((await h.get("/other")).status, 404);
  assert.equal((await h.get("/mod/example.com/Hello/@v/list")).status, 404);
  assert.equal((await h.get("/mod/example.com/%21hello/@v/v1.0.0.ziphash")).status, 404);
  assert.equal((await h.get("/mod/example.com/%21hello/@v/latest.info")).status, 404);
  assert.equal((await h.get("/mod/example.com/hello/@v/v2.0.0.zip")).status, 404);
  assert.deepEqual(h.upstream.requests, []);
});

Deno.test("handle() proxies allow-listed checksum databases and caches tiles", async () => {
  await using h = await harness();
  assert.equal((await h.get("/mod/sumdb/sum.test.local/supported")).status, 200);
  assert.equal((await h.get("/mod/sumdb/sum.golang.org/supported")).status, 404);
  assert.equal((await h.get("/mod/sumdb/evil.example/lookup/a.com/b@v1.0.0")).status, 404);
  const path = "sumdb/sum.test.local/lookup/example.com/!hello@v1.0.0";
  const want = await Deno.readTextFile(join(TREE, path));
  const lookup = await h.text("/mod/sumdb/sum.test.local/lookup/example.com/%21hello@v1.0.0");
  assert.deepEqual(lookup, { status: 200, body: want });
  const tile = await h.get("/mod/sumdb/sum.test.local/tile/8/0/000.p/4");
  assert.equal((await tile.bytes()).length, 128);
  await (await h.get("/mod/sumdb/sum.test.local/tile/8/0/000.p/4")).body?.cancel();
  await (await h.get("/mod/sumdb/sum.test.local/lookup/example.com/%21hello@v1.0.0")).body
    ?.cancel();
  assert.equal(count(h.upstream.requests, "000.p/4"), 1);
  assert.equal(count(h.upstream.requests, "!hello@v1.0.0"), 1);
  assert.equal(count(h.upstream.requests, "/supported"), 1, "route probed once");
  assert.equal((await h.get("/mod/sumdb/sum.test.local/tile/8/0/000.p/256")).status, 404);
  assert.equal((await h.get("/mod/sumdb/sum.test.local/tile/8/0/0000")).status, 404);
  assert.equal(h.metrics.get("modproxy_sumdb_hits"), 3);
});

Deno.test("handle() goes to https://<name> when upstream does not proxy the database", async () => {
  const seen: string[] = [];
  const fakeFetch: typeof fetch = (input) => {
    seen.push(String(input));
    return Promise.resolve(new Response("gone", { status: 410 }));
  };
  await using h = await harness({ fetch: fakeFetch, sumdbs: ["sum.test.local"] });
  const r = await h.text("/mod/sumdb/sum.test.local/lookup/example.com/%21hello@v1.0.0");
  assert.equal(r.status, 404);
  assert.deepEqual(seen.map((u) => u.replace(/^http:\/\/127\.0\.0\.1:\d+/, "U")), [
    "U/ok/sumdb/sum.test.local/supported",
    "https://sum.test.local/lookup/example.com/!hello@v1.0.0",
  ]);
  // An explicit URL is used without probing.
  seen.length = 0;
  await using e = await harness({
    fetch: fakeFetch,
    sumdbs: ["sum.test.local http://127.0.0.1:9/db"],
  });
  await (await e.get("/mod/sumdb/sum.test.local/latest")).body?.cancel();
  assert.deepEqual(seen, ["http://127.0.0.1:9/db/latest"]);
});

Deno.test("handle() refuses and evicts zips that contradict a checksum database lookup", async () => {
  await using h = await harness();
  const tampered = await Deno.readFile(join(FIXTURES, "tampered", HELLO_ZIP));
  h.upstream.overrides.set("example.com/!hello/@v/v1.0.0.zip", { status: 200, body: tampered });
  // Cached before the proxy knows the hash: served as is (the go command reports SECURITY ERROR).
  const first = await h.get("/mod/example.com/%21hello/@v/v1.0.0.zip");
  assert.deepEqual(await first.bytes(), tampered);
  // A lookup passes through: the cached zip is re-hashed and evicted.
  await (await h.get("/mod/sumdb/sum.test.local/lookup/example.com/%21hello@v1.0.0")).body
    ?.cancel();
  assert.equal(h.metrics.get("modproxy_evictions"), 1);
  await assert.rejects(Deno.stat(join(h.dir, "module", HELLO_ZIP)), Deno.errors.NotFound);
  // Now the upstream copy is checked before it is cached.
  const again = await h.text("/mod/example.com/%21hello/@v/v1.0.0.zip");
  assert.equal(again.status, 502);
  assert.match(again.body, /Checksum mismatch for example\.com\/Hello@v1\.0\.0 zip/);
  h.upstream.overrides.clear();
  const good = await h.get("/mod/example.com/%21hello/@v/v1.0.0.zip");
  assert.equal(good.status, 200);
  assert.deepEqual(await good.bytes(), await Deno.readFile(join(TREE, HELLO_ZIP)));
  // The genuine go.mod is cached and matches; it was not evicted.
  assert.equal((await h.text("/mod/example.com/%21hello/@v/v1.0.0.mod")).status, 200);
});

Deno.test("handle() serves from the object store alone when local dir and upstream are gone", async () => {
  const store = new MemoryObjectStore();
  const keys = [HELLO_ZIP, "example.com/!hello/@v/v1.0.0.mod", "example.com/!hello/@v/list"];
  {
    await using h = await harness({ store });
    for (const k of keys) await (await h.get(`/mod/${k.replace("!", "%21")}`)).body?.cancel();
    await h.proxy.close();
    assert.deepEqual([...store.objects.keys()].sort(), [...keys].sort());
  }
  await using h = await harness({ store, upstreamList: () => "http://127.0.0.1:9/dead" });
  const zip = await h.get("/mod/example.com/%21hello/@v/v1.0.0.zip");
  assert.deepEqual(await zip.bytes(), await Deno.readFile(join(TREE, HELLO_ZIP)));
  assert.equal(h.metrics.get("modproxy_immutable_store_hits"), 1);
  const list = await h.text("/mod/example.com/%21hello/@v/list");
  assert.deepEqual(list, { status: 200, body: "v1.0.0\nv1.1.0\n" });
  assert.equal(h.metrics.get("modproxy_mutable_stale"), 1);
  // A tampered copy in the store is refused once the hash is known.
  store.objects.set("example.com/!hello/@v/v1.0.0.mod", new TextEncoder().encode("module evil\n"));
  await Deno.mkdir(join(h.dir, "module/sumdb/sum.test.local/lookup/example.com"), {
    recursive: true,
  });
  await Deno.copyFile(
    join(TREE, "sumdb/sum.test.local/lookup/example.com/!hello@v1.0.0"),
    join(h.dir, "module/sumdb/sum.test.local/lookup/example.com/!hello@v1.0.0"),
  );
  assert.equal((await h.text("/mod/example.com/%21hello/@v/v1.0.0.mod")).status, 502);
});

Deno.test("resolveUpstream() prefers the flag, then GOPROXY, then go env", async () => {
  const env = (v?: string) => (name: string) => name === "GOPROXY" ? v : undefined;
  const goEnv = () => Promise.resolve("https://proxy.example,direct");
  assert.equal(
    await resolveUpstream("http://a.example", env("http://b.example"), goEnv),
    "http://a.example",
  );
  assert.equal(
    await resolveUpstream("", env("http://b.example|off"), goEnv),
    "http://b.example|off",
  );
  assert.equal(await resolveUpstream("", env(undefined), goEnv), "https://proxy.example,direct");
  await assert.rejects(
    resolveUpstream("", env(","), goEnv),
    /Cannot use the module proxy upstream from GOPROXY/,
  );
});

Deno.test("handle() traces each request with --debug bit 2 and answers /mod/ with usage", async () => {
  const lines: string[] = [];
  await using h = await harness({ log: createLogger({ debug: 2, sink: (l) => lines.push(l) }) });
  await (await h.get("/mod/example.com/%21hello/@v/v1.0.0.mod")).body?.cancel();
  await (await h.get("/mod/a.com/x/@v/list/")).body?.cancel();
  const trace = lines.filter((l) => / [BE] mod /.test(l)).map((l) => l.replace(/^\S+ /, ""));
  assert.equal(trace[0], "go-cache-plugin: B mod R:1 mod example.com/Hello@v1.0.0");
  assert.match(
    trace[1]!,
    /^go-cache-plugin: E mod R:1 mod example\.com\/Hello@v1\.0\.0 200 [\d.]+ms$/,
  );
  assert.match(trace[2]!, /^go-cache-plugin: E mod R:2 bad-path 400 [\d.]+ms$/);
  const usage = await h.text("/mod/");
  assert.equal(usage.status, 200);
  assert.match(usage.body, /^Go module proxy: set GOPROXY=/);
});

Deno.test("handle() answers 504 when upstream headers take too long", async () => {
  await using h = await harness({ upstreamList: (u) => `${u}/slow`, headerTimeoutMs: 100 });
  h.upstream.slowMs = 600;
  const r = await h.text("/mod/example.com/%21hello/@v/v1.0.0.mod");
  assert.equal(r.status, 504);
  assert.match(r.body, /upstream timed out/);
  await assert.rejects(
    createModuleProxy({ cacheDir: h.dir, upstream: "http://a.example", sumdbs: ["x.com/.."] }),
    /Cannot use checksum database entry/,
  );
});

Deno.test("handle() counts upstream 404/410 as not found, apart from failures", async (t) => {
  await t.step("404 and 410 from upstream are answers", async () => {
    await using h = await harness();
    // go mod tidy probes module paths that do not exist: each is a 404 from upstream.
    for (const path of ["example.com/%21hello/sub/@v/list", "example.com/nope/@v/v1.0.0.mod"]) {
      const r = await h.text(`/mod/${path}`);
      assert.equal(r.status, 404, path);
    }
    assert.equal((await h.text("/mod/example.com/nope/@v/v1.0.0.mod")).status, 404, "remembered");
    await using gone = await harness({ upstreamList: (u) => `${u}/410` });
    assert.equal((await gone.text("/mod/example.com/%21hello/@v/v1.0.0.info")).status, 404);
    for (const metrics of [h.metrics, gone.metrics]) {
      assert.equal(metrics.get("modproxy_errors"), 0);
      assert.equal(metrics.get("modproxy_upstream_errors"), 0);
    }
    assert.equal(h.metrics.get("modproxy_not_found"), 3);
    assert.equal(h.metrics.get("modproxy_upstream_not_found"), 2);
    assert.equal(h.metrics.get("modproxy_mutable_not_found"), 1);
    assert.equal(h.metrics.get("modproxy_immutable_not_found"), 1);
    assert.equal(h.metrics.get("modproxy_immutable_negative_hits"), 1);
    assert.equal(gone.metrics.get("modproxy_not_found"), 1);
    assert.equal(gone.metrics.get("modproxy_immutable_not_found"), 1);
  });

  await t.step("a 500 or an unreachable upstream is an error", async () => {
    await using h = await harness({ upstreamList: (u) => `${u}/500` });
    assert.equal((await h.text("/mod/example.com/%21hello/@v/v1.0.0.info")).status, 502);
    assert.equal(h.metrics.get("modproxy_errors"), 1);
    assert.equal(h.metrics.get("modproxy_upstream_errors"), 1);
    assert.equal(h.metrics.get("modproxy_immutable_upstream_errors"), 1);
    assert.equal(h.metrics.get("modproxy_not_found"), 0);
    assert.equal(h.metrics.get("modproxy_upstream_not_found"), 0);
  });

  await t.step("bad requests are errors; paths go cannot have are not found", async () => {
    await using h = await harness();
    assert.equal((await h.get("/mod/example.com/%21hello/@v/list", "POST")).status, 405);
    assert.equal((await h.get("/mod/example.com/Hello/@v/list")).status, 404);
    assert.equal(h.metrics.get("modproxy_errors"), 1);
    assert.equal(h.metrics.get("modproxy_not_found"), 1);
    assert.deepEqual(h.upstream.requests, []);
  });
});

Deno.test("handle() serves immutable files from memory, list and @latest only while fresh", async () => {
  await using h = await harness({ mutableTtlMs: 200 });
  const info = "/mod/example.com/%21hello/@v/v1.0.0.info";
  const want = await Deno.readTextFile(join(TREE, "example.com/!hello/@v/v1.0.0.info"));
  assert.deepEqual(await h.text(info), { status: 200, body: want });
  // Served from memory while the file on disk keeps its size and mtime (what memory checks)...
  const path = join(h.dir, "module/example.com/!hello/@v/v1.0.0.info");
  const { mtime } = await Deno.stat(path);
  await Deno.writeTextFile(path, want.toUpperCase());
  await Deno.utime(path, mtime!, mtime!);
  assert.deepEqual(await h.text(info), { status: 200, body: want });
  // ...and refetched once it is gone from disk.
  await Deno.remove(path);
  assert.deepEqual(await h.text(info), { status: 200, body: want });
  const head = await h.get(info, "HEAD");
  assert.equal(head.headers.get("content-length"), String(want.length));
  assert.equal(head.body, null);
  assert.equal(count(h.upstream.requests, "v1.0.0.info"), 2);
  assert.equal(h.metrics.get("modproxy_immutable_hits"), 2);

  // @latest (and list) are never held in memory: each request looks at the disk and its mtime.
  const latest = "/mod/example.com/pseudo/@latest";
  assert.equal((await h.text(latest)).status, 200);
  await Deno.remove(join(h.dir, "module/example.com/pseudo/@latest"));
  assert.equal((await h.text(latest)).status, 200);
  assert.equal(count(h.upstream.requests, "/@latest"), 2, "refetched, not served from memory");
  assert.equal((await h.text(latest)).status, 200);
  assert.equal(count(h.upstream.requests, "/@latest"), 2, "fresh within the TTL");
  await new Promise((r) => setTimeout(r, 250));
  const newer = '{"Version":"v0.0.0-20250102030405-abcdefabcdef","Time":"2025-01-02T03:04:05Z"}\n';
  h.upstream.overrides.set("example.com/pseudo/@latest", { status: 200, body: newer });
  assert.deepEqual(await h.text(latest), { status: 200, body: newer });
  assert.equal(count(h.upstream.requests, "/@latest"), 3, "refetched after the TTL");
});

Deno.test("handle() with memoryBytes 0 reads every immutable file from disk", async () => {
  await using h = await harness({ memoryBytes: 0 });
  const mod = "/mod/example.com/%21hello/@v/v1.0.0.mod";
  const want = await Deno.readTextFile(join(TREE, "example.com/!hello/@v/v1.0.0.mod"));
  assert.equal((await h.text(mod)).body, want);
  const path = join(h.dir, "module/example.com/!hello/@v/v1.0.0.mod");
  const { mtime } = await Deno.stat(path);
  await Deno.writeTextFile(path, want.toUpperCase());
  await Deno.utime(path, mtime!, mtime!);
  assert.equal((await h.text(mod)).body, want.toUpperCase());
  assert.equal(count(h.upstream.requests, "v1.0.0.mod"), 1);
});

Deno.test("handle() answers a remembered path as it did the first time", async () => {
  await using h = await harness();
  const bad = "/mod/example.com/%41hello/@v/list";
  for (let i = 0; i < 2; i++) assert.equal((await h.get(bad)).status, 400, "refused each time");
  const unknown = "/mod/example.com/%21hello/@v/v1.0.0.ziphash";
  for (let i = 0; i < 2; i++) assert.equal((await h.get(unknown)).status, 404);
  const zip = "/mod/example.com/%21hello/@v/v1.1.0.zip";
  const want = await Deno.readFile(join(TREE, "example.com/!hello/@v/v1.1.0.zip"));
  for (let i = 0; i < 3; i++) {
    const r = await h.get(zip);
    assert.equal(r.headers.get("content-type"), "application/zip");
    assert.match(r.headers.get("cache-control")!, /immutable/);
    assert.deepEqual(await r.bytes(), want);
  }
  for (let i = 0; i < 2; i++) {
    assert.equal((await h.get("/mod/sumdb/sum.test.local/supported")).status, 200);
  }
  assert.equal(h.metrics.get("modproxy_sumdb_hits"), 2);
});
