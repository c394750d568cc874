/**
 * The caching proxy in process, with real parts: an HTTPS origin (`Deno.serve`, openssl test
 * certificate), the proxy's front on a loopback port, and Deno's `fetch` through it as
 * `HTTPS_PROXY` would send it (a client with `proxy` set, trusting the proxy's CA).
 */

import assert from "node:assert/strict";
import { MemoryObjectStore, ReadThroughStore, StoreError } from "../../src/store/mod.ts";
import { ServerMetrics } from "../../src/server/http.ts";
import { cacheKey, clientAllowed, keyedUrl, openRevProxy } from "../../src/revproxy/mod.ts";
import { generated, makeOriginCerts, startHttpsOrigin } from "../_util/https_upstream.ts";
import { canMount, mountTmpfs, unmount } from "../_util/mounts.ts";
import { createHash } from "node:crypto";
import { recordingLogger } from "../_util/logger.ts";

interface Setup extends AsyncDisposable {
  url: string;
  dir: string;
  caPem: string;
  metrics: ServerMetrics;
  log: ReturnType<typeof recordingLogger>;
  client: Deno.HttpClient;
  /** Waits until responses being kept are on disk. */
  idle(): Promise<void>;
  get(path: string, init?: RequestInit): Promise<{ status: number; xcache: string; body: string }>;
  close(): Promise<void>;
}

async function withProxy(
  options: {
    root: string;
    hosts: string[];
    caFile: string;
    store?: MemoryObjectStore | ReadThroughStore;
    name?: string;
    bodyIdleMs?: number;
    originPort: number;
  },
): Promise<Setup> {
  const dir = `${options.root}/${options.name ?? "a"}/revproxy`;
  const metrics = new ServerMetrics();
  const log = recordingLogger();
  const proxy = await openRevProxy({
    hosts: options.hosts,
    dir,
    store: options.store,
    env: (name) => name === "SSL_CERT_FILE" ? options.caFile : undefined,
    log,
    metrics,
    bodyIdleMs: options.bodyIdleMs,
  });
  const inner = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("status page\n"),
  );
  const front = await proxy.listen("127.0.0.1:0", `127.0.0.1:${inner.addr.port}`);
  const caPem = await Deno.readTextFile(proxy.caPath);
  const client = Deno.createHttpClient({ proxy: { url: front.url }, caCerts: [caPem] });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    client.close();
    await front.shutdown();
    await proxy.close();
    await inner.shutdown();
  };
  return {
    url: front.url,
    dir,
    caPem,
    metrics,
    log,
    client,
    idle: () => proxy.idle(),
    async get(path, init = {}) {
      const response = await fetch(`https://origin.localhost:${options.originPort}${path}`, {
        ...init,
        client,
      });
      return {
        status: response.status,
        xcache: response.headers.get("x-cache") ?? "",
        body: await response.text(),
      };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function objectFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  if (!await Deno.stat(dir).catch(() => undefined)) return found;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isDirectory || !/^[0-9a-f]{2}$/.test(entry.name)) continue;
    for await (const file of Deno.readDir(`${dir}/${entry.name}`)) found.push(file.name);
  }
  return found;
}

async function rawExchange(port: number, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(text));
    const buffer = new Uint8Array(4096);
    const n = await conn.read(buffer);
    return n === null ? "" : new TextDecoder().decode(buffer.subarray(0, n));
  } finally {
    conn.close();
  }
}

