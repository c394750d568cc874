/**
 * Disk faults with the real go command: a cache directory on a full disk, on a read-only mount,
 * or one that cannot be created never fails a build. The faults are real (a small tmpfs filled
 * with dd, a read-only bind mount), so these tests need root and `mount`; in CI a machine where
 * mounting fails fails them instead of skipping.
 *
 * Every go command gets `TMPDIR` inside the test's own directory, so the fallback directory the
 * plugin picks (and anything it leaves there) is visible and removed with it.
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
import { canMount, fill, mountReadOnly, mountTmpfs, unmount } from "../_util/mounts.ts";

const MOUNTS = canRun("go") && canMount();

/** The plugin's warnings about its cache directory in one go command's stderr. */
function diskWarnings(stderr: string): string[] {
  return stderr.split("\n").filter((line) => /go-cache-plugin: Cannot (store|use) /.test(line));
}

/** The directory a warning says the plugin used instead. */
function fallbackIn(warning: string): string {
  const match = warning.match(/(?:storing puts in|using) "([^"]+)" instead$/);
  assert.ok(match, `no fallback directory named in ${JSON.stringify(warning)}`);
  return match[1]!;
}

/** A go environment for the plugin with `flags`, a fresh GOCACHE and TMPDIR under `work`. */
function envFor(work: string, n: number, ...flags: string[]): Record<string, string> {
  return {
    ...goEnv(`${work}/gocache-${n}`, pluginCommand(...flags, "--metrics")),
    TMPDIR: `${work}/tmp`,
  };
}

Deno.test({
  name: "disk faults: on a full cache disk go build and go vet succeed, with one warning each",
  ignore: !MOUNTS,
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-disk-");
    await Deno.mkdir(`${work.path}/tmp`);
    const module = await copyModule();
    const disk = `${work.path}/disk`;
    const cacheDir = `${disk}/cache`;
    await mountTmpfs(disk, "8m");
    try {
      await Deno.mkdir(cacheDir);
      await fill(disk);
      const fallbacks = new Set<string>();
      for (const [i, args] of [["build", "./..."], ["vet", "./..."]].entries()) {
        const env = envFor(work.path, i, `--cache-dir=${cacheDir}`);
        const result = await mustGo(args, { cwd: module, env });
        const warnings = diskWarnings(result.stderr);
        assert.equal(warnings.length, 1, `one warning per go command:\n${result.stderr}`);
        assert.match(
          warnings[0]!,
          new RegExp(
            `Cannot store (output|action) "[0-9a-f]{6}" in "${cacheDir}": No space left on device; ` +
              `storing puts in "${work.path}/tmp/go-cache-plugin-[^"]+" instead$`,
          ),
        );
        fallbacks.add(fallbackIn(warnings[0]!));
        if (args[0] === "vet") {
          assert.ok(
            total(pluginMetrics(result.stderr), "get_hits") > 100,
            "go vet hit what go build put in the fallback",
          );
        }
      }
      assert.equal(fallbacks.size, 1, "both go commands used the same fallback directory");
    } finally {
      await unmount(disk);
      await Deno.remove(module, { recursive: true });
    }
  },
});

