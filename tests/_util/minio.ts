/**
 * Starts and stops a real MinIO server on 127.0.0.1 for tests: a random free port, data in a
 * temporary directory, random credentials (MinIO checks request signatures), one bucket.
 *
 * The binary comes from `scripts/install_test_servers.sh` (`$GCP_TOOLS_DIR/bin/minio`, by default
 * `~/.cache/go-cache-plugin-tools/bin/minio`); `MINIO_BIN` overrides the path.
 *
 * @module
 */

import type { S3Client } from "@aws-sdk/client-s3";

/** Where the test servers are installed. */
export function toolsBin(name: string): string {
  const dir = Deno.env.get("GCP_TOOLS_DIR") ??
    `${Deno.env.get("HOME") ?? "/root"}/.cache/go-cache-plugin-tools`;
  return `${dir}/bin/${name}`;
}

/** The MinIO binary path, or `undefined` when it is not installed. */
export async function findMinio(): Promise<string | undefined> {
  const path = Deno.env.get("MINIO_BIN") ?? toolsBin("minio");
  try {
    return (await Deno.stat(path)).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Options for {@linkcode startMinio}. */
export interface MinioOptions {
  /** Bucket to create. @default {"gcp-test"} */
  bucket?: string;
  /** Reuse a data directory (for restarts); by default a new temp dir is made and removed. */
  dataDir?: string;
  /** Listen on this port (for restarts); by default a free one. */
  port?: number;
  /** Credentials (for restarts); by default random ones. */
  accessKey?: string;
  secretKey?: string;
}

/** A running MinIO. */
export class Minio {
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly dataDir: string;
  #process: Deno.ChildProcess;
  #ownsDir: boolean;
  #stopped = false;
  #client?: S3Client;
  #log: string[];

  constructor(
    fields: {
      port: number;
      bucket: string;
      accessKey: string;
      secretKey: string;
      dataDir: string;
      process: Deno.ChildProcess;
      ownsDir: boolean;
      log: string[];
    },
  ) {
    this.port = fields.port;
    this.endpoint = `http://127.0.0.1:${fields.port}`;
    this.bucket = fields.bucket;
    this.accessKey = fields.accessKey;
    this.secretKey = fields.secretKey;
    this.dataDir = fields.dataDir;
    this.#process = fields.process;
    this.#ownsDir = fields.ownsDir;
    this.#log = fields.log;
  }

  /** Environment for a plugin process talking to this server. */
  env(): Record<string, string> {
    return {
      AWS_ACCESS_KEY_ID: this.accessKey,
      AWS_SECRET_ACCESS_KEY: this.secretKey,
      AWS_REGION: "us-east-1",
    };
  }

  /** Plugin flags that point at this server. */
  flags(bucket = this.bucket): string[] {
    return [
      `--bucket=${bucket}`,
      `--s3-endpoint-url=${this.endpoint}`,
      "--s3-path-style",
      "--region=us-east-1",
    ];
  }

  /** An SDK client for test set-up and inspection. */
  async client(): Promise<S3Client> {
    if (this.#client) return this.#client;
    const { S3Client } = await import("@aws-sdk/client-s3");
    this.#client = new S3Client({
      region: "us-east-1",
      endpoint: this.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: this.accessKey, secretAccessKey: this.secretKey },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // The default user agent reads os.release(); tests run without --allow-sys.
      defaultUserAgentProvider: () => Promise.resolve([["gcp-tests"]]),
    });
    return this.#client;
  }

  /** Creates a bucket. */
  async createBucket(name: string): Promise<void> {
    const { CreateBucketCommand } = await import("@aws-sdk/client-s3");
    await (await this.client()).send(new CreateBucketCommand({ Bucket: name }));
  }

  /** Writes an object. */
  async putObject(key: string, body: Uint8Array, bucket = this.bucket): Promise<void> {
    const { PutObjectCommand } = await import("@aws-sdk/client-s3");
    await (await this.client()).send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }),
    );
  }

  /** Reads an object, or `undefined` when missing. */
  async getObject(key: string, bucket = this.bucket): Promise<Uint8Array | undefined> {
    const { GetObjectCommand } = await import("@aws-sdk/client-s3");
    try {
      const out = await (await this.client()).send(
        new GetObjectCommand({ Bucket: bucket, Key: key }),
      );
      return await out.Body!.transformToByteArray();
    } catch (error) {
      if ((error as Error).name === "NoSuchKey") return undefined;
      throw error;
    }
  }

  /** Every key in a bucket, sorted. */
  async listKeys(bucket = this.bucket, prefix = ""): Promise<string[]> {
    const { ListObjectsV2Command } = await import("@aws-sdk/client-s3");
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await (await this.client()).send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const item of out.Contents ?? []) keys.push(item.Key!);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  /** The server's recent output, for failure messages. */
  output(): string {
    return this.#log.join("").slice(-4000);
  }

  /** Stops the server (SIGKILL: tests stop it abruptly on purpose); the data dir is kept. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#client?.destroy();
    this.#client = undefined;
    try {
      this.#process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.#process.status;
  }

  /** Starts a new server on the same port, data and credentials. */
  restart(): Promise<Minio> {
    return startMinio({
      bucket: this.bucket,
      dataDir: this.dataDir,
      port: this.port,
      accessKey: this.accessKey,
      secretKey: this.secretKey,
    }).then((minio) => {
      minio.#ownsDir = this.#ownsDir;
      this.#ownsDir = false;
      return minio;
    });
  }

  /** Stops the server and removes its data unless it was given. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    if (this.#ownsDir) await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }
}

/** Finds a free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function randomToken(length: number): string {
  return crypto.getRandomValues(new Uint8Array(length)).toHex().slice(0, length);
}

/**
 * Starts MinIO and waits until it serves requests and the bucket exists.
 *
 * @param options Bucket, and for restarts the data dir, port and credentials.
 * @returns The running server; dispose it with `await using`.
 * @throws {Error} When the binary is missing or the server does not become ready within 30 s.
 */
export async function startMinio(options: MinioOptions = {}): Promise<Minio> {
  const bin = await findMinio();
  if (!bin) throw new Error("Cannot start MinIO: run scripts/install_test_servers.sh first");
  const ownsDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "gcp-minio-" });
  const accessKey = options.accessKey ?? `ak${randomToken(12)}`;
  const secretKey = options.secretKey ?? `sk${randomToken(30)}`;
  const bucket = options.bucket ?? "gcp-test";
  const port = options.port ?? freePort();
  const consolePort = freePort();
  const process = new Deno.Command(bin, {
    args: [
      "server",
      "--quiet",
      "--address",
      `127.0.0.1:${port}`,
      "--console-address",
      `127.0.0.1:${consolePort}`,
      dataDir,
    ],
    env: {
      MINIO_ROOT_USER: accessKey,
      MINIO_ROOT_PASSWORD: secretKey,
      MINIO_BROWSER: "off",
      MINIO_UPDATE: "off",
      MINIO_CI_CD: "1",
      HOME: dataDir,
    },
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
  const minio = new Minio({ port, bucket, accessKey, secretKey, dataDir, process, ownsDir, log });
  try {
    const deadline = Date.now() + 30_000;
    while (true) {
      try {
        const response = await fetch(`${minio.endpoint}/minio/health/ready`, {
          signal: AbortSignal.timeout(1000),
        });
        await response.body?.cancel();
        if (response.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`Cannot start MinIO: not ready after 30 s: ${minio.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (ownsDir) await minio.createBucket(bucket);
    return minio;
  } catch (error) {
    await minio[Symbol.asyncDispose]();
    throw error;
  }
}
