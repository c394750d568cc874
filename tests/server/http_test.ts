import assert from "node:assert/strict";
import {
  createHttpHandler,
  parseHttpAddress,
  prometheusText,
  ServerMetrics,
  startHttpServer,
  type StatusInfo,
} from "../../src/server/http.ts";
import { Metrics } from "../../src/metrics/mod.ts";

const STATUS: StatusInfo = {
  pluginAddress: "127.0.0.1:5930",
  cacheDir: "/tmp/<cache>",
  bucket: "",
  modproxy: false,
  version: "9.9.9",
};

interface Family {
  type: string;
  help: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

/**
 * A strict parser of the Prometheus text exposition format 0.0.4: every line is a HELP, a TYPE
 * or a sample; names and labels are checked; each family's HELP and TYPE come once, before its
 * samples, and samples of a family are contiguous; histogram series are consistent.
 */
function parsePrometheus(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "exposition ends with a newline");
  const families = new Map<string, Family>();
  const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const VALUE = String.raw`(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|NaN|[-+]Inf)`;
  const sampleRe = new RegExp(
    `^(${NAME})(?:\\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*",?)*)\\})? (${VALUE})(?: -?\\d+)?$`,
  );
  let current: string | undefined;
  const finished = new Set<string>();
  const familyOf = (sample: string) => {
    for (const suffix of ["_bucket", "_sum", "_count", ""]) {
      const base = suffix ? sample.slice(0, -suffix.length) : sample;
      if (sample.endsWith(suffix) && families.get(base)?.type === "histogram") return base;
    }
    return sample;
  };
  for (const [i, line] of text.slice(0, -1).split("\n").entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    let match;
    if ((match = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line))) {
      const [, kind, name, rest] = match;
      if (current !== name) {
        if (current) finished.add(current);
        assert.ok(!finished.has(name!), `family ${name} split: ${where}`);
        current = name;
      }
      const family = families.get(name!) ?? { type: "", help: "", samples: [] };
      families.set(name!, family);
      assert.equal(family.samples.length, 0, `${kind} after samples: ${where}`);
      if (kind === "TYPE") {
        assert.match(rest!, /^(counter|gauge|histogram|summary|untyped)$/, where);
        assert.equal(family.type, "", `second TYPE: ${where}`);
        family.type = rest!;
      } else {
        assert.equal(family.help, "", `second HELP: ${where}`);
        assert.match(rest!, /^(?:[^\\]|\\[\\n])*$/, `bad escape in HELP: ${where}`);
        family.help = rest!;
      }
      continue;
    }
    assert.ok(!line.startsWith("#") || line.startsWith("# "), where);
    if (line.startsWith("# ") || line === "") continue;
    match = sampleRe.exec(line);
    assert.ok(match, `not a sample: ${where}`);
    const [, name, labelText, valueText] = match;
    const base = familyOf(name!);
    assert.equal(base, current, `sample outside its family: ${where}`);
    const labels = Object.fromEntries(
      [...(labelText ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((
        m,
      ) => [m[1]!, m[2]!]),
    );
    const value = valueText === "+Inf"
      ? Infinity
      : valueText === "-Inf"
      ? -Infinity
      : Number(valueText);
    families.get(base!)!.samples.push({ name: name!, labels, value });
  }
  for (const [name, family] of families) {
    assert.notEqual(family.type, "", `${name} has a TYPE`);
    assert.ok(family.samples.length > 0, `${name} has samples`);
    if (family.type === "counter" || family.type === "gauge") {
      assert.deepEqual(family.samples.map((s) => s.name), [name]);
    }
    if (family.type === "counter") assert.ok(family.samples[0]!.value >= 0);
    if (family.type === "histogram") {
      const buckets = family.samples.filter((s) => s.name === `${name}_bucket`);
      const les = buckets.map((b) => b.labels.le === "+Inf" ? Infinity : Number(b.labels.le));
      assert.deepEqual(les, [...les].sort((a, b) => a - b), "buckets ascending");
      assert.equal(les.at(-1), Infinity, "+Inf bucket last");
      for (let j = 1; j < buckets.length; j++) {
        assert.ok(buckets[j]!.value >= buckets[j - 1]!.value, "buckets cumulative");
      }
      const count = family.samples.find((s) => s.name === `${name}_count`)!.value;
      assert.equal(buckets.at(-1)!.value, count, "+Inf bucket equals _count");
      assert.ok(family.samples.some((s) => s.name === `${name}_sum`));
    }
  }
  return families;
}

function sampleMetrics(): ServerMetrics {
  const metrics = new ServerMetrics();
  metrics.add("get_requests", 10);
  metrics.add("get_hits", 7);
  metrics.add("get_misses", 3);
  metrics.add("get_hit_bytes", 3 * 1024 * 1024);
  metrics.set("s3_breaker_open", 0);
  metrics.set("sessions", 2);
  metrics.add("sessions_total", 5);
  metrics.describe("get_hits", 'Gets answered "from cache"\nwith a \\ backslash');
  metrics.observe("s3_request_seconds", 0.02);
  metrics.observe("s3_request_seconds", 3);
  metrics.observe("s3_request_seconds", 100);
  return metrics;
}

Deno.test("prometheusText() output parses strictly and carries every metric", () => {
  const families = parsePrometheus(prometheusText(sampleMetrics()));
  assert.equal(families.get("go_cache_plugin_get_hits")?.type, "counter");
  assert.equal(families.get("go_cache_plugin_get_hits")?.samples[0]?.value, 7);
  assert.equal(
    families.get("go_cache_plugin_get_hits")?.help,
    'Gets answered "from cache"\\nwith a \\\\ backslash',
  );
  assert.equal(families.get("go_cache_plugin_s3_breaker_open")?.type, "gauge");
  assert.equal(families.get("go_cache_plugin_sessions")?.type, "gauge");
  assert.equal(families.get("go_cache_plugin_sessions")?.samples[0]?.value, 2);
  const histogram = families.get("go_cache_plugin_s3_request_seconds")!;
  assert.equal(histogram.type, "histogram");
  const count = histogram.samples.find((s) => s.name.endsWith("_count"))!;
  assert.equal(count.value, 3);
  const sum = histogram.samples.find((s) => s.name.endsWith("_sum"))!;
  assert.ok(Math.abs(sum.value - 103.02) < 1e-9);
  const le5 = histogram.samples.find((s) => s.labels.le === "5")!;
  assert.equal(le5.value, 2);
  assert.ok(!families.has("go_cache_plugin_s3_request_seconds_count"), "no stray counter");
});

Deno.test("prometheusText() always has a sessions gauge, even on a plain registry", () => {
  const families = parsePrometheus(prometheusText(new Metrics()));
  assert.equal(families.get("go_cache_plugin_sessions")?.type, "gauge");
});

Deno.test("the strict parser rejects malformed expositions", () => {
  assert.throws(() => parsePrometheus("go_x 1"));
  assert.throws(() => parsePrometheus("# HELP a bad \\q escape\n# TYPE a counter\na 1\n"));
  assert.throws(() => parsePrometheus("# TYPE go_x counter\ngo_x one\n"));
  assert.throws(() => parsePrometheus("# TYPE go_x counter\ngo-x 1\n"));
  assert.throws(() => parsePrometheus("# TYPE a counter\na 1\n# TYPE b counter\nb 1\na 2\n"));
});

Deno.test("createHttpHandler() serves /metrics, /debug/vars and the status page", async () => {
  const handle = createHttpHandler({ metrics: sampleMetrics(), status: STATUS });
  const metrics = await handle(new Request("http://x/metrics"));
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  parsePrometheus(await metrics.text());

  const vars = await handle(new Request("http://x/debug/vars"));
  const json = await vars.json();
  assert.equal(json.counters.get_hits, 7);
  assert.equal(json.histograms.s3_request_seconds.count, 3);

  const page = await (await handle(new Request("http://x/"))).text();
  assert.match(page, /Hit rate<\/th><td>70\.0%/);
  assert.match(page, /3\.0 MiB/);
  assert.match(page, /S3<\/th><td>off/);
  assert.match(page, /\/tmp\/&#60;cache&#62;/, "values are escaped");

  const down = new ServerMetrics();
  down.set("s3_breaker_open", 1);
  down.add("s3_get_errors", 4);
  const downPage = await (await createHttpHandler({
    metrics: down,
    status: { ...STATUS, bucket: "b" },
  })(new Request("http://x/"))).text();
  assert.match(downPage, /DOWN/);
  assert.match(downPage, /4 failed lookups/);
});

Deno.test("createHttpHandler() allows only GET and HEAD, and 404s unknown paths", async () => {
  const handle = createHttpHandler({ metrics: new ServerMetrics(), status: STATUS });
  for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
    const response = await handle(new Request("http://x/metrics", { method }));
    assert.equal(response.status, 405, method);
    assert.equal(response.headers.get("allow"), "GET, HEAD");
    await response.body?.cancel();
  }
  const head = await handle(new Request("http://x/metrics", { method: "HEAD" }));
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.ok(Number(head.headers.get("content-length")) > 0);
  const missing = await handle(new Request("http://x/nope"));
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  const noProxy = await handle(new Request("http://x/mod/example.com/@v/list"));
  assert.equal(noProxy.status, 404);
  await noProxy.body?.cancel();
});

Deno.test("createHttpHandler() hands /mod/ requests, raw path intact, to the module proxy", async () => {
  const seen: string[] = [];
  const handle = createHttpHandler({
    metrics: new ServerMetrics(),
    status: { ...STATUS, modproxy: true },
    modproxy: {
      handle(request) {
        seen.push(request.url);
        return Promise.resolve(new Response("v1.0.0\n"));
      },
    },
  });
  const response = await handle(new Request("http://x/mod/example.com/m/@v/list"));
  assert.equal(await response.text(), "v1.0.0\n");
  assert.deepEqual(seen, ["http://x/mod/example.com/m/@v/list"]);
  const post = await handle(new Request("http://x/mod/example.com/m/@v/list", { method: "POST" }));
  assert.equal(post.status, 405);
  await post.body?.cancel();
  assert.equal(seen.length, 1);
});

Deno.test("startHttpServer() serves over real HTTP on 127.0.0.1", async () => {
  const handle = createHttpHandler({ metrics: sampleMetrics(), status: STATUS });
  await using server = await startHttpServer("127.0.0.1:0", handle);
  assert.match(server.address, /^127\.0\.0\.1:\d+$/);
  const metrics = await fetch(`${server.url}/metrics`);
  parsePrometheus(await metrics.text());
  const page = await fetch(`${server.url}/`);
  assert.match(await page.text(), /go-cache-plugin 9\.9\.9/);
  const post = await fetch(`${server.url}/`, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  await post.body?.cancel();
  const head = await fetch(`${server.url}/debug/vars`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
});

Deno.test("parseHttpAddress() takes [host]:port, host:port, :port and port", () => {
  assert.deepEqual(parseHttpAddress("127.0.0.1:5970"), { hostname: "127.0.0.1", port: 5970 });
  assert.deepEqual(parseHttpAddress(":5970"), { hostname: "127.0.0.1", port: 5970 });
  assert.deepEqual(parseHttpAddress("5970"), { hostname: "127.0.0.1", port: 5970 });
  assert.deepEqual(parseHttpAddress("[::1]:80"), { hostname: "::1", port: 80 });
  assert.deepEqual(parseHttpAddress("localhost:8080"), { hostname: "localhost", port: 8080 });
  assert.throws(() => parseHttpAddress("localhost"), TypeError);
  assert.throws(() => parseHttpAddress("h:99999"), TypeError);
});
