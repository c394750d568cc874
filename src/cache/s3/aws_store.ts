/**
 * The {@linkcode ObjectStore} on a real S3 bucket: objects are read and written with `fetch` and
 * a small SigV4 signer; `@aws-sdk/client-s3` supplies credentials, the endpoint and the region.
 * The SDK is imported on first use, never at module load, so a plugin without `--bucket` (and the
 * handshake of one with it) never pays for it. A private CA named by `AWS_CA_BUNDLE` or the
 * profile's `ca_bundle` is read on first use too and trusted on every request path.
 *
 * @module
 */

import type { S3Client } from "@aws-sdk/client-s3";
import type { ObjectStore, StoreCallOptions, StoredObject } from "./object_store.ts";
import { encodeKeyPath, type SigningCredentials, SigV4Signer } from "./_sigv4.ts";
import type { CaBundle } from "./_tls.ts";

/**
 * Why a remote call failed, so the tiered cache can tell a misconfiguration (stop for the
 * session) from an unreachable endpoint (pause) and from a one-off failure (count it).
 */
export type StoreErrorKind = "config" | "unreachable" | "timeout" | "other";

/** A failed store call, with its {@linkcode StoreErrorKind}. */
export class StoreError extends Error {
  override name = "StoreError";
  /** What kind of failure this is. */
  readonly kind: StoreErrorKind;

  /**
   * @param message One line: what failed and why.
   * @param kind The failure's kind.
   * @param options The underlying error as `cause`.
   */
  constructor(message: string, kind: StoreErrorKind, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** Options for {@linkcode AwsObjectStore}. */
export interface AwsObjectStoreOptions {
  /** The bucket. */
  bucket: string;
  /** Key prefix without slashes at either end; keys become `prefix/key`. @default {""} */
  prefix?: string;
  /** Region; when empty it is looked up with GetBucketLocation on first use. @default {""} */
  region?: string;
  /** S3-compatible endpoint URL. @default AWS */
  endpoint?: string;
  /** Path-style URLs (`endpoint/bucket/key`). @default {false} */
  pathStyle?: boolean;
  /**
   * Deadline for a call that passes no signal of its own, in milliseconds.
   * @default {30000}
   */
  timeoutMs?: number;
  /** Records request latency (`s3_request_seconds`). @default no recording */
  observe?: (name: string, seconds: number) => void;
  /** Per-call trace lines (`--debug=4`). @default no tracing */
  trace?: (line: string) => void;
}

type Sdk = typeof import("@aws-sdk/client-s3");

/** What the data path needs, resolved once per connection. */
interface Session {
  /** The SDK client: its credential provider chain (and GetBucketLocation before it). */
  client?: S3Client;
  /** Credentials from the environment when the SDK was not needed at all. */
  staticCredentials?: SigningCredentials;
  signer: SigV4Signer;
  /** `scheme://host[:port]` of the bucket's endpoint. */
  origin: string;
  /** `host[:port]`, as `fetch` sends it. */
  host: string;
  /** The encoded path before the key: `/bucket` (path style), `` (virtual-hosted). */
  basePath: string;
  /** The private CA bundle the AWS settings name: `fetch`'s client, node:https's `ca`. */
  ca?: CaBundle;
}

/** Credentials older than their expiry minus this are fetched again from the provider. */
const CREDENTIALS_SLACK_MS = 5 * 60_000;

/** The lazily opened connection, shared by stores with different prefixes. */
class Connection {
  readonly options: AwsObjectStoreOptions;
  #session?: Promise<Session>;
  #ca?: Promise<CaBundle | undefined>;
  #credentials?: { value: SigningCredentials; expiresAt: number };

  constructor(options: AwsObjectStoreOptions) {
    this.options = options;
  }

  /** The client, endpoint and signer for the bucket's region; a failed lookup is retried. */
  session(signal?: AbortSignal): Promise<Session> {
    this.#session ??= this.#open(signal).catch((error) => {
      this.#session = undefined;
      throw error;
    });
    return this.#session;
  }

