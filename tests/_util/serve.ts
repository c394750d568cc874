/**
 * A `serve` process spawned through scripts/go-cache-plugin, for end-to-end tests: started with a
 * clean environment, its stderr and stdout (the export lines) collected, ready once it says how to
 * point go at it.
 *
 * @module
 */

import { PLUGIN } from "./go.ts";

/** Deno's own cache, kept when a test gives the server a fresh HOME or XDG_CACHE_HOME. */
export const DENO_DIR: string = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache`}/deno`;

/** A `serve` process; its stderr and stdout are collected. */
export class Server implements AsyncDisposable {
  process: Deno.ChildProcess;
  stderr = "";
  /** What it printed on stdout: the `export` lines that point go at it. */
  stdout = "";
  #reading: Promise<unknown>;

  private constructor(process: Deno.ChildProcess) {
    this.process = process;
    this.#reading = Promise.all([
      process.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (text) => void (this.stderr += text) }),
      ).catch(() => {}),
      process.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (text) => void (this.stdout += text) }),
      ).catch(() => {}),
    ]);
  }

  static async start(args: string[], env: Record<string, string> = {}): Promise<Server> {
    const process = new Deno.Command(PLUGIN, {
      args: ["serve", ...args],
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/tmp",
        DENO_DIR,
        ...env,
      },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const server = new Server(process);
    const deadline = Date.now() + 20_000;
    while (!server.stderr.includes("point go at it")) {
      if (Date.now() > deadline) {
        await server[Symbol.asyncDispose]();
        throw new Error(`serve did not start:\n${server.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return server;
  }

  kill(signal: Deno.Signal): void {
    try {
      this.process.kill(signal);
    } catch {
      // gone
    }
  }

  async exit(): Promise<number> {
    const status = await this.process.status;
    await this.#reading;
    return status.code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.exit();
  }
}

/** What a plugin command printed, and its exit status. */
export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the launcher (`stats`, `clean`, …) to completion with a clean environment.
 *
 * @param args Its arguments.
 * @param env Extra variables.
 */
export async function runPlugin(
  args: string[],
  env: Record<string, string> = {},
): Promise<PluginRun> {
  const output = await new Deno.Command(PLUGIN, {
    args,
    env: {
      ...env,
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      DENO_DIR,
    },
    clearEnv: true,
    stdin: "null",
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
