/**
 * Starts and stops a real MinIO server on 127.0.0.1 for tests: a random free port, data in a
 * temporary directory, random credentials (MinIO checks request signatures), one bucket.
 *
 * With `tls: true` it serves HTTPS with a certificate for 127.0.0.1 signed by a CA made for it
 * with openssl (`caFile`), the on-premises set-up `AWS_CA_BUNDLE` is for.
 *
 * The binary comes from `scripts/install_test_servers.sh` (`$GCP_TOOLS_DIR/bin/minio`, by default
 * `~/.cache/go-cache-plugin-tools/bin/minio`); `MINIO_BIN` overrides the path.
 *
 * {@linkcode MinioAdmin} drives the server's admin interface through MinIO's own client `mc`
 * (installed beside it, `MC_BIN` overrides): users with IAM policies, and `mc admin trace` to
 * see every request the server answered.
 *
 * @module
 */

import type { S3Client } from "@aws-sdk/client-s3";
import { freePort } from "./net.ts";

export { freePort };

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
  /**
   * Serve HTTPS with a certificate for IP 127.0.0.1 from a new private CA (see
   * {@linkcode makeTlsFiles}). @default {false}
   */
  tls?: boolean;
  /** Reuse a certificate directory from {@linkcode makeTlsFiles} (restarts); implies `tls`. */
  certsDir?: string;
}

/** Files {@linkcode makeTlsFiles} writes. */
export interface TlsFiles {
  /** The directory: MinIO's `--certs-dir` (`public.crt`, `private.key`). */
  dir: string;
  /** The CA certificate (PEM), for `AWS_CA_BUNDLE`. */
  caFile: string;
}

/**
 * Makes a private CA and a server certificate for IP 127.0.0.1 signed by it, with openssl (EC
 * P-256, valid for a day): `ca.pem`, `public.crt` and `private.key` in `dir`.
 *
 * @param dir An existing directory.
 * @returns The paths.
 * @throws {Error} With openssl's output when a step fails.
 */