Deno.test("revproxy serves listed HTTPS origins through the cache by policy", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "gcp-revproxy-" });
  const certs = await makeOriginCerts(root);
  await using origin = startHttpsOrigin(certs);
  const bucket = new MemoryObjectStore();
  const host = `origin.localhost:${origin.port}`;
  await using proxy = await withProxy({
    root,
    hosts: [host],
    caFile: certs.caFile,
    store: bucket,
    originPort: origin.port,
  });

  await t.step("an immutable response is fetched once, then a local hit", async () => {
    const first = await proxy.get("/immutable/a");
    assert.deepEqual(first, { status: 200, xcache: "fetch, cached", body: "immutable a\n" });
    await proxy.idle();
    const second = await proxy.get("/immutable/a");
    assert.deepEqual(second, { status: 200, xcache: "hit, local", body: "immutable a\n" });
    assert.equal(origin.counts.get("/immutable/a"), 1);
    const key = cacheKey(
      keyedUrl({ scheme: "https", host: "origin.localhost", port: origin.port }, "/immutable/a"),
    );
    const text = await Deno.readTextFile(`${proxy.dir}/${key.slice(0, 2)}/${key}`);
    assert.match(text, /^Content-Type: text\/plain\n/);
    assert.match(text, /\nX-Body-Sha256: [0-9a-f]{64}\n\nimmutable a\n$/);
  });

  await t.step("a hit held in memory is dropped once its file is gone", async () => {
    for (let i = 0; i < 3; i++) {
      assert.equal(
        (await proxy.get("/immutable/hot")).xcache,
        i === 0 ? "fetch, cached" : "hit, local",
      );
      await proxy.idle();
    }
    const key = cacheKey(
      keyedUrl({ scheme: "https", host: "origin.localhost", port: origin.port }, "/immutable/hot"),
    );
    await Deno.remove(`${proxy.dir}/${key.slice(0, 2)}/${key}`);
    await new Promise((r) => setTimeout(r, 1100)); // a hot entry is looked at again after a second
    const again = await proxy.get("/immutable/hot");
    // Not from memory: from the bucket, where the first fetch was uploaded.
    assert.deepEqual(again, { status: 200, xcache: "hit, remote", body: "immutable hot\n" });
    assert.equal(origin.counts.get("/immutable/hot"), 1);
  });

  await t.step("the query is part of the key", async () => {
    assert.equal((await proxy.get("/immutable/a?v=2")).xcache, "fetch, cached");
    await proxy.idle();
    assert.equal((await proxy.get("/immutable/a?v=2")).xcache, "hit, local");
  });

  await t.step("must-revalidate beyond 60 days is kept on disk", async () => {
    assert.equal((await proxy.get("/revalidate/r")).xcache, "fetch, cached");
    await proxy.idle();
    assert.equal((await proxy.get("/revalidate/r")).xcache, "hit, local");
  });

  await t.step("a short max-age is kept in memory", async () => {
    const first = await proxy.get("/short/s");
    const second = await proxy.get("/short/s");
    assert.equal(first.body, "short s 1\n");
    assert.deepEqual(second, { status: 200, xcache: "hit, memory", body: "short s 1\n" });
  });

  await t.step(
    "private, credentialed, cookie-setting and varying responses are never kept",
    async () => {
      const before = (await objectFiles(proxy.dir)).length;
      for (const path of ["/private/p", "/cookie/c", "/vary/v"]) {
        assert.equal((await proxy.get(path)).xcache, "fetch, uncached", path);
        assert.equal((await proxy.get(path)).xcache, "fetch, uncached", path);
        assert.equal(origin.counts.get(path), 2, path);
      }
      const alice = await proxy.get("/auth/x", { headers: { authorization: "Bearer alice" } });
      const bob = await proxy.get("/auth/x", { headers: { authorization: "Bearer bob" } });
      assert.equal(alice.body, "auth Bearer alice 1\n");
      assert.equal(bob.body, "auth Bearer bob 2\n");
      const anonymous = await proxy.get("/auth/x");
      assert.equal(anonymous.body, "auth null 3\n");
      await proxy.idle();
      assert.equal(before + 1, (await objectFiles(proxy.dir)).length, "only the anonymous /auth/x");
      // What an anonymous request was given may be given to anyone.
      const withCookie = await proxy.get("/auth/x", { headers: { cookie: "k=v" } });
      assert.deepEqual(withCookie, { status: 200, xcache: "hit, local", body: "auth null 3\n" });
    },
  );

  await t.step("a public response to a request with credentials is kept", async () => {
    const init = { headers: { authorization: "Bearer alice" } };
    assert.equal((await proxy.get("/auth-public/y", init)).xcache, "fetch, cached");
    await proxy.idle();
    assert.equal((await proxy.get("/auth-public/y")).xcache, "hit, local");
  });

  await t.step("concurrent misses share one upstream fetch", async () => {
    origin.slowMs = 300;
    const answers = await Promise.all(Array.from({ length: 6 }, () => proxy.get("/slow/z")));
    for (const answer of answers) assert.equal(answer.body, "slow z\n");
    assert.equal(origin.counts.get("/slow/z"), 1);
    assert.ok(proxy.metrics.get("revproxy_collapsed") >= 5);
  });

  await t.step("a corrupted local object is refetched, not served", async () => {
    const key = cacheKey(
      keyedUrl({ scheme: "https", host: "origin.localhost", port: origin.port }, "/immutable/a"),
    );
    const path = `${proxy.dir}/${key.slice(0, 2)}/${key}`;
    const text = await Deno.readTextFile(path);
    await Deno.writeTextFile(path, text.replace("immutable a\n", "immutable b\n"));
    await using other = await withProxy({
      root,
      name: "a", // the same directory: a new process checks digests again
      hosts: [host],
      caFile: certs.caFile,
      originPort: origin.port,
    });
    const answer = await other.get("/immutable/a");
    assert.deepEqual(answer, { status: 200, xcache: "fetch, cached", body: "immutable a\n" });
    assert.equal(other.metrics.get("revproxy_corrupt"), 1);
  });

  await t.step("a fresh machine hits the bucket, and serves with the origin down", async () => {
    await proxy.close();
    assert.ok(bucket.objects.size >= 4, `uploaded: ${[...bucket.objects.keys()]}`);
    for (const key of bucket.objects.keys()) assert.match(key, /^[0-9a-f]{2}\/[0-9a-f]{64}$/);
    await origin.close();
    await using fresh = await withProxy({
      root,
      name: "b",
      hosts: [host],
      caFile: certs.caFile,
      store: bucket,
      originPort: origin.port,
    });
    assert.deepEqual(await fresh.get("/immutable/a"), {
      status: 200,
      xcache: "hit, remote",
      body: "immutable a\n",
    });
    assert.equal((await fresh.get("/immutable/a")).xcache, "hit, local");
    const down = await fresh.get("/immutable/never");
    assert.equal(down.status, 502);
  });
  await Deno.remove(root, { recursive: true });
});

