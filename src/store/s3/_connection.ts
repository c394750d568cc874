/**
 * The S3 adapter's connection: what the signed data path needs to reach a bucket, resolved once
 * and shared by every store on it (stores with other prefixes too). It loads the private CA
 * bundle, then either takes credentials, region and endpoint straight from the environment (the
 * common CI set-up, no SDK at all) or imports `@aws-sdk/client-s3` for its credential provider
 * chain, the bucket's region (GetBucketLocation) and its endpoint rules. Credentials are cached
 * until shortly before they expire; a failed open is retried by the next call.
 *
 * @module
 */

import type { S3Client } from "@aws-sdk/client-s3";
import { type SigningCredentials, SigV4Signer } from "./_sigv4.ts";
import type { CaBundle } from "../_tls.ts";
import { StoreError } from "../object_store.ts";
import { classify, firstLine } from "../_errors.ts";
import { errorMessage } from "../../util/mod.ts";

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
export interface Session {
  /** The SDK client: its credential provider chain (and GetBucketLocation before it). */
  client?: S3Client;
  /** Credentials from the environment when the SDK was not needed at all. */
  staticCredentials?: SigningCredentials;
  /** Signs requests for the bucket's signing region and service. */
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
export class Connection {
  /** The options it was made with. */
  readonly options: AwsObjectStoreOptions;
  #session?: Promise<Session>;
  #ca?: Promise<CaBundle | undefined>;
  #credentials?: { value: SigningCredentials; expiresAt: number };

  /** @param options Bucket, region, endpoint and hooks; nothing is contacted yet. */
  constructor(options: AwsObjectStoreOptions) {
    this.options = options;
  }

  /**
   * The client, endpoint and signer for the bucket's region; a failed lookup is retried.
   *
   * @param signal Bounds the region lookup.
   * @returns The session.
   */
  session(signal?: AbortSignal): Promise<Session> {
    this.#session ??= this.#open(signal).catch((error) => {
      this.#session = undefined;
      throw error;
    });
    return this.#session;
  }

  /**
   * Credentials from the SDK's provider chain, reused until shortly before they expire.
   *
   * @param session The open session.
   * @returns Credentials to sign with.
   */
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
      const { CaBundle } = await import("../_tls.ts");
      const ca = await CaBundle.load((name) => Deno.env.get(name) || undefined);
      if (ca) {
        this.options.trace?.(
          `S3 CA bundle ${
            JSON.stringify(ca.path)
          } (${ca.origin}): ${ca.certificates.length} certificates`,
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
        throw classify(error, `Cannot find the region of bucket ${JSON.stringify(bucket)}`);
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
        `Cannot find the S3 endpoint of bucket ${JSON.stringify(bucket)}: ${
          firstLine(errorMessage(error))
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
