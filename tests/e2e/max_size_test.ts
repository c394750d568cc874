/**
 * `--max-size` with the real go command in direct mode: yesterday's entries (a build with other
 * compiler flags, aged a day) plus today's build fill the directory past the cap; after the
 * go command ends, its plugin trims the directory under the cap, least recently used first, and
 * the next warm build still hits.
 */
import assert from "node:assert/strict";
import {
  canRun,
  copyModule,
  goEnv,
  mustGo,
  pluginCommand,
  pluginMetrics,
  tempDir,
  total,
} from "../_util/go.ts";

/** Bytes of the files under action/ and output/. */
async function entryBytes(cacheDir: string): Promise<number> {
  let bytes = 0;
  for (const part of ["action", "output"]) {
    const walk = async (dir: string) => {
      for await (const entry of Deno.readDir(dir)) {
        const path = `${dir}/${entry.name}`;
        if (entry.isDirectory) await walk(path);
        else if (entry.isFile) bytes += (await Deno.stat(path)).size;
      }
    };
    await walk(`${cacheDir}/${part}`).catch(() => {});
  }
  return bytes;
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
  name: "--max-size: a build past the cap ends under it, oldest out first, and the next build hits",
  ignore: !canRun("go"),
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-max-size-");
    const module = await copyModule();
    const cache = `${work.path}/cache`;
    let run = 0;
    const env = (...flags: string[]) =>
      goEnv(`${work.path}/gocache-${++run}`, pluginCommand(`--cache-dir=${cache}`, ...flags));
    // Yesterday's build and today's differ in compiler flags, so they share almost no entries.
    const yesterday = ["build", "./..."];
    const today = ["build", "-gcflags=all=-N -l", "./..."];
    try {
      let cap = 0;
      let old = 0;
      await t.step("yesterday: a build with other flags, aged a day", async () => {
        await mustGo(yesterday, { cwd: module, env: env() });
        old = await entryBytes(cache);
        assert.ok(old > 1 << 20, `${old} bytes`);
        // Room for one build of either kind (they are within 30% of each other), not for both.
        cap = Math.round(old * 1.3);
        const dayAgo = new Date(Date.now() - 86_400_000);
        for (const part of ["action", "output"]) await backdate(`${cache}/${part}`, dayAgo);
      });

      await t.step("today's build fills the directory past the cap; it ends under it", async () => {
        const build = await mustGo(today, {
          cwd: module,
          env: env(`--max-size=${cap}`, "--metrics"),
        });
        const written = total(pluginMetrics(build.stderr), "put_bytes");
        assert.ok(old + written > cap * 1.2, `${old} + ${written} bytes over a ${cap}-byte cap`);
        // go does not wait for the plugin: it trims after go has its last reply.
        const deadline = Date.now() + 30_000;
        let bytes = await entryBytes(cache);
        while (bytes > cap && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          bytes = await entryBytes(cache);
        }
        assert.ok(bytes <= cap, `${bytes} bytes left over a ${cap}-byte cap`);
        assert.ok(bytes >= written * 0.9, "today's entries stayed: only yesterday's went");
      });

      await t.step("the next build, with a fresh GOCACHE, hits", async () => {
        const build = await mustGo(today, {
          cwd: module,
          env: env(`--max-size=${cap}`, "--metrics"),
        });
        const metrics = pluginMetrics(build.stderr);
        const hits = total(metrics, "get_hits");
        const misses = total(metrics, "get_misses");
        // The one expected miss is cmd/hello's link step, which go never caches.
        assert.ok(hits > 50 && misses <= 2, `${hits} hits, ${misses} misses`);
        assert.equal(total(metrics, "put_bytes"), 0, "nothing recompiled");
      });

      await t.step("yesterday's build, trimmed away, misses", async () => {
        const build = await mustGo(yesterday, {
          cwd: module,
          env: env(`--max-size=${cap}`, "--metrics"),
        });
        assert.ok(total(pluginMetrics(build.stderr), "get_misses") > 10);
      });
    } finally {
      await Deno.remove(module, { recursive: true }).catch(() => {});
    }
  },
});
