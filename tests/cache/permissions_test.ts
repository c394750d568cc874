/**
 * A cache directory is private to its user whatever the umask: the plugin, started under
 * `umask 000` by a real go build, must leave no directory or file under it that anyone else can
 * write (or read), since whoever can write there decides what later builds link in.
 */
import assert from "node:assert/strict";
import { copyModule, goEnv, mustGo, needs, PLUGIN, tempDir } from "../_util/go.ts";
import { freePort } from "../_util/net.ts";

/** Every path under `dir` (itself included) with its permission bits. */
async function modes(dir: string): Promise<{ path: string; mode: number; isDir: boolean }[]> {
  const info = await Deno.lstat(dir);
  const all = [{ path: dir, mode: info.mode! & 0o7777, isDir: info.isDirectory }];
  if (!info.isDirectory) return all;
  for await (const entry of Deno.readDir(dir)) all.push(...await modes(`${dir}/${entry.name}`));
  return all;
}

Deno.test({
  name: "the plugin under umask 000 makes its cache directory and every entry owner-only",
  ignore: Deno.build.os === "windows",
}, async () => {
  if (await needs("go", goAvailable())) return;
  await using tmp = await tempDir("gcp-perm-");
  const module = await copyModule();
  try {
    // A launcher that sets the umask and then runs the plugin as users do.
    const launcher = `${tmp.path}/plugin-umask-000`;
    await Deno.writeTextFile(launcher, `#!/bin/sh\numask 000\nexec "${PLUGIN}" "$@"\n`, {
      mode: 0o700,
    });
    const cacheDir = `${tmp.path}/parent/cache`; // the parent is made too
    const gocacheprog = [
      launcher,
      `--cache-dir=${cacheDir}`,
      "--max-size=1G", // .last-trim
      "--expiry=72h", // .last-prune
      // A bucket nobody answers on: owed uploads are recorded under s3-pending/.
      "--bucket=perm",
      `--s3-endpoint-url=http://127.0.0.1:${freePort()}`,
      "--s3-path-style",
      "--region=us-east-1",
      "--warm-key=off",
    ].join(" ");
    const env = {
      ...goEnv(`${tmp.path}/gocache`, gocacheprog),
      AWS_ACCESS_KEY_ID: "perm",
      AWS_SECRET_ACCESS_KEY: "permpermperm",
    };
    await mustGo(["build", "./..."], { cwd: module, env });
    const found = await modes(cacheDir);
    const kinds = new Set(found.map((f) => f.path.slice(cacheDir.length + 1).split("/")[0]));
    for (const part of ["action", "output", "s3-pending"]) {
      assert.ok(kinds.has(part), `${part}/ was written (found ${[...kinds].join(", ")})`);
    }
    assert.ok(found.length > 100, `${found.length} entries`);
    const open = found.filter((f) => (f.mode & 0o077) !== 0);
    assert.deepEqual(
      open.map((f) => `${f.path} ${f.mode.toString(8)}`),
      [],
      "nothing under the cache directory is open to group or others",
    );
    const parent = (await Deno.stat(`${tmp.path}/parent`)).mode! & 0o777;
    assert.equal(parent, 0o700, "a parent the plugin made is private too");
  } finally {
    await Deno.remove(module, { recursive: true }).catch(() => {});
  }
});

async function goAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("go", { args: ["version"], stdout: "null" }).output()).success;
  } catch {
    return false;
  }
}