  /** Credentials from the SDK's provider chain, reused until shortly before they expire. */
  async credentials(session: Session): Promise<SigningCredentials> {
    const cached = this.#credentials;
    if (cached && Date.now() < cached.expiresAt) return cached.value;
    if (session.staticCredentials) return session.staticCredentials;
    let identity;
    try {
      identity = await session.client!.config.credentials();
    } catch (error) {
      throw classify(error, "Cannot load AWS credentials");
    }
    const value = {
      accessKeyId: identity.accessKeyId,
      secretAccessKey: identity.secretAccessKey,
      sessionToken: identity.sessionToken,
    };
    const expiration = identity.expiration?.getTime();
    this.#credentials = {
      value,
      expiresAt: expiration === undefined ? Infinity : expiration - CREDENTIALS_SLACK_MS,
    };
    return value;
  }

  /**
   * The CA bundle `AWS_CA_BUNDLE` or the profile's `ca_bundle` names, read once per connection
   * (a session whose region lookup failed is opened again; the file is not read again).
   */
  #loadCa(): Promise<CaBundle | undefined> {
    this.#ca ??= (async () => {
      const { CaBundle } = await import("./_tls.ts");
      const ca = await CaBundle.load((name) => Deno.env.get(name) || undefined);
      if (ca) {
        this.options.trace?.(
          `S3 CA bundle ${quote(ca.path)} (${ca.origin}): ${ca.certificates.length} certificates`,
        );
      }
      return ca;
    })();
    return this.#ca;
  }

  async #open(signal?: AbortSignal): Promise<Session> {
    const ca = await this.#loadCa();
    const direct = await this.#openWithoutSdk(ca);
    if (direct) return direct;
    const sdk = await import("@aws-sdk/client-s3");
    const httpsCa = ca?.certificates;
    const { bucket } = this.options;
    let region = this.options.region ?? "";
    if (!region) {
      // GetBucketLocation answers from any region; "" means the historical us-east-1.
      const probe = this.#make(sdk, "us-east-1", httpsCa);
      try {
        const out = await probe.send(
          new sdk.GetBucketLocationCommand({ Bucket: bucket }),
          { abortSignal: signal },
        );
        region = out.LocationConstraint || "us-east-1";
      } catch (error) {
        throw classify(error, `Cannot find the region of bucket ${quote(bucket)}`);
      } finally {
        probe.destroy();
      }
    }
    const client = this.#make(sdk, region, httpsCa);
    let url: URL;
    let signingRegion = region;
    let signingName = "s3";
    try {
      // The SDK's own endpoint rules: virtual-hosted or path style, FIPS, dual-stack, partitions.
      const [useFips, useDualstack] = await Promise.all([
        client.config.useFipsEndpoint(),
        client.config.useDualstackEndpoint(),
      ]);
      const endpoint = client.config.endpointProvider({
        Bucket: bucket,
        Region: region,
        UseFIPS: useFips,
        UseDualStack: useDualstack,
        ForcePathStyle: this.options.pathStyle ?? false,
        Endpoint: this.options.endpoint || undefined,
        Accelerate: false,
      });
      url = new URL(endpoint.url.href);
      const scheme = (endpoint.properties?.authSchemes as AuthScheme[] | undefined)?.[0];
      if (scheme && scheme.name !== "sigv4") {
        throw new Error(`unsupported signing scheme ${scheme.name}`);
      }
      signingRegion = scheme?.signingRegion ?? region;
      signingName = scheme?.signingName ?? "s3";
    } catch (error) {
      client.destroy();
      throw new StoreError(
        `Cannot find the S3 endpoint of bucket ${quote(bucket)}: ${
          firstLine(error instanceof Error ? error.message : String(error))
        }`,
        "config",
        { cause: error },
      );
    }
    return {
      client,
      signer: new SigV4Signer(await import("node:crypto"), signingRegion, signingName),
      origin: url.origin,
      host: url.host,
      basePath: url.pathname.replace(/\/+$/, ""),
      ca,
    };
  }

  /**
   * The common CI set-up (keys in the environment, a known region, a plain endpoint) needs none of
   * the SDK, whose modules cost about 100 MB of memory and a few hundred ms to load. Anything
   * else (profiles, SSO, roles, region discovery, FIPS or dual-stack endpoints, other partitions)
   * goes through the SDK.
   */
  async #openWithoutSdk(ca: CaBundle | undefined): Promise<Session | undefined> {
    const env = (name: string) => Deno.env.get(name) || undefined;
    const { bucket, endpoint, pathStyle } = this.options;
    const region = this.options.region;
    const accessKeyId = env("AWS_ACCESS_KEY_ID");
    const secretAccessKey = env("AWS_SECRET_ACCESS_KEY");
    // The SDK's chain skips the environment's keys when a profile is named; so do we.
    if (!region || !accessKeyId || !secretAccessKey || env("AWS_PROFILE")) return undefined;
    if (env("AWS_USE_FIPS_ENDPOINT") || env("AWS_USE_DUALSTACK_ENDPOINT")) return undefined;
    let url: URL;
    if (endpoint) {
      if (!pathStyle) return undefined; // virtual-hosted custom endpoints: the SDK's rules
      url = new URL(endpoint);
      url.pathname = `${url.pathname.replace(/\/+$/, "")}/${encodeURIComponent(bucket)}`;
    } else {
      if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region) || region.startsWith("cn-")) return undefined;
      const virtual = !pathStyle && /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket);
      url = virtual
        ? new URL(`https://${bucket}.s3.${region}.amazonaws.com`)
        : new URL(`https://s3.${region}.amazonaws.com/${encodeURIComponent(bucket)}`);
    }
    return {
      staticCredentials: { accessKeyId, secretAccessKey, sessionToken: env("AWS_SESSION_TOKEN") },
      signer: new SigV4Signer(await import("node:crypto"), region, "s3"),
      origin: url.origin,
      host: url.host,
      basePath: url.pathname.replace(/\/+$/, ""),
      ca,
    };
  }

  /** An SDK client; `ca` (node:https's option) when a CA bundle is configured. */
  #make(sdk: Sdk, region: string, ca?: string[]): S3Client {
    return new sdk.S3Client({
      region,
      endpoint: this.options.endpoint || undefined,
      forcePathStyle: this.options.pathStyle ?? false,
      // Our own deadlines bound each call; one retry covers a dropped keep-alive connection.
      maxAttempts: 2,
      // Skip the SDK's default CRC trailers: they need aws-chunked uploads some S3-compatible
      // servers reject, and response validation would buffer bodies. go checks output ids.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // The SDK ignores AWS_CA_BUNDLE; its agent (and STS's, which inherits the handler) gets it.
      requestHandler: { connectionTimeout: 5_000, ...(ca ? { httpsAgent: { ca } } : {}) },
      // Without a logger the SDK writes some warnings with console.warn; ours go to --debug=4.
      logger: sdkLogger(this.options.trace),
    });
  }
}

