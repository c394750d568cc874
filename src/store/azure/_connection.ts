/**
 * The Azure adapter's connection: where the container is and how requests are authorized,
 * resolved once on the first call and shared by every store on the container (other prefixes
 * too). Credentials are looked for as Azure's tools look for them:
 *
 * 1. a connection string (`AZURE_STORAGE_CONNECTION_STRING`): its account key (Shared Key) or
 *    SAS token, and its blob endpoint (an emulator's, as Azurite's documented string names);
 * 2. `AZURE_STORAGE_KEY`: Shared Key for `AZURE_STORAGE_ACCOUNT`;
 * 3. `AZURE_STORAGE_SAS_TOKEN`: a SAS token appended to every URL;
 * 4. else a Microsoft Entra token for `https://storage.azure.com/` from `@azure/identity`, imported
 *    then and only then: a service principal's secret or certificate (`AZURE_CLIENT_SECRET`, …),
 *    workload identity federation (`AZURE_FEDERATED_TOKEN_FILE` with `AZURE_CLIENT_ID` and
 *    `AZURE_TENANT_ID`, as AKS sets up; or GitHub Actions' own OIDC token, asked of the runner
 *    each time, with `AZURE_CLIENT_ID` and `AZURE_TENANT_ID`), then managed identity. This is
 *    DefaultAzureCredential's order without its developer tools (the Azure CLI, PowerShell,
 *    azd), which the plugin may not run. Tokens are cached until five minutes before expiry.
 *
 * @module
 */

import type { TokenCredential } from "@azure/identity";
import { accountEndpoint, accountOfEndpoint, parseConnectionString } from "./_connection_string.ts";
import { SharedKeySigner } from "./_shared_key.ts";
import { StoreError } from "../object_store.ts";
import { firstLine } from "../_errors.ts";
import { errorMessage } from "../../util/mod.ts";

/** Options for {@linkcode AzureBlobStore}. */
export interface AzureBlobStoreOptions {
  /** The container. */
  container: string;
  /** The storage account; "" takes it from the connection string or the endpoint. @default {""} */
  account?: string;
  /** A connection string; "" when not given. @default {""} */
  connectionString?: string;
  /** The blob endpoint's URL; "" derives it from the connection string or the account. @default {""} */
  endpoint?: string;
  /** Key prefix without slashes at either end; keys become `prefix/key`. @default {""} */
  prefix?: string;
  /** Deadline for a call that passes no signal of its own, in milliseconds. @default {30000} */
  timeoutMs?: number;
  /** Reads an environment variable. @default Deno.env.get */
  env?: (name: string) => string | undefined;
  /**
   * The token credential for Entra ID authorization. @default the chain of `@azure/identity`
   * described in the module doc, made on first need
   */
  credential?: TokenCredential;
  /** Records request latency (`azure_request_seconds`). @default no recording */
  observe?: (name: string, seconds: number) => void;
  /** Per-call trace lines (`--debug=4`). @default no tracing */
  trace?: (line: string) => void;
}

/** How requests are authorized. */
export type AzureAuth =
  | { kind: "shared-key"; signer: SharedKeySigner }
  | { kind: "sas"; query: string }
  | { kind: "token"; credential: TokenCredential };

/** What the data path needs, resolved once per connection. */
export interface Session {
  /** `scheme://host[:port]` of the blob endpoint. */
  origin: string;
  /** The encoded path before the blob's name: `/container` or `/account/container` (emulator). */
  basePath: string;
  /** The storage account. */
  account: string;
  /** How requests are authorized. */
  auth: AzureAuth;
}

/** The resource Entra tokens are asked for. */
const STORAGE_SCOPE = "https://storage.azure.com/.default";
/** Tokens are fetched again this long before they expire. */
const TOKEN_SLACK_MS = 5 * 60_000;

/** The lazily opened connection, shared by stores with different prefixes. */
export class Connection {
  /** The options it was made with. */
  readonly options: AzureBlobStoreOptions;
  #session?: Promise<Session>;
  #token?: { value: string; refreshAt: number };
  #pendingToken?: Promise<string>;

