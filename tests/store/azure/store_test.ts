/**
 * AzureBlobStore against a real Azurite (Shared Key checked, SAS tokens made by Microsoft's own
 * library), and its bearer-token path against a loopback blob endpoint with a managed identity
 * endpoint in front of `@azure/identity` (App Service's IDENTITY_ENDPOINT protocol).
 */
import assert from "node:assert/strict";
import { AzureBlobStore } from "../../../src/store/azure/store.ts";
import { StoreError } from "../../../src/store/object_store.ts";
import { openStore } from "../../../src/store/open.ts";
import { findAzurite, startAzurite } from "../../_util/azurite.ts";
import { needs } from "../../_util/go.ts";
import { freePort } from "../../_util/net.ts";

// `deno task test:unit` (GCP_SKIP_TEST_SERVERS=1) runs without test servers; the Linux gate runs
// the Azurite test, and there a missing Azurite fails it.
const unitOnly = Deno.env.get("GCP_SKIP_TEST_SERVERS") === "1";
const skipAzurite = unitOnly ||
  await needs("Azurite (scripts/install_test_servers.sh)", findAzurite());
const noEnv = () => undefined;

function kindOf(error: unknown): string {
  assert.ok(error instanceof StoreError, `a StoreError: ${error}`);
  return error.kind;
}

Deno.test({
  name: "AzureBlobStore on Azurite: put, get, has, misses, big streams, SAS, errors by kind",
  ignore: skipAzurite,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using azurite = await startAzurite();
    const observed: string[] = [];
    const store = openStore({
      kind: "azure",
      container: azurite.container,
      account: "",
      connectionString: azurite.connectionString(),
      endpoint: "",
    }, { observe: (name) => observed.push(name) }).withPrefix("ci");
    await t.step("a missing blob is a miss on get and has", async () => {
      assert.equal(await store.get("action/00/none"), undefined);
      assert.equal(await store.has("action/00/none"), false);
    });
    await t.step("put then get and has, under the prefix", async () => {
      await store.put("action/0a/k1", new TextEncoder().encode("hello"), { size: 5 });
      const object = await store.get("action/0a/k1");
      assert.equal(object?.size, 5);
      assert.equal(await new Response(object!.body).text(), "hello");
      assert.equal(await store.has("action/0a/k1"), true);
      assert.deepEqual(await azurite.listKeys(), ["ci/action/0a/k1"]);
      assert.ok(observed.length >= 3 && observed.every((n) => n === "azure_request_seconds"));
    });
    await t.step("an empty blob and a 6 MiB stream sent as it is read", async () => {
      await store.put("output/00/empty", new Uint8Array(0), { size: 0 });
      assert.equal((await store.get("output/00/empty"))?.size, 0);
      const big = crypto.getRandomValues(new Uint8Array(64 << 10));
      const chunks = Array.from({ length: 96 }, () => big);
      await store.put("output/00/big", ReadableStream.from(chunks), { size: 96 * big.length });
      const back = await azurite.getObject("ci/output/00/big");
      assert.equal(back?.length, 96 * big.length);
      assert.deepEqual(back!.subarray(95 * big.length), big);
    });
    await t.step("a stream of the wrong size fails the put and stores nothing", async () => {
      const short = ReadableStream.from([new Uint8Array(10)]);
      await assert.rejects(store.put("output/00/short", short, { size: 11 }));
      assert.equal(await store.has("output/00/short"), false);
    });
    await t.step("a SAS token from the connection string authorizes reads and writes", async () => {
      const { ContainerSASPermissions } = await import("@azure/storage-blob");
      const sasUrl = await (await azurite.client()).generateSasUrl({
        permissions: ContainerSASPermissions.parse("rcw"),
        expiresOn: new Date(Date.now() + 3600_000),
      });
      const sas = new URL(sasUrl).search.slice(1);
      const viaSas = new AzureBlobStore({
        container: azurite.container,
        connectionString: `BlobEndpoint=${azurite.endpoint};SharedAccessSignature=${sas}`,
        env: noEnv,
      });
      await viaSas.put("sas/k", new Uint8Array([1, 2, 3]), { size: 3 });
      assert.equal(await viaSas.has("sas/k"), true);
      assert.equal(await viaSas.has("sas/none"), false);
      // AZURE_STORAGE_SAS_TOKEN with an account works the same.
      const viaEnv = new AzureBlobStore({
        container: azurite.container,
        account: "devstoreaccount1",
        endpoint: azurite.endpoint,
        env: (name) => name === "AZURE_STORAGE_SAS_TOKEN" ? `?${sas}` : undefined,
      });
      assert.equal((await viaEnv.get("sas/k"))?.size, 3);
    });
    await t.step("a missing container or a wrong key is a config error", async () => {
      const other = new AzureBlobStore({
        container: "missing",
        connectionString: azurite.connectionString(),
        env: noEnv,
      });
      await assert.rejects(other.get("k"), (e) => kindOf(e) === "config");
      await assert.rejects(other.has("k"), (e) => kindOf(e) === "config");
      await assert.rejects(
        other.put("k", new Uint8Array(1), { size: 1 }),
        (e) => kindOf(e) === "config",
      );
      const wrongKey = new AzureBlobStore({
        container: azurite.container,
        connectionString: azurite.connectionString().replace(/AccountKey=[^;]*/, "AccountKey=AAAA"),
        env: noEnv,
      });
      await assert.rejects(wrongKey.get("k"), (e) => kindOf(e) === "config");
      await assert.rejects(
        wrongKey.has("k"),
        (e) => kindOf(e) === "config" && /AuthorizationFailure|403/.test((e as Error).message),
      );
    });
    await t.step("a stopped server is unreachable; a missed deadline a timeout", async () => {
      const closed = new AzureBlobStore({
        container: "c",
        connectionString: azurite.connectionString(
          `http://127.0.0.1:${freePort()}/devstoreaccount1`,
        ),
        env: noEnv,
      });
      await assert.rejects(closed.has("k"), (e) => kindOf(e) === "unreachable");
      await assert.rejects(
        store.get("k", { signal: AbortSignal.timeout(0) }),
        (e) => kindOf(e) === "timeout",
      );
    });
  },
});