Deno.test("revproxy tunnels unlisted hosts, passes other traffic on, and refuses abuse", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "gcp-revproxy-" });
  const certs = await makeOriginCerts(root);
  await using origin = startHttpsOrigin(certs);
  await using plainOrigin = startHttpsOrigin(certs, { tls: false });
  await using proxy = await withProxy({
    root,
    hosts: [`origin.localhost:${origin.port}`, `plain.localhost`],
    caFile: certs.caFile,
    originPort: origin.port,
  });
  const port = Number(new URL(proxy.url).port);

  await t.step("CONNECT to an unlisted host is tunnelled unchanged", async () => {
    const origCa = await Deno.readTextFile(certs.caFile);
    using client = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [origCa] });
    const response = await fetch(`https://localhost:${origin.port}/immutable/t`, { client });
    assert.equal(response.headers.get("x-cache"), null);
    assert.equal(await response.text(), "immutable t\n");
    assert.equal(proxy.metrics.get("revproxy_tunnels"), 1);
    assert.deepEqual(await objectFiles(proxy.dir), []);
  });

  await t.step("plain http to a listed host goes through the cache", async () => {
    using client = Deno.createHttpClient({ proxy: { url: proxy.url } });
    const url = `http://plain.localhost:${plainOrigin.port}/immutable/h`;
    const first = await fetch(url, { client });
    assert.equal(first.headers.get("x-cache"), "fetch, cached");
    await proxy.idle();
    assert.equal(await first.text(), "immutable h\n");
    const second = await fetch(url, { client });
    assert.equal(second.headers.get("x-cache"), "hit, local");
    await second.body?.cancel();
  });

  await t.step("plain http to an unlisted host is refused", async () => {
    using client = Deno.createHttpClient({ proxy: { url: proxy.url } });
    const response = await fetch(`http://other.localhost:${plainOrigin.port}/immutable/h`, {
      client,
    });
    assert.equal(response.status, 403);
    await response.body?.cancel();
  });

  await t.step("other requests reach the usual server unchanged", async () => {
    const response = await fetch(`${proxy.url}/`);
    assert.equal(await response.text(), "status page\n");
  });

  await t.step("CONNECT to the proxy's own port is refused", async () => {
    const answer = await rawExchange(port, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 403 /);
    const named = await rawExchange(port, `CONNECT localhost:${port} HTTP/1.1\r\n\r\n`);
    assert.match(named, /^HTTP\/1\.1 403 /);
  });

  await t.step("malformed targets, oversized heads and absurd lengths get 4xx", async () => {
    assert.match(await rawExchange(port, "CONNECT no-port HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(await rawExchange(port, "CONNECT a b HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(
      await rawExchange(port, "CONNECT ex:99999 HTTP/1.1\r\n\r\n"),
      /^HTTP\/1\.1 400 /,
    );
    const big = `CONNECT origin.localhost:${origin.port} HTTP/1.1\r\nX: ${
      "a".repeat(20000)
    }\r\n\r\n`;
    assert.match(await rawExchange(port, big), /^HTTP\/1\.1 431 /);
    const absurd = `POST http://plain.localhost:${plainOrigin.port}/x HTTP/1.1\r\n` +
      `Host: plain.localhost:${plainOrigin.port}\r\nContent-Length: 99999999999\r\n\r\n`;
    assert.match(await rawExchange(port, absurd), /^HTTP\/1\.1 413 /);
    assert.ok(proxy.metrics.get("revproxy_bad_requests") >= 5);
    assert.ok(proxy.metrics.get("revproxy_refused") >= 3);
  });

  await Deno.remove(root, { recursive: true });
});

