/**
 * CircuitBreaker and its state shared through a file: what one process learns about a failing
 * bucket, the next one (another TieredCache on the same directory) starts from.
 */
import assert from "node:assert/strict";
import { LocalCache } from "../../src/cache/local.ts";
import { TieredCache } from "../../src/cache/remote/mod.ts";
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  MemoryObjectStore,
  type StoreCallOptions,
  type StoredObject,
  StoreError,
  TooSlowError,
} from "../../src/store/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { recordingLogger } from "../_util/logger.ts";
import { repeatedId as id, sha256Hex as sha256 } from "../_util/bytes.ts";

const encoder = new TextEncoder();
const TIMEOUT = new StoreError("Cannot GET action/aa/aa: deadline exceeded", "timeout");

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** A temp dir with a state file path in it, removed on dispose. */
async function stateDir() {
  const dir = await Deno.makeTempDir({ prefix: "gcp-breaker-" });
  return {
    dir,
    file: `${dir}/s3-breaker`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A breaker on `file` that has read the shared state. */
async function breakerOn(file: string, options: CircuitBreakerOptions = {}) {
  const metrics = new Metrics();
  const breaker = new CircuitBreaker({
    stateFile: file,
    scope: "test bucket",
    metrics,
    ...options,
  });
  await breaker.ready();
  return { breaker, metrics };
}

Deno.test("CircuitBreaker shares a trip caused by missed deadlines with the next process", async () => {
  await using t = await stateDir();
  const first = await breakerOn(t.file);
  assert.ok(first.breaker.allow());
  first.breaker.failed(TIMEOUT);
  first.breaker.failed(TIMEOUT);
  assert.equal(first.breaker.allow(), false);
  await first.breaker.flush();
  const state = JSON.parse(await Deno.readTextFile(t.file));
  assert.equal(state.scope, "test bucket");
  assert.equal(state.failures, 2);
  assert.match(state.reason, /deadline exceeded/);
  assert.ok(Date.parse(state.openUntil) > Date.now() + 25_000);
  // No temporary files left next to it.
  assert.deepEqual((await Array.fromAsync(Deno.readDir(t.dir))).map((e) => e.name), [
    "s3-breaker",
  ]);

  const log = recordingLogger();
  const second = await breakerOn(t.file, { log });
  assert.equal(second.breaker.allow(), false, "paused without a call of its own");
  assert.equal(second.breaker.paused, true);
  assert.equal(second.metrics.get("s3_breaker_shared"), 1);
  assert.equal(second.metrics.get("s3_breaker_open"), 1);
  assert.equal(second.metrics.get("s3_breaker_trips"), 0);
  assert.deepEqual(log.warnings, [], "only the process that tripped warns");
  assert.match(log.infos.join("\n"), /paused for another \d+s, as an earlier session found/);
});

Deno.test("CircuitBreaker: after the cool-down one process probes, others wait; success clears the file", async () => {
  await using t = await stateDir();
  const options = { cooldownMs: 100, probeMs: 5_000 };
  const first = await breakerOn(t.file, options);
  first.breaker.failed(TIMEOUT);
  first.breaker.failed(TIMEOUT);
  await first.breaker.flush();
  await sleep(150);

  const prober = await breakerOn(t.file, options);
  assert.equal(prober.breaker.allow(), true, "the cool-down is over: this one probes");
  assert.equal(prober.breaker.allow(), false, "one probe at a time");
  await prober.breaker.flush();
  const other = await breakerOn(t.file, options);
  assert.equal(other.breaker.allow(), false, "another process waits for the probe");

  prober.breaker.succeeded();
  await prober.breaker.flush();
  assert.equal(await exists(t.file), false);
  assert.equal(prober.breaker.allow(), true);
  const later = await breakerOn(t.file, options);
  assert.equal(later.breaker.allow(), true);
});

Deno.test("CircuitBreaker: a failed probe re-opens the shared breaker for another cool-down", async () => {
  await using t = await stateDir();
  const options = { cooldownMs: 100 };
  const first = await breakerOn(t.file, options);
  first.breaker.failed(TIMEOUT);
  first.breaker.failed(TIMEOUT);
  await first.breaker.flush();
  await sleep(150);
  const log = recordingLogger();
  const prober = await breakerOn(t.file, { ...options, log });
  assert.ok(prober.breaker.allow());
  prober.breaker.failed(TIMEOUT);
  await prober.breaker.flush();
  assert.deepEqual(log.warnings, [], "a failed probe is no news");
  const state = JSON.parse(await Deno.readTextFile(t.file));
  assert.ok(Date.parse(state.openUntil) > Date.now() + 50);
  assert.equal((await breakerOn(t.file, options)).breaker.allow(), false);
});

Deno.test("CircuitBreaker continues a run of slow failures across processes", async () => {
  await using t = await stateDir();
  const first = await breakerOn(t.file);
  first.breaker.failed(new TooSlowError("Giving up on bucket object: 100 KiB/s"));
  assert.equal(first.breaker.allow(), true, "one is not enough");
  await first.breaker.flush();
  assert.equal(JSON.parse(await Deno.readTextFile(t.file)).openUntil, null);
  const second = await breakerOn(t.file);
  assert.equal(second.breaker.allow(), true);
  second.breaker.failed(new TooSlowError("Giving up on bucket object: 90 KiB/s"));
  assert.equal(second.breaker.allow(), false, "the second slow transfer in a row opens it");
  assert.equal(second.metrics.get("s3_breaker_trips"), 1);
  await second.breaker.flush();
  assert.ok(Date.parse(JSON.parse(await Deno.readTextFile(t.file)).openUntil) > Date.now());
});

Deno.test("CircuitBreaker opens on three slow failures close together, quick answers between", () => {
  const breaker = new CircuitBreaker({ cooldownMs: 60_000 });
  for (let i = 0; i < 2; i++) {
    breaker.failed(new TooSlowError("bucket lookup took 1400ms"));
    breaker.succeeded(); // a small object arrived quickly in between
    assert.equal(breaker.allow(), true, `${i + 1} slow answers are not yet enough`);
  }
  breaker.failed(new TooSlowError("bucket lookup took 1500ms"));
  assert.equal(breaker.allow(), false, "the third within the window opens it");
});

Deno.test("CircuitBreaker does not share fast failures or configuration errors", async () => {
  await using t = await stateDir();
  const refused = await breakerOn(t.file);
  refused.breaker.failed(new StoreError("Cannot GET: connect ECONNREFUSED", "unreachable"), 3);
  assert.equal(refused.breaker.allow(), false, "open in this process");
  await refused.breaker.flush();
  assert.equal(await exists(t.file), false, "refused at once: cheap for the next process too");

  const config = await breakerOn(t.file);
  config.breaker.failed(new StoreError("Cannot GET: NoSuchBucket", "config"));
  assert.equal(config.breaker.allow(), false);
  await config.breaker.flush();
  assert.equal(await exists(t.file), false, "a fixed configuration must take effect at once");

  // A fast failure is shared when it took long anyway (a slow refusal, a slow 5xx).
  const slow = await breakerOn(t.file, { threshold: 1 });
  slow.breaker.failed(new StoreError("Cannot GET: InternalError (HTTP 500)", "other"), 2_500);
  await slow.breaker.flush();
  assert.equal(await exists(t.file), true);
});

Deno.test("CircuitBreaker ignores another bucket's state and a malformed file", async () => {
  await using t = await stateDir();
  const first = await breakerOn(t.file, { scope: "other bucket" });
  first.breaker.failed(TIMEOUT);
  first.breaker.failed(TIMEOUT);
  await first.breaker.flush();
  assert.equal((await breakerOn(t.file)).breaker.allow(), true);

  await Deno.writeTextFile(t.file, "{not json");
  const garbled = await breakerOn(t.file);
  assert.equal(garbled.breaker.allow(), true);
  garbled.breaker.succeeded();
  await garbled.breaker.flush();
  assert.equal(await exists(t.file), false, "a success removes what it could not read");
});

/** A store that counts calls and can stall every one of them. */
class StallingStore extends MemoryObjectStore {
  calls = 0;
  stall = false;

  async #before(options?: StoreCallOptions): Promise<void> {
    this.calls++;
    if (!this.stall) return;
    await new Promise<void>((_, reject) => {
      const signal = options?.signal;
      const timer = setTimeout(() => reject(new Error("stalled for 60 s")), 60_000);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new StoreError("Cannot call S3: deadline exceeded", "timeout"));
      }, { once: true });
    });
  }

  override async get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    await this.#before(options);
    return super.get(key, options);
  }

  override async has(key: string, options?: StoreCallOptions): Promise<boolean> {
    await this.#before(options);
    return super.has(key, options);
  }

  override async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    await this.#before(options);
    return super.put(key, body, options);
  }
}

