/**
 * The status page in a real headless browser (Debian's Chromium, installed by
 * scripts/install_test_servers.sh): what a person sees once the page's script has run, on a
 * server without a bucket (no S3 rows) and on one whose bucket is down (the reason beside the
 * fault), and that the page updates itself from /status/fragment without a reload.
 */
import assert from "node:assert/strict";
import { createHttpHandler, ServerMetrics, startHttpServer } from "../../src/server/http.ts";
import { Faults } from "../../src/metrics/mod.ts";
import { SessionLog } from "../../src/server/session_log.ts";
import { needs } from "../_util/go.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_BIN") ?? "chromium";

const present = new Deno.Command(CHROMIUM, { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((o) => o.success, () => false);

/**
 * Loads a page in headless Chromium, lets its timers run for `ms` of virtual time, and returns
 * the DOM as it then is.
 */
async function dumpDom(url: string, ms: number): Promise<string> {
  const profile = await Deno.makeTempDir({ prefix: "gcp-chromium-" });
  try {
    const output = await new Deno.Command(CHROMIUM, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        `--user-data-dir=${profile}`,
        `--virtual-time-budget=${ms}`,
        "--dump-dom",
        url,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(90_000),
    }).output();
    const dom = new TextDecoder().decode(output.stdout);
    assert.ok(output.success && dom.includes("</html>"), new TextDecoder().decode(output.stderr));
    return dom;
  } finally {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/** The text a person reads: tags dropped, script and style left out, entities decoded. */
function visibleText(dom: string): string {
  return dom.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/g, "")
    .replace(/<\/(tr|p|h1|h2|table|span)>/g, "\n")
    .replace(/<\/t[hd]>/g, " | ")
    .replace(/<[^>]+>/g, "")
    .replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
    .replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">")
    .replace(/[ \t]+/g, " ");
}

Deno.test({
  name: "the status page, in headless Chromium: rows, faults with reasons, live updates",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    if (await needs(`${CHROMIUM} (scripts/install_test_servers.sh installs it)`, present)) return;

    await t.step("no bucket: no S3 rows, no 'off' rows; updates without a reload", async () => {
      const metrics = new ServerMetrics();
      const sessions = new SessionLog({
        metrics,
        commands: { identify: () => Promise.resolve("go test"), release() {} },
      });
      const watch = sessions.begin(1);
      const cache = watch.wrap({
        get: () => Promise.resolve(undefined),
        put: () => Promise.resolve("/tmp/x"),
      });
      await cache.get("00".repeat(32));
      watch.end("close");
      metrics.add("get_requests", 10);
      metrics.add("get_hits", 9);
      metrics.add("get_misses", 1);
      let served = 0;
      const handle = createHttpHandler({
        metrics,
        sessions,
        status: {
          pluginAddress: "127.0.0.1:5930",
          cacheDir: "/tmp/c",
          bucket: "",
          modproxy: false,
          version: "9.9.9",
        },
        // Each page or fragment served counts one more go command: the page shows the count it
        // last fetched.
        refresh: () => void metrics.set("sessions_total", ++served),
      });
      await using server = await startHttpServer("127.0.0.1:0", handle);
      const text = visibleText(await dumpDom(`${server.url}/`, 11_000));
      assert.match(text, /Hit rate \| 90\.0% \(9 of 10 gets, 1 misses\)/);
      assert.match(text, /Hits by source \| 9 local/);
      assert.doesNotMatch(text, /\bS3\b|Module proxy|\boff\b|Uploads|Faults/, text);
      assert.match(text, /\| go test \|/, "the go command of the session");
      // The first load served 1; the script fetched the fragment again (twice in 11 s).
      const count = Number(/Go commands served \| (\d+)/.exec(text)?.[1]);
      assert.ok(count >= 2, `updated from /status/fragment: ${text}`);
      assert.equal(served, count, "the page shows what it last fetched");
      assert.match(text, /updated \d/, "and says when");
    });

    await t.step(
      "a bucket that is down: DOWN with its reason, uploads failed with the cause",
      async () => {
        const metrics = new ServerMetrics();
        metrics.set("s3_breaker_open", 1);
        metrics.add("uploads_failed", 1139);
        const faults = new Faults();
        faults.record(
          "credentials",
          'Cannot GET "action/ab/abcd": InvalidAccessKeyId: The Access Key Id you provided does not exist',
        );
        faults.record("upload", "not uploading <id>: remote tier paused or disabled", 1139);
        const handle = createHttpHandler({
          metrics,
          faults,
          status: {
            pluginAddress: "127.0.0.1:5930",
            cacheDir: "/tmp/c",
            bucket: "my-bucket",
            modproxy: false,
            version: "9.9.9",
            mode: { bucket: "my-bucket", prefix: "main", readOnly: false, warmKey: "" },
          },
        });
        await using server = await startHttpServer("127.0.0.1:0", handle);
        const text = visibleText(await dumpDom(`${server.url}/`, 500));
        assert.match(
          text,
          /S3 \| DOWN: serving the local tier \(bucket my-bucket\)\s*credentials: Cannot GET/,
        );
        assert.match(
          text,
          /Uploads \| 0 done \(0 B\), 1139 failed, .*\s*1139 failed: the object store refused the credentials: Cannot GET/,
        );
        assert.match(text, /Store \| s3:\/\/my-bucket\/main \(AWS S3\); read-write; warm-up off/);
        assert.doesNotMatch(text, /every upload had reached the bucket/);
      },
    );
  },
});