Deno.test("revproxy with a read-only bucket reads it and writes nothing", async () => {
  const root = await Deno.makeTempDir({ prefix: "gcp-revproxy-" });
  const certs = await makeOriginCerts(root);
  await using origin = startHttpsOrigin(certs);
  const bucket = new MemoryObjectStore();
  const store = new ReadThroughStore(bucket, { readOnly: true });
  {
    await using proxy = await withProxy({
      root,
      hosts: [`origin.localhost:${origin.port}`],
      caFile: certs.caFile,
      store,
      originPort: origin.port,
    });
    assert.equal((await proxy.get("/immutable/ro")).xcache, "fetch, cached");
    await proxy.idle();
    await proxy.close();
    assert.equal(proxy.metrics.get("revproxy_store_uploads_skipped_read_only"), 1);
  }
  assert.equal(bucket.objects.size, 0);
  await Deno.remove(root, { recursive: true });
});

Deno.test("revproxy gives up on an origin that stops sending, and keeps nothing", async () => {
  const root = await Deno.makeTempDir({ prefix: "gcp-revproxy-" });
  const certs = await makeOriginCerts(root);
  await using origin = startHttpsOrigin(certs);
  {
    await using proxy = await withProxy({
      root,
      hosts: [`origin.localhost:${origin.port}`],
      caFile: certs.caFile,
      originPort: origin.port,
      bodyIdleMs: 300,
    });
    const both = await Promise.allSettled([proxy.get("/stall/s"), proxy.get("/stall/s")]);
    for (const result of both) assert.equal(result.status, "rejected");
    await proxy.idle();
    assert.deepEqual(await objectFiles(proxy.dir), []);
    assert.equal(origin.counts.get("/stall/s"), 1);
    assert.match(proxy.log.warnings.join("\n"), /no body bytes for 0\.3s/);
  }
  await Deno.remove(root, { recursive: true });
});

