/**
 * The module proxy on a stalled bucket, with real parts: the proxy in-process on the real
 * `AwsObjectStore`, against MinIO behind toxiproxy, and a hermetic fake upstream. When the bucket
 * stops answering (toxiproxy's `timeout` toxic with timeout 0: connections open, no data), the
 * first module fill may cost one lookup deadline; then the module store's breaker is open and
 * later fills go to upstream at once. Their uploads are recorded as owed, and a later session
 * sends them once the bucket is back.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AwsObjectStore } from "../../src/store/mod.ts";
import { Metrics } from "../../src/metrics/mod.ts";
import { createModuleProxy, type ModuleProxy } from "../../src/modproxy/mod.ts";
import { startFakeUpstream } from "../_util/fake_upstream.ts";
import { recordingLogger } from "../_util/logger.ts";
import { needs } from "../_util/go.ts";
import { findMinio, type Minio, startMinio } from "../_util/minio.ts";
import { findToxiproxy, startToxiproxy } from "../_util/toxiproxy.ts";

const TREE = join(dirname(fileURLToPath(import.meta.url)), "../testdata/modproxy/upstream");

/** The module store's lookup deadline (its default): the first stalled fill may cost this. */
const LOOKUP_DEADLINE_MS = 10_000;

const skip = await needs("MinIO (scripts/install_test_servers.sh)", findMinio()) ||
  await needs("toxiproxy (scripts/install_test_servers.sh)", findToxiproxy());

/** Immutable files of the fixture upstream, none of them in the bucket. */
const FILES = [
  "example.com/!hello/@v/v1.0.0.mod",
  "example.com/!hello/@v/v1.1.0.info",
  "example.com/!hello/@v/v1.1.0.mod",
  "example.com/pseudo/@v/v0.0.0-20240102030405-abcdefabcdef.info",
  "example.com/pseudo/@v/v0.0.0-20240102030405-abcdefabcdef.mod",
  "example.com/old/@v/v2.0.0+incompatible.info",
];

/** Runs `work`, failing after `ms` (today's code would wait 60 s per fill). */
async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms}ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fetches one module file through the proxy; its status and how long it took. */
async function fetchFile(proxy: ModuleProxy, key: string): Promise<[number, number]> {
  const started = performance.now();
  const escaped = key.replaceAll("!", "%21");
  const response = await proxy.handle(new Request(`http://127.0.0.1:1/mod/${escaped}`));
  await response.body?.cancel();
  return [response.status, performance.now() - started];
}

/** Sets the AWS variables the store reads for MinIO; returns a function that restores them. */
function useCredentials(minio: Minio): () => void {
  const saved = new Map<string, string | undefined>();
  for (const [name, value] of Object.entries({ ...minio.env(), AWS_PROFILE: "" })) {
    saved.set(name, Deno.env.get(name));
    if (value) Deno.env.set(name, value);
    else Deno.env.delete(name);
  }
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  };
}

Deno.test({
  name: "module proxy: a stalled bucket costs one deadline, then fills go to upstream at once",
  ignore: skip,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using minio = await startMinio();
    await using toxiproxy = await startToxiproxy();
    await using upstream = startFakeUpstream(TREE);
    const endpoint = await toxiproxy.proxy("minio", `127.0.0.1:${minio.port}`);
    const restore = useCredentials(minio);
    const dir = await Deno.makeTempDir({ prefix: "gcp-modstall-" });
    const open = async () => {
      const store = new AwsObjectStore({
        bucket: minio.bucket,
        endpoint,
        pathStyle: true,
        region: "us-east-1",
      }).withPrefix("module");
      const metrics = new Metrics();
      const log = recordingLogger();
      const proxy = await createModuleProxy({
        cacheDir: join(dir, "module"),
        store,
        upstream: `${upstream.url}/ok`,
        sumdbs: ["sum.test.local"],
        metrics,
        log,
      });
      return { proxy, metrics, log };
    };
    try {
      const first = await open();
      await t.step("a healthy bucket takes the first upload", async () => {
        const [status] = await within(15_000, "a fill", fetchFile(first.proxy, FILES[0]!));
        assert.equal(status, 200);
        const deadline = Date.now() + 10_000;
        while (first.metrics.get("modproxy_store_puts") < 1 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.equal(first.metrics.get("modproxy_store_puts"), 1, first.log.lines.join("\n"));
      });

      await toxiproxy.timeout("minio", 0);
      const later = FILES.slice(1);

      await t.step(
        "the first fill from the stalled bucket costs at most one deadline",
        async () => {
          await Deno.remove(join(dir, "module", FILES[0]!));
          const [status, ms] = await within(
            LOOKUP_DEADLINE_MS + 10_000,
            "the first stalled fill",
            fetchFile(first.proxy, FILES[0]!),
          );
          assert.equal(status, 200);
          assert.ok(ms < LOOKUP_DEADLINE_MS + 5_000, `first stalled fill took ${ms.toFixed(0)}ms`);
          assert.equal(first.metrics.get("modproxy_store_breaker_trips"), 1);
          assert.match(first.log.lines.join("\n"), /modproxy: S3 tier paused for 30s/);
        },
      );

      await t.step("then the breaker sends later fills to upstream at once", async () => {
        const started = performance.now();
        const results = await within(
          6_000,
          "five fills with the breaker open",
          (async () => {
            const out: [number, number][] = [];
            for (const key of later) out.push(await fetchFile(first.proxy, key));
            return out;
          })(),
        );
        const total = performance.now() - started;
        assert.deepEqual(results.map(([status]) => status), later.map(() => 200));
        assert.ok(total < 3_000, `five fills took ${total.toFixed(0)}ms`);
        assert.ok(first.metrics.get("modproxy_store_skipped") >= later.length);
      });

      await t.step("close() does not wait on the stalled bucket; uploads are owed", async () => {
        const started = performance.now();
        await within(10_000, "close()", first.proxy.close());
        assert.ok(performance.now() - started < 3_000);
        const markers = await Array.fromAsync(Deno.readDir(join(dir, "module", ".pending")));
        assert.ok(markers.length >= later.length, `${markers.length} markers`);
      });

      await toxiproxy.reset();

      await t.step("a later session sends the owed uploads once the bucket is back", async () => {
        const second = await open();
        await within(30_000, "close()", second.proxy.close());
        assert.ok(second.metrics.get("modproxy_store_uploads_resumed") >= later.length);
        const keys = await minio.listKeys(minio.bucket, "module/");
        for (const key of later) assert.ok(keys.includes(`module/${key}`), keys.join("\n"));
        const markers = await Array.fromAsync(Deno.readDir(join(dir, "module", ".pending")));
        assert.deepEqual(markers, []);
      });
    } finally {
      await toxiproxy.reset().catch(() => {});
      restore();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
