/**
 * The Google Cloud Storage store end to end: the real go command, the plugin as GOCACHEPROG
 * through `scripts/go-cache-plugin` (the release permissions), a real fake-gcs-server on
 * 127.0.0.1 reached through `STORAGE_EMULATOR_HOST`, a recording proxy to count requests,
 * toxiproxy to black-hole it. What `s3_test.ts`, `warmup_test.ts` and `trust_tiers_test.ts`
 * check on MinIO, on GCS: a fresh worker is all hits in few requests after the warm-up, the trust
 * tiers hold, and a store that is black-holed or down costs misses, never a failed or hung build;
 * bad credentials are one line; workload identity federation works under the plugin's
 * permissions.
 */
import assert from "node:assert/strict";
import {
  canRun,
  copyModule,
  goEnv,
  mustGo,
  needs,
  PLUGIN,
  pluginCommand,
  pluginMetrics,
  tempDir,
  total,
} from "../_util/go.ts";
import { countRequests, type FakeGcs, findFakeGcs, startFakeGcs } from "../_util/fake_gcs.ts";
import { findToxiproxy, startToxiproxy } from "../_util/toxiproxy.ts";
import { freePort } from "../_util/net.ts";
import { DENO_DIR } from "../_util/serve.ts";
import { sha256Hex } from "../_util/bytes.ts";

/** Misses of a fully warm `go build ./...` (go looks one entry up under an id it never puts). */
const WARM_MISSES = 1;
const JOB = [["build", "./..."], ["vet", "./..."], ["test", "./..."]];

const skipGo = !canRun("go");
const skipGcs = await needs("fake-gcs-server (scripts/install_test_servers.sh)", findFakeGcs());
const skipToxiproxy = await needs("toxiproxy (scripts/install_test_servers.sh)", findToxiproxy());

async function ageDirectories(dir: string): Promise<void> {
  const old = new Date(Date.now() - 3_600_000);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) await ageDirectories(`${dir}/${entry.name}`);
  }
  await Deno.utime(dir, old, old);
}

/** Every output file of a cache directory hashes to its name. */
async function assertOutputsVerified(cacheDir: string): Promise<void> {
  for await (const shard of Deno.readDir(`${cacheDir}/output`)) {
    for await (const entry of Deno.readDir(`${cacheDir}/output/${shard.name}`)) {
      if (!entry.isFile || entry.name.includes(".")) continue;
      const bytes = await Deno.readFile(`${cacheDir}/output/${shard.name}/${entry.name}`);
      assert.equal(await sha256Hex(bytes), entry.name, `${entry.name} holds other bytes`);
    }
  }
}

/** A copy of the module whose lib changed: std comes from the bucket, lib and its users compile. */
async function changedModule(): Promise<string> {
  const changed = await copyModule();
  await Deno.writeTextFile(
    `${changed}/lib/extra.go`,
    "package lib\n\n// Extra is new.\nconst Extra = 42\n",
  );
  await ageDirectories(changed);
  const old = new Date(Date.now() - 3_600_000);
  await Deno.utime(`${changed}/lib/extra.go`, old, old);
  return changed;
}