interface AuthScheme {
  name?: string;
  signingRegion?: string;
  signingName?: string;
}

/**
 * An {@linkcode ObjectStore} on an S3 bucket under a key prefix.
 *
 * GET, HEAD and PUT go straight through `fetch`, signed by a small SigV4 signer: the SDK's
 * middleware stack and its node:http handler cost several times the CPU per request. The SDK
 * still resolves credentials (the whole provider chain, with refresh), the endpoint and, when no
 * region is given, the bucket's region.
 *
 * @example
 * ```ts ignore
 * import { AwsObjectStore } from "./aws_store.ts";
 * const store = new AwsObjectStore({ bucket: "my-bucket", prefix: "ci", region: "us-east-1" });
 * const object = await store.get("action/00/00…");
 * ```
 */
export class AwsObjectStore implements ObjectStore {
  #connection: Connection;
  #prefix: string;

  /**
   * Creates a store; nothing is imported or contacted until the first call.
   *
   * @param options Bucket, prefix, region, endpoint and hooks.
   */
  constructor(options: AwsObjectStoreOptions) {
    this.#connection = new Connection(options);
    this.#prefix = trimSlashes(options.prefix ?? "");
  }

  /**
   * A store on the same bucket and client whose keys live under `sub/` within this one's prefix.
   *
   * @param sub The extra prefix, such as `module`.
   * @returns The store.
   */
  withPrefix(sub: string): AwsObjectStore {
    const store = new AwsObjectStore({ bucket: this.#connection.options.bucket });
    store.#connection = this.#connection;
    store.#prefix = [this.#prefix, trimSlashes(sub)].filter((p) => p !== "").join("/");
    return store;
  }

  /** The full key of `key` in the bucket. */
  key(key: string): string {
    return this.#prefix ? `${this.#prefix}/${key}` : key;
  }

  /** Reads an object; `undefined` for NoSuchKey/NotFound. */
  get(key: string, options: StoreCallOptions = {}): Promise<StoredObject | undefined> {
    return this.#call("GET", key, options, async (response) => {
      if (!response) return undefined;
      if (!response.body) throw new Error("response has no body");
      const length = Number(response.headers.get("content-length") ?? NaN);
      if (!Number.isSafeInteger(length)) {
        await response.body.cancel();
        throw new Error("response has no Content-Length");
      }
      return { size: length, body: response.body };
    });
  }

