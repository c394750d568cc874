/** Which Azure container the flags name: `--bucket=azblob://`, `--azure-container`, the account. */
import assert from "node:assert/strict";
import { parseConfig, UsageError } from "../../src/cli/config.ts";
import { describeStore } from "../../src/store/spec.ts";

function envOf(vars: Record<string, string>): (name: string) => string | undefined {
  const all: Record<string, string> = { HOME: "/home/u", GOCACHE: "/tmp/gocache", ...vars };
  return (name) => all[name];
}

const CS = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=AAAA;" +
  "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

Deno.test("parseConfig() reads --bucket=azblob://CONTAINER with the connection string", () => {
  const config = parseConfig(
    ["--bucket=azblob://gocache"],
    envOf({ AZURE_STORAGE_CONNECTION_STRING: CS }),
  );
  assert.deepEqual(config.store, {
    kind: "azure",
    container: "gocache",
    account: "",
    connectionString: CS,
    endpoint: "",
  });
  assert.equal(config.bucket, "azblob://gocache");
});

Deno.test("parseConfig() takes the account from AZURE_STORAGE_ACCOUNT or --azure-account", () => {
  const fromEnv = parseConfig(["--bucket=azblob://c1c"], envOf({ AZURE_STORAGE_ACCOUNT: "acme" }));
  assert.equal(fromEnv.store?.kind === "azure" && fromEnv.store.account, "acme");
  assert.match(describeStore(fromEnv.store!), /Azure container "c1c" account acme/);
  const fromFlag = parseConfig(
    ["--bucket=azblob://c1c", "--azure-account=other"],
    envOf({ AZURE_STORAGE_ACCOUNT: "acme" }),
  );
  assert.equal(fromFlag.store?.kind === "azure" && fromFlag.store.account, "other");
  const fromTwin = parseConfig(
    [],
    envOf({ GOCACHE_AZURE_ACCOUNT: "twin", GOCACHE_AZURE_CONTAINER: "cache" }),
  );
  assert.equal(fromTwin.store?.kind === "azure" && fromTwin.store.account, "twin");
  assert.equal(fromTwin.bucket, "azblob://cache");
});

Deno.test("parseConfig() takes --azure-container alone as the container", () => {
  const config = parseConfig(["--azure-container=cache", "--azure-account=acme"], envOf({}));
  assert.equal(config.store?.kind, "azure");
  assert.equal(config.bucket, "azblob://cache");
  // The same name twice is fine.
  parseConfig(
    ["--bucket=azblob://cache", "--azure-container=cache"],
    envOf({ AZURE_STORAGE_ACCOUNT: "a" }),
  );
});

Deno.test("parseConfig() rejects an Azure container without an account, or a bad name", () => {
  assert.throws(
    () => parseConfig(["--bucket=azblob://gocache"], envOf({})),
    (e) => e instanceof UsageError && /needs a storage account/.test(e.message),
  );
  for (const bad of ["Upper", "a--b", "ab", "-ab", "a_b"]) {
    assert.throws(
      () => parseConfig([`--bucket=azblob://${bad}`], envOf({ AZURE_STORAGE_ACCOUNT: "a" })),
      (e) => e instanceof UsageError && /Invalid Azure container/.test(e.message),
      bad,
    );
  }
  assert.throws(
    () =>
      parseConfig(
        ["--bucket=azblob://one", "--azure-container=two"],
        envOf({ AZURE_STORAGE_ACCOUNT: "a" }),
      ),
    (e) => e instanceof UsageError && /Conflicting Azure containers/.test(e.message),
  );
});

Deno.test("parseConfig() leaves plain and s3:// buckets to S3", () => {
  const config = parseConfig(["--bucket=plain"], envOf({ AZURE_STORAGE_ACCOUNT: "a" }));
  assert.equal(config.store?.kind, "s3");
  assert.equal(config.bucket, "plain");
});

Deno.test("parseConfig() takes --storage=azure with a plain --bucket as the container", () => {
  const config = parseConfig(
    ["--storage=azure", "--bucket=gocache"],
    envOf({ AZURE_STORAGE_ACCOUNT: "acme" }),
  );
  assert.equal(config.store?.kind, "azure");
  assert.equal(config.store?.kind === "azure" && config.store.container, "gocache");
  assert.throws(
    () => parseConfig(["--storage=azure"], envOf({ AZURE_STORAGE_ACCOUNT: "acme" })),
    (e) => e instanceof UsageError && /--azure-container/.test(e.message),
  );
});
