/**
 * The S3 tier against MinIO serving HTTPS with a certificate from a private CA (the common
 * on-premises set-up): `AWS_CA_BUNDLE`, or the profile's `ca_bundle`, is trusted on every request
 * path (fetch for small objects and lookups, node:https for uploads over 4 MiB, the SDK for the
 * region lookup), with no `DENO_CERT`. A bundle that cannot be used is one line on stderr and the
 * build goes on.
 */
import assert from "node:assert/strict";
import {
  canRun,
  copyModule,
  goEnv,
  needs,
  pluginCommand,
  pluginMetrics,
  remoteHits,
  tempDir,
  total,
} from "../_util/go.ts";
import { findMinio, startMinio } from "../_util/minio.ts";
import { sha256Hex } from "../_util/bytes.ts";

/** The embedded file: its package's compiled output is over the 4 MiB stream-upload threshold. */
const BIG = 5 << 20;
/** A go command that takes longer than this fails the test (and is killed). */
const GO_DEADLINE_MS = 180_000;

const skipGo = !canRun("go");
const skipOpenssl = !canRun("openssl");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());

/** Runs go with exactly `env`; throws with its output when it fails or overruns its deadline. */
async function go(
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): Promise<{ stdout: string; stderr: string }> {
  const output = await new Deno.Command("go", {
    args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(GO_DEADLINE_MS),
  }).output();
  const decoder = new TextDecoder();
  const result = { stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
  if (!output.success) {
    throw new Error(
      `go ${args.join(" ")} exited ${output.code}${output.signal ? ` (${output.signal})` : ""}:\n` +
        `${result.stdout}\n${result.stderr}`,
    );
  }
  return result;
}

/**
 * The test module plus a package embedding a random 5 MiB file, every file and directory with an
 * old mtime (go caches its module index only for files older than a few seconds).
 */
async function moduleWithBigOutput(): Promise<string> {
  const module = await copyModule();
  await Deno.mkdir(`${module}/big`);
  const blob = new Uint8Array(BIG);
  for (let at = 0; at < BIG; at += 65_536) crypto.getRandomValues(blob.subarray(at, at + 65_536));
  await Deno.writeFile(`${module}/big/blob.bin`, blob);
  await Deno.writeTextFile(
    `${module}/big/big.go`,
    'package big\n\nimport _ "embed"\n\n//go:embed blob.bin\nvar Blob []byte\n',
  );
  const old = new Date(Date.now() - 3_600_000);
  async function age(dir: string): Promise<void> {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await age(path);
      else await Deno.utime(path, old, old);
    }
    await Deno.utime(dir, old, old);
  }
  await age(module);
  return module;
}

/** Output files in a cache directory larger than `min` bytes, as `output/<xx>/<id>` keys. */
async function bigOutputs(cacheDir: string, min: number): Promise<string[]> {
  const keys: string[] = [];
  for await (const shard of Deno.readDir(`${cacheDir}/output`)) {
    for await (const entry of Deno.readDir(`${cacheDir}/output/${shard.name}`)) {
      if (!entry.isFile || entry.name.includes(".")) continue;
      const key = `output/${shard.name}/${entry.name}`;
      if ((await Deno.stat(`${cacheDir}/${key}`)).size > min) keys.push(key);
    }
  }
  return keys.sort();
}

/** The plugin's stderr lines other than `--metrics` output. */
function warnings(stderr: string): string[] {
  return stderr.split("\n").filter((line) =>
    /go-cache-plugin: /.test(line) && !/go-cache-plugin: metrics /.test(line)
  );
}

