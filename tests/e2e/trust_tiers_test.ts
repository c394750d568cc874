/**
 * Trust tiers end to end: a real MinIO with users made through its admin interface (`mc`), each
 * with an IAM policy: `main-ci` may write `main/` only, `pr-ro` may only read it, `pr-ci` may read
 * `main/` and write `pr/`. The real go builds and tests the module with the plugin in direct
 * mode, as main's CI and a pull request's would; `mc admin trace` records every request MinIO
 * answered during the pull-request builds. Then the same in server mode, with the module proxy
 * (its files read through the read prefixes from a hermetic fake upstream's copies in main/).
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startFakeUpstream } from "../_util/fake_upstream.ts";
import {
  actionKey,
  decodeManifest,
  manifestKey,
  packKey,
  warmKeyHash,
} from "../../src/cache/remote/mod.ts";
import { freePort } from "../_util/net.ts";
import { Server } from "../_util/serve.ts";
import {
  canRun,
  copyModule,
  goEnv,
  mustGo,
  needs,
  PLUGIN,
  pluginCommand,
  pluginMetrics,
  remoteHits,
  tempDir,
  total,
} from "../_util/go.ts";
import {
  findMc,
  findMinio,
  type Minio,
  MinioAdmin,
  type MinioUser,
  type PolicyDocument,
  startMinio,
  type TracedCall,
} from "../_util/minio.ts";

/** Misses of a fully warm `go build ./...` (go looks one entry up under an id it never puts). */
const WARM_MISSES = 1;
/** The fake upstream's module tree. */
const TREE = join(dirname(fileURLToPath(import.meta.url)), "../testdata/modproxy/upstream");
/** Module files the module proxy serves in the server-mode step. */
const MODULE_FILES = [
  "example.com/!hello/@v/v1.0.0.info",
  "example.com/!hello/@v/v1.0.0.mod",
  "example.com/!hello/@v/v1.0.0.zip",
];

const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());
const skipMc = await needs("mc (scripts/install_test_servers.sh)", findMc());

/** A policy: read (`get`) and write (`put`) object keys matching the patterns. */
function policy(bucket: string, rules: { get: string[]; put?: string[] }): PolicyDocument {
  const objects = (patterns: string[]) => patterns.map((p) => `arn:aws:s3:::${bucket}/${p}`);
  return {
    Version: "2012-10-17",
    Statement: [
      // Without ListBucket, AWS answers a GET of a missing key with 403 instead of 404.
      { Effect: "Allow", Action: ["s3:ListBucket"], Resource: [`arn:aws:s3:::${bucket}`] },
      { Effect: "Allow", Action: ["s3:GetObject"], Resource: objects(rules.get) },
      ...rules.put
        ? [{ Effect: "Allow" as const, Action: ["s3:PutObject"], Resource: objects(rules.put) }]
        : [],
    ],
  };
}

/**
 * Gives the module's directories an old mtime too, so go caches its module index from the first
 * build on, and every later build of it is all hits.
 */
async function ageDirectories(dir: string): Promise<void> {
  const old = new Date(Date.now() - 3_600_000);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) await ageDirectories(`${dir}/${entry.name}`);
  }
  await Deno.utime(dir, old, old);
}

/** A copy of the test module whose library has one more function, so it compiles anew. */
async function changedModule(name: string): Promise<string> {
  const module = await copyModule();
  const lib = `${module}/lib/lib.go`;
  await Deno.writeTextFile(
    lib,
    (await Deno.readTextFile(lib)) +
      `\n// ${name} is new in this pull request.\nfunc ${name}() string { return "${name}" }\n`,
  );
  await ageDirectories(module);
  return module;
}

/** Counters that would show any upload attempt. */
const UPLOAD_COUNTERS = [
  "uploads_done",
  "uploads_skipped",
  "uploads_failed",
  "uploads_left",
  "uploads_resumed",
  "s3_bytes_up",
];

