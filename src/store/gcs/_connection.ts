/**
 * The GCS adapter's connection: where the bucket's JSON API is and how requests are authorized,
 * resolved once on the first call and shared by every store on the bucket (other prefixes too).
 *
 * - The endpoint: `https://storage.googleapis.com` (`storage.<universe>` when
 *   `GOOGLE_CLOUD_UNIVERSE_DOMAIN` names another universe), or the emulator
 *   `STORAGE_EMULATOR_HOST` names (Google's convention: no scheme means `http://`), which is
 *   sent no credentials at all.
 * - Credentials: `google-auth-library`, imported here on first need only, finds them as Google's
 *   tools do: the key file given (`--gcs-key-file`), else `GOOGLE_APPLICATION_CREDENTIALS` (a
 *   service-account key, or an external-account file: workload identity federation, how GitHub
 *   Actions' OIDC token reaches GCS), else gcloud's application-default credentials, else the
 *   metadata server. Its client refreshes tokens; the adapter keeps the headers it returned until
 *   five minutes before they expire, so the hot path costs no call into the library.
 * - A private CA: `CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE` (gcloud's `core/custom_ca_certs_file`),
 *   trusted for requests to the storage endpoint besides the built-in roots.
 *
 * @module
 */

import type { CaBundle } from "../_tls.ts";
import { StoreError } from "../object_store.ts";
import { firstLine, networkError } from "../_errors.ts";
import { errorMessage } from "../../util/mod.ts";

/** Options for {@linkcode GcsObjectStore}. */
export interface GcsObjectStoreOptions {
  /** The bucket. */
  bucket: string;
  /** Key prefix without slashes at either end; keys become `prefix/key`. @default {""} */
  prefix?: string;
  /**
   * A service-account key or external-account (workload identity federation) file.
   * @default Google's search: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC, the metadata server
   */
  keyFile?: string;
  /**
   * An emulator's URL (`STORAGE_EMULATOR_HOST`): requests go there without credentials.
   * @default Google's endpoint, with credentials
   */
  endpoint?: string;
  /**
   * The JSON API's URL for a private endpoint (Private Service Connect), sent credentials.
   * @default `https://storage.googleapis.com` (`storage.<GOOGLE_CLOUD_UNIVERSE_DOMAIN>`)
   */
  apiEndpoint?: string;
  /**
   * Deadline for a call that passes no signal of its own, in milliseconds.
   * @default {30000}
   */
  timeoutMs?: number;
  /** Records request latency (`gcs_request_seconds`). @default no recording */
  observe?: (name: string, seconds: number) => void;
  /** Per-call trace lines (`--debug=4`). @default no tracing */
  trace?: (line: string) => void;
  /** Reads an environment variable. @default `Deno.env.get` */
  env?: (name: string) => string | undefined;
}

/** The OAuth scope the adapter asks for: objects read and written, nothing else. */
const SCOPE = "https://www.googleapis.com/auth/devstorage.read_write";

/** How long one token fetch (credentials found, token asked for) may take, in ms. */
const TOKEN_FETCH_MS = 60_000;

/** Headers older than their token's expiry minus this are asked of the library again. */
const TOKEN_SLACK_MS = 5 * 60_000;

/** What the data path needs, resolved once per connection. */
export interface Session {
  /** `scheme://host[:port]` of the JSON API, with any base path: requests append `/storage/v1/…`. */
  base: string;
  /** `host[:port]`, for messages. */
  host: string;
  /** Authorizes requests; `undefined` for an emulator. */
  auth?: TokenSource;
  /** The private CA bundle, when one is named. */
  ca?: CaBundle;
}

/** The smallest part of google-auth-library's clients the adapter uses. */
interface AuthClient {
  getRequestHeaders(url?: string): Promise<Headers>;
  credentials?: { "expiry_date"?: number | null };
}

/** Authorization headers from google-auth-library's client, cached until shortly before expiry. */
export class TokenSource {
  #client: Promise<AuthClient> | undefined;
  #make: (signal: AbortSignal) => Promise<AuthClient>;
  #cached?: { headers: Record<string, string>; expiresAt: number };
  #pending?: Promise<Record<string, string>>;