Deno.test({
  name: "S3 tier over TLS: AWS_CA_BUNDLE and a profile's ca_bundle are trusted on every path",
  ignore: skipGo || skipOpenssl || skipMinio,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-s3tls-");
    await using minio = await startMinio({ tls: true });
    assert.match(minio.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    const module = await moduleWithBigOutput();
    await using _module = {
      [Symbol.asyncDispose]: () => Deno.remove(module, { recursive: true }).catch(() => {}),
    };
    let run = 0;
    /** A fresh machine: new cache dir and GOCACHE; the server's CA only through `env`. */
    const machine = (env: Record<string, string>, flags = minio.flags()) => {
      run++;
      const cacheDir = `${work.path}/cache-${run}`;
      const plugin = pluginCommand(`--cache-dir=${cacheDir}`, ...flags, "--metrics");
      const all = { ...goEnv(`${work.path}/gocache-${run}`, plugin), ...env };
      assert.equal(all.DENO_CERT, undefined);
      return { cacheDir, env: all };
    };
    const caEnv = { ...minio.env(), AWS_CA_BUNDLE: minio.caFile! };
    let uploaded: string[] = [];

    await t.step("plugin A fills the bucket, a > 4 MiB output included", async () => {
      const a = machine(caEnv);
      const build = await go(["build", "./..."], { cwd: module, env: a.env });
      assert.deepEqual(warnings(build.stderr), [], build.stderr);
      const metrics = pluginMetrics(build.stderr);
      assert.equal(metrics.length, 1, build.stderr);
      assert.ok(total(metrics, "uploads_done") > 50, JSON.stringify(metrics));
      assert.equal(total(metrics, "uploads_failed"), 0, JSON.stringify(metrics));
      assert.equal(total(metrics, "uploads_left"), 0, JSON.stringify(metrics));
      assert.equal(total(metrics, "s3_get_errors"), 0, JSON.stringify(metrics));
      const keys = await minio.listKeys();
      assert.ok(keys.filter((k) => k.startsWith("action/")).length > 50, `${keys.length} keys`);
      uploaded = await bigOutputs(a.cacheDir, 4 << 20);
      assert.ok(uploaded.length >= 1, "the big package's output is over 4 MiB");
      for (const key of uploaded) {
        const object = await minio.getObject(key);
        assert.ok(object, `${key} reached the bucket (node:https stream upload)`);
        assert.ok(object.length > BIG);
        const id = await sha256Hex(object);
        assert.equal(`output/${id.slice(0, 2)}/${id}`, key, "the bytes match their name");
      }
    });

    await t.step(
      "plugin B (fresh cache dir and GOCACHE) gets remote hits, the big one too",
      async () => {
        const b = machine(caEnv);
        const build = await go(["build", "./..."], { cwd: module, env: b.env });
        assert.deepEqual(warnings(build.stderr), [], build.stderr);
        const metrics = pluginMetrics(build.stderr);
        // Remote hits: looked up one by one, or fetched by the warm-up (both over TLS).
        assert.ok(remoteHits(metrics) > 50, JSON.stringify(metrics));
        assert.equal(total(metrics, "s3_get_errors"), 0, JSON.stringify(metrics));
        assert.equal(total(metrics, "put_bytes"), 0, "nothing recompiles");
        assert.ok(
          total(metrics, "s3_bytes_down") + total(metrics, "warm_bytes") > BIG,
          JSON.stringify(metrics),
        );
        assert.deepEqual(await bigOutputs(b.cacheDir, 4 << 20), uploaded);
      },
    );

    await t.step(
      "the profile's ca_bundle, credentials from the profile, region looked up by the SDK",
      async () => {
        const configFile = `${work.path}/aws-config`;
        const credentialsFile = `${work.path}/aws-credentials`;
        await Deno.writeTextFile(
          configFile,
          `[default]\nca_bundle = ${work.path}/not-this-one.pem\n\n` +
            `[profile onprem]\n# the private CA\nca_bundle = ${minio.caFile}\n`,
        );
        await Deno.writeTextFile(
          credentialsFile,
          `[onprem]\naws_access_key_id = ${minio.accessKey}\n` +
            `aws_secret_access_key = ${minio.secretKey}\n`,
        );
        const c = machine({
          AWS_PROFILE: "onprem",
          AWS_CONFIG_FILE: configFile,
          AWS_SHARED_CREDENTIALS_FILE: credentialsFile,
          AWS_EC2_METADATA_DISABLED: "true",
        }, minio.flags().filter((f) => !f.startsWith("--region")));
        const build = await go(["build", "./..."], { cwd: module, env: c.env });
        assert.deepEqual(warnings(build.stderr), [], build.stderr);
        const metrics = pluginMetrics(build.stderr);
        assert.ok(remoteHits(metrics) > 50, JSON.stringify(metrics));
        assert.equal(total(metrics, "s3_get_errors"), 0, JSON.stringify(metrics));
        assert.equal(total(metrics, "put_bytes"), 0, "nothing recompiles");
      },
    );

    const unusable = [
      {
        name: "a missing file",
        path: `${work.path}/no-such-ca.pem`,
        content: undefined,
        cause: /Cannot read the CA bundle ".*no-such-ca\.pem" \(AWS_CA_BUNDLE\)/,
      },
      {
        name: "a file without a certificate",
        path: `${work.path}/not-a-ca.pem`,
        content: "this is not PEM\n",
        cause: /Cannot use the CA bundle ".*not-a-ca\.pem" \(AWS_CA_BUNDLE\): .*no PEM certificate/,
      },
    ];
    for (const c of unusable) {
      await t.step(`AWS_CA_BUNDLE naming ${c.name}: one line, the build succeeds`, async () => {
        if (c.content !== undefined) await Deno.writeTextFile(c.path, c.content);
        const d = machine({ ...minio.env(), AWS_CA_BUNDLE: c.path });
        const build = await go(["build", "./..."], { cwd: module, env: d.env });
        const lines = warnings(build.stderr);
        assert.equal(lines.length, 1, build.stderr);
        assert.match(lines[0]!, /S3 tier disabled/);
        assert.match(lines[0]!, c.cause);
        assert.match(lines[0]!, /local tier/);
        const metrics = pluginMetrics(build.stderr);
        assert.equal(total(metrics, "s3_get_hits"), 0);
        assert.ok(total(metrics, "put_requests") > 50, "go compiled and stored locally");
      });
    }
  },
});
