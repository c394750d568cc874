/**
 * `clean` with real processes: it empties a cache directory a real go build filled (and only the
 * plugin's files in it), refuses while `serve` uses the directory, and a direct-mode build that
 * runs while `clean` runs again and again still succeeds.
 */
import assert from "node:assert/strict";
import { canRun, copyModule, goEnv, mustGo, pluginCommand, runGo, tempDir } from "../_util/go.ts";
import { freePort } from "../_util/net.ts";
import { type PluginRun, runPlugin, Server } from "../_util/serve.ts";

const HEX = "ab".repeat(32);

function clean(cacheDir: string): Promise<PluginRun> {
  return runPlugin(["clean", `--cache-dir=${cacheDir}`]);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Sets the mtime of every file under `dir` to `when`. */
async function backdate(dir: string, when: Date): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) await backdate(path, when);
    else if (entry.isFile) await Deno.utime(path, when, when);
  }
}

Deno.test({
  name: "clean empties what a real build put in the cache directory, and nothing else",
  ignore: !canRun("go"),
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-clean-");
    const module = await copyModule();
    const cache = `${work.path}/cache`;
    const plugin = pluginCommand(`--cache-dir=${cache}`);
    try {
      await mustGo(["build", "./..."], { cwd: module, env: goEnv(`${work.path}/gc-1`, plugin) });
      assert.ok(await exists(`${cache}/output`));
      // The module proxy's files, an upload owed to S3, and files that are not the plugin's.
      await Deno.mkdir(`${cache}/module/example.com/m/@v`, { recursive: true });
      await Deno.writeTextFile(`${cache}/module/example.com/m/@v/list`, "v1.0.0\n");
      await Deno.writeTextFile(`${cache}/module/README`, "someone else's");
      await Deno.mkdir(`${cache}/s3-pending`);
      await Deno.writeTextFile(`${cache}/s3-pending/${HEX}`, "");
      await Deno.writeTextFile(`${cache}/notes.txt`, "someone else's");

      const result = await clean(cache);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^cleaned ".*": removed \d+ files \([\d.]+ [KM]iB\)\n$/);
      for (const gone of ["action", "output", "module/example.com", "s3-pending", ".last-sweep"]) {
        assert.ok(!await exists(`${cache}/${gone}`), gone);
      }
      for (const kept of ["notes.txt", "module/README"]) {
        assert.ok(await exists(`${cache}/${kept}`), kept);
      }

      // The next build fills it again from scratch.
      const next = await mustGo(["build", "./..."], {
        cwd: module,
        env: goEnv(`${work.path}/gc-2`, `${plugin} --metrics`),
      });
      assert.match(next.stderr, /"put_requests":[1-9]/);
      assert.ok(await exists(`${cache}/output`));

      const none = await clean(`${work.path}/never-made`);
      assert.deepEqual([none.code, none.stderr], [0, ""]);
      assert.match(none.stdout, /^nothing to clean: ".*never-made" does not exist\n$/);
    } finally {
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "clean refuses while serve uses the cache directory, and cleans once it stopped",
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-clean-serve-");
    const cache = `${work.path}/cache`;
    const entry = `${cache}/output/ab/${HEX}`;
    await Deno.mkdir(`${cache}/output/ab`, { recursive: true });
    await Deno.writeTextFile(entry, "compiled");
    await Deno.utime(entry, new Date(0), new Date(0));
    await using server = await Server.start([`--plugin=${freePort()}`, `--cache-dir=${cache}`]);

    const refused = await clean(cache);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, "");
    assert.equal(refused.stderr.trimEnd().split("\n").length, 1, refused.stderr);
    assert.match(
      refused.stderr,
      new RegExp(`Cannot clean ".*": a serve process \\(pid ${server.process.pid}\\) is using it`),
    );
    assert.ok(await exists(entry), "nothing removed");

    server.kill("SIGTERM");
    assert.equal(await server.exit(), 0);
    const cleaned = await clean(cache);
    assert.equal(cleaned.code, 0, cleaned.stderr);
    assert.ok(!await exists(entry));
  },
});

Deno.test({
  name: "a direct-mode build running while clean runs again and again still succeeds",
  ignore: !canRun("go"),
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-clean-race-");
    const module = await copyModule();
    const cache = `${work.path}/cache`;
    const plugin = pluginCommand(`--cache-dir=${cache}`, "--metrics");
    try {
      await mustGo(["build", "./..."], { cwd: module, env: goEnv(`${work.path}/gc-1`, plugin) });
      // Entries from two hours ago: the build's hits refresh what it uses, clean takes the rest.
      await backdate(`${cache}/output`, new Date(Date.now() - 7_200_000));
      await backdate(`${cache}/action`, new Date(Date.now() - 7_200_000));

      let building = true;
      const build = runGo(["build", "./..."], {
        cwd: module,
        env: goEnv(`${work.path}/gc-2`, plugin),
      }).finally(() => building = false);
      const outcomes: string[] = [];
      while (building) {
        const result = await clean(cache);
        assert.equal(result.code, 0, result.stderr);
        outcomes.push(result.stdout);
        await new Promise((r) => setTimeout(r, 50));
      }
      const result = await build;
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      assert.ok(
        outcomes.some((line) => /kept \d+ recently used by go commands still running/.test(line)),
        outcomes.join(""),
      );
      // Files vanished under the session: some gets missed, and their puts recreated the dirs.
      assert.match(result.stderr, /"put_requests":[1-9]/);
      assert.doesNotMatch(result.stderr, /Cannot store|storing puts in/);
    } finally {
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});