Deno.test({
  name: "disk faults: a read-only cache directory serves its hits while puts go to the fallback",
  ignore: !MOUNTS,
  sanitizeResources: false,
  async fn(t) {
    await using work = await tempDir("gcp-disk-");
    await Deno.mkdir(`${work.path}/tmp`);
    const module = await copyModule();
    const warm = `${work.path}/warm`;
    const readOnly = `${work.path}/warm-ro`;
    const empty = `${work.path}/empty`;
    const emptyReadOnly = `${work.path}/empty-ro`;
    let runs = 0;
    const mounted: string[] = [];
    try {
      await mustGo(["build", "./..."], {
        cwd: module,
        env: envFor(work.path, ++runs, `--cache-dir=${warm}`),
      });
      await mountReadOnly(warm, readOnly);
      mounted.push(readOnly);
      await assert.rejects(Deno.writeTextFile(`${readOnly}/probe`, ""), /Read-only file system/);

      await t.step("warm: go build of changed source hits the directory and succeeds", async () => {
        // A new file in lib: its package must be compiled and put again.
        await Deno.writeTextFile(
          `${module}/lib/extra.go`,
          "package lib\n\n// Extra is new.\nconst Extra = 42\n",
        );
        const old = new Date(Date.now() - 3_600_000);
        await Deno.utime(`${module}/lib/extra.go`, old, old);
        const result = await mustGo(["build", "./..."], {
          cwd: module,
          env: envFor(work.path, ++runs, `--cache-dir=${readOnly}`),
        });
        const metrics = pluginMetrics(result.stderr);
        assert.ok(total(metrics, "get_hits") > 100, "the read-only directory served its hits");
        assert.ok(total(metrics, "put_bytes") > 0, "the changed package was put");
        const warnings = diskWarnings(result.stderr);
        assert.equal(warnings.length, 1, result.stderr);
        assert.match(
          warnings[0]!,
          new RegExp(`in "${readOnly}": Read-only file system; storing puts in "${work.path}/tmp/`),
        );
      });

      await t.step("the next go command hits both: nothing is compiled again", async () => {
        const result = await mustGo(["build", "./..."], {
          cwd: module,
          env: envFor(work.path, ++runs, `--cache-dir=${readOnly}`),
        });
        const metrics = pluginMetrics(result.stderr);
        assert.equal(total(metrics, "put_bytes"), 0);
        assert.ok(total(metrics, "get_misses") <= 1, "only the link step, which go never caches");
      });

      await t.step("empty: go build succeeds", async () => {
        await Deno.mkdir(empty);
        await mountReadOnly(empty, emptyReadOnly);
        mounted.push(emptyReadOnly);
        const result = await mustGo(["build", "./..."], {
          cwd: module,
          env: envFor(work.path, ++runs, `--cache-dir=${emptyReadOnly}`),
        });
        assert.equal(diskWarnings(result.stderr).length, 1, result.stderr);
        assert.ok(total(pluginMetrics(result.stderr), "put_requests") > 100);
      });
    } finally {
      for (const path of mounted) await unmount(path);
      await Deno.remove(module, { recursive: true });
    }
  },
});

Deno.test({
  name: "disk faults: an uncreatable cache directory: two go commands reuse one fallback directory",
  ignore: !canRun("go"),
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir("gcp-disk-");
    await Deno.mkdir(`${work.path}/tmp`);
    const module = await copyModule();
    await Deno.writeTextFile(`${work.path}/not-a-dir`, "");
    const cacheDir = `${work.path}/not-a-dir/cache`;
    try {
      const used: string[] = [];
      for (let n = 1; n <= 2; n++) {
        const result = await mustGo(["build", "./..."], {
          cwd: module,
          env: envFor(work.path, n, `--cache-dir=${cacheDir}`),
        });
        const warnings = diskWarnings(result.stderr);
        assert.equal(warnings.length, 1, result.stderr);
        assert.match(
          warnings[0]!,
          new RegExp(`Cannot use cache directory "${cacheDir}": Not a directory; using "`),
        );
        used.push(fallbackIn(warnings[0]!));
        if (n === 2) {
          const metrics = pluginMetrics(result.stderr);
          assert.ok(total(metrics, "get_hits") > 100, "the second command hit the first's puts");
          assert.equal(total(metrics, "put_bytes"), 0);
        }
      }
      assert.equal(used[0], used[1], "the same directory both times");
      const left = (await Array.fromAsync(Deno.readDir(`${work.path}/tmp`)))
        .map((entry) => entry.name).filter((name) => name.startsWith("go-cache-plugin"));
      assert.deepEqual(left, [used[0]!.slice(used[0]!.lastIndexOf("/") + 1)], "no other dirs");
    } finally {
      await Deno.remove(module, { recursive: true });
    }
  },
});
