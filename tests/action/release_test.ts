/**
 * `scripts/release.sh`, as .github/workflows/release.yml runs it, in a copy of the files it reads
 * (a temporary root), with stand-ins for `deno compile` (writes a small file per target) and for
 * `gh` (records its calls; answers `release view` from a scenario): the build writes a
 * SHA256SUMS that `sha256sum --check` accepts and leaves no stale binary; the tag must match
 * src/cli/version.ts; `--publish` creates the release as a draft with exactly those files and
 * publishes it, and never replaces a file a release has already.
 */
import assert from "node:assert/strict";
import { ROOT, tempDir } from "../_util/go.ts";

/** A temporary root with release.sh and what it reads; `scripts/deno` and `gh` are stand-ins. */
async function releaseRoot(dir: string): Promise<{ root: string; bin: string; calls: string }> {
  const root = `${dir}/repo`;
  const bin = `${dir}/bin`;
  for (const sub of ["scripts/action", "src/cli", "dist"]) {
    await Deno.mkdir(`${root}/${sub}`, { recursive: true });
  }
  await Deno.mkdir(bin);
  for (const file of ["scripts/release.sh", "scripts/action/lib.sh", "src/cli/version.ts"]) {
    await Deno.copyFile(`${ROOT}/${file}`, `${root}/${file}`);
  }
  await Deno.copyFile(`${ROOT}/deno.json`, `${root}/deno.json`);
  // `deno compile ... --target T --output dist/NAME main.ts`: a file naming its target.
  await Deno.writeTextFile(
    `${root}/scripts/deno`,
    `#!/usr/bin/env bash
out="" target=""
while [ $# -gt 0 ]; do
  case "$1" in --output) out=$2; shift ;; --target) target=$2; shift ;; esac
  shift
done
printf 'binary for %s\\n' "$target" >"$out"
`,
    { mode: 0o755 },
  );
  const calls = `${dir}/gh-calls`;
  // gh: one line per call; `release view` prints $GH_ASSETS (exit 0) or fails when GH_NO_RELEASE.
  await Deno.writeTextFile(
    `${bin}/gh`,
    `#!/usr/bin/env bash
printf '%s\\n' "$*" >>"${calls}"
if [ "$1 $2" = "release view" ]; then
  [ -z "\${GH_NO_RELEASE:-}" ] || { echo "release not found" >&2; exit 1; }
  printf '%s\\n' \${GH_ASSETS:-}
fi
exit 0
`,
    { mode: 0o755 },
  );
  return { root, bin, calls };
}

/** Runs the copy's release.sh with `args`; `env` adds to a PATH with the `gh` stand-in first. */
async function release(
  where: { root: string; bin: string },
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  const result = await new Deno.Command("bash", {
    args: [`${where.root}/scripts/release.sh`, ...args],
    env: { PATH: `${where.bin}:${Deno.env.get("PATH")}`, ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    out: decoder.decode(result.stdout) + decoder.decode(result.stderr),
  };
}

async function callsOf(calls: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(calls)).trim().split("\n").filter((line) => line !== "");
  } catch {
    return [];
  }
}

const VERSION = `v${
  (await Deno.readTextFile(`${ROOT}/src/cli/version.ts`)).match(/VERSION = "(.*)"/)![1]
}`;

Deno.test("scripts/release.sh builds every target with a SHA256SUMS sha256sum accepts", async () => {
  await using dir = await tempDir("gcp-release-");
  const where = await releaseRoot(dir.path);
  await Deno.writeTextFile(`${where.root}/dist/go-cache-plugin-v0.0.1-stale`, "old");
  const build = await release(where, [VERSION]);
  assert.equal(build.code, 0, build.out);
  const names = (await Array.fromAsync(Deno.readDir(`${where.root}/dist`))).map((e) => e.name)
    .sort();
  assert.deepEqual(names, [
    "SHA256SUMS",
    `go-cache-plugin-${VERSION}-aarch64-apple-darwin`,
    `go-cache-plugin-${VERSION}-aarch64-unknown-linux-gnu`,
    `go-cache-plugin-${VERSION}-x86_64-apple-darwin`,
    `go-cache-plugin-${VERSION}-x86_64-pc-windows-msvc.exe`,
    `go-cache-plugin-${VERSION}-x86_64-unknown-linux-gnu`,
  ], "the stale binary of an earlier build is gone");
  const check = await new Deno.Command("sha256sum", {
    args: ["--check", "--strict", "SHA256SUMS"],
    cwd: `${where.root}/dist`,
    stdout: "piped",
  }).output();
  assert.equal(check.code, 0, new TextDecoder().decode(check.stdout));
  assert.equal(new TextDecoder().decode(check.stdout).match(/: OK$/gm)?.length, 5);
});

