/**
 * Starts and stops a real fake-gcs-server (a Google Cloud Storage emulator serving the JSON API)
 * on 127.0.0.1 for tests: a random free port, objects in a temporary directory (its filesystem
 * backend, so a restart keeps them), one bucket. The plugin reaches it through
 * `STORAGE_EMULATOR_HOST`, Google's convention, without credentials.
 *
 * The binary comes from `scripts/install_test_servers.sh` (`$GCP_TOOLS_DIR/bin/fake-gcs-server`);
 * `FAKE_GCS_BIN` overrides the path.
 *
 * @module
 */

import { freePort } from "./net.ts";
import { makeTlsFiles, toolsBin } from "./minio.ts";

/** The fake-gcs-server binary path, or `undefined` when it is not installed. */
export async function findFakeGcs(): Promise<string | undefined> {
  const path = Deno.env.get("FAKE_GCS_BIN") ?? toolsBin("fake-gcs-server");
  try {
    return (await Deno.stat(path)).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Options for {@linkcode startFakeGcs}. */
export interface FakeGcsOptions {
  /** Bucket to create. @default {"gcp-test"} */
  bucket?: string;
  /** Reuse a data directory (for restarts); by default a new temp dir is made and removed. */
  dataDir?: string;
  /** Listen on this port (for restarts); by default a free one. */
  port?: number;
  /**
   * Serve HTTPS with a certificate for IP 127.0.0.1 from a new private CA (`caFile`).
   * @default {false}
   */
  tls?: boolean;
}

/** A running fake-gcs-server. */
export class FakeGcs {
  /** `http://127.0.0.1:<port>`, what `STORAGE_EMULATOR_HOST` holds. */
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  readonly dataDir: string;
  /** The CA that signed the server's certificate (PEM file), when it serves HTTPS. */
  readonly caFile?: string;
  #client?: Deno.HttpClient;
  #process: Deno.ChildProcess;
  #ownsDir: boolean;
  #stopped = false;
  #log: string[];

  constructor(fields: {
    port: number;
    bucket: string;
    dataDir: string;
    process: Deno.ChildProcess;
    ownsDir: boolean;
    log: string[];
    caFile?: string;
    client?: Deno.HttpClient;
  }) {
    this.port = fields.port;
    this.endpoint = `${fields.caFile ? "https" : "http"}://127.0.0.1:${fields.port}`;
    this.caFile = fields.caFile;
    this.#client = fields.client;
    this.bucket = fields.bucket;
    this.dataDir = fields.dataDir;
    this.#process = fields.process;
    this.#ownsDir = fields.ownsDir;
    this.#log = fields.log;
  }

  /** Environment for a plugin process talking to this server (at `endpoint`, or a proxy). */
  env(endpoint = this.endpoint): Record<string, string> {
    return { STORAGE_EMULATOR_HOST: endpoint };
  }

  /** Plugin flags that name the bucket. */
  flags(bucket = this.bucket): string[] {
    return [`--bucket=gs://${bucket}`];
  }

  /** Creates a bucket. */
  async createBucket(name: string): Promise<void> {
    const response = await fetch(`${this.endpoint}/storage/v1/b`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
      client: this.#client,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`Cannot create bucket ${name}: ${response.status} ${text}`);
  }

  /** Writes an object. */
  async putObject(key: string, body: Uint8Array, bucket = this.bucket): Promise<void> {
    const response = await fetch(
      `${this.endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${
        encodeURIComponent(key)
      }`,
      { method: "POST", body: body as Uint8Array<ArrayBuffer>, client: this.#client },
    );
    const text = await response.text();
    if (!response.ok) throw new Error(`Cannot put ${key}: ${response.status} ${text}`);
  }

  /** Reads an object, or `undefined` when missing. */
  async getObject(key: string, bucket = this.bucket): Promise<Uint8Array | undefined> {
    const response = await fetch(
      `${this.endpoint}/storage/v1/b/${bucket}/o/${encodeURIComponent(key)}?alt=media`,
      { client: this.#client },
    );
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    if (!response.ok) throw new Error(`Cannot get ${key}: ${response.status}`);
    return await response.bytes();
  }

  /** Every key in a bucket (under `prefix`), sorted. */
  async listKeys(bucket = this.bucket, prefix = ""): Promise<string[]> {
    const keys: string[] = [];
    let token = "";
    do {
      const url = `${this.endpoint}/storage/v1/b/${bucket}/o?prefix=${encodeURIComponent(prefix)}${
        token ? `&pageToken=${encodeURIComponent(token)}` : ""
      }`;
      const response = await fetch(url, { client: this.#client });
      if (!response.ok) throw new Error(`Cannot list ${bucket}: ${response.status}`);
      const page = await response.json() as { items?: { name: string }[]; nextPageToken?: string };
      for (const item of page.items ?? []) keys.push(item.name);
      token = page.nextPageToken ?? "";
    } while (token);
    return keys.sort();
  }

  /** The server's recent output, for failure messages. */
  output(): string {
    return this.#log.join("").slice(-4000);
  }

  /** Stops the server (SIGKILL); the data dir is kept. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.#process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.#process.status;
  }

  /** Starts a new server on the same port and data. */
  async restart(): Promise<FakeGcs> {
    const next = await startFakeGcs({
      bucket: this.bucket,
      dataDir: this.dataDir,
      port: this.port,
    });
    next.#ownsDir = this.#ownsDir;
    this.#ownsDir = false;
    return next;
  }

  /** Stops the server and removes its data unless it was given. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    this.#client?.close();
    if (this.#ownsDir) await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }
}

/**
 * Starts fake-gcs-server and waits until it serves requests and the bucket exists.
 *
 * @param options Bucket, and for restarts the data dir and port.
 * @returns The running server; dispose it with `await using`.
 * @throws {Error} When the binary is missing or the server does not become ready within 30 s.
 */
export async function startFakeGcs(options: FakeGcsOptions = {}): Promise<FakeGcs> {
  const bin = await findFakeGcs();
  if (!bin) {
    throw new Error("Cannot start fake-gcs-server: run scripts/install_test_servers.sh first");
  }
  const ownsDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "gcp-fakegcs-" });
  const bucket = options.bucket ?? "gcp-test";
  const port = options.port ?? freePort();
  let tls: { caFile: string; dir: string } | undefined;
  if (options.tls) {
    tls = await makeTlsFiles(await Deno.makeTempDir({ dir: dataDir, prefix: "certs-" }));
  }
  const scheme = tls ? "https" : "http";
  const process = new Deno.Command(bin, {
    args: [
      ...["-scheme", scheme, "-host", "127.0.0.1", "-port", String(port)],
      ...(tls
        ? [
          "-cert-location",
          `${tls.dir}/public.crt`,
          "-private-key-location",
          `${tls.dir}/private.key`,
        ]
        : []),
      ...["-backend", "filesystem", "-filesystem-root", `${dataDir}/root`],
      ...["-public-host", `127.0.0.1:${port}`, "-external-url", `${scheme}://127.0.0.1:${port}`],
      ...["-log-level", "warn"],
    ],
    env: { HOME: dataDir },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log: string[] = [];
  for (const stream of [process.stdout, process.stderr]) {
    stream.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (chunk) => void log.push(chunk) }),
    ).catch(() => {});
  }
  const client = tls
    ? Deno.createHttpClient({ caCerts: [await Deno.readTextFile(tls.caFile)] })
    : undefined;
  const server = new FakeGcs({
    port,
    bucket,
    dataDir,
    process,
    ownsDir,
    log,
    caFile: tls?.caFile,
    client,
  });
  try {
    const deadline = Date.now() + 30_000;
    while (true) {
      try {
        const response = await fetch(`${server.endpoint}/storage/v1/b`, {
          signal: AbortSignal.timeout(1000),
          client,
        });
        await response.body?.cancel();
        if (response.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`Cannot start fake-gcs-server: not ready after 30 s: ${server.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (ownsDir) await server.createBucket(bucket);
    return server;
  } catch (error) {
    await server[Symbol.asyncDispose]();
    throw error;
  }
}

/** One request a {@linkcode RequestCounter} forwarded. */
export interface CountedRequest {
  method: string;
  /** The path and query, as sent. */
  path: string;
  status: number;
}

/** A loopback HTTP proxy in front of a store that records every request it forwards. */
export interface RequestCounter extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: point the plugin here instead of at the store. */
  endpoint: string;
  /** The requests forwarded so far. */
  requests: CountedRequest[];
}

/**
 * Starts a recording proxy in front of `target` (bodies are read whole and passed on, so sizes
 * keep their Content-Length).
 *
 * @param target The store's `http://host:port`.
 * @returns The proxy; dispose it with `await using`.
 */
export function countRequests(target: string): RequestCounter {
  const requests: CountedRequest[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.bytes();
    const headers = new Headers(req.headers);
    headers.delete("host");
    const upstream = await fetch(`${target}${url.pathname}${url.search}`, {
      method: req.method,
      headers,
      body,
    });
    const bytes = await upstream.bytes();
    requests.push({ method: req.method, path: url.pathname + url.search, status: upstream.status });
    const out = new Headers(upstream.headers);
    out.delete("content-length");
    out.delete("transfer-encoding");
    return new Response(req.method === "HEAD" ? null : bytes, {
      status: upstream.status,
      headers: out,
    });
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}
