import assert from "node:assert/strict";
import { annotations, summarize, summaryJson } from "../../src/server/summary.ts";

Deno.test("summarize() shows every figure stats prints, and says how time saved is estimated", () => {
  const counters = {
    "sessions_total": 3,
    "get_requests": 200,
    "get_hits": 150,
    "get_misses": 50,
    "get_hit_bytes": 5 << 20,
    "local_hits": 120,
    "s3_get_hits": 30,
    "s3_bytes_down": 1 << 20,
    "s3_bytes_up": 2 << 20,
    "s3_wait_ms": 1500,
    "uploads_pending": 2,
    "s3_breaker_trips": 1,
    "modproxy_immutable_hits": 7,
    "modproxy_mutable_misses": 4,
    "modproxy_not_found": 3,
    "modproxy_errors": 1,
  };
  const missToPut = {
    measured: 40,
    medianMs: 200,
    savedHits: 100,
    savedMs: 50_000,
    producedMs: 80_000,
  };
  const rows = summarize({ counters, missToPut });
  const text = Object.fromEntries(rows.map((r) => [r.label, r.text]));
  assert.equal(text["Go commands served"], "3");
  assert.equal(text["Hit rate"], "75.0% (150 of 200 gets, 50 misses)");
  assert.equal(text["Hits by source"], "120 local, 0 from the warm-up, 30 from S3 on demand");
  assert.equal(text["Served from cache"], "5.0 MiB");
  assert.equal(text["Waited on the store"], "1.5 s");
  assert.match(text["Uploads"]!, /^0 done \(2\.0 MiB\), 0 failed, 2 queued or running/);
  assert.match(text["Module proxy misses"]!, /^4 .*3 answered not found, 1 errors/);
  assert.match(
    text["Build time saved"]!,
    /^50\.0 s measured \+ about 10\.0 s estimated \(100 hits measured, 50\.0 s: what go took from the miss to the put of each same action earlier on this server; estimate for 50 hits on outputs built elsewhere: 10\.0 s \(the median miss-to-put here, 200 ms over the last 40 misses, times the hits\); compute time/,
  );
  const json = summaryJson(rows);
  assert.equal(json.hit_rate, 0.75);
  assert.equal(json.time_saved_ms, 60_000);
  assert.equal(json.time_saved_measured_ms, 50_000);
  assert.equal(json.time_saved_estimated_ms, 10_000);
  assert.equal(json.time_saved_measured_hits, 100);
  assert.equal(json.modproxy_hits, 7);
  assert.equal(json.modproxy_not_found, 3);
  assert.equal(json.bytes_uploaded, 2 << 20);

  const local = summaryJson(
    summarize({ counters: { "get_requests": 4, "get_hits": 3 }, bucket: false }),
  );
  assert.equal(local.local_hits, 3, "without a bucket every hit is local");
  const unmeasured = summarize({ counters, missToPut: null }).at(-1)!;
  assert.match(unmeasured.text, /^not known: this server does not measure/);
  assert.equal(unmeasured.json.time_saved_ms, null);
  const exact = summarize({
    counters,
    missToPut: { measured: 40, medianMs: 200, savedHits: 150, savedMs: 45_000 },
  }).at(-1)!;
  assert.match(exact.text, /^45\.0 s measured \(150 hits measured, 45\.0 s: /);
  const few = summarize({
    counters,
    missToPut: { measured: 3, medianMs: 10, savedHits: 0, savedMs: 0 },
  }).at(-1)!;
  assert.match(few.text, /^not measured: 150 hits on outputs built elsewhere .*, and 3 misses/);
  const part = summarize({
    counters,
    missToPut: { measured: 3, medianMs: 10, savedHits: 5, savedMs: 900 },
  }).at(-1)!;
  assert.match(
    part.text,
    /^at least 900 ms measured \(5 hits measured, .*; 145 hits on outputs built elsewhere, not counted;/,
  );
});

Deno.test("summarize() never estimates more time saved than go spent building here", () => {
  // A fresh runner on a warm bucket: 1940 hits from the warm-up, 31 misses measured here (about
  // 0.2 s each), 38 s of building in all. Extrapolating gives 6m28s; the bound is what was built.
  const counters = { "get_requests": 1971, "get_hits": 1940, "get_misses": 31, "warm_hits": 1940 };
  const row = summarize({
    counters,
    bucket: true,
    missToPut: { measured: 31, medianMs: 200, savedHits: 0, savedMs: 0, producedMs: 38_000 },
  }).at(-1)!;
  assert.match(row.text, /^about 38\.0 s estimated \(estimate for 1940 hits/);
  assert.match(row.text, /capped at the 38\.0 s go spent building here/);
  assert.equal(row.json.time_saved_ms, 38_000);
  assert.equal(row.json.time_saved_measured_ms, 0);
});

const storeCounters = { "get_hits": 10, "local_hits": 4, "s3_get_hits": 6, "s3_get_errors": 1 };
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
    const input = { counters: storeCounters, mode: { bucket: bucket!, store }, faults: [fault] };
    const text = summarize(input).map((row) => `${row.label}: ${row.text}`).join("\n");
    assert.match(text, new RegExp(`6 from ${name} on demand`));
    assert.match(text, new RegExp(`1 ${name} lookup`));
    assert.match(annotations(input), new RegExp(`::warning title=Go build cache::${name} tier: `));
    if (name === "GCS") assert.doesNotMatch(text, /S3/);
  }
});
