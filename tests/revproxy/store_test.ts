import assert from "node:assert/strict";
import { MemoryObjectStore, ReadThroughStore } from "../../src/store/mod.ts";
import { LocalCache } from "../../src/cache/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { cacheKey, encodeHead, keyedUrl, parseHead } from "../../src/revproxy/entry.ts";
import { bucketKey, RevproxyStore } from "../../src/revproxy/store.ts";

const URL_A = keyedUrl({ scheme: "https", host: "Example.COM", port: 443 }, "/a?x=1");

async function put(store: RevproxyStore, url: string, body: string): Promise<string> {
  const key = cacheKey(url);
  const writer = await store.create(key, url, new Headers({ "content-type": "text/plain" }));
  await writer.write(new TextEncoder().encode(body));
  await store.commitLocal(key, writer);
  return key;
}

async function bodyOf(object: Awaited<ReturnType<RevproxyStore["open"]>>): Promise<string> {
  assert.ok(object);
  if (object.bytes) return new TextDecoder().decode(object.bytes);
  return await new Response(object.file!.readable).text();
}

Deno.test("keyedUrl() and cacheKey() key the whole URL: scheme, host, port, path, query", () => {
  assert.equal(URL_A, "https://example.com:443/a?x=1");
  const keys = new Set([
    URL_A,
    keyedUrl({ scheme: "http", host: "example.com", port: 443 }, "/a?x=1"),
    keyedUrl({ scheme: "https", host: "example.org", port: 443 }, "/a?x=1"),
    keyedUrl({ scheme: "https", host: "example.com", port: 8443 }, "/a?x=1"),
    keyedUrl({ scheme: "https", host: "example.com", port: 443 }, "/a"),
  ].map(cacheKey));
  assert.equal(keys.size, 5);
  assert.match(cacheKey(URL_A), /^[0-9a-f]{64}$/);
});

Deno.test("encodeHead() writes tailscale's format that parseHead() reads back", () => {
  const head = encodeHead(
    new Headers({ "content-type": "text/plain", etag: '"x"', "x-other": "dropped" }),
    URL_A,
    "ab".repeat(32),
  );
  const text = new TextDecoder().decode(head);
  assert.equal(
    text,
    `Content-Type: text/plain\nEtag: "x"\nX-Cache-Url: ${URL_A}\nX-Body-Sha256: ${
      "ab".repeat(32)
    }\n\n`,
  );
  const bytes = new Uint8Array([...head, 1, 2, 3]);
  const parsed = parseHead(bytes)!;
  assert.equal(parsed.url, URL_A);
  assert.equal(parsed.bodyOffset, head.length);
  assert.equal(parsed.headers.get("etag"), '"x"');
  assert.equal(parsed.headers.has("x-body-sha256"), false);
  assert.equal(parseHead(new TextEncoder().encode("Content-Type: x\n\nbody")), undefined);
});

Deno.test("RevproxyStore writes, checks and uploads objects; a bad digest is a miss", async () => {
  const dir = await Deno.makeTempDir();
  const bucket = new MemoryObjectStore();
  const metrics = new Metrics();
  const store = new RevproxyStore(`${dir}/revproxy`, { store: bucket, metrics });
  const key = await put(store, URL_A, "hello");
  assert.equal(await bodyOf(await store.open(key, URL_A)), "hello");
  await store.close();
  assert.ok(bucket.objects.has(bucketKey(key)));
  // An object holding another URL than its key's is never served (and removed).
  assert.equal(await store.open(key, "https://other:443/"), undefined);
  assert.equal(metrics.get("revproxy_corrupt"), 1);

  // Another process: the digest is checked on first use.
  const key2 = await put(new RevproxyStore(`${dir}/revproxy`), URL_A + "2", "world");
  const path = `${dir}/revproxy/${key2.slice(0, 2)}/${key2}`;
  const text = await Deno.readTextFile(path);
  await Deno.writeTextFile(path, text.replace("world", "WORLD"));
  const other = new RevproxyStore(`${dir}/revproxy`, { metrics });
  assert.equal(await other.open(key2, URL_A + "2"), undefined);
  assert.equal(metrics.get("revproxy_corrupt"), 2);
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("RevproxyStore.fill() copies from the bucket, checked, from read prefixes too", async () => {
  const dir = await Deno.makeTempDir();
  const main = new MemoryObjectStore();
  const writer = new RevproxyStore(`${dir}/w`, { store: main });
  const key = await put(writer, URL_A, "x".repeat(300_000));
  await writer.close();
  const metrics = new Metrics();
  const own = new MemoryObjectStore();
  const reader = new RevproxyStore(`${dir}/r`, {
    store: new ReadThroughStore(own, { readStores: [main] }),
    metrics,
  });
  assert.equal(await reader.fill(key, URL_A), true);
  assert.equal(metrics.get("revproxy_store_read_prefix_hits"), 1);
  assert.equal((await bodyOf(await reader.open(key, URL_A))).length, 300_000);

  // A tampered bucket object is refused and nothing is kept.
  const bytes = main.objects.get(bucketKey(key))!;
  bytes[bytes.length - 1] = 0x79;
  const fresh = new RevproxyStore(`${dir}/f`, { store: main, metrics });
  assert.equal(await fresh.fill(key, URL_A), false);
  assert.equal(await fresh.open(key, URL_A), undefined);
  assert.equal(metrics.get("revproxy_corrupt"), 1);
  // An object for another URL under this key is refused too.
  assert.equal(await fresh.fill(key, URL_A + "?other"), false);
  await reader.close();
  await fresh.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("RevproxyStore on a read-only bucket uploads nothing", async () => {
  const dir = await Deno.makeTempDir();
  const bucket = new MemoryObjectStore();
  const metrics = new Metrics();
  const store = new RevproxyStore(`${dir}/revproxy`, {
    store: new ReadThroughStore(bucket, { readOnly: true }),
    metrics,
  });
  await put(store, URL_A, "hello");
  await store.close();
  assert.equal(bucket.objects.size, 0);
  assert.equal(metrics.get("revproxy_store_uploads_skipped_read_only"), 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--max-size and --expiry count the proxy's objects, not its CA", async () => {
  const dir = await Deno.makeTempDir();
  const store = new RevproxyStore(`${dir}/revproxy`);
  const old = await put(store, URL_A, "o".repeat(4000));
  const recent = await put(store, URL_A + "b", "r".repeat(4000));
  await Deno.writeTextFile(`${dir}/revproxy/ca.pem`, "ca");
  const oldPath = `${dir}/revproxy/${old.slice(0, 2)}/${old}`;
  const recentPath = `${dir}/revproxy/${recent.slice(0, 2)}/${recent}`;
  const dayAgo = (Date.now() - 86_400_000) / 1000;
  await Deno.utime(oldPath, dayAgo, dayAgo);
  await Deno.utime(recentPath, dayAgo + 3600, dayAgo + 3600);
  const local = await LocalCache.open(dir);
  const trimmed = await local.trim(5000);
  assert.equal(trimmed.outputs, 1);
  await assert.rejects(Deno.stat(oldPath), Deno.errors.NotFound);
  await Deno.stat(recentPath);
  const pruned = await local.prune(3_600_000);
  assert.equal(pruned.outputs, 1);
  await assert.rejects(Deno.stat(recentPath), Deno.errors.NotFound);
  assert.equal(await Deno.readTextFile(`${dir}/revproxy/ca.pem`), "ca");
  await Deno.remove(dir, { recursive: true });
});
