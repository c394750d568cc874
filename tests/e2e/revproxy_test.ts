/**
 * `serve --revproxy` with real processes: the server spawned through scripts/go-cache-plugin,
 * an HTTPS origin behind a private CA (trusted by the server through `SSL_CERT_FILE`), MinIO as
 * the bucket, and the real `curl`, `go mod download` and Deno's `fetch` as clients through
 * `HTTPS_PROXY`, each trusting the proxy's CA.
 */

import assert from "node:assert/strict";
import { canRun, goEnv, ROOT, tempDir } from "../_util/go.ts";
import { findMinio, freePort, startMinio } from "../_util/minio.ts";
import { needs } from "../_util/go.ts";
import { runPlugin, Server } from "../_util/serve.ts";
import { makeOriginCerts, startHttpsOrigin } from "../_util/https_upstream.ts";

const skipCurl = await needs("curl (apt-get install curl)", canRunQuietly("curl", ["--version"]));
const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());

function canRunQuietly(command: string, args: string[]): boolean {
  try {
    return new Deno.Command(command, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** The server's counters; a name never counted reads 0. */
async function counters(http: string): Promise<(name: string) => number> {
  const values: Record<string, number> = (await (await fetch(`http://${http}/debug/vars`)).json())
    .counters;
  return (name: string) => values[name] ?? 0;
}

interface CurlResult {
  status: number;
  xcache: string;
  body: string;
  size: number;
}

/** `curl` through the proxy, trusting `cacert`; the body is kept when `keep`. */
async function curl(
  proxy: string,
  cacert: string,
  url: string,
  options: { keep?: boolean; headers?: string[] } = {},
): Promise<CurlResult> {
  const headerFile = await Deno.makeTempFile();
  const bodyFile = options.keep === false ? "/dev/null" : await Deno.makeTempFile();
  try {
    const out = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--cacert",
        cacert,
        "-D",
        headerFile,
        "-o",
        bodyFile,
        "-w",
        "%{http_code} %{size_download}",
        ...(options.headers ?? []).flatMap((h) => ["-H", h]),
        url,
      ],
      env: { HTTPS_PROXY: proxy, HTTP_PROXY: proxy, PATH: Deno.env.get("PATH") ?? "/usr/bin" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const [status, size] = new TextDecoder().decode(out.stdout).split(" ").map(Number);
    if (!out.success) {
      throw new Error(`curl ${url} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    const headers = await Deno.readTextFile(headerFile);
    const xcache =
      /^x-cache: (.*?)\r?$/im.exec(headers.split(/\r?\n\r?\n/).at(-2) ?? headers)?.[1] ??
        "";
    const body = bodyFile === "/dev/null" ? "" : await Deno.readTextFile(bodyFile);
    return { status: status!, xcache, body, size: size! };
  } finally {
    await Deno.remove(headerFile).catch(() => {});
    if (bodyFile !== "/dev/null") await Deno.remove(bodyFile).catch(() => {});
  }
}

async function objectCount(dir: string): Promise<number> {
  let count = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isDirectory || !/^[0-9a-f]{2}$/.test(entry.name)) continue;
      for await (const file of Deno.readDir(`${dir}/${entry.name}`)) {
        if (/^[0-9a-f]{64}$/.test(file.name)) count++;
      }
    }
  } catch {
    // no directory: no objects
  }
  return count;
}

/** Another process's /proc status (Deno reads /proc/<pid> only with --allow-all). */
async function procStatus(pid: number): Promise<string> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout);
}

/** The process's peak resident set (VmHWM), bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await procStatus(pid);
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

async function currentRss(pid: number): Promise<number> {
  const status = await procStatus(pid);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

Deno.test({
  name: "serve --revproxy: curl, fetch and go through HTTPS_PROXY; restart, bucket, origin down",
  ignore: skipCurl || skipGo || skipMinio,
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-revproxy-e2e-");
    const certs = await makeOriginCerts(work.path);
    const modRoot = `${ROOT}/tests/testdata/modproxy/upstream`;
    let origin = startHttpsOrigin(certs, { modRoot });
    const originPort = origin.port;
    await using minio = await startMinio();
    const httpPort = freePort();
    const http = `127.0.0.1:${httpPort}`;
    const proxyUrl = `http://${http}`;
    const hosts = `origin.localhost:${originPort},mods.localhost`;
    const start = (dir: string, ...extra: string[]) =>
      Server.start([
        `--plugin=${freePort()}`,
        `--http=${http}`,
        `--cache-dir=${work.path}/${dir}`,
        `--revproxy=${hosts}`,
        ...minio.flags(),
        "-v",
        ...extra,
      ], { SSL_CERT_FILE: certs.caFile, ...minio.env() });
    const at = (path: string) => `https://origin.localhost:${originPort}${path}`;
    let server = await start("a");
    const ca = (dir: string) => `${work.path}/${dir}/revproxy/ca.pem`;
    const stop = async () => {
      server.kill("SIGTERM");
      assert.equal(await server.exit(), 0, server.stderr);
    };
    try {
      await t.step(
        "the CA is written, private key 0600, and the start line says how to use it",
        async () => {
          assert.match(server.stderr, /caching proxy for origin\.localhost:\d+, mods\.localhost/);
          assert.match(server.stderr, /export HTTPS_PROXY=http:\/\/127\.0\.0\.1:\d+/);
          const key = await Deno.stat(`${work.path}/a/revproxy/private/ca-key.pem`);
          assert.equal(key.mode! & 0o777, 0o600);
          assert.match(await Deno.readTextFile(ca("a")), /^-----BEGIN CERTIFICATE-----/);
        },
      );

      await t.step(
        "curl: first a fetch, then a hit; private answers are never stored",
        async () => {
          const first = await curl(proxyUrl, ca("a"), at("/immutable/a"));
          assert.deepEqual([first.status, first.xcache, first.body], [
            200,
            "fetch, cached",
            "immutable a\n",
          ]);
          await waitFor(async () => (await objectCount(`${work.path}/a/revproxy`)) === 1);
          const second = await curl(proxyUrl, ca("a"), at("/immutable/a"));
          assert.deepEqual([second.xcache, second.body], ["hit, local", "immutable a\n"]);
          for (const path of ["/private/p", "/cookie/c"]) {
            assert.equal((await curl(proxyUrl, ca("a"), at(path))).xcache, "fetch, uncached");
          }
          const alice = await curl(proxyUrl, ca("a"), at("/auth/z"), {
            headers: ["Authorization: Bearer alice"],
          });
          const bob = await curl(proxyUrl, ca("a"), at("/auth/z"), {
            headers: ["Authorization: Bearer bob"],
          });
          assert.match(alice.body, /Bearer alice/);
          assert.match(bob.body, /Bearer bob/);
          assert.equal(await objectCount(`${work.path}/a/revproxy`), 1);
          assert.equal(origin.counts.get("/immutable/a"), 1);
        },
      );

      await t.step("Deno's fetch through the proxy hits too", async () => {
        using client = Deno.createHttpClient({
          proxy: { url: proxyUrl },
          caCerts: [await Deno.readTextFile(ca("a"))],
        });
        const response = await fetch(at("/immutable/a"), { client });
        assert.equal(response.headers.get("x-cache"), "hit, local");
        assert.equal(await response.text(), "immutable a\n");
      });

      await t.step(
        "CONNECT to an unlisted host is tunnelled: the origin's own certificate",
        async () => {
          const tunnelled = await curl(
            proxyUrl,
            certs.caFile,
            `https://localhost:${originPort}/immutable/t`,
          );
          assert.deepEqual([tunnelled.status, tunnelled.xcache], [200, ""]);
          const c = await counters(http);
          assert.equal(c("revproxy_tunnels"), 1);
        },
      );

      await t.step(
        "go mod download through HTTPS_PROXY, twice: the second from the cache",
        async () => {
          const consumer = `${ROOT}/tests/testdata/modproxy/consumer`;
          const goRun = async (n: number) => {
            const env = {
              ...goEnv(`${work.path}/gocache-${n}`),
              GOPROXY: `https://mods.localhost:${originPort}/mod`,
              GOSUMDB: "off",
              GOFLAGS: "-mod=mod",
              GOMODCACHE: `${work.path}/modcache-${n}`,
              HTTPS_PROXY: proxyUrl,
              // The documented way: the CA beside the system roots, not instead of them.
              SSL_CERT_DIR: `${work.path}/a/revproxy`,
            };
            const out = await new Deno.Command("go", {
              args: ["mod", "download", "-json", "example.com/Hello@v1.0.0"],
              cwd: consumer,
              env,
              clearEnv: true,
              stdout: "piped",
              stderr: "piped",
              signal: AbortSignal.timeout(120_000),
            }).output();
            const text = new TextDecoder();
            assert.ok(out.success, text.decode(out.stderr) + text.decode(out.stdout));
            await new Deno.Command("go", {
              args: ["clean", "-modcache"],
              env,
              clearEnv: true,
              stdout: "null",
              stderr: "null",
            }).output();
          };
          await goRun(1);
          const zip = "/mod/example.com/!hello/@v/v1.0.0.zip";
          assert.equal(origin.counts.get(zip), 1, [...origin.counts.keys()].join(" "));
          await waitFor(async () => (await counters(http))("revproxy_store_puts") >= 4);
          const before = await counters(http);
          await goRun(2);
          const after = await counters(http);
          assert.equal(origin.counts.get(zip), 1, "the zip came from the cache");
          assert.ok(after("revproxy_hits_local") - before("revproxy_hits_local") >= 2);
        },
      );

      await t.step("a 200 MB body is streamed with bounded server memory", async () => {
        const size = 200 << 20;
        const pid = server.process.pid;
        const base = await currentRss(pid);
        const objects = await objectCount(`${work.path}/a/revproxy`);
        const first = await curl(proxyUrl, ca("a"), at(`/big/${size}`), { keep: false });
        assert.deepEqual([first.status, first.xcache, first.size], [200, "fetch, cached", size]);
        await waitFor(async () => (await objectCount(`${work.path}/a/revproxy`)) === objects + 1);
        const second = await curl(proxyUrl, ca("a"), at(`/big/${size}`), { keep: false });
        assert.deepEqual([second.status, second.xcache, second.size], [200, "hit, local", size]);
        const peak = await peakRss(pid);
        const grew = peak - base;
        // deno-lint-ignore no-console
        console.error(
          `revproxy e2e: RSS ${(base / 2 ** 20).toFixed(0)} MiB before, peak ${
            (peak / 2 ** 20).toFixed(0)
          } MiB`,
        );
        assert.ok(grew < 120 * 2 ** 20, `peak RSS grew by ${(grew / 2 ** 20).toFixed(0)} MiB`);
        assert.equal(origin.counts.get(`/big/${size}`), 1);
      });

      await t.step("stats and /metrics count the proxy's hits, fetches and bytes", async () => {
        const stats = await runPlugin(["stats", `--http=${http}`]);
        assert.equal(stats.code, 0, stats.stderr);
        assert.match(stats.stdout, /Proxy hits\s+\d+ \(memory \d+, disk [1-9]\d*, bucket 0\)/);
        assert.match(stats.stdout, /Proxy fetches\s+\d+ \([1-9]\d* kept on disk/);
        const metrics = await (await fetch(`http://${http}/metrics`)).text();
        assert.match(metrics, /^go_cache_plugin_revproxy_hits_total\{tier="local"\} [1-9]/m);
        assert.match(metrics, /^go_cache_plugin_revproxy_bytes_total\{direction="served"\} [1-9]/m);
      });

      await t.step("after a restart the disk answers", async () => {
        await stop();
        server = await start("a");
        const hit = await curl(proxyUrl, ca("a"), at("/immutable/a"));
        assert.deepEqual([hit.xcache, hit.body], ["hit, local", "immutable a\n"]);
      });

      await t.step(
        "a fresh machine hits the bucket, and keeps serving with the origin down",
        async () => {
          await stop();
          const keys = await minio.listKeys();
          assert.ok(
            keys.some((k) => /^revproxy\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(k)),
            keys.join(" "),
          );
          assert.ok(!keys.some((k) => k.endsWith(".pem")), "no CA file is uploaded");
          server = await start("b");
          const remote = await curl(proxyUrl, ca("b"), at("/immutable/a"));
          assert.deepEqual([remote.xcache, remote.body], ["hit, remote", "immutable a\n"]);
          await origin.close();
          const down = await curl(proxyUrl, ca("b"), at("/immutable/a"));
          assert.deepEqual([down.status, down.xcache], [200, "hit, local"]);
          const missing = await curl(proxyUrl, ca("b"), at("/immutable/new"));
          assert.equal(missing.status, 502);
          await stop();
        },
      );

      await t.step("--read-only writes nothing to the bucket", async () => {
        origin = startHttpsOrigin(certs, { port: originPort, modRoot });
        const before = (await minio.listKeys()).length;
        server = await start("c", "--read-only");
        const fetched = await curl(proxyUrl, ca("c"), at("/immutable/ro"));
        assert.equal(fetched.xcache, "fetch, cached");
        await stop();
        assert.equal((await minio.listKeys()).length, before);
      });
    } finally {
      await server[Symbol.asyncDispose]();
      await origin.close().catch(() => {});
    }
  },
});

async function waitFor(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}