/** Whether a directory exists. */
async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** A module file that only the upstream has. */
const UPSTREAM_ONLY = "example.com/!hello/@v/v1.1.0.mod";

/** Fetches module files from a serve process's module proxy; their statuses. */
async function fetchModuleFiles(http: string, keys = MODULE_FILES): Promise<number[]> {
  const statuses: number[] = [];
  for (const key of keys) {
    const response = await fetch(`http://${http}/mod/${key.replaceAll("!", "%21")}`);
    await response.body?.cancel();
    statuses.push(response.status);
  }
  return statuses;
}

/** Stops a serve process with SIGTERM (uploads flushed) and returns its metrics line. */
async function stopServer(server: Server): Promise<Record<string, number>> {
  server.kill("SIGTERM");
  assert.equal(await server.exit(), 0, server.stderr);
  const [metrics] = pluginMetrics(server.stderr);
  assert.ok(metrics, server.stderr);
  return metrics;
}

/** Calls that are not a successful read (GET answered 200, or 404 for a miss). */
function notReads(calls: TracedCall[]): TracedCall[] {
  return calls.filter((c) => c.api !== "s3.GetObject" || ![200, 404].includes(c.statusCode));
}

Deno.test({
  name: "trust tiers: pull requests read main's entries and never write main's prefix",
  ignore: skipGo || skipMinio || skipMc,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-trust-");
    await using minio = await startMinio();
    await using admin = await MinioAdmin.open(minio);
    const bucket = minio.bucket;
    const mainCi = await admin.addUser(
      "main-ci",
      policy(bucket, { get: ["main/*"], put: ["main/*"] }),
    );
    const prReadOnly = await admin.addUser("pr-ro", policy(bucket, { get: ["main/*"] }));
    const prCi = await admin.addUser(
      "pr-ci",
      policy(bucket, { get: ["main/*", "pr/*"], put: ["pr/*"] }),
    );
    const module = await copyModule();
    await ageDirectories(module);
    let run = 0;
    /** A fresh machine: empty cache directory and GOCACHE, the given user and flags. */
    const machine = (user: MinioUser, minioServer: Minio, flags: string[]) => {
      run++;
      const cacheDir = `${work.path}/cache-${run}`;
      const plugin = pluginCommand(
        `--cache-dir=${cacheDir}`,
        ...minioServer.flags(),
        "--metrics",
        ...flags,
      );
      return {
        cacheDir,
        env: { ...goEnv(`${work.path}/gocache-${run}`, plugin), ...user.env() },
      };
    };
    let mainKeys: string[] = [];

    await t.step("main's build (main-ci, --prefix=main) fills main/", async () => {
      const main = machine(mainCi, minio, ["--prefix=main"]);
      const build = await mustGo(["build", "./..."], { cwd: module, env: main.env });
      const test = await mustGo(["test", "./..."], { cwd: module, env: main.env });
      const metrics = pluginMetrics(build.stderr + test.stderr);
      assert.equal(metrics.length, 2, build.stderr + test.stderr);
      assert.ok(total(metrics, "uploads_done") > 100, JSON.stringify(metrics));
      assert.equal(total(metrics, "uploads_failed"), 0, build.stderr + test.stderr);
      mainKeys = await minio.listKeys();
      assert.ok(mainKeys.length > 200);
      for (const key of mainKeys) assert.match(key, /^main\/(action\/|output\/|warm\/)/);
    });

    await t.step(
      "a pull request with read-only credentials and --read-only: every entry a remote hit, no write attempt",
      async () => {
        const pr = machine(prReadOnly, minio, ["--prefix=main", "--read-only", "-v", "--debug=4"]);
        const trace = await admin.trace();
        let calls: TracedCall[];
        let stderr: string;
        let buildMetrics: Record<string, number>[];
        try {
          const build = await mustGo(["build", "./..."], { cwd: module, env: pr.env });
          const test = await mustGo(["test", "./..."], { cwd: module, env: pr.env });
          assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
          stderr = build.stderr + test.stderr;
          buildMetrics = pluginMetrics(build.stderr);
        } finally {
          calls = await trace.stop();
        }
        const metrics = pluginMetrics(stderr);
        assert.equal(metrics.length, 2, stderr);
        // Every hit from the bucket: looked up, or fetched by the warm-up from main's manifest.
        assert.ok(remoteHits(buildMetrics) > 100, JSON.stringify(buildMetrics));
        assert.ok(remoteHits(buildMetrics) >= total(buildMetrics, "get_hits"));
        assert.ok(total(metrics, "get_misses") <= 2 * WARM_MISSES, JSON.stringify(metrics));
        assert.equal(total(metrics, "put_bytes"), 0, "nothing recompiles");
        assert.equal(total(metrics, "s3_get_errors") + total(metrics, "s3_corrupt"), 0);
        for (const name of UPLOAD_COUNTERS) assert.equal(total(metrics, name), 0, name);
        // Said once per plugin process under -v.
        assert.equal(stderr.match(/remote tier is read-only/g)?.length, 2, stderr);
        // --debug=4: GETs only, every one under main/.
        const s3Calls = [...stderr.matchAll(/ B S3 (\w+) (\S+)/g)];
        assert.ok(s3Calls.length > 5, `${s3Calls.length} S3 calls traced`);
        for (const [, op, key] of s3Calls) {
          assert.equal(op, "GET", `${op} ${key}`);
          assert.match(key!, /^main\//);
        }
        assert.equal(await exists(`${pr.cacheDir}/s3-pending`), false, "no owed uploads");
        // MinIO's side: nothing but reads, none denied.
        assert.ok(calls.length >= s3Calls.length, `${calls.length} calls in MinIO's trace`);
        assert.deepEqual(notReads(calls), []);
        assert.deepEqual(await minio.listKeys(), mainKeys, "the bucket is unchanged");
      },
    );

    await t.step(
      "a pull request with --prefix=pr/1 --read-prefixes=main reads main's entries, writes only pr/1/",
      async () => {
        const changed = await changedModule("Farewell");
        const pr = machine(prCi, minio, ["--prefix=pr/1", "--read-prefixes=main"]);
        const trace = await admin.trace();
        let calls: TracedCall[];
        let stderr: string;
        try {
          const build = await mustGo(["build", "./..."], { cwd: changed, env: pr.env });
          const test = await mustGo(["test", "./..."], { cwd: changed, env: pr.env });
          // The library compiles anew; its test binary links the same code (the new function
          // is dead), so the result may be main's, read through.
          assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib\s/);
          stderr = build.stderr + test.stderr;
        } finally {
          calls = await trace.stop();
        }
        const metrics = pluginMetrics(stderr);
        assert.equal(metrics.length, 2, stderr);
        // main's entries: looked up under main/, or warmed up from main's manifest (pr/1 has
        // none yet).
        assert.ok(
          total(metrics, "s3_read_prefix_hits") + total(metrics, "warm_hits") > 100,
          JSON.stringify(metrics),
        );
        assert.equal(total(metrics, "s3_read_prefix_hits"), total(metrics, "s3_get_hits"));
        assert.ok(total(metrics, "put_requests") > 0);
        assert.ok(total(metrics, "uploads_done") > 0, JSON.stringify(metrics));
        assert.equal(total(metrics, "uploads_failed"), 0, stderr);
        const keys = await minio.listKeys();
        assert.deepEqual(keys.filter((k) => k.startsWith("main/")), mainKeys, "main/ unchanged");
        const own = keys.filter((k) => !k.startsWith("main/"));
        assert.ok(own.length > 0);
        for (const key of own) assert.match(key, /^pr\/1\/(action\/|output\/|warm\/)/);
        // Each prefix holds its own copies: every record under pr/1/ has its object there too,
        // even an object main/ already had.
        for (const key of own.filter((k) => k.startsWith("pr/1/action/"))) {
          const record = new TextDecoder().decode(await minio.getObject(key));
          const outputId = record.split(" ")[0]!;
          assert.ok(own.includes(`pr/1/output/${outputId.slice(0, 2)}/${outputId}`), key);
        }
        // MinIO's side: writes only under pr/1/, nothing denied.
        const writes = calls.filter((c) => c.api === "s3.PutObject");
        assert.ok(writes.length > 0);
        for (const call of writes) assert.match(call.path, new RegExp(`^/${bucket}/pr/1/`));
        assert.deepEqual(calls.filter((c) => c.statusCode === 403), []);
      },
    );

    await t.step(
      "without the flags, read-only credentials still never fail a build: puts are owed",
      async () => {
        const changed = await changedModule("Welcome");
        const before = await minio.listKeys(bucket, "main/");
        const pr = machine(prReadOnly, minio, ["--prefix=main"]);
        const build = await mustGo(["build", "./..."], { cwd: changed, env: pr.env });
        const test = await mustGo(["test", "./..."], { cwd: changed, env: pr.env });
        assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib\s/);
        const metrics = pluginMetrics(build.stderr + test.stderr);
        assert.equal(metrics.length, 2);
        // The first denied upload is a configuration error: the S3 tier stops for the session.
        assert.ok(total(metrics, "s3_breaker_trips") > 0, JSON.stringify(metrics));
        assert.ok(total(metrics, "uploads_failed") > 0, JSON.stringify(metrics));
        assert.equal(total(metrics, "uploads_done"), 0);
        const owed = await Array.fromAsync(Deno.readDir(`${pr.cacheDir}/s3-pending`));
        assert.ok(owed.length > 0, "denied uploads are recorded for a later session");
        assert.deepEqual(await minio.listKeys(bucket, "main/"), before, "main/ unchanged");
      },
    );

    await t.step(
      "one cache directory shared by a pull request and then main: main's manifest stays main's",
      async () => {
        // The pull request compiles its change into the shared directory and writes pr/5/.
        const changed = await changedModule("Shared");
        const keyHash = await warmKeyHash(`dir:${changed}`);
        const pr = machine(prCi, minio, ["--prefix=pr/5", "--read-prefixes=main"]);
        await mustGo(["build", "./..."], { cwd: changed, env: pr.env });
        await mustGo(["test", "./..."], { cwd: changed, env: pr.env });
        const prManifest = await decodeManifest(
          (await minio.getObject(`pr/5/${manifestKey(keyHash)}`))!,
        );
        assert.ok(prManifest && prManifest.entries.length > 0);
        // Then main runs in the same directory: every entry a local hit, the PR's included.
        const main = machine(mainCi, minio, ["--prefix=main"]);
        main.env.GOCACHEPROG = main.env.GOCACHEPROG!.replace(main.cacheDir, pr.cacheDir);
        const build = await mustGo(["build", "./..."], { cwd: changed, env: main.env });
        const test = await mustGo(["test", "./..."], { cwd: changed, env: main.env });
        const metrics = pluginMetrics(build.stderr + test.stderr);
        assert.ok(total(metrics, "warm_unvouched") > 0, JSON.stringify(metrics));
        const keys = new Set(await minio.listKeys(bucket, "main/"));
        const mainManifest = await decodeManifest(
          (await minio.getObject(`main/${manifestKey(keyHash)}`)) ?? new Uint8Array(),
        );
        // Whatever main wrote names only entries and packs main/ holds.
        for (const entry of mainManifest?.entries ?? []) {
          assert.ok(keys.has(`main/${actionKey(entry.actionId)}`), entry.actionId);
        }
        for (const pack of mainManifest?.packs ?? []) {
          assert.ok(keys.has(`main/${packKey(keyHash, pack)}`), pack.name);
        }
        // And the pull request's local copy of its manifest is its own, apart from main's.
        const copies = await Array.fromAsync(Deno.readDir(`${pr.cacheDir}/warm`));
        assert.ok(copies.filter((c) => c.name.startsWith(`${keyHash}.`)).length >= 1);
      },
    );

    await t.step(
      "server mode: serve --read-only --prefix=pr/1 --read-prefixes=main reads main's build and module files, writes nothing",
      async () => {
        await using upstream = startFakeUpstream(TREE);
        const serveArgs = (cacheDir: string, plugin: number, http: number, flags: string[]) => [
          `--plugin=${plugin}`,
          `--http=127.0.0.1:${http}`,
          "--modproxy",
          `--cache-dir=${cacheDir}`,
          ...minio.flags(),
          "--metrics",
          ...flags,
        ];
        // main's server fills main/module/ from the upstream.
        const mainHttp = freePort();
        const mainServer = await Server.start(
          serveArgs(`${work.path}/serve-main`, freePort(), mainHttp, [
            "--prefix=main",
            `--upstream=${upstream.url}/ok`,
          ]),
          mainCi.env(),
        );
        try {
          assert.deepEqual(await fetchModuleFiles(`127.0.0.1:${mainHttp}`), [200, 200, 200]);
        } finally {
          const metrics = await stopServer(mainServer);
          assert.equal(metrics.modproxy_store_puts, MODULE_FILES.length, mainServer.stderr);
        }
        const before = await minio.listKeys();
        for (const key of MODULE_FILES) assert.ok(before.includes(`main/module/${key}`), key);

        // The pull request's server, with credentials that may write pr/: the flag alone keeps
        // it from writing.
        const plugin = freePort();
        const http = freePort();
        const prServer = await Server.start(
          serveArgs(`${work.path}/serve-pr`, plugin, http, [
            "--prefix=pr/1",
            "--read-prefixes=main",
            "--read-only",
            `--upstream=${upstream.url}/ok`,
            "-v",
          ]),
          prCi.env(),
        );
        const trace = await admin.trace();
        let calls: TracedCall[];
        let metrics: Record<string, number>;
        const asked = upstream.requests.length;
        try {
          assert.deepEqual(await fetchModuleFiles(`127.0.0.1:${http}`), [200, 200, 200]);
          // main's files came from the bucket; a file main never fetched comes from upstream.
          assert.deepEqual(upstream.requests.slice(asked), []);
          assert.deepEqual(await fetchModuleFiles(`127.0.0.1:${http}`, [UPSTREAM_ONLY]), [200]);
          const env = goEnv(`${work.path}/gocache-serve-pr`, `${PLUGIN} connect ${plugin}`);
          await mustGo(["build", "./..."], { cwd: module, env });
          // Something new to put, which read-only keeps local.
          await mustGo(["build", "./..."], { cwd: await changedModule("Served"), env });
        } finally {
          calls = await trace.stop();
          metrics = await stopServer(prServer);
        }
        assert.equal(
          prServer.stderr.match(/remote tier is read-only/g)?.length,
          1,
          prServer.stderr,
        );
        assert.ok(
          (metrics.s3_read_prefix_hits ?? 0) + (metrics.warm_hits ?? 0) > 100,
          JSON.stringify(metrics),
        );
        assert.ok(metrics.uploads_skipped_read_only! > 0, JSON.stringify(metrics));
        assert.equal(metrics.modproxy_store_read_prefix_hits, MODULE_FILES.length);
        assert.equal(
          metrics.modproxy_store_uploads_skipped_read_only,
          1,
          JSON.stringify(metrics),
        );
        for (const name of [...UPLOAD_COUNTERS, "modproxy_store_puts", "modproxy_store_errors"]) {
          assert.equal(metrics[name] ?? 0, 0, name);
        }
        assert.equal(await exists(`${work.path}/serve-pr/s3-pending`), false);
        assert.equal(await exists(`${work.path}/serve-pr/module/.pending`), false);
        assert.ok(calls.length > 100, `${calls.length} calls in MinIO's trace`);
        assert.deepEqual(notReads(calls), []);
        assert.deepEqual(await minio.listKeys(), before, "the bucket is unchanged");
      },
    );
  },
});