  /** Whether an object exists (HEAD). */
  has(key: string, options: StoreCallOptions = {}): Promise<boolean> {
    return this.#call("HEAD", key, options, async (response) => {
      await response?.body?.cancel();
      return response !== undefined;
    });
  }

  /**
   * Writes an object of known size. A stream of up to 4 MiB is read into memory first (Deno's
   * `fetch` drops Content-Length from a stream body and sends it chunked, which S3 rejects); a
   * bigger one goes out through node:http as it is read, never buffered whole.
   */
  put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    const { size } = options;
    const payload = async () =>
      body instanceof Uint8Array || size > STREAM_PUT_THRESHOLD
        ? body
        : await readExactly(body, size);
    return this.#call(
      "PUT",
      key,
      options,
      async (response) => {
        await response?.body?.cancel();
      },
      payload,
      size,
    );
  }

  async #call<T>(
    op: "GET" | "HEAD" | "PUT",
    key: string,
    options: StoreCallOptions,
    done: (response: Response | undefined) => Promise<T>,
    payload?: () => Promise<Uint8Array | ReadableStream<Uint8Array>>,
    size?: number,
  ): Promise<T> {
    const { trace, observe, timeoutMs } = this.#connection.options;
    const signal = options.signal ?? AbortSignal.timeout(timeoutMs ?? 30_000);
    const fullKey = this.key(key);
    trace?.(`B S3 ${op} ${fullKey}`);
    const started = performance.now();
    try {
      signal.throwIfAborted();
      const session = await this.#connection.session(signal);
      const body = await payload?.();
      const response = await this.#send(session, op, fullKey, signal, body, size);
      const result = await done(response);
      const miss = op !== "PUT" && response === undefined;
      trace?.(
        `E S3 ${op} ${fullKey}${miss ? " M:1" : ""} ${(performance.now() - started).toFixed(1)}ms`,
      );
      return result;
    } catch (error) {
      const failure = error instanceof StoreError
        ? error
        : classify(error, `Cannot ${op} ${quote(fullKey)}`, signal);
      trace?.(
        `E S3 ${op} ${fullKey} err=${JSON.stringify(failure.message)} ${
          (performance.now() - started).toFixed(1)
        }ms`,
      );
      throw failure;
    } finally {
      observe?.("s3_request_seconds", (performance.now() - started) / 1000);
    }
  }

  /**
   * Sends one signed request; `undefined` for a missing object (GET/HEAD), the response for a
   * success, an S3-shaped error (`name` = S3 error code) otherwise. A request whose body can be
   * sent again is retried once after a network failure or a 5xx/429 answer, as the SDK did.
   */
  async #send(
    session: Session,
    op: "GET" | "HEAD" | "PUT",
    fullKey: string,
    signal: AbortSignal,
    body?: Uint8Array | ReadableStream<Uint8Array>,
    size?: number,
  ): Promise<Response | undefined> {
    const encoded = encodeKeyPath(fullKey);
    if (encoded.split("/").some((s) => s === "." || s === "..")) {
      throw new Error("a key segment is . or .., which URLs cannot carry");
    }
    const path = `${session.basePath}/${encoded}`;
    const url = session.origin + path;
    const retriable = !(body instanceof ReadableStream);
    for (let attempt = 1;; attempt++) {
      const credentials = await this.#connection.credentials(session);
      const headers = session.signer.sign(
        { method: op, host: session.host, path },
        credentials,
      );
      if (size !== undefined) headers["content-length"] = String(size);
      // The size is the stored one: no transparent decompression (unsigned, so not signed).
      if (op === "GET") headers["accept-encoding"] = "identity";
      let response: Response;
      try {
        response = body instanceof ReadableStream
          ? await streamPut(url, headers, body, {
            size: size ?? 0,
            signal,
            ca: session.ca?.certificates,
          })
          : await fetch(url, {
            method: op,
            headers,
            body: (body ?? null) as BodyInit | null,
            signal,
            redirect: "manual",
            client: session.ca?.client,
          });
      } catch (error) {
        if (signal.aborted) throw error;
        if (retriable && attempt < 2) continue;
        if (typeof (error as { code?: unknown }).code === "string") throw error; // node:http
        throw networkError(error, session.host);
      }
      if (response.ok) return response;
      const failure = await responseError(response, op);
      if (op !== "PUT" && (failure.name === "NoSuchKey" || failure.name === "NotFound")) {
        return undefined;
      }
      if (retriable && attempt < 2 && (response.status >= 500 || response.status === 429)) {
        await sleep(50 + Math.random() * 100, signal);
        continue;
      }
      throw failure;
    }
  }
}

