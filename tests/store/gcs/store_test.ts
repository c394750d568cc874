/**
 * Tests of `src/store/gcs/`: the GCS adapter passes the store conformance suite against a real
 * fake-gcs-server on loopback; its URLs, error answers and their kinds, credentials (a key file,
 * workload identity federation against a loopback STS, none at all).
 *
 * @module
 */
import assert from "node:assert/strict";
import { GcsObjectStore } from "../../../src/store/gcs/store.ts";
import { requestUrl } from "../../../src/store/gcs/_request.ts";
import { classifyGcs, responseError } from "../../../src/store/gcs/_errors.ts";
import { apiBase, credentialsError } from "../../../src/store/gcs/_connection.ts";
import { StoreError } from "../../../src/store/object_store.ts";
import { findFakeGcs, startFakeGcs } from "../../_util/fake_gcs.ts";
import { freePort } from "../../_util/net.ts";
import { needs } from "../../_util/go.ts";
import { storeConformance } from "../_conformance.ts";

// `deno task test:unit` (GCP_SKIP_TEST_SERVERS=1) runs without test servers on every OS; the
// Linux gate runs these tests with fake-gcs-server, and there a missing one fails them.
const unitOnly = Deno.env.get("GCP_SKIP_TEST_SERVERS") === "1";
const skipFakeGcs = unitOnly ||
  await needs("fake-gcs-server (scripts/install_test_servers.sh)", findFakeGcs());

// A missing bucket: Google answers a read with "The specified bucket does not exist" (a config
// error, checked on that answer below), but fake-gcs-server answers it as it answers a missing
// object, so the suite's missing-bucket step is left out here; an upload to a missing bucket is
// checked against fake-gcs-server below.
storeConformance("Google Cloud Storage (fake-gcs-server)", async () => {
  const gcs = await startFakeGcs();
  const on = (bucket: string, endpoint = gcs.endpoint) => new GcsObjectStore({ bucket, endpoint });
  return {
    store: on(gcs.bucket),
    unreachable: on(gcs.bucket, `http://127.0.0.1:${freePort()}`),
    async [Symbol.asyncDispose]() {
      await gcs[Symbol.asyncDispose]();
    },
  };
}, { ignore: skipFakeGcs });

Deno.test("apiBase() reads STORAGE_EMULATOR_HOST as Google's clients do", () => {
  assert.equal(apiBase("localhost:4443"), "http://localhost:4443");
  assert.equal(apiBase("http://127.0.0.1:9023/"), "http://127.0.0.1:9023");
  assert.equal(apiBase("https://gcs.test/storage/v1/"), "https://gcs.test");
  assert.equal(apiBase("http://gcs.test/base/"), "http://gcs.test/base");
  assert.throws(
    () => apiBase("ftp://x"),
    (e) => e instanceof StoreError && e.kind === "config",
  );
  assert.throws(() => apiBase("http://[::"), StoreError);
});

Deno.test("requestUrl() names objects by the JSON API, the name one path segment", () => {
  const key = { bucket: "b", fullKey: "ci/action/0a/0a1b" };
  assert.deepEqual(requestUrl("https://storage.googleapis.com", { op: "GET", ...key }), {
    method: "GET",
    url: "https://storage.googleapis.com/storage/v1/b/b/o/ci%2Faction%2F0a%2F0a1b?alt=media",
  });
  assert.equal(
    requestUrl("http://h", { op: "HEAD", ...key }).url,
    "http://h/storage/v1/b/b/o/ci%2Faction%2F0a%2F0a1b?fields=size",
  );
  assert.deepEqual(requestUrl("http://h", { op: "PUT", ...key }), {
    method: "POST",
    url: "http://h/upload/storage/v1/b/b/o?uploadType=media&name=ci%2Faction%2F0a%2F0a1b" +
      "&fields=size",
  });
});

function answer(status: number, error?: { message: string; reason?: string }): Response {
  const body = error
    ? JSON.stringify({
      error: { code: status, message: error.message, errors: [{ reason: error.reason ?? "" }] },
    })
    : "Not Found";
  return new Response(body, { status });
}