Deno.test("revproxy: disk and bucket faults cost a fetch from the origin, never a failed request", async () => {
  const root = await Deno.makeTempDir({ prefix: "gcp-revproxy-" });
  const certs = await makeOriginCerts(root);
  await using origin = startHttpsOrigin(certs);
  class BrokenBucket extends MemoryObjectStore {
    override get(): Promise<undefined> {
      return Promise.reject(new StoreError("Cannot get: connection refused", "unreachable"));
    }
  }
  {
    await using proxy = await withProxy({
      root,
      hosts: [`origin.localhost:${origin.port}`],
      caFile: certs.caFile,
      store: new BrokenBucket(),
      originPort: origin.port,
    });
    const at = (path: string) =>
      cacheKey(keyedUrl({ scheme: "https", host: "origin.localhost", port: origin.port }, path));
    // The bucket fails: fetched and kept locally.
    assert.deepEqual(await proxy.get("/immutable/b1"), {
      status: 200,
      xcache: "fetch, cached",
      body: "immutable b1\n",
    });
    // The object's directory cannot be made (a file is in the way): passed through.
    const blocked = at("/immutable/d1");
    await Deno.mkdir(proxy.dir, { recursive: true });
    await Deno.writeTextFile(`${proxy.dir}/${blocked.slice(0, 2)}`, "in the way");
    assert.deepEqual(await proxy.get("/immutable/d1"), {
      status: 200,
      xcache: "fetch, uncached",
      body: "immutable d1\n",
    });
    // The object cannot be read (a directory where the file should be): fetched again.
    const unreadable = at("/immutable/d2");
    await Deno.mkdir(`${proxy.dir}/${unreadable.slice(0, 2)}/${unreadable}`, { recursive: true });
    const answer = await proxy.get("/immutable/d2");
    assert.equal(answer.status, 200);
    assert.equal(answer.body, "immutable d2\n");
    assert.ok(proxy.metrics.get("revproxy_disk_errors") >= 2);
    assert.ok(proxy.metrics.get("revproxy_store_errors") >= 1);
  }
  await Deno.remove(root, { recursive: true });
});

Deno.test({
  name: "revproxy: a disk that fills up mid-body still gives every client the whole body",
  ignore: !canMount(),
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gcp-revproxy-" });
    const certs = await makeOriginCerts(root);
    await using origin = startHttpsOrigin(certs);
    const dir = `${root}/full/revproxy`;
    await mountTmpfs(dir, "1m");
    try {
      await using proxy = await withProxy({
        root,
        name: "full",
        hosts: [`origin.localhost:${origin.port}`],
        caFile: certs.caFile,
        originPort: origin.port,
      });
      const size = 4 << 20;
      const expected = await digest(generated(size));
      const answers = await Promise.all([0, 1].map(async () => {
        const response = await fetch(`https://origin.localhost:${origin.port}/big/${size}`, {
          client: proxy.client,
        });
        return { status: response.status, digest: await digest(response.body!) };
      }));
      for (const answer of answers) assert.deepEqual(answer, { status: 200, digest: expected });
      assert.equal(origin.counts.get(`/big/${size}`), 1);
      assert.ok(proxy.metrics.get("revproxy_disk_errors") >= 1);
      await proxy.idle();
      assert.deepEqual(await objectFiles(dir), [], "nothing kept, the partial file removed");
      await proxy.close();
    } finally {
      await unmount(dir);
      await Deno.remove(root, { recursive: true });
    }
  },
});

async function digest(body: ReadableStream<Uint8Array>): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of body) hash.update(chunk);
  return hash.digest("hex");
}

Deno.test("clientAllowed() takes loopback always and others only when listed", () => {
  assert.ok(clientAllowed("127.0.0.1", []));
  assert.ok(clientAllowed("::1", []));
  assert.ok(clientAllowed("::ffff:127.0.0.5", []));
  assert.ok(!clientAllowed("10.1.2.3", []));
  assert.ok(clientAllowed("10.1.2.3", ["10.0.0.0/8"]));
  assert.ok(!clientAllowed("11.1.2.3", ["10.0.0.0/8"]));
  assert.ok(clientAllowed("192.168.1.5", ["192.168.1.5"]));
  assert.ok(clientAllowed("2001:db8::1", ["*"]));
});
