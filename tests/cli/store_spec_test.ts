/**
 * Which store the flags name (`src/cli/_store_spec.ts`, through `parseConfig`): Google Cloud
 * Storage by `--bucket=gs://NAME` and by the names of tailscale's PR #18 (`--storage=gcs`,
 * `--gcs-bucket`, `--gcs-key-file`) and their `GOCACHE_*` twins.
 */
import assert from "node:assert/strict";
import { parseConfig, UsageError } from "../../src/cli/config.ts";
import { describeStore, storeScope } from "../../src/store/spec.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const base = { GOCACHE: "/home/u/.cache/go-build" };

Deno.test("parseConfig() names a GCS bucket by gs://, --gcs-bucket or --storage=gcs", () => {
  const want = { kind: "gcs", bucket: "ci-cache", keyFile: "", endpoint: "", emulator: false };
  for (
    const args of [
      ["--bucket=gs://ci-cache"],
      ["--bucket=gs://ci-cache/"],
      ["--gcs-bucket=ci-cache"],
      ["--storage=gcs", "--gcs-bucket=ci-cache"],
      ["--storage=gcs", "--bucket=ci-cache"],
      ["--storage=GCS", "--bucket=gs://ci-cache", "--gcs-bucket=ci-cache"],
    ]
  ) {
    const config = parseConfig(args, env(base));
    assert.deepEqual(config.store, want, args.join(" "));
    assert.ok(config.bucket !== "", "a remote tier is configured");
  }
  const fromEnv = parseConfig(
    [],
    env({ ...base, GOCACHE_STORAGE: "gcs", GOCACHE_GCS_BUCKET: "ci-cache" }),
  );
  assert.deepEqual(fromEnv.store, want);
  assert.equal(fromEnv.bucket, "gs://ci-cache");
  // A plain name stays S3 without --storage.
  assert.equal(parseConfig(["--bucket=ci-cache"], env(base)).store?.kind, "s3");
  assert.equal(parseConfig(["--storage=s3", "--bucket=ci-cache"], env(base)).store?.kind, "s3");
});

Deno.test("parseConfig() takes GCS credentials and the emulator as Google's tools do", () => {
  const fromFlag = parseConfig(
    ["--bucket=gs://b", "--gcs-key-file=/k.json"],
    env({ ...base, GOOGLE_APPLICATION_CREDENTIALS: "/adc.json" }),
  );
  assert.equal(fromFlag.store?.kind === "gcs" && fromFlag.store.keyFile, "/k.json");
  const fromTwin = parseConfig(["--bucket=gs://b"], env({ ...base, GOCACHE_GCS_KEY_FILE: "/t" }));
  assert.equal(fromTwin.store?.kind === "gcs" && fromTwin.store.keyFile, "/t");
  const fromGoogle = parseConfig(
    ["--bucket=gs://b"],
    env({ ...base, GOOGLE_APPLICATION_CREDENTIALS: "/adc.json" }),
  );
  assert.equal(fromGoogle.store?.kind === "gcs" && fromGoogle.store.keyFile, "/adc.json");
  const emulated = parseConfig(
    ["--bucket=gs://b"],
    env({ ...base, STORAGE_EMULATOR_HOST: "localhost:4443" }),
  );
  assert.equal(emulated.store?.kind === "gcs" && emulated.store.endpoint, "localhost:4443");
  assert.equal(emulated.store?.kind === "gcs" && emulated.store.emulator, true);
  // A private endpoint is sent credentials; the flag wins over the emulator.
  const private_ = parseConfig(
    ["--bucket=gs://b", "--gcs-endpoint-url=https://storage-x.p.googleapis.com"],
    env({ ...base, STORAGE_EMULATOR_HOST: "localhost:4443" }),
  );
  assert.deepEqual(
    private_.store?.kind === "gcs" && [private_.store.endpoint, private_.store.emulator],
    ["https://storage-x.p.googleapis.com", false],
  );
  assert.equal(
    describeStore(emulated.store!),
    'Google Cloud Storage bucket "b" endpoint localhost:4443',
  );
  assert.notEqual(storeScope(emulated.store!), storeScope(fromFlag.store!));
  // The S3 settings do not leak into a GCS spec, nor the GCS ones into an S3 one.
  const s3 = parseConfig(["--bucket=b", "--gcs-key-file=/k.json"], env(base));
  assert.deepEqual(Object.keys(s3.store!).sort(), [
    "bucket",
    "endpoint",
    "kind",
    "pathStyle",
    "region",
  ]);
});

Deno.test("parseConfig() rejects contradicting store flags with one-line UsageErrors", () => {
  const cases: [string[], RegExp][] = [
    [["--storage=azure-files", "--bucket=b"], /--storage: want s3 or gcs/],
    [["--storage=gcs"], /--storage=gcs needs a bucket: --bucket or --gcs-bucket/],
    [["--storage=s3", "--bucket=gs://b"], /name different stores/],
    [["--storage=s3", "--gcs-bucket=b"], /name different stores/],
    [["--bucket=other", "--gcs-bucket=b"], /name different buckets/],
    [["--bucket=gs://other", "--gcs-bucket=b"], /name different buckets/],
    [["--bucket=gs://"], /no name/],
    [["--bucket=gs://b", "--gcs-endpoint-url=storage.local"], /--gcs-endpoint-url: .* not a URL/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parseConfig(args, env(base)),
      (e) => e instanceof UsageError && message.test(e.message) && !e.message.includes("\n"),
      args.join(" "),
    );
  }
});
