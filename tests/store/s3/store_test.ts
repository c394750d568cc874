/**
 * Tests of `src/store/s3/store.ts`: the S3 adapter passes the store conformance suite against a
 * real MinIO on loopback, including a closed port (`unreachable`) and a missing bucket
 * (`config`).
 *
 * @module
 */

import { AwsObjectStore } from "../../../src/store/mod.ts";
import { needs } from "../../_util/go.ts";
import { findMinio, freePort, startMinio } from "../../_util/minio.ts";
import { storeConformance } from "../_conformance.ts";

// `deno task test:unit` (GCP_SKIP_TEST_SERVERS=1) runs without test servers on every OS; the
// Linux gate runs this test with MinIO, and there a missing MinIO fails it.
const unitOnly = Deno.env.get("GCP_SKIP_TEST_SERVERS") === "1";
const ignore = unitOnly || await needs("MinIO (scripts/install_test_servers.sh)", findMinio());

storeConformance("S3 (MinIO)", async () => {
  const minio = await startMinio();
  const names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_PROFILE"];
  const saved = names.map((name) => [name, Deno.env.get(name)] as const);
  for (const [name, value] of Object.entries(minio.env())) Deno.env.set(name, value);
  Deno.env.delete("AWS_PROFILE");
  const on = (bucket: string, endpoint = minio.endpoint) =>
    new AwsObjectStore({ bucket, endpoint, pathStyle: true, region: "us-east-1" });
  return {
    store: on(minio.bucket),
    unreachable: on(minio.bucket, `http://127.0.0.1:${freePort()}`),
    missingBucket: on("gcp-no-such-bucket"),
    async [Symbol.asyncDispose]() {
      for (const [name, value] of saved) {
        if (value === undefined) Deno.env.delete(name);
        else Deno.env.set(name, value);
      }
      await minio[Symbol.asyncDispose]();
    },
  };
}, { ignore });
