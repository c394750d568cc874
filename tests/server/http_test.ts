import assert from "node:assert/strict";
import {
  createHttpHandler,
  parseHttpAddress,
  prometheusText,
  ServerMetrics,
  startHttpServer,
  type StatusInfo,
} from "../../src/server/http.ts";
import { Faults, Metrics } from "../../src/metrics/mod.ts";
import { SessionLog } from "../../src/server/session_log.ts";
import { summaryInputOf } from "../../src/server/summary.ts";

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
      for (const sample of family.samples) assert.equal(sample.name, name);
      const seen = family.samples.map((s) => JSON.stringify(s.labels));
      assert.equal(new Set(seen).size, seen.length, `${name}: each label set once`);
    }
    if (family.type === "counter") {
      assert.match(name, /_total$/, `${name}: a counter's name ends in _total`);
      for (const sample of family.samples) assert.ok(sample.value >= 0);
    }
    assert.doesNotMatch(name, /_ms(_|$)/, `${name}: seconds, not milliseconds`);
    assert.notEqual(family.help, "", `${name} has a HELP text`);
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

/** One sample's value, by family and labels. */
function sample(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return families.get(name)?.samples.find((s) =>
    s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels)
  )?.value;
}

Deno.test("prometheusText() output parses strictly and carries every metric", () => {
  const metrics = sampleMetrics();
  metrics.add("local_hits", 5);
  metrics.add("warm_hits", 3);
  metrics.add("warm_local_hits", 2);
  metrics.add("s3_get_hits", 1);
  metrics.add("s3_wait_ms", 1500);
  const families = parsePrometheus(prometheusText(metrics, { version: "9.9.9" }));
  assert.equal(families.get("go_cache_plugin_gets_total")?.type, "counter");
  assert.equal(sample(families, "go_cache_plugin_gets_total", { result: "hit" }), 7);
  assert.equal(sample(families, "go_cache_plugin_gets_total", { result: "miss" }), 3);
  // Hits by tier: 3 of the 5 local hits were the local tier's own, 3 the warm-up's.
  assert.equal(sample(families, "go_cache_plugin_hits_total", { tier: "local" }), 3);
  assert.equal(sample(families, "go_cache_plugin_hits_total", { tier: "warm" }), 3);
  assert.equal(sample(families, "go_cache_plugin_hits_total", { tier: "s3" }), 1);
  assert.equal(sample(families, "go_cache_plugin_remote_wait_seconds_total"), 1.5);
  assert.equal(families.get("go_cache_plugin_breaker_open")?.type, "gauge");
  assert.equal(sample(families, "go_cache_plugin_breaker_open", { store: "build" }), 0);
  assert.equal(sample(families, "go_cache_plugin_sessions_running"), 2);
  assert.equal(sample(families, "go_cache_plugin_sessions_total", { result: "ok" }), 5);
  assert.equal(
    sample(families, "go_cache_plugin_build_info", { version: "9.9.9", deno: Deno.version.deno }),
    1,
  );
  assert.ok(sample(families, "process_resident_memory_bytes")! > 0);
  assert.ok(sample(families, "process_start_time_seconds")! > 1e9);
  assert.ok(sample(families, "process_cpu_seconds_total")! > 0);
  const histogram = families.get("go_cache_plugin_remote_request_seconds")!;
  assert.equal(histogram.type, "histogram");
  const count = histogram.samples.find((s) => s.name.endsWith("_count"))!;
  assert.equal(count.value, 3);
  const sum = histogram.samples.find((s) => s.name.endsWith("_sum"))!;
  assert.ok(Math.abs(sum.value - 103.02) < 1e-9);
  const le5 = histogram.samples.find((s) => s.labels.le === "5")!;
  assert.equal(le5.value, 2);
  assert.ok(!families.has("go_cache_plugin_uncatalogued"), "every counter is catalogued");
});

