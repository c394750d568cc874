/**
 * The cache configurations under test and how to launch them: go's built-in GOCACHE, our plugin
 * (direct, or `serve --plugin` + `connect`), tailscale's plugin (the same), with or without a
 * MinIO bucket.
 *
 * @module
 */

import { PLUGIN, tailscalePlugin } from "./_lib.ts";

/** Where a plugin's S3 tier points. */
export interface S3Target {
  endpoint: string;
  bucket: string;
  accessKey: string;
  secretKey: string;
}

/** Which implementation. */
export type Impl = "ours" | "tailscale";

/** The executable of an implementation (ours is the `deno run` launcher). */
export function executable(impl: Impl): string {
  if (impl === "ours") return PLUGIN;
  const ts = tailscalePlugin();
  if (!ts.path) throw new Error(`Cannot run tailscale's plugin: ${ts.reason}`);
  return ts.path;
}

/** Flags selecting the S3 tier (identical spelling for both implementations). */
export function s3Flags(s3: S3Target): string[] {
  return [
    `--bucket=${s3.bucket}`,
    `--s3-endpoint-url=${s3.endpoint}`,
    "--s3-path-style",
    "--region=us-east-1",
  ];
}

/** Environment the plugin needs for S3 (passed through go's environment). */
export function s3Env(s3?: S3Target): Record<string, string> {
  if (!s3) return {};
  return {
    AWS_ACCESS_KEY_ID: s3.accessKey,
    AWS_SECRET_ACCESS_KEY: s3.secretKey,
    AWS_REGION: "us-east-1",
    // keep the SDKs from looking for shared config or instance metadata
    AWS_EC2_METADATA_DISABLED: "true",
  };
}

/** argv of a direct-mode plugin. */
export function directArgv(impl: Impl, cacheDir: string, s3?: S3Target): string[] {
  return [executable(impl), `--cache-dir=${cacheDir}`, ...(s3 ? s3Flags(s3) : [])];
}

/** argv of a `serve --plugin=port` process. */
export function serveArgv(impl: Impl, port: number, cacheDir: string, options: {
  s3?: S3Target;
  http?: string;
  modproxy?: boolean;
} = {}): string[] {
  const argv = [
    executable(impl),
    "serve",
    `--plugin=${port}`,
    `--cache-dir=${cacheDir}`,
    ...(options.s3 ? s3Flags(options.s3) : []),
  ];
  if (options.http) argv.push(`--http=${options.http}`);
  if (options.modproxy) argv.push("--modproxy");
  return argv;
}

/** argv of a `connect port` client (what GOCACHEPROG runs in server mode). */
export function connectArgv(impl: Impl, port: number): string[] {
  return [executable(impl), "connect", String(port)];
}

/** A long-running `serve` process. */
export class ServeProcess implements AsyncDisposable {
  readonly process: Deno.ChildProcess;
  readonly #log: string[] = [];

  constructor(argv: string[], env: Record<string, string>) {
    this.process = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    for (const stream of [this.process.stdout, this.process.stderr]) {
      stream.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (chunk) => void this.#log.push(chunk) }),
      ).catch(() => {});
    }
  }

  /** The server's output so far (tail). */
  output(): string {
    return this.#log.join("").slice(-3000);
  }

  /** Waits until `port` on 127.0.0.1 accepts connections (bounded). */
  async waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        conn.close();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new Error(`Cannot reach the server on port ${port}: ${this.output()}`);
  }

  /** Stops the server (SIGTERM, then SIGKILL after 10 s). */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.process.kill("SIGTERM");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 10_000);
    await this.process.status;
    clearTimeout(timer);
  }
}