Deno.test("TieredCache on the same directory: the first trips, the second skips S3 without a call", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gcp-breaker-tiered-" });
  try {
    const local = await LocalCache.open(dir);
    const shared = { breakerFile: `${dir}/s3-breaker`, breakerScope: "test bucket" };
    const stalled = new StallingStore();
    stalled.stall = true;
    const first = new TieredCache(local, stalled, { ...shared, getTimeoutMs: 50 });
    const started = performance.now();
    assert.deepEqual(
      await Promise.all([1, 2, 3].map((n) => first.get(id(n)))),
      [undefined, undefined, undefined],
    );
    await first.close();
    assert.ok(performance.now() - started < 2_000);
    assert.ok(await exists(`${dir}/s3-breaker`), "the trip is shared");

    // The next go command's process: a new cache and a new client on the same directory.
    const store = new StallingStore();
    const metrics = new Metrics();
    const second = new TieredCache(local, store, { ...shared, metrics });
    const body = encoder.encode("built while S3 was paused");
    const next = performance.now();
    assert.equal(await second.get(id(4)), undefined);
    await second.put({ actionId: id(5), outputId: await sha256(body), body });
    assert.equal(await second.resumePending(), 0, "owed uploads stay owed while paused");
    await second.close();
    assert.ok(performance.now() - next < 1_000, "close did not wait for an upload");
    assert.equal(store.calls, 0, "no remote call at all");
    assert.equal(metrics.get("s3_get_skipped"), 1);
    assert.equal(metrics.get("s3_breaker_shared"), 1);
    assert.equal(metrics.get("uploads_failed"), 1);
    assert.ok(await exists(`${dir}/s3-pending/${id(5)}`), "the upload is owed");
    assert.ok(await second.get(id(5)), "the local tier still serves it");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TieredCache.close() does not wait for uploads to a black-holed bucket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gcp-breaker-close-" });
  try {
    const local = await LocalCache.open(dir);
    const store = new StallingStore();
    store.stall = true;
    const metrics = new Metrics();
    // The upload deadline and close's wait are a minute; a lookup's deadline is short.
    const cache = new TieredCache(local, store, {
      getTimeoutMs: 50,
      uploadConcurrency: 2,
      metrics,
      breakerFile: `${dir}/s3-breaker`,
    });
    for (let n = 10; n < 15; n++) {
      const body = encoder.encode(`output ${n}`);
      await cache.put({ actionId: id(n), outputId: await sha256(body), body });
    }
    const started = performance.now();
    await cache.close();
    assert.ok(performance.now() - started < 2_000, `close took ${performance.now() - started}ms`);
    assert.equal(metrics.get("s3_breaker_trips"), 1);
    assert.equal(metrics.get("uploads_failed"), 5);
    assert.equal(metrics.get("uploads_left"), 0);
    const owed = (await Array.fromAsync(Deno.readDir(`${dir}/s3-pending`))).map((e) => e.name);
    assert.equal(owed.length, 5, "every upload is remembered for a later session");
    // Two HEADs missed their deadline (one more may start between the two): then nothing.
    assert.ok(store.calls <= 3, `${store.calls} calls`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CircuitBreaker.call: skips while open, hands a signal the trip aborts, and counts outcomes", async () => {
  const breaker = new CircuitBreaker({ threshold: 2, stallThreshold: 2, cooldownMs: 60_000 });
  const skipped = { whenPaused: () => "skipped" };
  assert.equal(await breaker.call(() => Promise.resolve("ok"), skipped), "ok");
  // A corrupt answer is the store answering: no failure counted.
  const corrupt = breaker.call(() => Promise.reject(new RangeError("bad bytes")), {
    evidence: () => "answered",
  });
  await assert.rejects(corrupt, RangeError);
  // A call waiting when the breaker opens is cut short, and not counted again.
  let cut: AbortSignal | undefined;
  const waiting = breaker.call(
    (signal) =>
      new Promise<string>((_, reject) => {
        cut = signal;
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      }),
  );
  const failures: unknown[] = [];
  const onFailed = (error: unknown) => void failures.push(error);
  await assert.rejects(breaker.call(() => Promise.reject(TIMEOUT), { onFailed }), StoreError);
  assert.equal(breaker.paused, false, "one missed deadline of two");
  await assert.rejects(breaker.call(() => Promise.reject(TIMEOUT), { onFailed }), StoreError);
  assert.equal(breaker.paused, true, "two missed deadlines open it");
  assert.equal(cut?.aborted, true, "the waiting call's signal aborted when it opened");
  await assert.rejects(waiting, StoreError);
  assert.equal(failures.length, 2, "onFailed saw the two counted failures only");
  let called = false;
  const answer = await breaker.call(() => {
    called = true;
    return Promise.resolve("ok");
  }, skipped);
  assert.deepEqual([answer, called], ["skipped", false], "no call while open");
});

Deno.test("CircuitBreaker.call: a deadline of its own, a sluggish answer judged a failure", async () => {
  const breaker = new CircuitBreaker({ threshold: 1, cooldownMs: 60_000 });
  const late = breaker.call(
    (signal) =>
      new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason), { once: true })
      ),
    { timeoutMs: 20, evidence: () => "nothing" },
  );
  await assert.rejects(late, (error: Error) => error.name === "TimeoutError");
  assert.equal(breaker.paused, false, "an outcome telling nothing is not counted");
  const value = await breaker.call(() => Promise.resolve(7), {
    judge: (_, elapsedMs) => new TooSlowError(`took ${elapsedMs}ms`),
  });
  assert.equal(value, 7, "the answer is used all the same");
  assert.equal(breaker.paused, true, "but counted as a failure");
});

Deno.test("CircuitBreaker names its store in log lines; collapsingLogger reads them as for S3", async () => {
  const { collapsingLogger } = await import("../../src/metrics/mod.ts");
  const log = recordingLogger();
  const collapsing = collapsingLogger(log);
  const breaker = new CircuitBreaker({ threshold: 1, storeName: "GCS", log: collapsing });
  await breaker.ready();
  assert.ok(breaker.allow());
  breaker.failed(new StoreError('Cannot GET "k": connect ECONNREFUSED 127.0.0.1:1', "unreachable"));
  assert.match(log.infos.join("\n"), /^GCS failure 1 \(unreachable\): Cannot GET/m);
  assert.match(log.warnings[0]!, /^GCS tier paused for 30s after 1 consecutive failure/);
  assert.deepEqual(collapsing.faults.list().map((f) => f.cause), ["endpoint", "breaker"]);
});