Deno.test("scripts/release.sh refuses a tag that is not src/cli/version.ts's version", async () => {
  await using dir = await tempDir("gcp-release-");
  const where = await releaseRoot(dir.path);
  for (const tag of ["v99.0.0", "main", "v1;rm"]) {
    const build = await release(where, [tag]);
    assert.equal(build.code, 1, build.out);
    assert.match(build.out, new RegExp(`Cannot release "${tag.replace(/[.;]/g, "\\$&")}"`));
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${where.root}/dist`)), []);
  }
});

Deno.test("scripts/release.sh --publish attaches exactly the checked files, never replacing one", async (t) => {
  await using dir = await tempDir("gcp-release-");
  const where = await releaseRoot(dir.path);
  assert.equal((await release(where, [VERSION])).code, 0);
  const files = [
    ...(await Deno.readTextFile(`${where.root}/dist/SHA256SUMS`)).matchAll(/ {2}(\S+)$/gm),
  ].map((m) => `dist/${m[1]}`);
  assert.equal(files.length, 5);
  const all = [...files, "dist/SHA256SUMS"].join(" ");

  await t.step("a new release: created as a draft with every file, then published", async () => {
    await Deno.remove(where.calls).catch(() => {});
    const publish = await release(where, ["--publish", VERSION], { GH_NO_RELEASE: "1" });
    assert.equal(publish.code, 0, publish.out);
    assert.deepEqual(await callsOf(where.calls), [
      `release view ${VERSION} --json assets --jq .assets[].name`,
      `release create ${VERSION} --title ${VERSION} --generate-notes --verify-tag --draft ${all}`,
      `release edit ${VERSION} --draft=false`,
    ]);
  });

  await t.step("a release without these files: they are added (no --clobber)", async () => {
    await Deno.remove(where.calls).catch(() => {});
    const publish = await release(where, ["--publish", VERSION], { GH_ASSETS: "notes.txt" });
    assert.equal(publish.code, 0, publish.out);
    const calls = await callsOf(where.calls);
    assert.deepEqual(calls.slice(1), [`release upload ${VERSION} ${all}`]);
    assert.ok(!calls.some((call) => call.includes("--clobber")));
  });

  await t.step("a release that has one of the files already: fails, nothing changes", async () => {
    await Deno.remove(where.calls).catch(() => {});
    const publish = await release(where, ["--publish", VERSION], {
      GH_ASSETS: `notes.txt SHA256SUMS`,
    });
    assert.equal(publish.code, 1, publish.out);
    assert.match(
      publish.out,
      /Cannot publish SHA256SUMS: release .* already has a file of that name/,
    );
    assert.deepEqual((await callsOf(where.calls)).map((call) => call.split(" ")[1]), ["view"]);
  });

  await t.step(
    "a file changed after SHA256SUMS was written: fails before gh is asked",
    async () => {
      await Deno.remove(where.calls).catch(() => {});
      await Deno.writeTextFile(`${where.root}/${files[0]}`, "tampered\n");
      const publish = await release(where, ["--publish", VERSION], { GH_NO_RELEASE: "1" });
      assert.equal(publish.code, 1, publish.out);
      assert.match(publish.out, /does not match dist\/SHA256SUMS/);
      assert.deepEqual(await callsOf(where.calls), []);
    },
  );
});
