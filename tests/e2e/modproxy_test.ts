/**
 * The module proxy against the real upstream this machine's go command uses (`go env GOPROXY`,
 * resolved by `resolveUpstream`): download and build a small pinned module graph through the
 * proxy, with checksums checked through the proxy's `/mod/sumdb/sum.golang.org/` route, then again
 * with a fresh module cache and the proxy's upstream pointed at a dead loopback port.
 *
 * The proxy runs in a child process (`tests/testdata/modproxy/serve_proxy.ts`) that alone gets
 * network permission for the upstream hosts; this test process stays on loopback.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseProxyList, resolveUpstream } from "../../src/modproxy/mod.ts";
import { ProxyProcess } from "../testdata/modproxy/serve_proxy.ts";

const GO_MOD = `module example.com/e2e

go 1.21

require (
	github.com/google/uuid v1.6.0
	rsc.io/quote v1.5.2
)
`;
const MAIN_GO = `package main

import (
	"fmt"

	"github.com/google/uuid"
	"rsc.io/quote"
)

func main() {
	fmt.Println(quote.Glass(), uuid.NewSHA1(uuid.NameSpaceDNS, []byte("go-cache-plugin")))
}
`;

async function setup(): Promise<{ upstream: string; hosts: string[] } | { why: string }> {
  try {
    const upstream = await resolveUpstream("", (name) => Deno.env.get(name));
    const list = parseProxyList(upstream);
    const hosts = list.entries.filter((e) => e.url.startsWith("http")).map((e) =>
      new URL(e.url).host
    );
    if (hosts.length === 0) {
      return { why: `no proxy in the upstream list ${JSON.stringify(upstream)}` };
    }
    return { upstream, hosts };
  } catch (error) {
    return { why: error instanceof Error ? error.message : String(error) };
  }
}

const SETUP = await setup();
const IGNORE = "why" in SETUP && !Deno.env.get("CI");
if ("why" in SETUP) {
  // deno-lint-ignore no-console
  console.error(`modproxy e2e: ${SETUP.why}${IGNORE ? ", skipping (CI unset)" : ""}`);
}

async function defaultGocache(): Promise<string | undefined> {
  const out = await new Deno.Command("go", {
    args: ["env", "GOCACHE"],
    env: { GOCACHEPROG: "", GOFLAGS: "" },
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.success ? new TextDecoder().decode(out.stdout).trim() || undefined : undefined;
}

async function go(args: string[], cwd: string, env: Record<string, string>) {
  const out = await new Deno.Command("go", {
    args,
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: "module proxy serves a real module graph from the real upstream, then from cache alone",
  ignore: IGNORE,
  sanitizeResources: false,
  async fn(t) {
    if ("why" in SETUP) throw new Error(`Cannot run the module proxy e2e test: ${SETUP.why}`);
    const tmp = await Deno.makeTempDir({ prefix: "modproxy-e2e-" });
    try {
      const cacheDir = join(tmp, "proxy-cache");
      const work = join(tmp, "work");
      await Deno.mkdir(work, { recursive: true });
      await Deno.writeTextFile(join(work, "go.mod"), GO_MOD);
      await Deno.writeTextFile(join(work, "main.go"), MAIN_GO);
      // A warm build cache (the machine's own, content-addressed) keeps the build step short.
      const gocache = Deno.env.get("GCP_TEST_GOCACHE") ?? await defaultGocache() ??
        join(tmp, "gocache");
      const env = (port: number): Record<string, string> => ({
        GOTOOLCHAIN: "local",
        GOENV: "off",
        GOFLAGS: "-modcacherw",
        GOPATH: join(tmp, "gopath"),
        GOMODCACHE: join(tmp, "gopath/pkg/mod"),
        GOCACHE: gocache,
        GOCACHEPROG: "",
        GOPROXY: `http://127.0.0.1:${port}/mod`,
        GOSUMDB: `sum.golang.org http://127.0.0.1:${port}/mod/sumdb/sum.golang.org`,
        GONOPROXY: "",
        GOPRIVATE: "",
        GONOSUMDB: "",
        GOWORK: "off",
        HTTP_PROXY: "http://127.0.0.1:9",
        HTTPS_PROXY: "http://127.0.0.1:9",
        NO_PROXY: "127.0.0.1,localhost",
      });
      const build = async (port: number) => {
        await Deno.remove(join(tmp, "gopath"), { recursive: true }).catch(() => {});
        const b = await go(["build", "-o", "e2e.bin", "."], work, env(port));
        assert.equal(b.code, 0, b.stderr);
        const run = await new Deno.Command(join(work, "e2e.bin")).output();
        assert.match(new TextDecoder().decode(run.stdout), /^I can eat glass.* [0-9a-f-]{36}\n$/);
      };
      const { upstream, hosts } = SETUP as { upstream: string; hosts: string[] };

      await t.step("warm: go mod tidy and go build through the proxy", async () => {
        await using proxy = await ProxyProcess.start(cacheDir, upstream, { hosts });
        let start = performance.now();
        const tidy = await go(["mod", "tidy"], work, env(proxy.port));
        // deno-lint-ignore no-console
        console.error(`go mod tidy: ${((performance.now() - start) / 1000).toFixed(1)}s`);
        start = performance.now();
        assert.equal(tidy.code, 0, tidy.stderr);
        const sum = await Deno.readTextFile(join(work, "go.sum"));
        assert.match(sum, /^rsc\.io\/quote v1\.5\.2 h1:/m);
        assert.match(sum, /^golang\.org\/x\/text v0\.0\.0-\d{14}-[0-9a-f]{12}\/go\.mod h1:/m);
        await build(proxy.port);
        // deno-lint-ignore no-console
        console.error(`go build: ${((performance.now() - start) / 1000).toFixed(1)}s`);
        const metrics = await proxy.stop();
        assert.ok(metrics.modproxy_immutable_misses! >= 6, JSON.stringify(metrics));
        assert.ok(metrics.modproxy_sumdb_misses! >= 1, "lookups went through the proxy");
      });

      await t.step(
        "cold client, dead upstream: everything comes from the proxy cache",
        async () => {
          await using proxy = await ProxyProcess.start(cacheDir, "http://127.0.0.1:9/dead");
          await build(proxy.port);
          const metrics = await proxy.stop();
          assert.equal(metrics.modproxy_upstream_errors ?? 0, 0, JSON.stringify(metrics));
          assert.equal(metrics.modproxy_immutable_misses ?? 0, 0, JSON.stringify(metrics));
          assert.ok(metrics.modproxy_immutable_hits! >= 6, JSON.stringify(metrics));
        },
      );
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
