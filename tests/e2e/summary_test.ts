/**
 * What the job summary and `stats` say, against a real MinIO and the real go command, in the
 * cases that used to mislead: a fresh runner on a warm bucket (its hits came from the warm-up,
 * not "0 from S3, 0 B"), wrong credentials and a dead endpoint (the failures said, with their
 * cause, as annotations; one log line per cause, not one per object), a read-only job (said
 * plainly). (No bucket: tests/cli/stats_test.ts and the browser test of the status page.)
 */
import assert from "node:assert/strict";
import { canRun, copyModule, goEnv, mustGo, needs, PLUGIN, tempDir } from "../_util/go.ts";
import { findMinio, startMinio } from "../_util/minio.ts";
import { freePort } from "../_util/net.ts";
import { runPlugin, Server } from "../_util/serve.ts";

const skipGo = !canRun("go");
const skipMinio = await needs("MinIO (scripts/install_test_servers.sh)", findMinio());

Deno.test({
  name: "stats tells what happened: warm-up hits, credential and endpoint faults, read-only",
  ignore: skipGo || skipMinio,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using work = await tempDir("gcp-summary-");
    await using minio = await startMinio();
    const module = await copyModule();
    const warmKey = `--warm-key=summary-test`;
    let run = 0;

    /** Starts a server, runs go build through it, returns stats (json, markdown, github). */
    async function job(flags: string[], env: Record<string, string>) {
      run++;
      const plugin = freePort();
      const http = `127.0.0.1:${freePort()}`;
      const server = await Server.start([
        `--plugin=${plugin}`,
        `--http=${http}`,
        `--cache-dir=${work.path}/cache-${run}`,
        "-v",
        ...flags,
      ], env);
      try {
        await mustGo(["build", "./..."], {
          cwd: module,
          env: goEnv(`${work.path}/gocache-${run}`, `${PLUGIN} connect ${plugin}`),
        });
        const stats = async (format: string) => {
          const result = await runPlugin(["stats", `--http=${http}`, `--format=${format}`]);
          assert.equal(result.code, 0, result.stderr);
          return result.stdout;
        };
        return {
          json: JSON.parse(await stats("json")),
          markdown: await stats("markdown"),
          github: await stats("github"),
          server,
        };
      } finally {
        server.kill("SIGTERM");
        assert.equal(await server.exit(), 0, server.stderr);
      }
    }

    try {
      await t.step("a writer fills the bucket and its warm-up manifest", async () => {
        const { json, github } = await job([...minio.flags(), warmKey], minio.env());
        assert.ok(json.uploads_done > 10, JSON.stringify(json));
        assert.equal(json.uploads_failed, 0);
        assert.equal(json.read_only, false);
        assert.equal(github, "", "nothing to annotate");
      });

      await t.step(
        "a fresh runner on the warm bucket: hits from the warm-up, bytes fetched",
        async () => {
          const { json, markdown } = await job([...minio.flags(), warmKey], minio.env());
          assert.ok(json.hit_rate > 0.9, JSON.stringify(json));
          const fromBucket = json.warm_hits + json.remote_hits;
          assert.ok(fromBucket > 10, `hits from the bucket: ${JSON.stringify(json)}`);
          assert.ok(json.bytes_downloaded > 10_000, JSON.stringify(json));
          assert.ok(json.remote_requests > 0, JSON.stringify(json));
          assert.ok(json.local_hits < fromBucket, "not counted as local");
          const headline = markdown.split("\n")[2]!;
          assert.match(
            headline,
            /\*\*\d+\.\d% hits\*\* \(\d+ of \d+ gets\): \d+ local, \d+ from the warm-up, \d+ from S3 on demand/,
          );
          assert.doesNotMatch(markdown, /\| Fetched from the store \| 0 B/);
        },
      );

      await t.step(
        "wrong credentials: the cause, as an error annotation; one line per cause",
        async () => {
          const { json, markdown, github, server } = await job(
            [...minio.flags(), warmKey],
            { ...minio.env(), AWS_ACCESS_KEY_ID: "wrong-key-id" },
          );
          assert.ok(json.faults_credentials >= 1, JSON.stringify(json));
          assert.match(String(json.faults), /InvalidAccessKeyId/);
          assert.ok(json.uploads_failed > 10 || json.uploads_done === 0, JSON.stringify(json));
          assert.equal(json.uploads_done, 0);
          assert.match(
            markdown,
            /\*\*store unusable: the object store refused the credentials\*\*/,
          );
          assert.match(
            github,
            /^::error title=Go build cache::The S3 tier was not used: the object store refused the credentials \(\d+ times?\), first: .*InvalidAccessKeyId/m,
          );
          assert.match(
            github,
            /^::error title=Go build cache::\d+ uploads to the bucket failed \(0 done\): the object store refused the credentials/m,
          );
          const notUploading = server.stderr.match(/: not uploading [0-9a-f]/g)?.length ?? 0;
          assert.ok(
            notUploading <= 1,
            `one line for ${json.uploads_failed} uploads: ${notUploading}`,
          );
          assert.match(server.stderr, /\d+ more line\(s\) like "not uploading <id>: /);
        },
      );

      await t.step("a dead endpoint: the cause is the endpoint", async () => {
        const dead = `http://127.0.0.1:${freePort()}`;
        const { json, github } = await job(
          [`--bucket=${minio.bucket}`, `--s3-endpoint-url=${dead}`, "--s3-path-style", warmKey],
          minio.env(),
        );
        assert.ok(json.faults_endpoint >= 1, JSON.stringify(json));
        assert.equal(json.uploads_done, 0);
        assert.match(
          github,
          /^::error title=Go build cache::The S3 tier was not used: the endpoint could not be reached/m,
        );
      });

      await t.step("a read-only job says so plainly, and uploads nothing", async () => {
        const { json, markdown, github } = await job(
          [...minio.flags(), warmKey, "--read-only", "--prefix=pr"],
          minio.env(),
        );
        assert.equal(json.read_only, true);
        assert.equal(json.uploads_done, 0);
        assert.match(markdown, /read-only: nothing uploaded \(\d+ outputs kept local\)/);
        assert.match(
          markdown,
          /\| Store \| s3:\/\/gcp-test\/pr \(http:\/\/127\.0\.0\.1:\d+\); read-only: nothing is written to the bucket; warm key "summary-test" \|/,
        );
        assert.match(github, /^::notice title=Go build cache::Read-only: nothing was uploaded/m);
        assert.doesNotMatch(github, /::error/);
      });
    } finally {
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});
