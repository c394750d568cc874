/**
 * Mounts for disk-fault tests (a small tmpfs to fill, a read-only bind mount). They need root and
 * `mount`; in CI {@linkcode canMount} says yes regardless, so such a test runs and fails there.
 *
 * @module
 */

import { IN_CI } from "./go.ts";

const decoder = new TextDecoder();

/** Whether tmpfs and bind mounts work here; in CI always true, so the tests run and fail. */
export function canMount(): boolean {
  if (IN_CI) return true;
  const dir = Deno.makeTempDirSync({ prefix: "gcp-mount-probe-" });
  try {
    const mounted = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
    if (mounted) {
      new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).outputSync();
      return true;
    }
  } catch {
    // no mount command
  } finally {
    Deno.removeSync(dir);
  }
  // deno-lint-ignore no-console
  console.error(
    "skipping: cannot mount a tmpfs here (needs root and mount; CI would fail instead)",
  );
  return false;
}

/** Runs a command, throwing with its stderr when it fails. */
export async function run(command: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(
      `${command} ${args.join(" ")} exited ${out.code}: ${decoder.decode(out.stderr)}`,
    );
  }
}

/** A tmpfs of `size` (e.g. "8m") at `target`. */
export async function mountTmpfs(target: string, size: string): Promise<void> {
  await Deno.mkdir(target, { recursive: true });
  await run("mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", target);
}

/** Fills a mounted filesystem until it has no space left. */
export async function fill(dir: string): Promise<void> {
  await new Deno.Command("dd", {
    args: ["if=/dev/zero", `of=${dir}/filler`, "bs=1M"],
    stdout: "null",
    stderr: "null",
  }).output(); // ends with "No space left on device", as intended
}

/** A read-only bind mount of `source` at `target`. */
export async function mountReadOnly(source: string, target: string): Promise<void> {
  await Deno.mkdir(target, { recursive: true });
  await run("mount", "--bind", source, target);
  await run("mount", "-o", "remount,bind,ro", target);
}

/** Unmounts, waiting out a plugin process that is still finishing up after go exited. */
export async function unmount(path: string): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const out = await new Deno.Command("umount", { args: [path], stderr: "piped" }).output();
    if (out.success || /not mounted/.test(decoder.decode(out.stderr))) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await run("umount", "-l", path);
}
