/**
 * Shared pieces of the benchmark scripts: the workload (a pinned open-source module built from a
 * prepared module cache), hermetic go environments, the plugins under test, timing and tables.
 *
 * Environment:
 * - `GCP_BENCH_DIR`: where the workload, caches and results live (default `/tmp/gcp-bench`).
 * - `TAILSCALE_PLUGIN`: path to a build of tailscale's go-cache-plugin; its columns are skipped
 *   with a stated reason when unset.
 * - `MINIO_BIN` / `GCP_TOOLS_DIR`: the MinIO binary (see `scripts/servers/minio.ts`).
 *
 * @module
 */

/** The repository root. */
export const ROOT: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Our plugin's launcher (`deno run` with the release permissions). */
export const PLUGIN: string = `${ROOT}/scripts/go-cache-plugin`;

/** Everything the benchmarks write lives under here. */
export const BENCH_DIR: string = Deno.env.get("GCP_BENCH_DIR") ?? "/tmp/gcp-bench";

/**
 * The workload: golang.org/x/tools at a pinned version, every non-main package with Go files
 * (170 of its own packages + 30 from its 6 dependencies + ~220 std = ~420 packages, no linking).
 */
export const WORKLOAD = { module: "golang.org/x/tools", version: "v0.52.0" } as const;

/** Paths of the prepared workload. */
export const WORK = {
  modcache: `${BENCH_DIR}/gomodcache`,
  dir: `${BENCH_DIR}/work/tools`,
  pkgs: `${BENCH_DIR}/work/pkgs.txt`,
  results: `${BENCH_DIR}/results`,
} as const;

/** Tailscale's plugin, if `TAILSCALE_PLUGIN` names an executable. */
export function tailscalePlugin(): { path?: string; reason?: string } {
  const path = Deno.env.get("TAILSCALE_PLUGIN");
  if (!path) return { reason: "TAILSCALE_PLUGIN is not set" };
  try {
    if (!Deno.statSync(path).isFile) return { reason: `TAILSCALE_PLUGIN=${path} is not a file` };
  } catch {
    return { reason: `TAILSCALE_PLUGIN=${path} does not exist` };
  }
  return { path };
}

/** A hermetic go environment over the prepared module cache; no network unless `goproxy`. */
export function goEnv(
  gocache: string,
  options: { gocacheprog?: string; goproxy?: string; modcache?: string } = {},
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/local/go/bin:/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    GOTOOLCHAIN: "local",
    GOENV: "off",
    GOPROXY: options.goproxy ?? "off",
    GOSUMDB: "off",
    GOFLAGS: "-mod=mod",
    GOTELEMETRY: "off",
    GOMODCACHE: options.modcache ?? WORK.modcache,
    GOPATH: `${BENCH_DIR}/gopath`,
    GOCACHE: gocache,
  };
  if (options.gocacheprog) env.GOCACHEPROG = options.gocacheprog;
  return env;
}

/** Runs a command to completion, throwing with its output when it fails or times out. */
export async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: options.env !== undefined,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, options.timeoutMs ?? 600_000);
  const out = await child.output();
  clearTimeout(timer);
  const ms = performance.now() - started;
  const decoder = new TextDecoder();
  const result = { stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr), ms };
  if (!out.success) {
    throw new Error(
      `Cannot run ${cmd} ${args.slice(0, 4).join(" ")}: exit ${out.code}${
        out.signal ? ` (${out.signal})` : ""
      }: ${result.stderr.slice(-2000)}`,
    );
  }
  return result;
}

/**
 * Prepares the workload once: downloads the module and its dependencies into `WORK.modcache`
 * (network: the configured GOPROXY), copies the module to a writable directory and lists its
 * packages. Later runs use `GOPROXY=off`.
 */
export async function prepareWorkload(): Promise<string[]> {
  try {
    const pkgs = (await Deno.readTextFile(WORK.pkgs)).split("\n").filter(Boolean);
    if (pkgs.length > 0) return pkgs;
  } catch {
    // not prepared yet
  }
  const goproxy = (await run("go", ["env", "GOPROXY"])).stdout.trim();
  const env = goEnv(`${BENCH_DIR}/gocache-prepare`, { goproxy });
  await Deno.mkdir(`${BENCH_DIR}/work`, { recursive: true });
  const info = JSON.parse(
    (await run("go", ["mod", "download", "-json", `${WORKLOAD.module}@${WORKLOAD.version}`], {
      env,
      cwd: BENCH_DIR,
    })).stdout,
  );
  await Deno.remove(WORK.dir, { recursive: true }).catch(() => {});
  await run("cp", ["-r", info.Dir, WORK.dir]);
  await run("chmod", ["-R", "u+w", WORK.dir]);
  await run("go", ["mod", "download"], { env, cwd: WORK.dir });
  const listed = await run("go", [
    "list",
    "-f",
    '{{if and (ne .Name "main") .GoFiles}}{{.ImportPath}}{{end}}',
    "./...",
  ], { env: { ...env, GOPROXY: "off" }, cwd: WORK.dir });
  const pkgs = listed.stdout.split("\n").filter(Boolean);
  await Deno.writeTextFile(WORK.pkgs, pkgs.join("\n") + "\n");
  await Deno.remove(`${BENCH_DIR}/gocache-prepare`, { recursive: true }).catch(() => {});
  return pkgs;
}

