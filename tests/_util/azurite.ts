/**
 * Starts and stops Azurite (Microsoft's Azure Storage emulator) for tests: the blob service
 * alone, on 127.0.0.1 at a random free port, data in a temporary directory, telemetry off, one
 * container. Azurite checks Shared Key signatures with its documented, public development
 * account (`devstoreaccount1`).
 *
 * The program comes from `scripts/install_test_servers.sh` (`$GCP_TOOLS_DIR/bin/azurite-blob`,
 * by default `~/.cache/go-cache-plugin-tools/bin/azurite-blob`, run by the machine's Node.js);
 * `AZURITE_BIN` overrides the path. Set-up and inspection go through Microsoft's own
 * `@azure/storage-blob`, not the adapter under test.
 *
 * @module
 */

import type { ContainerClient } from "@azure/storage-blob";
import { freePort, toolsBin } from "./minio.ts";

/** Azurite's documented account and key (public, not a secret). */
export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/** The azurite-blob program, or `undefined` when it is not installed. */
export async function findAzurite(): Promise<string | undefined> {
  const path = Deno.env.get("AZURITE_BIN") ?? toolsBin("azurite-blob");
  try {
    return (await Deno.stat(path)).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Options for {@linkcode startAzurite}. */
export interface AzuriteOptions {
  /** Container to create. @default {"gcp-test"} */
  container?: string;
}

/** A running Azurite blob service. */
export class Azurite {
  /** `http://127.0.0.1:PORT/devstoreaccount1`, the blob endpoint. */
  readonly endpoint: string;
  readonly port: number;
  readonly container: string;
  readonly dataDir: string;
  #process: Deno.ChildProcess;
  #log: string[];
  #client?: ContainerClient;
  #stopped = false;

  constructor(
    fields: {
      port: number;
      container: string;
      dataDir: string;
      process: Deno.ChildProcess;
      log: string[];
    },
  ) {
    this.port = fields.port;
    this.endpoint = `http://127.0.0.1:${fields.port}/${AZURITE_ACCOUNT}`;
    this.container = fields.container;
    this.dataDir = fields.dataDir;
    this.#process = fields.process;
    this.#log = fields.log;
  }

  /**
   * The connection string of Azurite's docs for this server, or for another endpoint (a proxy
   * in front of it) with the same account.
   */
  connectionString(endpoint = this.endpoint): string {
    return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};` +
      `AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`;
  }

  /** Environment for a plugin process talking to this server (or `endpoint`). */
  env(endpoint = this.endpoint): Record<string, string> {
    return { AZURE_STORAGE_CONNECTION_STRING: this.connectionString(endpoint) };
  }

  /** Plugin flags that point at a container on this server. */
  flags(container = this.container): string[] {
    return [`--bucket=azblob://${container}`];
  }

  /** A `@azure/storage-blob` client for a container, for set-up and inspection. */
  async client(container = this.container): Promise<ContainerClient> {
    if (container === this.container && this.#client) return this.#client;
    const { BlobServiceClient } = await import("@azure/storage-blob");
    const client = BlobServiceClient.fromConnectionString(this.connectionString())
      .getContainerClient(container);
    if (container === this.container) this.#client = client;
    return client;
  }

  /** Creates a container. */
  async createContainer(name: string): Promise<void> {
    await (await this.client(name)).create();
  }

  /** Writes a blob. */
  async putObject(key: string, body: Uint8Array, container = this.container): Promise<void> {
    await (await this.client(container)).getBlockBlobClient(key).uploadData(body);
  }

  /** Reads a blob, or `undefined` when missing. */
  async getObject(key: string, container = this.container): Promise<Uint8Array | undefined> {
    const blob = (await this.client(container)).getBlockBlobClient(key);
    try {
      return new Uint8Array(await blob.downloadToBuffer());
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    }
  }

  /** Every blob name in a container, sorted. */
  async listKeys(container = this.container, prefix = ""): Promise<string[]> {
    const keys: string[] = [];
    for await (const item of (await this.client(container)).listBlobsFlat({ prefix })) {
      keys.push(item.name);
    }
    return keys.sort();
  }

  /** The server's recent output, for failure messages. */
  output(): string {
    return this.#log.join("").slice(-4000);
  }

  /** Stops the server (SIGKILL); the data dir is kept until disposal. */
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

  /** Stops the server and removes its data. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }
}

/**
 * Starts Azurite's blob service and waits until it answers and the container exists.
 *
 * @param options The container.
 * @returns The running server; dispose it with `await using`.
 * @throws {Error} When the program is missing or does not become ready within 30 s.
 */
export async function startAzurite(options: AzuriteOptions = {}): Promise<Azurite> {
  const bin = await findAzurite();
  if (!bin) throw new Error("Cannot start Azurite: run scripts/install_test_servers.sh first");
  const dataDir = await Deno.makeTempDir({ prefix: "gcp-azurite-" });
  const port = freePort();
  const container = options.container ?? "gcp-test";
  const process = new Deno.Command(bin, {
    args: [
      "--blobHost",
      "127.0.0.1",
      "--blobPort",
      String(port),
      "--location",
      dataDir,
      "--silent",
      "--loose",
      "--skipApiVersionCheck",
      "--disableTelemetry",
    ],
    env: { HOME: dataDir, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    clearEnv: true,
    cwd: dataDir,
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
  const azurite = new Azurite({ port, container, dataDir, process, log });
  try {
    const deadline = Date.now() + 30_000;
    while (true) {
      try {
        // Any answer (an authentication error included) means it listens.
        const response = await fetch(`${azurite.endpoint}?comp=list`, {
          signal: AbortSignal.timeout(1000),
        });
        await response.body?.cancel();
        break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`Cannot start Azurite: not ready after 30 s: ${azurite.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await azurite.createContainer(container);
    return azurite;
  } catch (error) {
    await azurite[Symbol.asyncDispose]();
    throw error;
  }
}
