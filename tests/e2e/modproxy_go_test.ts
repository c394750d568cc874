/**
 * The module proxy against the real go command, hermetically: a fake upstream serving
 * `tests/testdata/modproxy/upstream` (with a test checksum database), the proxy on a loopback
 * Deno.serve, and the loopback-only go environment of the spec (section 10.2). Covers the test
 * matrix of section 10.4.
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MemoryObjectStore, type ObjectStore } from "../../src/store/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { createModuleProxy, type ModuleProxyOptions } from "../../src/modproxy/mod.ts";
import { rawPathOf } from "../../src/util/http.ts";
import { type FakeUpstream, startFakeUpstream } from "../_util/fake_upstream.ts";
import { findMinio, startMinio } from "../_util/minio.ts";
import { ProxyProcess } from "../testdata/modproxy/serve_proxy.ts";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../testdata/modproxy");
const TREE = join(FIXTURES, "upstream");
const VKEY = (await Deno.readTextFile(join(FIXTURES, "sumdb.vkey"))).trim();
const HELLO_ZIP = "example.com/!hello/@v/v1.0.0.zip";

async function goCommand(): Promise<{ ok: true; gocache: string } | { ok: false; why: string }> {
  try {
    const out = await new Deno.Command("go", {
      args: ["env", "GOCACHE"],
      env: { GOCACHEPROG: "", GOFLAGS: "" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) return { ok: false, why: "go env failed" };
    // A warm build cache keeps the one go build cheap; build caches are content-addressed.
    const gocache = Deno.env.get("GCP_TEST_GOCACHE") ?? new TextDecoder().decode(out.stdout).trim();
    return { ok: true, gocache };
  } catch {
    return { ok: false, why: "go is not on PATH" };
  }
}

const GO = await goCommand();
const IGNORE = !GO.ok && !Deno.env.get("CI");
if (!GO.ok) {
  // deno-lint-ignore no-console
  console.error(`modproxy go tests: ${GO.why}${IGNORE ? ", skipping (CI unset)" : ""}`);
}

interface Proxy {
  url: string;
  seen: string[];
  metrics: Metrics;
  dir: string;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function startProxy(
  upstream: string,
  options: Partial<ModuleProxyOptions> & { dir?: string; store?: ObjectStore } = {},
): Promise<Proxy> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "modproxy-go-" });
  const metrics = new Metrics();
  const proxy = await createModuleProxy({
    cacheDir: join(dir, "module"),
    upstream,
    sumdbs: ["sum.test.local"],
    metrics,
    ...options,
  });
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(rawPathOf(req.url));
    return proxy.handle(req);
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.shutdown();
    await proxy.close();
    if (!options.dir) await Deno.remove(dir, { recursive: true });
  };
  return {
    url: `http://127.0.0.1:${server.addr.port}/mod`,
    seen,
    metrics,
    dir,
    close,
    [Symbol.asyncDispose]: close,
  };
}

interface GoResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A fresh GOPATH/GOMODCACHE per call site, loopback-only network. */
class GoEnv implements AsyncDisposable {
  readonly root: string;
  constructor(root: string) {
    this.root = root;
  }
  static async create(): Promise<GoEnv> {
    return new GoEnv(await Deno.makeTempDir({ prefix: "modproxy-gopath-" }));
  }
  async fresh(): Promise<void> {
    await Deno.remove(join(this.root, "gopath"), { recursive: true }).catch(() => {});
  }
  async run(args: string[], env: Record<string, string>, cwd?: string): Promise<GoResult> {
    const out = await new Deno.Command("go", {
      args,
      cwd: cwd ?? this.root,
      env: {
        GOTOOLCHAIN: "local",
        GOENV: "off",
        GOFLAGS: "-modcacherw",
        GOPATH: join(this.root, "gopath"),
        GOMODCACHE: join(this.root, "gopath/pkg/mod"),
        GOCACHE: GO.ok ? GO.gocache : join(this.root, "gocache"),
        GOCACHEPROG: "",
        GONOPROXY: "",
        GOPRIVATE: "",
        GONOSUMDB: "",
        GOINSECURE: "",
        GOWORK: "off",
        GOSUMDB: "off",
        HTTP_PROXY: "http://127.0.0.1:9",
        HTTPS_PROXY: "http://127.0.0.1:9",
        NO_PROXY: "127.0.0.1,localhost",
        ...env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

function ok(result: GoResult, what: string): GoResult {
  assert.equal(result.code, 0, `${what} failed:\n${result.stderr}`);
  return result;
}

async function consumerDir(root: string): Promise<string> {
  const dir = join(root, "consumer");
  await Deno.mkdir(dir, { recursive: true });
  for (const name of ["go.mod", "go.sum", "main.go"]) {
    await Deno.copyFile(join(FIXTURES, "consumer", name), join(dir, name));
  }
  return dir;
}

const upstreamRequests = (u: FakeUpstream, suffix: string) =>
  u.requests.filter((r) => r.endsWith(suffix)).length;

Deno.test({
  name: "go mod download and go build work through the proxy, then from its caches alone",
  ignore: IGNORE,
  async fn(t) {
    await using goenv = await GoEnv.create();
    const store = new MemoryObjectStore();
    const upstream = startFakeUpstream(TREE);
    const dir = await Deno.makeTempDir({ prefix: "modproxy-go-" });
    try {
      const consumer = await consumerDir(goenv.root);
      const build = async (proxy: Proxy) => {
        await goenv.fresh();
        const env = { GOPROXY: proxy.url };
        const dl = ok(
          await goenv.run(["mod", "download", "-json", "example.com/Hello@v1.0.0"], env),
          "go mod download",
        );
        assert.match(dl.stdout, /"Version": "v1.0.0"/);
        ok(await goenv.run(["build", "-o", "consumer.bin", "."], env, consumer), "go build");
        const run = await new Deno.Command(join(consumer, "consumer.bin")).output();
        assert.equal(new TextDecoder().decode(run.stderr), "hello, world\n");
      };
      await t.step("first run fetches %21hello .info/.mod/.zip from upstream", async () => {
        await using proxy = await startProxy(`${upstream.url}/ok`, { dir, store });
        await build(proxy);
        for (const ext of ["info", "mod", "zip"]) {
          assert.ok(proxy.seen.includes(`/mod/example.com/%21hello/@v/v1.0.0.${ext}`), ext);
          assert.equal(upstreamRequests(upstream, `!hello/@v/v1.0.0.${ext}`), 1, ext);
        }
      });
      await upstream.close();
      await t.step(
        "second run with the upstream stopped is served from the local cache",
        async () => {
          await using proxy = await startProxy(`${upstream.url}/ok`, { dir, store });
          await build(proxy);
          assert.equal(proxy.metrics.get("modproxy_upstream_errors"), 0);
          assert.equal(proxy.metrics.get("modproxy_immutable_misses"), 0);
          assert.ok(proxy.metrics.get("modproxy_immutable_hits") >= 3);
        },
      );
      await t.step(
        "third run with an empty local dir is served from the object store",
        async () => {
          await using proxy = await startProxy(`${upstream.url}/ok`, { store });
          await build(proxy);
          assert.equal(proxy.metrics.get("modproxy_upstream_errors"), 0);
          assert.ok(proxy.metrics.get("modproxy_immutable_store_hits") >= 3);
        },
      );
    } finally {
      await upstream.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const MINIO = await findMinio();
Deno.test({
  name: "go builds from a real MinIO bucket alone after a warm run uploaded the module files",
  ignore: IGNORE || (!MINIO && !Deno.env.get("CI")),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    if (!MINIO) throw new Error("Cannot run the MinIO case: run scripts/install_test_servers.sh");
    await using goenv = await GoEnv.create();
    await using minio = await startMinio();
    const consumer = await consumerDir(goenv.root);
    const s3 = {
      args: ["--sumdb=sum.test.local", `--s3=${minio.endpoint}#${minio.bucket}`],
      env: minio.env(),
    };
    const dirA = join(goenv.root, "proxy-a");
    const dirB = join(goenv.root, "proxy-b");
    {
      await using upstream = startFakeUpstream(TREE);
      await using proxy = await ProxyProcess.start(dirA, `${upstream.url}/ok`, s3);
      ok(
        await goenv.run(["build", "-o", "consumer.bin", "."], { GOPROXY: proxy.url }, consumer),
        "build",
      );
      const metrics = await proxy.stop();
      assert.equal(metrics.modproxy_store_errors ?? 0, 0, JSON.stringify(metrics));
      assert.ok(metrics.modproxy_store_puts! >= 2, JSON.stringify(metrics));
    }
    const keys = await minio.listKeys(minio.bucket, "module/");
    assert.ok(keys.includes(`module/${HELLO_ZIP}`), keys.join("\n"));
    await goenv.fresh();
    await using proxy = await ProxyProcess.start(dirB, "http://127.0.0.1:9/dead", s3);
    ok(
      await goenv.run(["build", "-o", "consumer.bin", "."], { GOPROXY: proxy.url }, consumer),
      "build",
    );
    const metrics = await proxy.stop();
    assert.ok(metrics.modproxy_immutable_store_hits! >= 2, JSON.stringify(metrics));
    assert.equal(metrics.modproxy_upstream_errors ?? 0, 0, JSON.stringify(metrics));
  },
});

Deno.test({
  name: "go resolves @latest, branch queries and +incompatible through the proxy",
  ignore: IGNORE,
  async fn(t) {
    await using goenv = await GoEnv.create();
    await using upstream = startFakeUpstream(TREE);
    await using proxy = await startProxy(`${upstream.url}/ok`, { mutableTtlMs: 0 });
    const env = { GOPROXY: proxy.url };
    await t.step("@latest with a non-empty list asks no @latest", async () => {
      const r = ok(
        await goenv.run(["mod", "download", "-json", "example.com/Hello@latest"], env),
        "dl",
      );
      assert.match(r.stdout, /"Version": "v1.1.0"/);
      assert.ok(proxy.seen.includes("/mod/example.com/%21hello/@v/list"));
      assert.ok(!proxy.seen.some((p) => p.startsWith("/mod/example.com/%21hello/@latest")));
    });
    await t.step("@latest with an empty list asks @latest", async () => {
      const r = ok(
        await goenv.run(["mod", "download", "-json", "example.com/pseudo@latest"], env),
        "dl",
      );
      assert.match(r.stdout, /"Version": "v0.0.0-20240102030405-abcdefabcdef"/);
      assert.ok(proxy.seen.includes("/mod/example.com/pseudo/@latest"));
    });
    await t.step("@latest 404 with an empty list fails", async () => {
      const r = await goenv.run(["mod", "download", "example.com/nolatest@latest"], env);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /no matching versions for query "latest"/);
    });
    await t.step("a branch query is mutable, its pseudo-version immutable", async () => {
      for (let i = 0; i < 2; i++) {
        await goenv.fresh();
        const r = ok(
          await goenv.run(["mod", "download", "-json", "example.com/pseudo@master"], env),
          "dl",
        );
        assert.match(r.stdout, /"Version": "v0.0.0-20240102030405-abcdefabcdef"/);
      }
      assert.equal(upstreamRequests(upstream, "pseudo/@v/master.info"), 2, "query refetched");
      assert.equal(
        upstreamRequests(upstream, "pseudo/@v/v0.0.0-20240102030405-abcdefabcdef.zip"),
        1,
      );
      assert.equal(
        upstreamRequests(upstream, "pseudo/@v/v0.0.0-20240102030405-abcdefabcdef.mod"),
        1,
      );
    });
    await t.step("+incompatible with its checksum-database lookup", async () => {
      await goenv.fresh();
      const r = ok(
        await goenv.run(["mod", "download", "-json", "example.com/old@v2.0.0+incompatible"], {
          ...env,
          GOSUMDB: VKEY,
        }),
        "dl",
      );
      assert.match(r.stdout, /"GoModSum": "h1:/);
      assert.ok(proxy.seen.includes("/mod/example.com/old/@v/v2.0.0+incompatible.zip"));
      assert.ok(
        proxy.seen.includes("/mod/sumdb/sum.test.local/lookup/example.com/old@v2.0.0+incompatible"),
      );
    });
    await t.step("prefix probing 404s are cached briefly", async () => {
      const mod = join(goenv.root, "probe");
      await Deno.mkdir(mod, { recursive: true });
      await Deno.writeTextFile(join(mod, "go.mod"), "module example.com/probe\n\ngo 1.21\n");
      const negative = new Metrics();
      await using p2 = await startProxy(`${upstream.url}/ok`, { metrics: negative });
      for (let i = 0; i < 2; i++) {
        const r = await goenv.run(["get", "example.com/Hello/sub/pkg"], { GOPROXY: p2.url }, mod);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /does not contain package example.com\/Hello\/sub\/pkg/);
      }
      assert.ok(p2.seen.includes("/mod/example.com/%21hello/sub/pkg/@v/list"));
      assert.equal(upstreamRequests(upstream, "!hello/sub/pkg/@v/list"), 1);
      assert.ok(negative.get("modproxy_mutable_negative_hits") >= 1);
    });
  },
});

Deno.test({
  name: "go falls through GOPROXY lists and reaches the test sumdb both ways",
  ignore: IGNORE,
  async fn(t) {
    await using goenv = await GoEnv.create();
    await using upstream = startFakeUpstream(TREE);
    await using proxy = await startProxy(`${upstream.url}/404,${upstream.url}/ok`);
    await t.step("client list: dead entry then the proxy with |", async () => {
      ok(
        await goenv.run(["mod", "download", "example.com/Hello@v1.0.0"], {
          GOPROXY: `http://127.0.0.1:9/dead|${proxy.url}`,
        }),
        "dl",
      );
    });
    await t.step("client list: dead entry then the proxy with , is terminal", async () => {
      await goenv.fresh();
      const r = await goenv.run(["mod", "download", "example.com/Hello@v1.0.0"], {
        GOPROXY: `http://127.0.0.1:9/dead,${proxy.url}`,
      });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /connection refused/);
    });
    await t.step("sumdb via /supported (GOSUMDB is the key alone)", async () => {
      await goenv.fresh();
      proxy.seen.length = 0;
      ok(
        await goenv.run(["mod", "download", "example.com/Hello@v1.1.0"], {
          GOPROXY: proxy.url,
          GOSUMDB: VKEY,
        }),
        "dl",
      );
      assert.ok(proxy.seen.includes("/mod/sumdb/sum.test.local/supported"));
      assert.ok(
        proxy.seen.includes("/mod/sumdb/sum.test.local/lookup/example.com/%21hello@v1.1.0"),
      );
      assert.ok(proxy.seen.some((p) => p.startsWith("/mod/sumdb/sum.test.local/tile/8/0/")));
    });
    await t.step("sumdb via an explicit GOSUMDB URL (no /supported)", async () => {
      await goenv.fresh();
      proxy.seen.length = 0;
      ok(
        await goenv.run(["mod", "download", "example.com/Hello@v1.0.0"], {
          GOPROXY: proxy.url,
          GOSUMDB: `${VKEY} ${proxy.url}/sumdb/sum.test.local`,
        }),
        "dl",
      );
      assert.ok(!proxy.seen.some((p) => p.endsWith("/supported")));
      assert.ok(
        proxy.seen.includes("/mod/sumdb/sum.test.local/lookup/example.com/%21hello@v1.0.0"),
      );
    });
    await t.step(
      "a database not on the allow-list: 404 on /supported, client goes direct",
      async () => {
        await goenv.fresh();
        await using other = await startProxy(`${upstream.url}/ok`, { sumdbs: ["sum.golang.org"] });
        const r = await goenv.run(["mod", "download", "example.com/Hello@v1.0.0"], {
          GOPROXY: other.url,
          GOSUMDB: VKEY,
        });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /https:\/\/sum\.test\.local\/lookup/);
        assert.ok(other.seen.includes("/mod/sumdb/sum.test.local/supported"));
      },
    );
  },
});

Deno.test({
  name: "a tampered upstream zip gives SECURITY ERROR, then the proxy stops serving it",
  ignore: IGNORE,
  async fn() {
    await using goenv = await GoEnv.create();
    await using upstream = startFakeUpstream(TREE);
    upstream.overrides.set("example.com/!hello/@v/v1.0.0.zip", {
      status: 200,
      body: await Deno.readFile(join(FIXTURES, "tampered", HELLO_ZIP)),
    });
    await using proxy = await startProxy(`${upstream.url}/ok`);
    const consumer = await consumerDir(goenv.root);
    const first = await goenv.run(
      ["build", "-o", "consumer.bin", "."],
      { GOPROXY: proxy.url },
      consumer,
    );
    assert.notEqual(first.code, 0);
    assert.match(first.stderr, /checksum mismatch/);
    assert.match(first.stderr, /SECURITY ERROR/);
    // A client that consults the checksum database through the proxy teaches it the hash.
    await goenv.fresh();
    const second = await goenv.run(["mod", "download", "example.com/Hello@v1.0.0"], {
      GOPROXY: proxy.url,
      GOSUMDB: VKEY,
    });
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, /Checksum mismatch for example.com\/Hello@v1.0.0 zip/);
    assert.equal(proxy.metrics.get("modproxy_evictions"), 1);
    await assert.rejects(Deno.stat(join(proxy.dir, "module", HELLO_ZIP)), Deno.errors.NotFound);
    // Once upstream is repaired, the genuine zip flows again.
    upstream.overrides.clear();
    await goenv.fresh();
    ok(
      await goenv.run(["build", "-o", "consumer.bin", "."], { GOPROXY: proxy.url }, consumer),
      "build",
    );
  },
});

Deno.test({
  name: "an upstream outage serves stale lists and fails uncached zips with a message",
  ignore: IGNORE,
  async fn() {
    await using goenv = await GoEnv.create();
    const upstream = startFakeUpstream(TREE);
    await using proxy = await startProxy(`${upstream.url}/ok`, { mutableTtlMs: 0 });
    const env = { GOPROXY: proxy.url };
    const before = ok(
      await goenv.run(["list", "-m", "-versions", "example.com/Hello"], env),
      "list",
    );
    await upstream.close();
    const after = ok(
      await goenv.run(["list", "-m", "-versions", "example.com/Hello"], env),
      "list",
    );
    assert.equal(after.stdout, before.stdout);
    assert.equal(after.stdout, "example.com/Hello v1.0.0 v1.1.0\n");
    assert.equal(proxy.metrics.get("modproxy_mutable_stale"), 1);
    const r = await goenv.run(["mod", "download", "example.com/Hello@v1.1.0"], env);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /502 Bad Gateway/);
    assert.match(r.stderr, /Cannot fetch example.com\/!hello\/@v\/v1.1.0.(info|zip) from upstream/);
  },
});

Deno.test({
  name: "a toolchain switch asks the proxy for the toolchain zip and gets a 404",
  ignore: IGNORE,
  async fn() {
    await using goenv = await GoEnv.create();
    await using upstream = startFakeUpstream(TREE);
    await using proxy = await startProxy(`${upstream.url}/ok`);
    const r = await goenv.run(["version"], { GOPROXY: proxy.url, GOTOOLCHAIN: "go1.99.0" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /toolchain not available/);
    assert.ok(
      proxy.seen.some((p) =>
        /^\/mod\/golang\.org\/toolchain\/@v\/v0\.0\.1-go1\.99\.0\.[a-z0-9]+-[a-z0-9]+\.zip$/.test(p)
      ),
      proxy.seen.join("\n"),
    );
  },
});

/** Sends one raw HTTP/1.1 request (no URL normalisation) and returns the status code. */
async function rawStatus(port: number, method: string, target: string): Promise<number> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(
      `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    ),
  );
  const buf = new Uint8Array(4096);
  let text = "";
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
    if (text.includes("\r\n")) break;
  }
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}

Deno.test("path attacks on a real server get 400/404/405 and never reach upstream", async () => {
  await using upstream = startFakeUpstream(TREE);
  await using proxy = await startProxy(`${upstream.url}/ok`);
  const port = Number(new URL(proxy.url).port);
  const table: [string, string, number][] = [
    ["GET", "/mod/example.com/../../etc/passwd", 400],
    ["GET", "/mod/example.com/%2e%2e/%2e%2e/etc/passwd", 400],
    ["GET", "/mod/example.com/%2E%2E/x/@v/list", 400],
    ["GET", "/mod//evil.example/x/@v/list", 400],
    ["GET", "/mod/example.com\\x/@v/list", 400],
    ["GET", "/mod/example.com/x/@v/list/", 400],
    ["GET", "/mod/example.com%2fx/@v/list", 400],
    ["GET", "/mod/example.com/x/@v/%00.info", 400],
    ["GET", "/mod/sumdb/sum.test.local/lookup/../../x", 400],
    ["GET", "/mod/sumdb/sum.test.local/tile/8/0/x/../000", 400],
    ["GET", "/mod/example.com/Hello/@v/list", 404],
    ["GET", "/mod/example.com/!/@v/list", 404],
    ["GET", "/mod/example.com/%21%21x/@v/list", 404],
    ["GET", "/mod/example.com/x/@v/v1.0.0.ziphash", 404],
    ["GET", "/mod/example.com/x/@v/master.zip", 404],
    ["GET", "/mod/sumdb/evil.example/latest", 404],
    ["GET", "/mod/sumdb/sum.test.local/lookup/example.com/x", 404],
    ["POST", "/mod/example.com/x/@v/list", 405],
    ["GET", "/etc/passwd", 404],
  ];
  for (const [method, target, want] of table) {
    assert.equal(await rawStatus(port, method, target), want, `${method} ${target}`);
  }
  assert.deepEqual(upstream.requests, []);
});
