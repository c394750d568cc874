/**
 * Direct mode with the real go command: the second build of anything is all hits.
 * The steps share one warm plugin cache directory so only the first build is cold.
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
import { sha256Hex } from "../_util/script.ts";

Deno.test({
  name: "direct mode: real go builds and tests hit the plugin cache the second time",
  ignore: !canRun("go"),
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir();
    const module = await copyModule();
    const cacheDir = `${work.path}/plugin-cache`;
    const plugin = pluginCommand(`--cache-dir=${cacheDir}`, "--metrics");
    let run = 0;
    const freshEnv = () => goEnv(`${work.path}/gocache-${++run}`, plugin);

    await t.step("cold: go build ./... and go test ./... fill the cache", async () => {
      const env = freshEnv();
      const build = await mustGo(["build", "./..."], { cwd: module, env });
      const test = await mustGo(["test", "./..."], { cwd: module, env });
      assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib\s+[\d.]+s/);
      const metrics = pluginMetrics(build.stderr + test.stderr);
      assert.ok(total(metrics, "put_requests") > 100, "the cold build put its outputs");
    });

    await t.step("warm, fresh GOCACHE: (cached) test results and zero misses", async () => {
      const env = freshEnv();
      const build = await mustGo(["build", "./..."], { cwd: module, env });
      const test = await mustGo(["test", "./..."], { cwd: module, env });
      assert.match(test.stdout, /ok\s+example\.com\/gcptest\/lib\s+\(cached\)/);
      const buildMetrics = pluginMetrics(build.stderr);
      const testMetrics = pluginMetrics(test.stderr);
      assert.equal(
        buildMetrics.length + testMetrics.length,
        2,
        "one plugin process per go command",
      );
      assert.equal(total(testMetrics, "get_misses"), 0);
      assert.ok(total(testMetrics, "get_hits") > 100);
      // Nothing recompiles. The build's only miss is cmd/hello's link step: go never caches
      // linked executables through GOCACHEPROG, so it looks them up and never puts them.
      assert.equal(total(buildMetrics, "put_bytes"), 0);
      assert.ok(total(buildMetrics, "get_misses") <= 1);
    });

    await t.step("go list -export paths still exist after go exits", async () => {
      const list = await mustGo(["list", "-export", "-f", "{{.Export}}", "./...", "fmt"], {
        cwd: module,
        env: freshEnv(),
      });
      const paths = list.stdout.trim().split("\n");
      assert.equal(paths.length, 3);
      for (const path of paths) {
        assert.ok(path.startsWith(cacheDir + "/output/"), path);
        assert.ok((await Deno.stat(path)).size > 0);
      }
    });

    await t.step("go build -o x.a ./lib does not spoil the next build", async () => {
      const out = `${work.path}/x.a`;
      await mustGo(["build", "-o", out, "./lib"], { cwd: module, env: freshEnv() });
      assert.ok((await Deno.stat(out)).size > 0);
      const next = await mustGo(["build", "-o", `${work.path}/hello`, "./cmd/hello"], {
        cwd: module,
        env: freshEnv(),
      });
      assert.equal(next.code, 0);
      const hello = await new Deno.Command(`${work.path}/hello`, { stdout: "piped" }).output();
      assert.equal(new TextDecoder().decode(hello.stdout), "hello, gopher\n");
      const again = await mustGo(["build", "./..."], { cwd: module, env: freshEnv() });
      assert.equal(
        total(pluginMetrics(again.stderr), "put_bytes"),
        0,
        "the moved archive was put back",
      );
    });

    await t.step(
      "two concurrent builds sharing one cache directory both succeed, cache consistent",
      async () => {
        // The same new source in two copies: both miss on lib and put the same entries at once.
        const copies = [await copyModule(), await copyModule()];
        for (const copy of copies) {
          await Deno.writeTextFile(
            `${copy}/lib/extra.go`,
            "package lib\n\n// Extra is new.\nconst Extra = 42\n",
          );
          const old = new Date(Date.now() - 3_600_000);
          await Deno.utime(`${copy}/lib/extra.go`, old, old);
        }
        const results = await Promise.all(
          copies.map((copy) => mustGo(["test", "./..."], { cwd: copy, env: freshEnv() })),
        );
        for (const result of results) {
          assert.match(result.stdout, /ok\s+example\.com\/gcptest\/lib/);
        }
        for await (const shard of Deno.readDir(`${cacheDir}/action`)) {
          for await (const entry of Deno.readDir(`${cacheDir}/action/${shard.name}`)) {
            const [outputId, size] =
              (await Deno.readTextFile(`${cacheDir}/action/${shard.name}/${entry.name}`)).split(
                " ",
              );
            const bytes = await Deno.readFile(
              `${cacheDir}/output/${outputId!.slice(0, 2)}/${outputId}`,
            );
            assert.equal(bytes.length, Number(size));
            assert.equal(await sha256Hex(bytes), outputId);
          }
        }
        for (const copy of copies) {
          await Deno.remove(copy, { recursive: true });
        }
      },
    );

    await Deno.remove(module, { recursive: true });
  },
});

Deno.test({
  name: "direct mode: without --cache-dir the cache lives under the GOCACHE go passes in",
  ignore: !canRun("go"),
  async fn() {
    await using work = await tempDir();
    const module = await copyModule();
    const env = goEnv(`${work.path}/gocache`, pluginCommand("--metrics"));
    // A package with few dependencies keeps this cold build short.
    const list = await mustGo(["list", "-export", "-f", "{{.Export}}", "errors"], {
      cwd: module,
      env,
    });
    assert.ok(
      list.stdout.trim().startsWith(`${work.path}/gocache/go-cache-plugin/output/`),
      list.stdout,
    );
    await Deno.remove(module, { recursive: true });
  },
});