Deno.test("prometheusText() has every series from the start, at zero", () => {
  const families = parsePrometheus(prometheusText(new Metrics()));
  for (const name of ["go_cache_plugin_gets_total", "go_cache_plugin_uploads_total"]) {
    assert.ok(families.get(name)!.samples.length > 1, name);
    for (const s of families.get(name)!.samples) assert.equal(s.value, 0, name);
  }
  assert.equal(sample(families, "go_cache_plugin_sessions_running"), 0);
  assert.equal(sample(families, "go_cache_plugin_faults_total", { cause: "credentials" }), 0);
  assert.equal(
    families.get("go_cache_plugin_miss_to_put_seconds")?.type,
    "histogram",
    "histograms too",
  );
});

Deno.test("prometheusText() exports a counter the catalogue lacks, by name", () => {
  const metrics = new Metrics();
  metrics.add("brand_new_thing", 4);
  const families = parsePrometheus(prometheusText(metrics));
  assert.equal(
    sample(families, "go_cache_plugin_uncatalogued", { name: "brand_new_thing" }),
    4,
  );
});

Deno.test("the catalogue names every counter the program counts", async () => {
  // Every literal counter name handed to add()/set() under src/ (the module proxy's per-class
  // names are built from a template: checked through one class).
  const names = new Set<string>();
  const root = new URL("../../src/", import.meta.url);
  const walk = async (dir: URL) => {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      if (entry.isDirectory) await walk(url);
      else if (entry.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(url);
        for (const m of text.matchAll(/\.(?:add|set)\("([a-z0-9]+_[a-z0-9_]+)"/g)) {
          names.add(m[1]!);
        }
        for (
          const m of text.matchAll(
            /\b(?:done|skipped|failed|left|resumed|bytesUp|hits|bytesServed): "([a-z0-9_]+)"/g,
          )
        ) names.add(m[1]!);
        for (const m of text.matchAll(/`modproxy_\$\{cls\}_([a-z_]+)`/g)) {
          names.add(`modproxy_mutable_${m[1]}`);
        }
      }
    }
  };
  await walk(root);
  for (const name of ["s3_breaker_trips", "s3_breaker_open", "s3_breaker_shared"]) names.add(name);
  assert.ok(names.size > 40, `found ${names.size} names`);
  const { catalogued } = await import("../../src/metrics/catalog.ts");
  const known = catalogued();
  const missing = [...names].filter((n) => !known.has(n) && !n.endsWith("_seconds"));
  assert.deepEqual(missing, [], "counters /metrics would export as uncatalogued");
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
  assert.deepEqual(json.faults, []);

  const page = await (await handle(new Request("http://x/"))).text();
  assert.match(page, /Hit rate<\/th><td>70\.0%/);
  assert.match(page, /3\.0 MiB/);
  assert.doesNotMatch(page, /<th>(S3|Remote hits|Uploads|Module proxy)/, "no rows for what is off");
  assert.doesNotMatch(page, />off\b/, "no rows saying off");
  assert.match(page, /\/tmp\/&#60;cache&#62;/, "values are escaped");

  const down = new ServerMetrics();
  down.set("s3_breaker_open", 1);
  down.add("s3_get_errors", 4);
  const faults = new Faults();
  faults.record("endpoint", "Cannot GET action/ab: connect ECONNREFUSED 127.0.0.1:9");
  faults.record("endpoint", "again", 3);
  const downPage = await (await createHttpHandler({
    metrics: down,
    faults,
    status: { ...STATUS, bucket: "b" },
  })(new Request("http://x/"))).text();
  assert.match(downPage, /DOWN/);
  assert.match(downPage, /4 failed lookups/);
  assert.match(
    downPage,
    /DOWN<\/b>: serving the local tier \(bucket b\)<span class="why">endpoint: Cannot GET action\/ab: connect ECONNREFUSED/,
    "the reason beside the fault",
  );
  assert.match(downPage, /endpoint ×4/);
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

Deno.test("POST /debug/reset zeroes counters and faults, from loopback with the header only", async () => {
  const metrics = sampleMetrics();
  const faults = new Faults();
  faults.record("credentials", "Cannot GET x: InvalidAccessKeyId: no such key");
  const handle = createHttpHandler({ metrics, faults, status: STATUS });
  const post = (host: string, headers: Record<string, string> = { "x-go-cache-plugin": "reset" }) =>
    handle(new Request("http://x/debug/reset", { method: "POST", headers }), {
      remoteAddr: { transport: "tcp", hostname: host, port: 40000 },
    });
  for (
    const [response, status] of [
      [await post("10.0.0.2"), 403],
      [await post("127.0.0.1", {}), 400],
      [await handle(new Request("http://x/debug/reset", { method: "POST" })), 400],
      [await handle(new Request("http://x/debug/reset")), 405],
    ] as const
  ) {
    assert.equal(response.status, status);
    await response.body?.cancel();
  }
  assert.equal(metrics.get("get_hits"), 7, "refused: nothing reset");
  const ok = await post("127.0.0.1");
  assert.equal(ok.status, 200, await ok.text());
  assert.equal(metrics.get("get_hits"), 0);
  assert.equal(metrics.get("sessions"), 2, "gauges are state, kept");
  assert.deepEqual(faults.list(), []);
  assert.equal((await post("::1")).status, 200);
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

/** A session log with two finished sessions: 10 gets with 4 misses, each put 30 ms later. */
async function sampleSessions(metrics: Metrics): Promise<SessionLog> {
  const sessions = new SessionLog({ metrics });
  const outputs = new Map<string, string>();
  const cache = {
    get: (actionId: string) => {
      const outputId = outputs.get(actionId);
      return Promise.resolve(
        outputId ? { outputId, size: 1, diskPath: `/c/${outputId}`, time: new Date() } : undefined,
      );
    },
    put: (object: { actionId: string; outputId: string }) => {
      outputs.set(object.actionId, object.outputId);
      return Promise.resolve(`/c/${object.outputId}`);
    },
  };
  for (const id of [1, 2]) {
    const watch = sessions.begin(id);
    const wrapped = watch.wrap(cache);
    for (let i = 0; i < 5; i++) {
      const actionId = String(i).repeat(64);
      if (!await wrapped.get(actionId)) {
        await new Promise((r) => setTimeout(r, 30));
        await wrapped.put({
          actionId,
          outputId: String(9 - i).repeat(64),
          body: new Uint8Array(1),
        });
      }
    }
    if (id === 1) watch.end("close");
  }
  return sessions;
}

Deno.test("SessionLog counts each session, the minutes and miss-to-put, and what is in use", async () => {
  const metrics = new Metrics();
  const sessions = await sampleSessions(metrics);
  const [running, done] = sessions.recent();
  assert.deepEqual(
    [done!.id, done!.gets, done!.hits, done!.puts, done!.end],
    [1, 5, 0, 5, "close"],
  );
  assert.ok(done!.durationMs! >= 150);
  assert.deepEqual([running!.id, running!.gets, running!.hits, running!.durationMs], [
    2,
    5,
    5,
    undefined,
  ]);
  const minutes = sessions.hitRateByMinute();
  assert.equal(minutes.reduce((n, m) => n + m.gets, 0), 10);
  assert.equal(minutes.reduce((n, m) => n + m.hits, 0), 5);
  const measured = sessions.missToPut()!;
  assert.equal(measured.measured, 5);
  assert.ok(measured.medianMs >= 25 && measured.medianMs < 1000, String(measured.medianMs));
  assert.equal(metrics.histograms().miss_to_put_seconds?.count, 5);
  // Session 2's five hits are on the actions session 1 produced: their cost is what they saved.
  assert.equal(measured.savedHits, 5);
  assert.ok(measured.savedMs >= 125, String(measured.savedMs));
  assert.ok(sessions.inUse("9".repeat(64)), "handed to the running session");
  assert.ok(!sessions.inUse("1".repeat(64)));
});

Deno.test("createHttpHandler() with a session log: /debug/vars, the chart and the recent commands", async () => {
  const metrics = sampleMetrics();
  const sessions = await sampleSessions(metrics);
  let refreshed = 0;
  const handle = createHttpHandler({
    metrics,
    status: STATUS,
    sessions,
    refresh: () => refreshed++,
  });
  const vars = await (await handle(new Request("http://x/debug/vars"))).json();
  assert.equal(vars.miss_to_put.measured, 5);
  assert.equal(vars.recent_sessions.length, 2);
  assert.equal(vars.recent_sessions[1].end, "close");
  assert.equal(vars.recent_sessions[0].duration_ms, null, "still running");
  assert.equal(
    vars.hit_rate_by_minute.reduce((n: number, m: { gets: number }) => n + m.gets, 0),
    10,
  );
  assert.deepEqual(vars.server, {
    version: "9.9.9",
    bucket: false,
    modproxy: false,
    "cache_dir": "/tmp/<cache>",
    "max_size": 0,
  });
  assert.equal(vars.recent_sessions[0].command, "go", "no way to tell: plain go");
  const input = summaryInputOf(vars);
  assert.deepEqual(input.missToPut, sessions.missToPut());
  assert.equal(summaryInputOf({ counters: {} }).missToPut, null, "an older server");

  const page = await (await handle(new Request("http://x/"))).text();
  assert.match(page, /Hit rate<\/th><td>70\.0%/);
  assert.match(page, /<svg [^>]*role="img"/);
  // One bar per minute with gets (two, when the sessions straddle a minute).
  assert.match(page, /<rect [^>]*><title>\d\d:\d\d: [\d.]+% of \d+ gets<\/title><\/rect>/);
  assert.match(page, /Recent go commands/);
  assert.match(
    page,
    /<tr><td>2<\/td><td class="cmd">go<\/td><td>[\d-]+T[\d:]+Z<\/td><td>running<\/td><td>5<\/td><td>100\.0%/,
  );
  // 7 hits in the counters, 5 of them on actions produced here: at least those 5.
  assert.match(page, /Build time saved<\/th><td>at least \d+ ms measured \(5 hits measured, /);
  assert.ok(!/https?:\/\/(?!www\.w3\.org)/.test(page), "no external assets");
  assert.ok(!/http-equiv="refresh"/.test(page), "no full-page reload");
  assert.match(page, /fetch\("\/status\/fragment"/, "updates itself");
  const fragment = await (await handle(new Request("http://x/status/fragment"))).text();
  assert.ok(!fragment.includes("<html"), "a fragment");
  assert.match(fragment, /Hit rate<\/th><td>70\.0%/);
  assert.equal(refreshed, 3);
  await (await handle(new Request("http://x/metrics"))).text();
  assert.equal(refreshed, 4);
});

Deno.test("SessionLog keeps a cache's answer-at-once lookups, and counts them", async () => {
  const sessions = new SessionLog();
  const hit = { outputId: "a".repeat(64), size: 1, diskPath: "/c/a" };
  const watch = sessions.begin(1);
  const cache = watch.wrap({
    get: (actionId) =>
      actionId === "1".repeat(64)
        ? hit
        : actionId === "2".repeat(64)
        ? undefined
        : Promise.resolve(undefined),
    put: () => Promise.resolve("/c/x"),
  });
  assert.equal(cache.get("1".repeat(64)), hit, "a hit at once stays a value");
  assert.equal(cache.get("2".repeat(64)), undefined, "a miss at once too");
  const later = cache.get("3".repeat(64));
  assert.ok(later instanceof Promise, "an answer that waits stays a promise");
  assert.equal(await later, undefined);
  const [record] = sessions.recent();
  assert.deepEqual([record!.gets, record!.hits], [3, 1]);
  assert.ok(sessions.inUse(hit.outputId));
  watch.end("close");
  assert.ok(!sessions.inUse(hit.outputId), "released when the session ends");
});