Deno.test("responseError() and classifyGcs() give each GCS answer its kind", async () => {
  const kinds: [Response, string, string, RegExp][] = [
    [answer(401, { message: "Invalid Credentials", reason: "authError" }), "GET", "config", /401/],
    [
      answer(403, {
        message: "sa@p.iam.gserviceaccount.com does not have storage.objects.get access",
        reason: "forbidden",
      }),
      "GET",
      "config",
      /storage\.objects\.get/,
    ],
    [
      answer(403, { message: "Rate limit", reason: "rateLimitExceeded" }),
      "PUT",
      "other",
      /rateLimitExceeded/,
    ],
    [answer(404), "PUT", "config", /NoSuchBucket/],
    [
      answer(404, { message: "The specified bucket does not exist.", reason: "notFound" }),
      "GET",
      "config",
      /NoSuchBucket/,
    ],
    [answer(429, { message: "slow down", reason: "rateLimitExceeded" }), "GET", "other", /429/],
    [answer(503, { message: "Backend Error", reason: "backendError" }), "GET", "other", /503/],
  ];
  for (const [response, op, kind, message] of kinds) {
    const error = classifyGcs(await responseError(response, op), 'Cannot GET "k"');
    assert.equal(error.kind, kind, error.message);
    assert.match(error.message, message);
    assert.match(error.message, /^Cannot GET "k": /);
    assert.doesNotMatch(error.message, /\n/);
  }
  // A missing object is not an error at all: the data path turns it into a miss.
  assert.equal((await responseError(answer(404), "GET")).name, "NotFound");
  assert.equal(
    (await responseError(answer(404, { message: "No such object: b/k" }), "HEAD")).name,
    "NotFound",
  );
});

Deno.test("credentialsError() tells missing credentials from an unreachable token endpoint", () => {
  const none = credentialsError(new Error("Could not load the default credentials. Browse…"));
  assert.equal(none.kind, "config");
  assert.match(none.message, /^Cannot get Google Cloud credentials: Could not load/);
  const refused = credentialsError(
    new TypeError("fetch failed", { cause: new Error("Connection refused (os error 111)") }),
  );
  assert.equal(refused.kind, "unreachable");
  const busy = credentialsError(Object.assign(new Error("unavailable"), { status: 503 }));
  assert.equal(busy.kind, "other");
  const controller = new AbortController();
  controller.abort(new DOMException("t", "TimeoutError"));
  const late = credentialsError(new Error("x"), controller.signal);
  assert.equal(late.kind, "timeout");
  assert.match(late.message, /deadline exceeded/);
});

Deno.test({
  name: "GcsObjectStore on fake-gcs-server: put, get, has, misses, prefixes, streams",
  ignore: skipFakeGcs,
  async fn() {
    await using gcs = await startFakeGcs();
    const traces: string[] = [];
    const observed: string[] = [];
    const store = new GcsObjectStore({
      bucket: gcs.bucket,
      endpoint: gcs.endpoint,
      prefix: "ci",
      trace: (line) => traces.push(line),
      observe: (name) => observed.push(name),
    });
    assert.equal(await store.get("action/00/missing"), undefined);
    assert.equal(await store.has("action/00/missing"), false);
    const bytes = new TextEncoder().encode("hello, bucket");
    await store.put("output/ab/abc", bytes, { size: bytes.length });
    assert.equal(await store.has("output/ab/abc"), true);
    const got = await store.get("output/ab/abc");
    assert.equal(got?.size, bytes.length);
    assert.deepEqual(await new Response(got!.body).bytes(), bytes);
    assert.deepEqual(await gcs.getObject("ci/output/ab/abc"), bytes);
    // An empty object, a small stream (buffered, retriable) and a big one (streamed).
    await store.put("empty", new Uint8Array(0), { size: 0 });
    assert.equal((await store.get("empty"))?.size, 0);
    const big = crypto.getRandomValues(new Uint8Array(65536)).slice();
    const large = new Uint8Array(5 << 20);
    for (let i = 0; i < large.length; i += big.length) large.set(big, i);
    await store.put("large", ReadableStream.from(chunks(large, 1 << 16)), { size: large.length });
    const back = await store.get("large");
    assert.equal(back?.size, large.length);
    assert.deepEqual(await new Response(back!.body).bytes(), large);
    await store.put("small", ReadableStream.from(chunks(bytes, 3)), { size: bytes.length });
    assert.deepEqual(await gcs.getObject("ci/small"), bytes);
    // A stream shorter than announced fails, and nothing is stored.
    await assert.rejects(
      store.put("short", ReadableStream.from([bytes]), { size: bytes.length + 1 }),
    );
    assert.equal(await gcs.getObject("ci/short"), undefined);
    // withPrefix nests under the prefix; names with odd characters survive.
    const module = store.withPrefix("module");
    await module.put("cache/download/x/@v/v1.0.0+incompatible.zip", bytes, { size: bytes.length });
    assert.deepEqual(
      await gcs.listKeys(gcs.bucket, "ci/module/"),
      ["ci/module/cache/download/x/@v/v1.0.0+incompatible.zip"],
    );
    assert.ok(traces.some((l) => /^B GCS GET ci\/action\/00\/missing$/.test(l)), traces.join());
    assert.ok(traces.some((l) => /^E GCS HEAD ci\/action\/00\/missing M:1 /.test(l)));
    assert.ok(observed.length > 5 && observed.every((n) => n === "gcs_request_seconds"));
  },
});

