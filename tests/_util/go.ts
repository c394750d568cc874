/**
 * Helpers for end-to-end tests that drive the real go command with the plugin as GOCACHEPROG.
 *
 * @module
 */

/** The repository root. */
export const ROOT: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** The launcher that runs main.ts with the release permissions. */
export const PLUGIN: string = `${ROOT}/scripts/go-cache-plugin`;

/** True when running under CI, where a required test that cannot run must fail. */
export const IN_CI: boolean = Deno.env.get("CI") === "true";

/**
 * Whether a command can run here. Outside CI a test may be ignored when it cannot; in CI the
 * test must run and fail, so this returns true there regardless.
 */
export function canRun(command: string): boolean {
  if (IN_CI) return true;
  try {
    new Deno.Command(command, { args: ["version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    // deno-lint-ignore no-console
    console.error(`skipping: ${command} is not installed (CI would fail instead)`);
    return false;
  }
}

/**
 * Whether a test must be skipped because `what` is missing: never in CI, where it runs and
 * fails instead; elsewhere when `present` is false, saying so on stderr.
 *
 * @param what What the test needs, for the message.
 * @param present Whether it is there (or a promise of it).
 * @returns True to skip.
 */
export async function needs(what: string, present: Promise<unknown> | boolean): Promise<boolean> {
  if (IN_CI) return false;
  if (await present) return false;
  // deno-lint-ignore no-console
  console.error(`skipping: ${what} is not available (CI would fail instead)`);
  return true;
}

/** Result of one go command. */
export interface GoResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A hermetic go environment: no network, no toolchain switch, no user config. */
export function goEnv(gocache: string, gocacheprog?: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    GOTOOLCHAIN: "local",
    GOENV: "off",
    GOPROXY: "off",
    GOFLAGS: "-trimpath",
    GOTELEMETRY: "off",
    GOCACHE: gocache,
    GOPATH: `${gocache}-gopath`,
  };
  if (gocacheprog) env.GOCACHEPROG = gocacheprog;
  return env;
}

/** Runs go in `cwd` with exactly `env` (plus extra variables). */
export async function runGo(
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): Promise<GoResult> {
  const output = await new Deno.Command("go", {
    args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Runs go and throws with its output when it fails. */
export async function mustGo(
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): Promise<GoResult> {
  const result = await runGo(args, options);
  if (result.code !== 0) {
    throw new Error(
      `go ${args.join(" ")} exited ${result.code}:\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result;
}

/**
 * Copies the test module to a fresh directory with mtimes well in the past, so go writes its
 * module-index entries deterministically (it skips files younger than 2 s).
 */
export async function copyModule(name = "gomod"): Promise<string> {
  const dest = await Deno.makeTempDir({ prefix: "gcp-mod-" });
  const old = new Date(Date.now() - 3_600_000);
  async function copy(from: string, to: string): Promise<void> {
    for await (const entry of Deno.readDir(from)) {
      if (entry.isDirectory) {
        await Deno.mkdir(`${to}/${entry.name}`);
        await copy(`${from}/${entry.name}`, `${to}/${entry.name}`);
      } else {
        await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
        await Deno.utime(`${to}/${entry.name}`, old, old);
      }
    }
  }
  await copy(`${ROOT}/tests/testdata/${name}`, dest);
  return dest;
}

/** Every `metrics {...}` line the plugin printed on go's stderr, parsed. */
export function pluginMetrics(stderr: string): Record<string, number>[] {
  return [...stderr.matchAll(/go-cache-plugin: metrics (\{.*\})$/gm)].map((m) => JSON.parse(m[1]!));
}

/** Sums a counter over every plugin process of one go command. */
export function total(metrics: Record<string, number>[], name: string): number {
  return metrics.reduce((sum, m) => sum + (m[name] ?? 0), 0);
}

/** Hits that came from the bucket: looked up one by one, or fetched ahead by the warm-up. */
export function remoteHits(metrics: Record<string, number>[]): number {
  return total(metrics, "s3_get_hits") + total(metrics, "warm_hits");
}

/** A GOCACHEPROG value running the plugin with the given flags. */
export function pluginCommand(...flags: string[]): string {
  return [PLUGIN, ...flags].join(" ");
}

/** A temporary directory removed on dispose. */
export async function tempDir(prefix = "gcp-"): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}