/** Stream bodies up to this size are read into memory and sent with `fetch`. */
const STREAM_PUT_THRESHOLD = 4 << 20;

/** Reads a stream that must hold exactly `size` bytes. */
async function readExactly(stream: ReadableStream<Uint8Array>, size: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(size);
  let at = 0;
  for await (const chunk of stream) {
    if (at + chunk.length > size) throw new RangeError(`got more than ${size} bytes`);
    bytes.set(chunk, at);
    at += chunk.length;
  }
  if (at !== size) throw new RangeError(`got ${at} bytes, expected ${size}`);
  return bytes;
}

/**
 * PUTs a stream of known size through node:http(s), which keeps our Content-Length, sending it
 * as it is read; the answer comes back as a `Response` for the common handling. `ca` is
 * node:https's trust list (a configured CA bundle, in place of the roots).
 */
async function streamPut(
  url: string,
  headers: Record<string, string>,
  body: ReadableStream<Uint8Array>,
  options: { size: number; signal: AbortSignal; ca?: string[] },
): Promise<Response> {
  const { size, signal, ca } = options;
  const https = url.startsWith("https:");
  const { request } = https ? await import("node:https") : await import("node:http");
  const { EventEmitter } = await import("node:events");
  const tls = https && ca ? { ca } : {};
  return await new Promise<Response>((resolve, reject) => {
    const req = request(url, { method: "PUT", headers, signal, ...tls }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const answer = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (value !== undefined) {
            answer.set(name, Array.isArray(value) ? value.join(", ") : value);
          }
        }
        const bytes = chunks.length === 0 ? null : new Blob(chunks as BlobPart[]);
        resolve(new Response(bytes, { status: res.statusCode ?? 500, headers: answer }));
      });
    });
    req.on("error", reject);
    (async () => {
      let sent = 0;
      for await (const chunk of body) {
        sent += chunk.length;
        if (sent > size) throw new RangeError(`got more than ${size} bytes`);
        if (!req.write(chunk)) await EventEmitter.once(req, "drain", { signal });
      }
      if (sent !== size) throw new RangeError(`got ${sent} bytes, expected ${size}`);
      req.end();
    })().catch((error) => {
      req.destroy(error);
      reject(error);
    });
  });
}

/** An S3 error answer, shaped like the SDK's service exceptions for {@linkcode classify}. */
class S3ResponseError extends Error {
  override name: string;
  readonly $metadata: { httpStatusCode: number };

  constructor(code: string, message: string, status: number) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status };
  }
}

async function responseError(response: Response, op: string): Promise<S3ResponseError> {
  const status = response.status;
  let code: string | undefined;
  let message: string | undefined;
  if (op === "HEAD" || !response.body) {
    await response.body?.cancel();
  } else {
    const text = await response.text().catch(() => "");
    code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
  }
  // HEAD answers have no body; MinIO (and some others) name the error in a header.
  code ||= response.headers.get("x-minio-error-code") ?? undefined;
  message ||= response.headers.get("x-minio-error-desc")?.replace(/^"(.*)"$/, "$1");
  code ||= status === 404 ? "NotFound" : status === 0 ? "Redirect" : String(status);
  return new S3ResponseError(code, unescapeXml(message || `HTTP ${status}`), status);
}