  /** @param make Creates the library's client (credentials are looked for then). */
  constructor(make: (signal: AbortSignal) => Promise<AuthClient>) {
    this.#make = make;
  }

  /**
   * The headers that authorize a request: `authorization`, and `x-goog-user-project` when a
   * quota project is configured.
   *
   * @param signal Bounds a token fetch (the library's own calls take no signal).
   * @returns The headers.
   * @throws {StoreError} When no credentials can be found or a token cannot be had.
   */
  headers(signal: AbortSignal): Promise<Record<string, string>> {
    const cached = this.#cached;
    if (cached && Date.now() < cached.expiresAt) return Promise.resolve(cached.headers);
    // One token fetch at a time: concurrent calls (a build asks for many objects at once) wait
    // for it, each within its own deadline.
    this.#pending ??= this.#fetch().finally(() => this.#pending = undefined);
    return abortable(this.#pending, signal).catch((error) => {
      throw credentialsError(error, signal);
    });
  }

  /** Fetches headers for every waiting call, bounded by its own deadline (not any caller's). */
  async #fetch(): Promise<Record<string, string>> {
    const bound = AbortSignal.timeout(TOKEN_FETCH_MS);
    try {
      this.#client ??= this.#make(bound).catch((error) => {
        this.#client = undefined;
        throw error;
      });
      const client = await abortable(this.#client, bound);
      const got = await abortable(client.getRequestHeaders(), bound);
      const headers: Record<string, string> = {};
      got.forEach((value, name) => headers[name] = value);
      const expiry = client.credentials?.expiry_date ?? undefined;
      this.#cached = {
        headers,
        expiresAt: typeof expiry === "number" ? expiry - TOKEN_SLACK_MS : 0,
      };
      return headers;
    } catch (error) {
      if (bound.aborted) {
        throw new StoreError(
          `Cannot get Google Cloud credentials: no token within ${TOKEN_FETCH_MS / 1000} s`,
          "timeout",
          { cause: error },
        );
      }
      throw credentialsError(error);
    }
  }

  /**
   * Forgets the cached headers and the client with its token (after a 401: the token was revoked
   * or expired early); the next call makes a new client, which fetches a new token.
   */
  invalidate(): void {
    this.#cached = undefined;
    this.#client = undefined;
  }
}

/** The lazily opened connection, shared by stores with different prefixes. */
export class Connection {
  /** The options it was made with. */
  readonly options: GcsObjectStoreOptions;
  #session?: Promise<Session>;

  /** @param options Bucket, key file, endpoint and hooks; nothing is contacted yet. */
  constructor(options: GcsObjectStoreOptions) {
    this.options = options;
  }

  /**
   * The endpoint, credentials and CA bundle; a failed open is retried by the next call.
   *
   * @returns The session.
   */
  session(): Promise<Session> {
    this.#session ??= this.#open().catch((error) => {
      this.#session = undefined;
      throw error;
    });
    return this.#session;
  }

  async #open(): Promise<Session> {
    const env = this.options.env ?? ((name: string) => Deno.env.get(name));
    const get = (name: string) => env(name) || undefined;
    const ca = await this.#loadCa(get);
    const emulator = this.options.endpoint;
    if (emulator) {
      const base = apiBase(emulator);
      return { base, host: new URL(base).host, ca };
    }
    const universe = get("GOOGLE_CLOUD_UNIVERSE_DOMAIN") ?? "googleapis.com";
    const base = this.options.apiEndpoint
      ? apiBase(this.options.apiEndpoint)
      : `https://storage.${universe}`;
    const keyFile = this.options.keyFile || undefined;
    const auth = new TokenSource(async (signal) => {
      const found = await findCredentialsFile(keyFile, get);
      const json = found && await readKeyFile(found.path, found.origin);
      if (!json) await checkMetadataServer(get, signal);
      const library = await import("google-auth-library");
      if (json) return clientOfKeyFile(library, json, found!.path, found!.origin);
      return new library.Compute({ scopes: [SCOPE] }) as unknown as AuthClient;
    });
    return { base, host: new URL(base).host, auth, ca };
  }

  async #loadCa(env: (name: string) => string | undefined): Promise<CaBundle | undefined> {
    const path = env("CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE");
    if (!path) return undefined;
    const { CaBundle } = await import("../_tls.ts");
    const ca = await CaBundle.read({ path, origin: "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE" }, env);
    this.options.trace?.(
      `GCS CA bundle ${JSON.stringify(ca.path)}: ${ca.certificates.length} certificates`,
    );
    return ca;
  }
}