Deno.test({
  name: "GCS store: a fresh worker is all hits in few requests; trust tiers; faults never fail",
  ignore: skipGo || skipGcs || skipToxiproxy,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-gcse2e-");
    await using gcs = await startFakeGcs();
    const module = await copyModule();
    await ageDirectories(module);
    let run = 0;
    const machine = (flags: string[] = [], endpoint = gcs.endpoint, server: FakeGcs = gcs) => {
      run++;
      const cacheDir = `${work.path}/cache-${run}`;
      const plugin = pluginCommand(
        `--cache-dir=${cacheDir}`,
        ...server.flags(),
        "--metrics",
        ...flags,
      );
      return {
        cacheDir,
        env: { ...goEnv(`${work.path}/gocache-${run}`, plugin), ...server.env(endpoint) },
      };
    };
    const job = async (env: Record<string, string>, cwd = module, commands = JOB) => {
      let stdout = "";
      let stderr = "";
      for (const args of commands) {
        const result = await mustGo(args, { cwd, env });
        stdout += result.stdout;
        stderr += result.stderr;
      }
      return { stdout, stderr, metrics: pluginMetrics(stderr) };
    };
    let entries = 0;

    await t.step(
      "machine A builds, vets and tests, uploading every entry and a manifest",
      async () => {
        const a = machine();
        const { metrics, stderr } = await job(a.env);
        assert.equal(metrics.length, 3, stderr);
        assert.ok(total(metrics, "put_requests") > 100);
        assert.equal(total(metrics, "uploads_left"), 0);
        // On a loaded machine a lookup can be slow enough to pause the tier, and the uploads it
        // stops are owed: the next session sends them. Until none is left (a few tries at most).
        let owed = total(metrics, "uploads_failed");
        for (let tries = 0; owed > 0 && tries < 3; tries++) {
          const again = await job(a.env, module, [["build", "./..."]]);
          assert.ok(total(again.metrics, "uploads_resumed") > 0, again.stderr);
          owed = total(again.metrics, "uploads_failed");
        }
        assert.equal(owed, 0, stderr);
        assert.equal(total(metrics, "warm_manifest_writes"), 3, JSON.stringify(metrics));
        const keys = await gcs.listKeys();
        // tailscale's layout, the same as on S3, and the warm-up's manifest and packs.
        for (const key of keys) {
          assert.match(key, /^((action|output)\/[0-9a-f]{2}\/[0-9a-f]{64}|warm\/[0-9a-f]{16}\/)/);
        }
        assert.ok(keys.some((k) => /^warm\/[0-9a-f]{16}\/manifest/.test(k)), "a manifest");
        entries = keys.filter((k) => k.startsWith("action/")).length;
        assert.ok(entries > 100, `${entries} action records`);
      },
    );

    await t.step("machine B (fresh) warms up: all hits, requests < entries / 4", async () => {
      await using counter = countRequests(gcs.endpoint);
      const b = machine([], counter.endpoint);
      const { stdout, stderr, metrics } = await job(b.env);
      assert.match(stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
      assert.equal(total(metrics, "put_bytes"), 0, `nothing recompiles: ${stderr}`);
      assert.ok(total(metrics, "warm_hits") > 100, JSON.stringify(metrics));
      const gets = counter.requests.filter((r) => r.method === "GET");
      assert.ok(
        counter.requests.length < entries / 4,
        `${counter.requests.length} requests (${gets.length} GETs) for ${entries} entries`,
      );
      assert.ok(counter.requests.every((r) => r.status < 500), JSON.stringify(counter.requests));
      await assertOutputsVerified(b.cacheDir);
    });

    await t.step("machine C (fresh, no warm-up): every entry looked up one by one", async () => {
      const c = machine(["--warm-key=off"]);
      const { stdout, metrics } = await job(c.env, module, [["build", "./..."], ["test", "./..."]]);
      assert.match(stdout, /\(cached\)/);
      assert.ok(total(metrics, "get_misses") <= 2 * WARM_MISSES, JSON.stringify(metrics));
      assert.equal(total(metrics, "put_bytes"), 0);
      assert.ok(total(metrics, "s3_get_hits") > 100);
      assert.equal(total(metrics, "s3_corrupt") + total(metrics, "s3_get_errors"), 0);
      await assertOutputsVerified(c.cacheDir);
    });

    await t.step(
      "trust tiers: --read-only writes nothing; --prefix writes only there",
      async () => {
        const changed = await changedModule();
        try {
          const before = await gcs.listKeys();
          const ro = machine([
            "--prefix=pr-1",
            "--read-prefixes=/",
            "--read-only",
            "--warm-key=off",
          ]);
          const read = await job(ro.env, changed, [["build", "./..."]]);
          assert.ok(total(read.metrics, "s3_read_prefix_hits") > 50, JSON.stringify(read.metrics));
          assert.ok(total(read.metrics, "put_requests") > 0, "lib recompiles");
          assert.deepEqual(await gcs.listKeys(), before, "nothing written");
          const rw = machine(["--prefix=pr-1", "--read-prefixes=/", "--warm-key=off"]);
          const write = await job(rw.env, changed, [["build", "./..."]]);
          assert.ok(total(write.metrics, "s3_read_prefix_hits") > 50);
          assert.ok(total(write.metrics, "uploads_done") > 0, JSON.stringify(write.metrics));
          const added = (await gcs.listKeys()).filter((k) => !before.includes(k));
          assert.ok(added.length > 0);
          for (const key of added) assert.match(key, /^pr-1\//);
        } finally {
          await Deno.remove(changed, { recursive: true });
        }
      },
    );

    await t.step(
      "black-holed (toxiproxy holds every byte): misses after one deadline",
      async () => {
        await using toxiproxy = await startToxiproxy();
        const endpoint = await toxiproxy.proxy("gcs", `127.0.0.1:${gcs.port}`);
        await toxiproxy.timeout("gcs", 0);
        const gets = [1, 2, 3, 4, 5, 6].map((n) =>
          JSON.stringify({
            ID: n,
            Command: "get",
            ActionID: b64(n.toString(16).padStart(2, "0").repeat(32)),
          })
        );
        const started = performance.now();
        const result = await replay(
          [...gets, JSON.stringify({ ID: 7, Command: "close" }), ""].join("\n"),
          [`--cache-dir=${work.path}/stall`, ...gcs.flags(), "-c=2"],
          gcs.env(endpoint),
        );
        const elapsed = performance.now() - started;
        assert.equal(result.code, 0, result.stderr);
        for (let n = 1; n <= 6; n++) {
          assert.equal(result.replies.find((r) => r.ID === n)?.Miss, true);
        }
        assert.ok(elapsed < 16_000, `took ${elapsed.toFixed(0)}ms`);
        const lines = result.stderr.split("\n").filter((l) => l.trim() !== "");
        assert.equal(lines.length, 1, result.stderr);
        assert.match(lines[0]!, /GCS tier paused .*deadline exceeded/);
      },
    );

    await t.step(
      "store stopped mid-build: the build succeeds; after a restart uploads resume",
      async () => {
        const changed = await copyModule();
        await Deno.writeTextFile(`${changed}/lib/extra2.go`, "package lib\n\nconst Extra2 = 7\n");
        await ageDirectories(changed);
        const old = new Date(Date.now() - 3_600_000);
        await Deno.utime(`${changed}/lib/extra2.go`, old, old);
        const e = machine(["--debug=1", "--warm-key=off"]);
        const build = new Deno.Command("go", {
          args: ["build", "./..."],
          cwd: changed,
          env: e.env,
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let stderr = "";
        let hits = 0;
        let stopped: Promise<void> | undefined;
        let partial = "";
        for await (const chunk of build.stderr.pipeThrough(new TextDecoderStream())) {
          stderr += chunk;
          const lines = (partial + chunk).split("\n");
          partial = lines.pop()!;
          for (const line of lines) {
            if (/ E GET .* DP:/.test(line)) hits++;
            if (!stopped && hits >= 50 && / B PUT /.test(line)) stopped = gcs.stop();
          }
        }
        await stopped;
        const status = await build.status;
        await build.stdout.cancel();
        assert.equal(status.code, 0, stderr);
        assert.ok(stopped, "the build put something");
        const metrics = pluginMetrics(stderr);
        assert.ok(total(metrics, "s3_get_hits") > 50, JSON.stringify(metrics));
        assert.ok(total(metrics, "uploads_failed") > 0, JSON.stringify(metrics));
        assert.match(stderr, /GCS tier paused/);

        const restarted = await gcs.restart();
        try {
          const again = { ...e.env, ...goEnv(`${work.path}/gocache-resume`, e.env.GOCACHEPROG!) };
          const next = await mustGo(["build", "./..."], { cwd: changed, env: again });
          const nextMetrics = pluginMetrics(next.stderr);
          assert.ok(total(nextMetrics, "get_misses") <= WARM_MISSES);
          assert.ok(total(nextMetrics, "uploads_resumed") > 0, JSON.stringify(nextMetrics));
          assert.equal(total(nextMetrics, "uploads_failed"), 0);
          // Now the bucket has everything: another machine hits it all.
          const g = machine(["--warm-key=off"], restarted.endpoint, restarted);
          const last = await mustGo(["build", "./..."], { cwd: changed, env: g.env });
          const lastMetrics = pluginMetrics(last.stderr);
          assert.ok(total(lastMetrics, "get_misses") <= WARM_MISSES, JSON.stringify(lastMetrics));
          assert.equal(total(lastMetrics, "put_bytes"), 0, "nothing recompiles");
        } finally {
          await restarted[Symbol.asyncDispose]();
          await Deno.remove(changed, { recursive: true });
        }
      },
    );

    await Deno.remove(module, { recursive: true });
  },
});

Deno.test({
  name: "GCS store: bad credentials are one line, the local tier serves; workload identity works",
  ignore: skipGcs,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-gcsbad-");
    await using gcs = await startFakeGcs();
    const body = new TextEncoder().encode("local output");
    const outputId = await sha256Hex(body);
    const script = [
      [
        JSON.stringify({ ID: 1, Command: "get", ActionID: b64("11".repeat(32)) }),
        JSON.stringify({
          ID: 2,
          Command: "put",
          ActionID: b64("22".repeat(32)),
          OutputID: b64(outputId),
          BodySize: body.length,
        }),
        "",
        JSON.stringify(body.toBase64()),
        "",
      ].join("\n"),
      [
        JSON.stringify({ ID: 3, Command: "get", ActionID: b64("22".repeat(32)) }),
        JSON.stringify({ ID: 4, Command: "get", ActionID: b64("33".repeat(32)) }),
        "",
      ].join("\n"),
      JSON.stringify({ ID: 5, Command: "close" }) + "\n",
    ];
    const home = `${work.path}/home`;
    await Deno.mkdir(home);
    const cases = [
      {
        name: "no credentials anywhere",
        flags: ["--bucket=gs://b"],
        env: { HOME: home, GCE_METADATA_HOST: `127.0.0.1:${freePort()}` },
        cause: /credentials: none found/,
      },
      {
        name: "a key file that does not exist",
        flags: ["--storage=gcs", "--gcs-bucket=b", `--gcs-key-file=${work.path}/nope.json`],
        env: { HOME: home },
        cause: /Cannot read the credentials file .*nope\.json/,
      },
      {
        name: "a missing bucket on the emulator",
        flags: ["--bucket=gs://no-such-bucket"],
        env: gcs.env(),
        cause: /NoSuchBucket/,
      },
    ];
    for (const c of cases) {
      await t.step(c.name, async () => {
        const dir = `${work.path}/${c.name.replaceAll(" ", "-")}`;
        const result = await replay(script, [`--cache-dir=${dir}`, ...c.flags], c.env);
        assert.equal(result.code, 0, result.stderr);
        const byId = new Map(result.replies.map((r) => [r.ID, r]));
        assert.equal(byId.get(1)?.Miss, true);
        assert.match(String(byId.get(2)?.DiskPath), new RegExp(`${outputId}$`));
        assert.equal(byId.get(3)?.OutputID, b64(outputId), "served by the local tier");
        assert.equal(byId.get(4)?.Miss, true);
        for (const r of result.replies) assert.equal(r.Err, undefined);
        const lines = result.stderr.split("\n").filter((l) => l.trim() !== "");
        assert.equal(lines.length, 1, result.stderr);
        assert.match(lines[0]!, /GCS tier (disabled|paused)/);
        assert.match(lines[0]!, c.cause);
      });
    }

    await t.step(
      "workload identity federation (GitHub's OIDC file, a loopback STS) under the plugin's permissions",
      async () => {
        // A remote entry to hit.
        const actionId = "44".repeat(32);
        await gcs.putObject(`output/${outputId.slice(0, 2)}/${outputId}`, body);
        await gcs.putObject(
          `action/44/${actionId}`,
          new TextEncoder().encode(`${outputId} 1700000000123456789`),
        );
        // The STS exchanges the OIDC token; the private endpoint checks the bearer token and
        // passes the request on to fake-gcs-server.
        const exchanges: string[] = [];
        await using front = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen() {} },
          async (req) => {
            const url = new URL(req.url);
            if (url.pathname === "/sts") {
              exchanges.push(new URLSearchParams(await req.text()).get("subject_token") ?? "");
              return Response.json({
                "access_token": "federated",
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
              });
            }
            if (req.headers.get("authorization") !== "Bearer federated") {
              return Response.json({ error: { code: 401, message: "no token" } }, { status: 401 });
            }
            const upstream = await fetch(`${gcs.endpoint}${url.pathname}${url.search}`);
            return new Response(await upstream.bytes(), {
              status: upstream.status,
              headers: { "content-type": upstream.headers.get("content-type") ?? "" },
            });
          },
        );
        const origin = `http://127.0.0.1:${front.addr.port}`;
        await Deno.writeTextFile(`${work.path}/oidc`, "github.oidc.jwt");
        await Deno.writeTextFile(
          `${work.path}/wif.json`,
          JSON.stringify({
            type: "external_account",
            audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/" +
              "gh/providers/gh",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": `${origin}/sts`,
            "credential_source": { file: `${work.path}/oidc` },
          }),
        );
        const result = await replay(
          JSON.stringify({ ID: 1, Command: "get", ActionID: b64(actionId) }) + "\n" +
            JSON.stringify({ ID: 2, Command: "close" }) + "\n",
          [
            `--cache-dir=${work.path}/wif`,
            `--bucket=gs://${gcs.bucket}`,
            `--gcs-endpoint-url=${origin}`,
            "--warm-key=off",
          ],
          { HOME: home, GOOGLE_APPLICATION_CREDENTIALS: `${work.path}/wif.json` },
        );
        assert.equal(result.code, 0, result.stderr);
        const hit = result.replies.find((r) => r.ID === 1)!;
        assert.equal(hit.OutputID, b64(outputId), result.stderr);
        assert.equal(result.stderr, "");
        assert.deepEqual(exchanges, ["github.oidc.jwt"]);
      },
    );
  },
});