/** Number of packages (including std) a build of `pkgs` compiles. */
export async function countDeps(pkgs: string[]): Promise<number> {
  const out = await run("go", ["list", "-deps", ...pkgs], {
    env: goEnv(`${BENCH_DIR}/gocache-list`),
    cwd: WORK.dir,
  });
  return out.stdout.split("\n").filter(Boolean).length;
}

/** A fresh empty directory under the bench dir. */
export async function freshDir(name: string): Promise<string> {
  const path = `${BENCH_DIR}/tmp/${name}`;
  await Deno.remove(path, { recursive: true }).catch(() => {});
  await Deno.mkdir(path, { recursive: true });
  return path;
}

/** Removes a directory tree, ignoring absence. */
export async function removeDir(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
}

/**
 * A GOCACHEPROG command line that runs `argv` under GNU time, writing the plugin's peak RSS
 * (KiB) and CPU seconds to `rssFile`. time forks the plugin with go's pipes, so the protocol is untouched.
 */
export function withRss(argv: string[], rssFile: string): string {
  // %M peak RSS (KiB), %U %S user and system CPU seconds (joined by "," since GOCACHEPROG
  // splits on spaces)
  return ["/usr/bin/time", "-f", "%M,%U,%S", "-o", rssFile, ...argv].join(" ");
}

/** Reads the peak RSS (MiB) a {@linkcode withRss} wrapper recorded, or NaN. */
export async function readRss(rssFile: string): Promise<number> {
  try {
    const text = await Deno.readTextFile(rssFile);
    const kib = Number(text.trim().split("\n").at(-1)?.split(",")[0]);
    return kib / 1024;
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system) a {@linkcode withRss} wrapper recorded, or NaN. */
export async function readCpu(rssFile: string): Promise<number> {
  try {
    const fields = (await Deno.readTextFile(rssFile)).trim().split("\n").at(-1)!.split(",");
    return Number(fields[1]) + Number(fields[2]);
  } catch {
    return NaN;
  }
}

/** Peak RSS (MiB) of a running process so far, from /proc. */
export async function peakRssOfPid(pid: number): Promise<number> {
  try {
    // Deno needs --allow-all to read /proc directly; cat does not.
    const status = (await run("cat", [`/proc/${pid}/status`])).stdout;
    const match = status.match(/^VmHWM:\s+(\d+) kB/m);
    return match ? Number(match[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Median of a list of numbers (NaN when empty). */
export function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A percentile (0-100) by nearest rank. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The 1-minute load average, for the record. */
export async function loadAverage(): Promise<string> {
  try {
    return (await run("cat", ["/proc/loadavg"])).stdout.split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

/** Versions and machine facts for a results header. */
export async function environment(): Promise<Record<string, string>> {
  const go = (await run("go", ["version"])).stdout.trim();
  const cpu = (await run("cat", ["/proc/cpuinfo"])).stdout.match(/model name\s*:\s*(.*)/)?.[1] ??
    "?";
  const ts = tailscalePlugin();
  return {
    date: new Date().toISOString(),
    go,
    deno: Deno.version.deno,
    cpus: `${navigator.hardwareConcurrency} x ${cpu}`,
    tailscale: ts.path ?? `skipped: ${ts.reason}`,
    load: await loadAverage(),
  };
}

/** Parses `--name=value` flags (and bare `--name`) into a map. */
export function parseFlags(args: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (const arg of args) {
    const match = arg.match(/^--([^=]+)(?:=(.*))?$/);
    if (!match) throw new TypeError(`Cannot parse argument "${arg}": expected --name[=value]`);
    flags.set(match[1]!, match[2] ?? "true");
  }
  return flags;
}

/** Formats milliseconds for a table. */
export function ms(value: number): string {
  if (Number.isNaN(value)) return "n/a";
  return value >= 10_000
    ? `${(value / 1000).toFixed(1)} s`
    : `${value.toFixed(value < 100 ? 1 : 0)} ms`;
}

/** Formats a ratio for a table. */
export function ratio(value: number, base: number): string {
  const r = value / base;
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : "n/a";
}

/** Renders a markdown table. */
export function table(header: string[], rows: string[][]): string {
  const lines = [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
  return lines.join("\n");
}

/** Writes a results file (JSON) under `WORK.results` and returns its path. */
export async function saveResults(name: string, data: unknown): Promise<string> {
  await Deno.mkdir(WORK.results, { recursive: true });
  const path = `${WORK.results}/${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  await Deno.writeTextFile(path, JSON.stringify(data, null, 2) + "\n");
  return path;
}

/** Prints to stdout (the scripts' output is the report). */
export function print(text: string): void {
  // deno-lint-ignore no-console
  console.log(text);
}

/** Prints progress to stderr. */
export function progress(text: string): void {
  // deno-lint-ignore no-console
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}`);
}

/** The permissions every bench script runs with, for reproduce lines. */
export const DENO_RUN =
  "scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1 --allow-sys=osRelease --allow-run";