/** A credentials file's JSON: its `type` says which client reads it. */
type KeyFileJson = Record<string, unknown> & { type?: unknown };

/**
 * The credentials file Google's tools would use, as they look for it (the search of
 * google-auth-library's `GoogleAuth`, which cannot run under the plugin's permissions: it reads
 * variables beyond those the plugin may read): the key file given, else
 * `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's application-default credentials
 * (`$CLOUDSDK_CONFIG`, else `~/.config/gcloud` or `%APPDATA%\gcloud`, `/application_default_credentials.json`)
 * when that file exists; `undefined` leaves the metadata server.
 */
async function findCredentialsFile(
  keyFile: string | undefined,
  env: (name: string) => string | undefined,
): Promise<{ path: string; origin: string } | undefined> {
  if (keyFile) return { path: keyFile, origin: "--gcs-key-file" };
  const named = env("GOOGLE_APPLICATION_CREDENTIALS");
  if (named) return { path: named, origin: "GOOGLE_APPLICATION_CREDENTIALS" };
  const home = env("HOME") || env("USERPROFILE");
  const appData = env("APPDATA");
  const dir = env("CLOUDSDK_CONFIG") ||
    (Deno.build.os === "windows" && appData
      ? `${appData}\\gcloud`
      : home
      ? `${home}/.config/gcloud`
      : undefined);
  if (!dir) return undefined;
  const path = `${dir}/application_default_credentials.json`;
  try {
    await Deno.stat(path);
  } catch {
    return undefined;
  }
  return { path, origin: "gcloud's application-default credentials" };
}

/**
 * Without a credentials file, tokens come from the metadata server (on Google Cloud): asked once,
 * briefly, whether there is one, so that a machine with no credentials at all hears so in one
 * line instead of waiting out deadlines. `METADATA_SERVER_DETECTION=none` says there is none;
 * `GCE_METADATA_HOST` (or `GCE_METADATA_IP`) names another server, as for Google's libraries.
 */
async function checkMetadataServer(
  env: (name: string) => string | undefined,
  signal: AbortSignal,
): Promise<void> {
  const host = env("GCE_METADATA_HOST") ?? env("GCE_METADATA_IP") ?? "169.254.169.254";
  const none = "none found: set GOOGLE_APPLICATION_CREDENTIALS or --gcs-key-file, run " +
    '"gcloud auth application-default login", or run on Google Cloud';
  if (env("METADATA_SERVER_DETECTION")?.trim().toLowerCase() === "none") {
    throw new StoreError(`Cannot get Google Cloud credentials: ${none}`, "config");
  }
  let answered = false;
  try {
    const response = await fetch(`http://${host}/computeMetadata/v1/instance/`, {
      headers: { "metadata-flavor": "Google" },
      signal: AbortSignal.any([signal, AbortSignal.timeout(METADATA_PROBE_MS)]),
    });
    await response.body?.cancel();
    answered = response.headers.get("metadata-flavor") === "Google";
  } catch {
    signal.throwIfAborted();
  }
  if (!answered) {
    throw new StoreError(
      `Cannot get Google Cloud credentials: ${none} (no metadata server answered at ${host})`,
      "config",
    );
  }
}

/** How long the metadata server may take to say it is there. */
const METADATA_PROBE_MS = 2000;