/**
 * One plugin process fed `input` on stdin; replies parsed. An array of segments is sent one at a
 * time, each after every reply to the ones before (like go).
 */
async function replay(
  input: string | string[],
  args: string[],
  env: Record<string, string>,
): Promise<{ replies: Record<string, unknown>[]; stderr: string; code: number }> {
  const child = new Deno.Command(PLUGIN, {
    args,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      DENO_DIR,
      ...env,
    },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderrText = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const lines = () => buffered.split("\n").length - 1;
  async function readUntil(count: number): Promise<void> {
    while (lines() < count) {
      const { done, value } = await reader.read();
      if (done) return;
      buffered += value;
    }
  }
  await readUntil(1);
  const segments = Array.isArray(input) ? input : [input];
  const writer = child.stdin.getWriter();
  let sent = 0;
  for (const segment of segments) {
    await writer.write(new TextEncoder().encode(segment));
    sent += segment.split("\n").filter((l) => l.startsWith("{")).length;
    if (Array.isArray(input)) await readUntil(1 + sent);
  }
  await writer.close();
  await readUntil(Infinity);
  const { code } = await child.status;
  const replies = buffered.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  return { replies, stderr: await stderrText, code };
}

function b64(hex: string): string {
  return Uint8Array.fromHex(hex).toBase64();
}