/** A `fetch` failure as a one-line error with a Node-style `code` where one is recognised. */
function networkError(error: unknown, host: string): Error {
  let detail = "";
  let e: unknown = error;
  for (let depth = 0; e && depth < 5; depth++) {
    const message = (e as { message?: unknown }).message;
    if (typeof message === "string" && message !== "") detail = message;
    e = (e as { cause?: unknown }).cause;
  }
  const code = NETWORK_CODES.find(([pattern]) => pattern.test(detail))?.[1];
  const text = code ? `connect ${code} ${host}` : firstLine(detail || "fetch failed");
  return Object.assign(new Error(text, { cause: error }), code ? { code } : {});
}

const NETWORK_CODES: [RegExp, string][] = [
  [/connection refused/i, "ECONNREFUSED"],
  [/no route to host/i, "EHOSTUNREACH"],
  [/network is unreachable/i, "ENETUNREACH"],
  [/temporary failure in name resolution/i, "EAI_AGAIN"],
  [/dns error|failed to lookup address|name or service not known|no address/i, "ENOTFOUND"],
];

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|quot|apos|amp);/g, (_, name: string) => XML_ENTITIES[name]!);
}

const XML_ENTITIES: Record<string, string> = {
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  amp: "&",
};

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

const CONFIG_ERRORS = new Set([
  "NoSuchBucket",
  "InvalidBucketName",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "AccessDenied",
  "AllAccessDisabled",
  "AuthorizationHeaderMalformed",
  "PermanentRedirect",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "CredentialsProviderError",
]);

const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "TimeoutError", // the SDK's name for a connection timeout
]);

/**
 * Wraps an SDK error in a one-line {@linkcode StoreError} of the right kind.
 *
 * @param error What the SDK threw.
 * @param action What was being done, for the message.
 * @param signal The call's signal, to recognise its deadline.
 * @returns The wrapped error.
 */
export function classify(error: unknown, action: string, signal?: AbortSignal): StoreError {
  if (error instanceof StoreError) return error;
  const e = (error ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const name = e.name ?? "Error";
  const status = e.$metadata?.httpStatusCode;
  const text = firstLine(e.message || name);
  if (signal?.aborted || name === "AbortError") {
    const reason = signal?.reason instanceof Error && signal.reason.name === "TimeoutError"
      ? "deadline exceeded"
      : "aborted";
    return new StoreError(`${action}: ${reason}`, "timeout", { cause: error });
  }
  if (CONFIG_ERRORS.has(name)) {
    return new StoreError(`${action}: ${name}: ${text}`, "config", { cause: error });
  }
  if (status === 401 || status === 403) {
    // HEAD answers carry no error code: say what the status means.
    const detail = name === "Unknown" || name === "UnknownError" || name === String(status)
      ? `access denied (HTTP ${status}): check the credentials and the bucket's policy`
      : `${name} (HTTP ${status}): ${text}`;
    return new StoreError(`${action}: ${detail}`, "config", { cause: error });
  }
  const code = e.code ?? errorCode(error);
  if ((code && UNREACHABLE_CODES.has(code)) || UNREACHABLE_CODES.has(name)) {
    return new StoreError(`${action}: ${text}`, "unreachable", { cause: error });
  }
  const detail = status ? `${name} (HTTP ${status}): ${text}` : `${name}: ${text}`;
  return new StoreError(`${action}: ${detail}`, "other", { cause: error });
}

function sdkLogger(trace?: (line: string) => void) {
  const emit = (...args: unknown[]) => trace?.(`S3 SDK: ${args.map(show).join(" ")}`);
  return { trace() {}, debug() {}, info() {}, warn: emit, error: emit };
}

function show(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function errorCode(error: unknown): string | undefined {
  // Node errors carry `code`; AggregateError (happy eyeballs) hides it in `errors`.
  let e: unknown = error;
  for (let depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const inner = (e as { errors?: unknown[] }).errors?.[0];
    e = inner ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function trimSlashes(text: string): string {
  return text.replace(/^\/+|\/+$/g, "");
}

function quote(text: string): string {
  return JSON.stringify(text);
}

function firstLine(text: string): string {
  return text.split("\n")[0]!.trim();
}