Deno.test({
  name: "GcsObjectStore: a missing bucket is config, a closed port unreachable, a deadline timeout",
  ignore: skipFakeGcs,
  async fn() {
    await using gcs = await startFakeGcs();
    const bytes = new TextEncoder().encode("x");
    const missing = new GcsObjectStore({ bucket: "no-such-bucket", endpoint: gcs.endpoint });
    await assert.rejects(
      missing.put("k", bytes, { size: 1 }),
      (e) => e instanceof StoreError && e.kind === "config" && /NoSuchBucket/.test(e.message),
    );
    const closed = new GcsObjectStore({
      bucket: "b",
      endpoint: `http://127.0.0.1:${freePort()}`,
    });
    await assert.rejects(
      closed.get("k"),
      (e) => e instanceof StoreError && e.kind === "unreachable" && /ECONNREFUSED/.test(e.message),
    );
    // A server that accepts and never answers.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) held.push(conn);
    })();
    try {
      const stalled = new GcsObjectStore({
        bucket: "b",
        endpoint: `http://127.0.0.1:${listener.addr.port}`,
        timeoutMs: 300,
      });
      const started = performance.now();
      await assert.rejects(
        stalled.has("k"),
        (e) => e instanceof StoreError && e.kind === "timeout" && /deadline/.test(e.message),
      );
      assert.ok(performance.now() - started < 3000);
    } finally {
      listener.close();
      await accepting.catch(() => {});
      for (const conn of held) conn.close();
    }
  },
});

