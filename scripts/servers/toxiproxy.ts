/**
 * Starts toxiproxy-server on 127.0.0.1 and drives it through its HTTP API, to put latency or a
 * stall between the plugin and MinIO.
 *
 * @module
 */

import { freePort, toolsBin } from "./minio.ts";

/** The toxiproxy-server binary, or `undefined` when it is not installed. */
export async function findToxiproxy(): Promise<string | undefined> {
  const path = Deno.env.get("TOXIPROXY_BIN") ?? toolsBin("toxiproxy-server");
  try {
    return (await Deno.stat(path)).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

/** A running toxiproxy-server. */
export class Toxiproxy {
  readonly api: string;
  #process: Deno.ChildProcess;

  constructor(api: string, process: Deno.ChildProcess) {
    this.api = api;
    this.#process = process;
  }

  async #request(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(`${this.api}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5_000),
    });
    const text = await response.text();
    if (!response.ok) {
      throw new Error(`Cannot ${method} ${path} on toxiproxy: HTTP ${response.status}: ${text}`);
    }
    return text ? JSON.parse(text) : undefined;
  }

  /**
   * Creates a proxy listening on a free loopback port.
   *
   * @param name The proxy's name.
   * @param upstream `host:port` to forward to.
   * @returns The `http://127.0.0.1:port` endpoint of the proxy.
   */
  async proxy(name: string, upstream: string): Promise<string> {
    const listen = `127.0.0.1:${freePort()}`;
    await this.#request("POST", "/proxies", { name, listen, upstream, enabled: true });
    return `http://${listen}`;
  }

  /** Adds latency (ms, each direction's first bytes) to a proxy's downstream. */
  async latency(proxy: string, ms: number, jitter = 0): Promise<void> {
    await this.#request("POST", `/proxies/${proxy}/toxics`, {
      name: `latency_${ms}`,
      type: "latency",
      stream: "downstream",
      attributes: { latency: ms, jitter },
    });
  }

  /** Stops all data on a proxy; connections close after `ms` (0 = hold them open). */
  async timeout(proxy: string, ms: number): Promise<void> {
    await this.#request("POST", `/proxies/${proxy}/toxics`, {
      name: `timeout_${ms}`,
      type: "timeout",
      stream: "downstream",
      attributes: { timeout: ms },
    });
  }

  /**
   * Adds any toxic (latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data).
   *
   * @param proxy The proxy's name.
   * @param type The toxic's type.
   * @param attributes Its attributes, as toxiproxy documents them.
   * @param stream Which direction: "downstream" (server to client) or "upstream".
   */
  async toxic(
    proxy: string,
    type: string,
    attributes: Record<string, number>,
    stream: "downstream" | "upstream" = "downstream",
  ): Promise<void> {
    await this.#request("POST", `/proxies/${proxy}/toxics`, {
      name: `${type}_${stream}`,
      type,
      stream,
      attributes,
    });
  }

  /** Removes every toxic from every proxy. */
  async reset(): Promise<void> {
    await this.#request("POST", "/reset");
  }

  /** Stops the server. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.#process.status;
  }
}

/**
 * Starts toxiproxy-server on a free loopback port and waits for its API.
 *
 * @returns The server; dispose it with `await using`.
 * @throws {Error} When the binary is missing or the API does not answer within 10 s.
 */
export async function startToxiproxy(): Promise<Toxiproxy> {
  const bin = await findToxiproxy();
  if (!bin) throw new Error("Cannot start toxiproxy: run scripts/install_test_servers.sh first");
  const port = freePort();
  const process = new Deno.Command(bin, {
    args: ["-host", "127.0.0.1", "-port", String(port)],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const toxiproxy = new Toxiproxy(`http://127.0.0.1:${port}`, process);
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      const response = await fetch(`${toxiproxy.api}/version`, {
        signal: AbortSignal.timeout(500),
      });
      await response.body?.cancel();
      if (response.ok) return toxiproxy;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await toxiproxy[Symbol.asyncDispose]();
      throw new Error("Cannot start toxiproxy: API not answering after 10 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