/** Reads and parses a credentials file. */
async function readKeyFile(path: string, origin: string): Promise<KeyFileJson> {
  const what = `the credentials file ${JSON.stringify(path)} (${origin})`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new StoreError(`Cannot read ${what}: ${firstLine(errorMessage(error))}`, "config", {
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new StoreError(`Cannot use ${what}: not JSON`, "config", { cause: error });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new StoreError(`Cannot use ${what}: not a JSON object`, "config");
  }
  return json as KeyFileJson;
}

/**
 * The library's client for a key file the user named, by its `type`, made with each type's own
 * constructor (the generic loaders print deprecation warnings): a service-account key, an
 * external account (workload identity federation: a file or URL token, AWS, or an executable),
 * or gcloud's authorized-user file.
 */
function clientOfKeyFile(
  library: typeof import("google-auth-library"),
  json: KeyFileJson,
  path: string,
  origin: string,
): AuthClient {
  const scopes = [SCOPE];
  switch (json.type) {
    case "service_account": {
      const client = new library.JWT({ scopes });
      client.fromJSON(json as never);
      return client as unknown as AuthClient;
    }
    case "authorized_user": {
      const client = new library.UserRefreshClient();
      client.fromJSON(json as never);
      return client as unknown as AuthClient;
    }
    case "external_account": {
      // deno-lint-ignore no-explicit-any
      const options = { ...json, scopes } as any;
      const source = json.credential_source as Record<string, unknown> | undefined;
      const client = source?.environment_id
        ? new library.AwsClient(options)
        : source?.executable
        ? new library.PluggableAuthClient(options)
        : new library.IdentityPoolClient(options);
      return client as unknown as AuthClient;
    }
    case "external_account_authorized_user": {
      // deno-lint-ignore no-explicit-any
      const client = new library.ExternalAccountAuthorizedUserClient(json as any);
      return client as unknown as AuthClient;
    }
    default:
      throw new StoreError(
        `Cannot use the credentials file ${JSON.stringify(path)} (${origin}): type ${
          JSON.stringify(json.type ?? null)
        } is not one this program reads (service_account, external_account, ` +
          "external_account_authorized_user, authorized_user)",
        "config",
      );
  }
}

/**
 * The JSON API's base URL for `STORAGE_EMULATOR_HOST` (or a private endpoint): `host:port`
 * means `http://host:port` (as Google's Go client reads the variable); a trailing `/` or
 * `/storage/v1` is dropped.
 *
 * @param value The variable's value.
 * @returns The base URL, without a trailing slash.
 * @throws {StoreError} Of kind `config` when it is not a URL.
 */
export function apiBase(value: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (error) {
    throw new StoreError(
      `Cannot use the storage endpoint ${JSON.stringify(value)}: not a URL`,
      "config",
      { cause: error },
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new StoreError(
      `Cannot use the storage endpoint ${JSON.stringify(value)}: want http:// or https://`,
      "config",
    );
  }
  const path = url.pathname.replace(/\/+$/, "").replace(/\/storage\/v1$/, "");
  return url.origin + path;
}

/**
 * A credentials failure as a {@linkcode StoreError}: none found, a bad key file, a refused
 * grant are `config` (retrying will not help); the token endpoint unreachable is
 * `unreachable`; its 5xx or 429 answers are `other`.
 *
 * @param error What the library threw.
 * @param signal The call's signal, to recognise its deadline.
 * @returns The error.
 */
export function credentialsError(error: unknown, signal?: AbortSignal): StoreError {
  if (error instanceof StoreError) return error;
  const action = "Cannot get Google Cloud credentials";
  if (signal?.aborted) {
    const reason = signal.reason instanceof Error && signal.reason.name === "TimeoutError"
      ? "deadline exceeded"
      : "aborted";
    return new StoreError(`${action}: ${reason}`, "timeout", { cause: error });
  }
  const e = (error ?? {}) as { status?: number; response?: { status?: number } };
  const status = e.status ?? e.response?.status;
  const text = firstLine(errorMessage(error)) || "unknown error";
  if (status !== undefined && (status >= 500 || status === 429)) {
    return new StoreError(`${action}: HTTP ${status}: ${text}`, "other", { cause: error });
  }
  const network = networkError(error, "the token endpoint") as { code?: string };
  if (status === undefined && network.code) {
    return new StoreError(`${action}: ${text}`, "unreachable", { cause: error });
  }
  return new StoreError(`${action}: ${text}`, "config", { cause: error });
}

/** Rejects when `signal` aborts before `work` settles. */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
