/**
 * `/metrics` passes promlint, the linter of `promtool check metrics` (client_golang's
 * `testutil/promlint`, built from tests/testdata/promlint by scripts/install_test_servers.sh):
 * on a fresh server, and on one whose every catalogued counter, histogram and fault is set.
 */
import assert from "node:assert/strict";
import { createHttpHandler, ServerMetrics, startHttpServer } from "../../src/server/http.ts";
import { FAULT_CAUSES, Faults } from "../../src/metrics/mod.ts";
import { catalogued } from "../../src/metrics/catalog.ts";
import { needs } from "../_util/go.ts";
import { toolsBin } from "../_util/minio.ts";

const PROMLINT = Deno.env.get("PROMLINT_BIN") ?? toolsBin("promlint");

async function lint(text: string): Promise<{ code: number; out: string }> {
  const child = new Deno.Command(PROMLINT, {
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, out: decode(output.stdout) + decode(output.stderr) };
}

const present = Deno.stat(PROMLINT).then(() => true, () => false);

Deno.test("promlint (promtool check metrics) passes /metrics, fresh and busy", async (t) => {
  if (await needs(`promlint at ${PROMLINT} (scripts/install_test_servers.sh)`, present)) return;
  const metrics = new ServerMetrics();
  const faults = new Faults();
  const handle = createHttpHandler({
    metrics,
    faults,
    status: {
      pluginAddress: "127.0.0.1:5930",
      cacheDir: "/tmp/c",
      bucket: "b",
      modproxy: true,
      version: "1.2.3",
    },
  });
  await using server = await startHttpServer("127.0.0.1:0", handle);
  const scrape = async () => await (await fetch(`${server.url}/metrics`)).text();

  await t.step("a fresh server", async () => {
    const result = await lint(await scrape());
    assert.equal(result.code, 0, result.out);
  });

  await t.step("every counter, histogram and fault set", async () => {
    for (const name of catalogued()) metrics.add(name, 3);
    metrics.set("s3_breaker_open", 1);
    metrics.observe("s3_request_seconds", 0.2);
    metrics.observe("miss_to_put_seconds", 1.5);
    for (const cause of FAULT_CAUSES) faults.record(cause, `a ${cause} fault`);
    const text = await scrape();
    assert.match(text, /^go_cache_plugin_faults_total\{cause="tls"\} 1$/m);
    const result = await lint(text);
    assert.equal(result.code, 0, result.out);
  });

  await t.step("the checker itself finds the problems the issue listed", async () => {
    const result = await lint("# HELP x_ms x\n# TYPE x_ms counter\nx_ms 1\n");
    assert.equal(result.code, 1);
    assert.match(result.out, /counter metrics should have "_total" suffix/);
    assert.match(result.out, /abbreviated units/);
  });
});
