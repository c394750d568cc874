/**
 * Runs the module proxy on 127.0.0.1 in a child process, for tests that need permissions the test
 * process does not have (network access to the real upstream; `--allow-sys=osRelease` for the
 * AWS SDK). Prints `listening <port>` on stdout; stops when stdin closes and then prints its
 * counters as `metrics {json}` on stderr.
 *
 * Usage: serve_proxy.ts <cache-dir> <upstream list> [--sumdb=<entry>]... [--s3=<endpoint>#<bucket>]
 * (S3 credentials come from the AWS_* environment.)
 *
 * {@linkcode ProxyProcess} starts and stops it from a test.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ObjectStore } from "../../../src/store/mod.ts";
import { createLogger } from "../../../src/log/mod.ts";
import { Metrics } from "../../../src/metrics/mod.ts";
import { createModuleProxy } from "../../../src/modproxy/mod.ts";

const SELF = fileURLToPath(import.meta.url);
const ROOT = join(dirname(SELF), "../../..");

/** The child process running this script. */
export class ProxyProcess implements AsyncDisposable {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderr: Promise<string>;

  private constructor(
    port: number,
    child: Deno.ChildProcess,
    stderr: Promise<string>,
  ) {
    this.port = port;
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#stderr = stderr;
  }

  /** `http://127.0.0.1:<port>/mod` */
  get url(): string {
    return `http://127.0.0.1:${this.port}/mod`;
  }

  /**
   * Starts the proxy process.
   *
   * @param cacheDir The proxy's local module dir.
   * @param upstream The upstream list.
   * @param options Extra hosts for `--allow-net`, extra script args, extra env.
   */
  static async start(
    cacheDir: string,
    upstream: string,
    options: { hosts?: string[]; args?: string[]; env?: Record<string, string> } = {},
  ): Promise<ProxyProcess> {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--frozen",
        "--allow-read",
        `--allow-write=${cacheDir}`,
        `--allow-net=${["127.0.0.1", ...options.hosts ?? []].join(",")}`,
        "--allow-env",
        "--allow-sys=osRelease",
        SELF,
        cacheDir,
        upstream,
        ...options.args ?? [],
      ],
      cwd: ROOT,
      env: options.env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    reader.releaseLock();
    const port = Number(/listening (\d+)/.exec(text)?.[1]);
    if (!port) {
      try {
        child.kill();
      } catch { /* exited */ }
      throw new Error(`Cannot start the proxy process: ${await stderr}`);
    }
    return new ProxyProcess(port, child, stderr);
  }

  /** Stops the process (stdin EOF) and returns its counters. */
  async stop(): Promise<Record<string, number>> {
    await this.#stdin.close().catch(() => {});
    const status = await this.#child.status;
    const err = await this.#stderr;
    if (status.code !== 0) throw new Error(`Proxy process failed: ${err}`);
    const line = err.split("\n").find((l) => l.startsWith("metrics "));
    return line ? JSON.parse(line.slice("metrics ".length)) : {};
  }

  /** Kills the process if it still runs. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill();
    } catch { /* already exited */ }
    await this.#child.status;
    await this.#stderr.catch(() => {});
  }
}

async function main(args: string[]): Promise<void> {
  const [cacheDir, upstream, ...rest] = args;
  if (!cacheDir || !upstream) {
    throw new TypeError("Usage: serve_proxy.ts <cache-dir> <upstream> [--sumdb=…] [--s3=…]");
  }
  const sumdbs = rest.filter((a) => a.startsWith("--sumdb=")).map((a) => a.slice(8));
  const s3 = rest.find((a) => a.startsWith("--s3="))?.slice(5);
  let store: ObjectStore | undefined;
  if (s3) {
    const { AwsObjectStore } = await import("../../../src/store/mod.ts");
    const [endpoint, bucket] = s3.split("#") as [string, string];
    store = new AwsObjectStore({ bucket, endpoint, pathStyle: true, region: "us-east-1" })
      .withPrefix("module");
  }
  const metrics = new Metrics();
  const proxy = await createModuleProxy({
    cacheDir,
    upstream,
    store,
    sumdbs: sumdbs.length ? sumdbs : ["sum.golang.org"],
    metrics,
    log: createLogger({ verbose: true }),
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => proxy.handle(req),
  );
  await Deno.stdout.write(new TextEncoder().encode(`listening ${server.addr.port}\n`));
  for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
  await server.shutdown();
  await proxy.close();
  // deno-lint-ignore no-console
  console.error(`metrics ${JSON.stringify(metrics.counters())}`);
}

if (import.meta.main) await main(Deno.args);