export async function makeTlsFiles(dir: string): Promise<TlsFiles> {
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n" +
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const steps = [
    [
      "req",
      "-x509",
      ...ec,
      ...["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=gcp test CA"],
      ...["-addext", "basicConstraints=critical,CA:TRUE"],
      ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ],
    ["req", ...ec, "-keyout", "private.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
    [
      "x509",
      "-req",
      ...["-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"],
      ...["-out", "public.crt", "-days", "1", "-extfile", "server.ext"],
    ],
  ];
  for (const args of steps) {
    const out = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    if (!out.success) {
      throw new Error(
        `Cannot make test certificates: openssl ${args[0]} exited ${out.code}: ${
          new TextDecoder().decode(out.stderr)
        }`,
      );
    }
  }
  return { dir, caFile: `${dir}/ca.pem` };
}

/** A running MinIO. */
export class Minio {
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly dataDir: string;
  /** The CA that signed the server's certificate (PEM file), when it serves HTTPS. */
  readonly caFile?: string;
  /** The certificate directory, when it serves HTTPS. */
  readonly certsDir?: string;
  #caPem?: string;
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
      tls?: TlsFiles & { caPem: string };
    },
  ) {
    this.port = fields.port;
    this.endpoint = `${fields.tls ? "https" : "http"}://127.0.0.1:${fields.port}`;
    this.caFile = fields.tls?.caFile;
    this.certsDir = fields.tls?.dir;
    this.#caPem = fields.tls?.caPem;
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
      ...(this.#caPem ? { requestHandler: { httpsAgent: { ca: [this.#caPem] } } } : {}),
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
      certsDir: this.certsDir,
    }).then((minio) => {
      minio.#ownsDir = this.#ownsDir;
      this.#ownsDir = false;
      return minio;
    });
  }

  /** Stops the server and removes its data (and certificates) unless it was given. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    if (!this.#ownsDir) return;
    await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
    if (this.certsDir?.startsWith(`${this.dataDir}-certs`)) {
      await Deno.remove(this.certsDir, { recursive: true }).catch(() => {});
    }
  }
}

function randomToken(length: number): string {
  return crypto.getRandomValues(new Uint8Array(length)).toHex().slice(0, length);
}

/**
 * Starts MinIO and waits until it serves requests and the bucket exists.
 *
 * @param options Bucket, TLS, and for restarts the data dir, port, credentials and certificates.
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
  let tls: (TlsFiles & { caPem: string }) | undefined;
  if (options.certsDir) {
    const caFile = `${options.certsDir}/ca.pem`;
    tls = { dir: options.certsDir, caFile, caPem: await Deno.readTextFile(caFile) };
  } else if (options.tls) {
    // Next to the data dir, not in it (MinIO would see a stray directory in its data).
    const dir = `${dataDir}-certs`;
    await Deno.mkdir(dir);
    const files = await makeTlsFiles(dir);
    tls = { ...files, caPem: await Deno.readTextFile(files.caFile) };
  }
  const process = new Deno.Command(bin, {
    args: [
      "server",
      "--quiet",
      "--address",
      `127.0.0.1:${port}`,
      "--console-address",
      `127.0.0.1:${consolePort}`,
      ...(tls ? ["--certs-dir", tls.dir] : []),
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
  const minio = new Minio({
    port,
    bucket,
    accessKey,
    secretKey,
    dataDir,
    process,
    ownsDir,
    log,
    tls,
  });
  const client = tls ? Deno.createHttpClient({ caCerts: [tls.caPem] }) : undefined;
  try {
    const deadline = Date.now() + 30_000;
    while (true) {
      try {
        const response = await fetch(`${minio.endpoint}/minio/health/ready`, {
          signal: AbortSignal.timeout(1000),
          client,
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
  } finally {
    client?.close();
  }
}

/** The mc binary path, or `undefined` when it is not installed. */
export async function findMc(): Promise<string | undefined> {
  const path = Deno.env.get("MC_BIN") ?? toolsBin("mc");
  try {
    return (await Deno.stat(path)).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

/** An IAM policy document (AWS's JSON grammar, which MinIO reads). */
export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: {
    Effect: "Allow" | "Deny";
    Action: string[];
    Resource: string[];
    Condition?: Record<string, Record<string, string[]>>;
  }[];
}

/** A MinIO user made by {@linkcode MinioAdmin.addUser}. */
export interface MinioUser {
  accessKey: string;
  secretKey: string;
  /** Environment for a plugin process using this user's credentials. */
  env(): Record<string, string>;
}

/** One request the server answered, from `mc admin trace --json`. */
export interface TracedCall {
  /** `s3.GetObject`, `s3.PutObject`, `s3.HeadObject`, … */
  api: string;
  /** `/<bucket>/<key>`. */
  path: string;
  statusCode: number;
}

/** A running `mc admin trace`. */
export interface Trace {
  /** Stops tracing and returns the calls seen since it started (its own probes left out). */
  stop(): Promise<TracedCall[]>;
}

/**
 * MinIO's admin interface through `mc`, with a configuration directory of its own (an alias
 * `t` for the server's root credentials).
 */
export class MinioAdmin {
  readonly #minio: Minio;
  readonly #bin: string;
  readonly #configDir: string;

  private constructor(minio: Minio, bin: string, configDir: string) {
    this.#minio = minio;
    this.#bin = bin;
    this.#configDir = configDir;
  }

  /**
   * Sets up `mc` for a server.
   *
   * @param minio The server.
   * @returns The admin client; dispose it to remove its configuration.
   * @throws {Error} When mc is missing or cannot reach the server.
   */
  static async open(minio: Minio): Promise<MinioAdmin> {
    const bin = await findMc();
    if (!bin) throw new Error("Cannot run mc: run scripts/install_test_servers.sh first");
    const admin = new MinioAdmin(minio, bin, await Deno.makeTempDir({ prefix: "gcp-mc-" }));
    await admin.mc("alias", "set", "t", minio.endpoint, minio.accessKey, minio.secretKey);
    return admin;
  }

  /**
   * Runs one mc command against the configuration directory.
   *
   * @param args The arguments, e.g. `admin`, `user`, `list`, `t`.
   * @returns Its stdout.
   * @throws {Error} With mc's output when it fails.
   */
  async mc(...args: string[]): Promise<string> {
    const out = await new Deno.Command(this.#bin, {
      args: ["--config-dir", this.#configDir, "--no-color", "--disable-pager", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    if (!out.success) {
      throw new Error(
        `mc ${args.slice(0, 4).join(" ")} exited ${out.code}: ${decoder.decode(out.stdout)}${
          decoder.decode(out.stderr)
        }`,
      );
    }
    return decoder.decode(out.stdout);
  }

  /**
   * Creates a user with a policy of its own (`mc admin user add`, `mc admin policy create`,
   * `mc admin policy attach`).
   *
   * @param name The user's access key (and the policy's name).
   * @param policy What the user may do.
   * @returns The user's credentials.
   */
  async addUser(name: string, policy: PolicyDocument): Promise<MinioUser> {
    const secretKey = `sk${randomToken(30)}`;
    await this.mc("admin", "user", "add", "t", name, secretKey);
    const file = `${this.#configDir}/${name}.json`;
    await Deno.writeTextFile(file, JSON.stringify(policy));
    await this.mc("admin", "policy", "create", "t", name, file);
    await this.mc("admin", "policy", "attach", "t", name, "--user", name);
    return {
      accessKey: name,
      secretKey,
      env: () => ({
        AWS_ACCESS_KEY_ID: name,
        AWS_SECRET_ACCESS_KEY: secretKey,
        AWS_REGION: "us-east-1",
      }),
    };
  }

  /**
   * Starts `mc admin trace --json` (S3 calls) and waits until it sees requests: it sends
   * anonymous probes until one shows up in its output.
   *
   * @returns The trace; stop it to read the calls.
   * @throws {Error} When the trace shows nothing within 20 s.
   */
  async trace(): Promise<Trace> {
    const child = new Deno.Command(this.#bin, {
      args: ["--config-dir", this.#configDir, "--no-color", "admin", "trace", "--json", "t"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let text = "";
    const reading = child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (chunk) => void (text += chunk) }),
    ).catch(() => {});
    child.stderr.cancel().catch(() => {});
    const marker = `trace-probe-${randomToken(8)}`;
    const minioUrl = `${this.#minio.endpoint}/${this.#minio.bucket}`;
    const stop = async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await reading;
    };
    const deadline = Date.now() + 20_000;
    while (!text.includes(marker)) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`Cannot trace MinIO: mc admin trace showed nothing in 20 s: ${text}`);
      }
      const probe = await fetch(`${minioUrl}/${marker}`, {
        method: "HEAD",
        signal: AbortSignal.timeout(1000),
      }).catch(() => undefined);
      await probe?.body?.cancel();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return {
      async stop() {
        // A last probe marks the end: every call before it has been printed.
        const end = `${marker}-end`;
        const until = Date.now() + 10_000;
        while (!text.includes(end) && Date.now() < until) {
          await fetch(`${minioUrl}/${end}`, { method: "HEAD" }).then((r) => r.body?.cancel())
            .catch(() => {});
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        await stop();
        // One JSON object per call, on one line or (some mc versions) indented over several.
        return text.split(/\n(?=\{)/).filter((chunk) => chunk.trim().startsWith("{"))
          .map((chunk) => JSON.parse(chunk) as TracedCall)
          .filter((call) => call.api && !call.path.includes(marker))
          .map(({ api, path, statusCode }) => ({ api, path, statusCode }));
      },
    };
  }

  /** Removes the configuration directory. */
  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.#configDir, { recursive: true }).catch(() => {});
  }
}
