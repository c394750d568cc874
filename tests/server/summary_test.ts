/**
 * The account's lines name the store the bucket is in (`src/server/summary.ts`): a `gs://`
 * bucket's hits, lookups and faults say GCS, an S3 bucket's still say S3.
 */
import assert from "node:assert/strict";
import { annotations, summarize } from "../../src/server/summary.ts";

const counters = { get_hits: 10, local_hits: 4, s3_get_hits: 6, s3_get_errors: 1 };
const fault = {
  cause: "timeout" as const,
  count: 2,
  first: 'Cannot GET "k": deadline exceeded',
  firstAt: 0,
};

Deno.test("summarize() and annotations() name a gs:// bucket's store GCS", () => {
  for (
    const [bucket, name, store] of [
      ["gs://ci-cache", "GCS", "Google Cloud Storage"],
      ["s3://ci-cache", "S3", "AWS S3"],
    ]
  ) {
    const input = { counters, mode: { bucket: bucket!, store }, faults: [fault] };
    const text = summarize(input).map((row) => `${row.label}: ${row.text}`).join("\n");
    assert.match(text, new RegExp(`6 from ${name} on demand`));
    assert.match(text, new RegExp(`1 ${name} lookup`));
    assert.match(annotations(input), new RegExp(`::warning title=Go build cache::${name} tier: `));
    if (name === "GCS") assert.doesNotMatch(text, /S3/);
  }
});
