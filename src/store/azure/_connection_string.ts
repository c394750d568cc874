/**
 * Azure Storage connection strings (`Key=Value;…`, as the portal, the CLI and Azurite's docs
 * write them) and where a container's blobs are: the account, the blob endpoint and the
 * credentials a string carries. Pure: nothing is read from the environment here.
 *
 * - `AccountName`, `AccountKey`: Shared Key.
 * - `SharedAccessSignature`: a SAS token appended to every URL.
 * - `BlobEndpoint`: the endpoint as given (an emulator's `http://127.0.0.1:10000/devstoreaccount1`,
 *   a private endpoint); else `DefaultEndpointsProtocol://AccountName.blob.EndpointSuffix`.
 * - `UseDevelopmentStorage=true`: Azurite's well-known account on 127.0.0.1:10000
 *   (`DevelopmentStorageProxyUri` moves it).
 *
 * @module
 */

/** Azurite's (and the old storage emulator's) documented, public account. */
export const DEV_ACCOUNT = "devstoreaccount1";
/** Azurite's documented, public account key: not a secret. */
export const DEV_ACCOUNT_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/** What a connection string says about the blob service. */
export interface ConnectionSettings {
  /** The storage account; "" when the string names none (a SAS with a BlobEndpoint). */
  account: string;
  /** The blob endpoint, without a trailing slash; "" when it cannot be derived. */
  blobEndpoint: string;
  /** The base64 account key, for Shared Key; "" when none. */
  accountKey: string;
  /** A SAS token without its leading `?`; "" when none. */
  sas: string;
}

/**
 * Parses a connection string.
 *
 * @param text The string, `Key=Value` pairs separated by `;` (keys are case-insensitive).
 * @returns Its account, endpoint and credentials.
 * @throws {SyntaxError} For a pair without `=`, or a string that names neither an account nor a
 *   blob endpoint.
 */
export function parseConnectionString(text: string): ConnectionSettings {
  const pairs = new Map<string, string>();
  for (const part of text.split(";")) {
    const item = part.trim();
    if (item === "") continue;
    const equals = item.indexOf("=");
    if (equals <= 0) {
      throw new SyntaxError(
        `Invalid Azure connection string: ${JSON.stringify(redact(item))} is not Key=Value`,
      );
    }
    pairs.set(item.slice(0, equals).trim().toLowerCase(), item.slice(equals + 1).trim());
  }
  const get = (key: string) => pairs.get(key.toLowerCase()) ?? "";
  if (get("UseDevelopmentStorage").toLowerCase() === "true") {
    const proxy = get("DevelopmentStorageProxyUri") || "http://127.0.0.1";
    const origin = new URL(proxy);
    return {
      account: DEV_ACCOUNT,
      blobEndpoint: `${origin.protocol}//${origin.hostname}:10000/${DEV_ACCOUNT}`,
      accountKey: DEV_ACCOUNT_KEY,
      sas: "",
    };
  }
  const account = get("AccountName");
  let blobEndpoint = get("BlobEndpoint").replace(/\/+$/, "");
  if (!blobEndpoint && account) {
    const protocol = (get("DefaultEndpointsProtocol") || "https").toLowerCase();
    const suffix = get("EndpointSuffix") || "core.windows.net";
    blobEndpoint = `${protocol}://${account}.blob.${suffix}`;
  }
  if (!account && !blobEndpoint) {
    throw new SyntaxError(
      "Invalid Azure connection string: it names neither AccountName nor BlobEndpoint",
    );
  }
  if (blobEndpoint) checkEndpointUrl(blobEndpoint, "BlobEndpoint");
  return {
    account,
    blobEndpoint,
    accountKey: get("AccountKey"),
    sas: get("SharedAccessSignature").replace(/^\?/, ""),
  };
}

/**
 * The account a blob endpoint names: the first label of `ACCOUNT.blob.…`, else the first path
 * segment (an emulator's `http://127.0.0.1:10000/ACCOUNT`).
 *
 * @param endpoint The blob endpoint's URL.
 * @returns The account, or "" when it names none.
 */
export function accountOfEndpoint(endpoint: string): string {
  const url = new URL(endpoint);
  const host = /^([a-z0-9]+)\.blob\./i.exec(url.hostname);
  if (host) return host[1]!;
  return decodeURIComponent(url.pathname.split("/").find((s) => s !== "") ?? "");
}

/**
 * The public blob endpoint of an account.
 *
 * @param account The storage account.
 * @returns `https://ACCOUNT.blob.core.windows.net`.
 */
export function accountEndpoint(account: string): string {
  return `https://${account}.blob.core.windows.net`;
}

/** @throws {SyntaxError} Unless `text` is an http(s) URL. */
function checkEndpointUrl(text: string, what: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SyntaxError(
      `Invalid Azure connection string: ${what} ${JSON.stringify(text)} is not a URL`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SyntaxError(
      `Invalid Azure connection string: ${what} ${JSON.stringify(text)} is not http(s)`,
    );
  }
}

/** Keeps secrets out of messages: the value of a pair is dropped. */
function redact(item: string): string {
  return item.length > 24 ? `${item.slice(0, 12)}…` : item;
}