Deno.test({
  name: "AzureBlobStore with a managed identity: one token from @azure/identity, sent as Bearer",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const tokens: string[] = [];
    const blobs: { url: string; auth: string | null; version: string | null }[] = [];
    await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const url = new URL(req.url);
      if (url.pathname === "/msi/token") {
        tokens.push(`${url.searchParams.get("resource")} ${req.headers.get("x-identity-header")}`);
        const expires = Math.floor(Date.now() / 1000) + 3600;
        return Response.json({ access_token: "tok-1", expires_on: String(expires) });
      }
      blobs.push({
        url: url.pathname,
        auth: req.headers.get("authorization"),
        version: req.headers.get("x-ms-version"),
      });
      return new Response(null, { status: 404, headers: { "x-ms-error-code": "BlobNotFound" } });
    });
    const origin = `http://127.0.0.1:${server.addr.port}`;
    const env: Record<string, string> = {
      IDENTITY_ENDPOINT: `${origin}/msi/token`,
      IDENTITY_HEADER: "header-secret",
    };
    // @azure/identity reads the real environment.
    for (const [name, value] of Object.entries(env)) Deno.env.set(name, value);
    try {
      const store = new AzureBlobStore({
        container: "gocache",
        account: "acme",
        endpoint: `${origin}/acme`,
        env: (name) => env[name],
      });
      assert.equal(await store.has("action/00/a"), false);
      assert.equal(await store.get("action/00/b"), undefined);
      assert.equal(await store.has("action/00/c"), false);
      assert.deepEqual(tokens, ["https://storage.azure.com header-secret"]);
      assert.equal(blobs.length, 3);
      for (const blob of blobs) {
        assert.equal(blob.auth, "Bearer tok-1");
        assert.ok(blob.version && blob.version >= "2017-11-09");
      }
      assert.equal(blobs[0]!.url, "/acme/gocache/action/00/a");
    } finally {
      for (const name of Object.keys(env)) Deno.env.delete(name);
    }
  },
});