  /** @param options Container, account, credentials and hooks; nothing is read or contacted yet. */
  constructor(options: AzureBlobStoreOptions) {
    this.options = options;
  }

  /**
   * The endpoint and credentials; a failed open is retried by the next call.
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

  /**
   * A bearer token for the storage resource, cached until five minutes before it expires.
   *
   * @param credential The token credential.
   * @param signal Bounds the token request.
   * @returns The token.
   */
  token(credential: TokenCredential, signal: AbortSignal): Promise<string> {
    const cached = this.#token;
    if (cached && Date.now() < cached.refreshAt) return Promise.resolve(cached.value);
    this.#pendingToken ??= (async () => {
      try {
        const token = await credential.getToken(STORAGE_SCOPE, { abortSignal: signal });
        if (!token) throw new Error("the credential returned no token");
        this.#token = {
          value: token.token,
          refreshAt: Math.max(
            Date.now() + 30_000,
            token.refreshAfterTimestamp ?? token.expiresOnTimestamp - TOKEN_SLACK_MS,
          ),
        };
        return token.token;
      } catch (error) {
        if (signal.aborted) throw error;
        throw new StoreError(
          `Cannot get an Azure token for the storage account: ${firstLine(errorMessage(error))}`,
          "config",
          { cause: error },
        );
      } finally {
        this.#pendingToken = undefined;
      }
    })();
    return this.#pendingToken;
  }

  async #open(): Promise<Session> {
    const env = this.options.env ?? ((name: string) => Deno.env.get(name));
    const get = (name: string) => env(name) || undefined;
    const container = this.options.container;
    let account = this.options.account ?? "";
    let endpoint = this.options.endpoint ?? "";
    let accountKey = "";
    let sas = "";
    const connectionString = this.options.connectionString ?? "";
    if (connectionString) {
      let settings;
      try {
        settings = parseConnectionString(connectionString);
      } catch (error) {
        throw new StoreError(errorMessage(error), "config", { cause: error });
      }
      account ||= settings.account;
      endpoint ||= settings.blobEndpoint;
      accountKey = settings.accountKey;
      sas = settings.sas;
    }
    account ||= get("AZURE_STORAGE_ACCOUNT") ?? "";
    if (!account && endpoint) account = accountOfEndpoint(endpoint);
    if (!account) {
      throw new StoreError(
        `Cannot open Azure container ${JSON.stringify(container)}: no storage account ` +
          "(set --azure-account, AZURE_STORAGE_ACCOUNT or AZURE_STORAGE_CONNECTION_STRING)",
        "config",
      );
    }
    endpoint ||= accountEndpoint(account);
    const url = new URL(endpoint);
    const basePath = `${url.pathname.replace(/\/+$/, "")}/${encodeURIComponent(container)}`;
    const base = { origin: url.origin, basePath, account };
    if (!accountKey && !sas) {
      accountKey = get("AZURE_STORAGE_KEY") ?? "";
      sas = (get("AZURE_STORAGE_SAS_TOKEN") ?? "").replace(/^\?/, "");
    }
    if (accountKey) {
      const crypto = await import("node:crypto");
      let signer: SharedKeySigner;
      try {
        signer = new SharedKeySigner(crypto, account, accountKey);
      } catch (error) {
        throw new StoreError(errorMessage(error), "config", { cause: error });
      }
      this.options.trace?.(`AZURE auth shared-key account ${account} endpoint ${url.origin}`);
      return { ...base, auth: { kind: "shared-key", signer } };
    }
    if (sas) {
      this.options.trace?.(`AZURE auth sas account ${account} endpoint ${url.origin}`);
      return { ...base, auth: { kind: "sas", query: sas } };
    }
    const { defaultCredential } = await import("./_identity.ts");
    const credential = this.options.credential ?? await defaultCredential(get);
    this.options.trace?.(`AZURE auth token account ${account} endpoint ${url.origin}`);
    return { ...base, auth: { kind: "token", credential } };
  }
}