Deno.test("GcsObjectStore: a key file that is not one is a config error, without the network", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gcp-gcskey-" });
  try {
    await Deno.writeTextFile(`${dir}/key.json`, "{ not json");
    const store = new GcsObjectStore({ bucket: "b", keyFile: `${dir}/key.json` });
    await assert.rejects(
      store.get("k"),
      (e) =>
        e instanceof StoreError && e.kind === "config" &&
        /^Cannot use the credentials file ".*key\.json" \(--gcs-key-file\): not JSON$/.test(
          e.message,
        ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function* chunks(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

Deno.test("GcsObjectStore: workload identity federation (an external-account file) on loopback", async () => {
  // The GitHub Actions set-up: a file holding the OIDC token, exchanged at the STS endpoint for
  // an access token. Here both the STS and the bucket are one loopback server.
  const dir = await Deno.makeTempDir({ prefix: "gcp-gcswif-" });
  const exchanges: URLSearchParams[] = [];
  let accepted = "token-1";
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const url = new URL(req.url);
      if (url.pathname === "/sts") {
        exchanges.push(new URLSearchParams(await req.text()));
        return Response.json({
          "access_token": `token-${exchanges.length}`,
          "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
          "token_type": "Bearer",
          "expires_in": 3600,
        });
      }
      if (req.headers.get("authorization") !== `Bearer ${accepted}`) {
        return Response.json({ error: { code: 401, message: "Invalid Credentials" } }, {
          status: 401,
        });
      }
      if (url.pathname === "/storage/v1/b/b/o/ci%2Fk" && url.searchParams.get("alt") === "media") {
        return new Response("object bytes");
      }
      return new Response("Not Found", { status: 404 });
    },
  );
  const origin = `http://127.0.0.1:${server.addr.port}`;
  try {
    await Deno.writeTextFile(`${dir}/oidc-token`, "eyJhbGciOi.github-oidc.token");
    await Deno.writeTextFile(
      `${dir}/wif.json`,
      JSON.stringify({
        type: "external_account",
        audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/" +
          "providers/github",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": `${origin}/sts`,
        "credential_source": { file: `${dir}/oidc-token` },
      }),
    );
    const store = new GcsObjectStore({
      bucket: "b",
      prefix: "ci",
      keyFile: `${dir}/wif.json`,
      apiEndpoint: origin,
    });
    // Eight calls at once, the first ones: one token exchange for all.
    const firsts = await Promise.all([...Array(8)].map(() => store.get("k")));
    for (const first of firsts) {
      assert.equal(await new Response(first!.body).text(), "object bytes");
    }
    assert.equal(await store.get("missing"), undefined);
    assert.equal(exchanges.length, 1, "the token is reused");
    assert.equal(exchanges[0]!.get("subject_token"), "eyJhbGciOi.github-oidc.token");
    assert.match(exchanges[0]!.get("scope") ?? "", /devstorage\.read_write/);
    // The token is revoked: a 401, then one more try with a new one.
    accepted = "token-2";
    const again = await store.get("k");
    assert.equal(await new Response(again!.body).text(), "object bytes");
    assert.equal(exchanges.length, 2);
    // Refused for good: a config error.
    accepted = "never";
    await assert.rejects(
      store.get("k"),
      (e) => e instanceof StoreError && e.kind === "config" && /HTTP 401/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("GcsObjectStore: no credentials anywhere is one config error, after a short probe", async () => {
  const home = await Deno.makeTempDir({ prefix: "gcp-gcshome-" });
  try {
    const port = freePort();
    const env: Record<string, string> = { HOME: home, GCE_METADATA_HOST: `127.0.0.1:${port}` };
    const store = new GcsObjectStore({ bucket: "b", env: (name) => env[name] });
    const started = performance.now();
    await assert.rejects(
      store.has("k"),
      (e) =>
        e instanceof StoreError && e.kind === "config" &&
        /^Cannot get Google Cloud credentials: none found: .*GOOGLE_APPLICATION_CREDENTIALS/
          .test(e.message) &&
        e.message.includes(`no metadata server answered at 127.0.0.1:${port}`),
    );
    assert.ok(performance.now() - started < 3000);
    // gcloud's application-default credentials are found in the home directory.
    await Deno.mkdir(`${home}/.config/gcloud`, { recursive: true });
    await Deno.writeTextFile(
      `${home}/.config/gcloud/application_default_credentials.json`,
      JSON.stringify({ type: "impersonated_service_account" }),
    );
    await assert.rejects(
      store.has("k"),
      (e) =>
        e instanceof StoreError && e.kind === "config" &&
        /gcloud's application-default credentials\): type "impersonated_service_account"/.test(
          e.message,
        ),
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("GcsObjectStore: tokens from the metadata server when no credentials file exists", async () => {
  const home = await Deno.makeTempDir({ prefix: "gcp-gcsmeta-" });
  const asked: string[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    asked.push(url.pathname);
    const flavor = { "metadata-flavor": "Google" };
    if (url.pathname.startsWith("/computeMetadata/v1/")) {
      if (req.headers.get("metadata-flavor") !== "Google") return new Response("", { status: 403 });
      if (url.pathname.endsWith("/service-accounts/default/token")) {
        return Response.json({
          "access_token": "from-metadata",
          "expires_in": 3599,
          "token_type": "Bearer",
        }, { headers: flavor });
      }
      return new Response("", { headers: flavor });
    }
    if (req.headers.get("authorization") !== "Bearer from-metadata") {
      return new Response("", { status: 401 });
    }
    return new Response("Not Found", { status: 404 });
  });
  const host = `127.0.0.1:${server.addr.port}`;
  // The library's metadata client reads the variable itself.
  const saved = Deno.env.get("GCE_METADATA_HOST");
  Deno.env.set("GCE_METADATA_HOST", host);
  try {
    const env: Record<string, string> = { HOME: home, GCE_METADATA_HOST: host };
    const store = new GcsObjectStore({
      bucket: "b",
      apiEndpoint: `http://${host}`,
      env: (name) => env[name],
    });
    assert.equal(await store.has("k"), false);
    assert.equal(await store.has("k"), false);
    assert.equal(
      asked.filter((p) => p.endsWith("/token")).length,
      1,
      `one token for both calls: ${asked.join(" ")}`,
    );
  } finally {
    if (saved === undefined) Deno.env.delete("GCE_METADATA_HOST");
    else Deno.env.set("GCE_METADATA_HOST", saved);
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test({
  name:
    "GcsObjectStore: an HTTPS endpoint signed by a private CA, trusted through gcloud's setting",
  ignore: skipFakeGcs,
  async fn() {
    await using gcs = await startFakeGcs({ tls: true });
    const bytes = new TextEncoder().encode("over TLS");
    const untrusted = new GcsObjectStore({
      bucket: gcs.bucket,
      endpoint: gcs.endpoint,
      env: () => undefined,
    });
    await assert.rejects(untrusted.put("k", bytes, { size: bytes.length }), StoreError);
    const env: Record<string, string> = { CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE: gcs.caFile! };
    const store = new GcsObjectStore({
      bucket: gcs.bucket,
      endpoint: gcs.endpoint,
      env: (name) => env[name],
    });
    await store.put("k", bytes, { size: bytes.length });
    assert.deepEqual(await new Response((await store.get("k"))!.body).bytes(), bytes);
    // A named bundle that cannot be read is a config error, in one line.
    env.CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE = `${gcs.caFile}.missing`;
    const broken = new GcsObjectStore({
      bucket: gcs.bucket,
      endpoint: gcs.endpoint,
      env: (name) => env[name],
    });
    await assert.rejects(
      broken.has("k"),
      (e) =>
        e instanceof StoreError && e.kind === "config" &&
        /CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE/.test(e.message) && !e.message.includes("\n"),
    );
  },
});
