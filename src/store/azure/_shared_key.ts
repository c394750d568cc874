/**
 * Azure Storage's Shared Key authorization for the blob service (versions 2009-09-19 and later):
 * an HMAC-SHA256, keyed with the account key, of the request's verb, standard headers, `x-ms-*`
 * headers and canonical resource. Small and synchronous (node:crypto's HMAC), so the data path
 * needs none of the SDK's pipeline.
 *
 * @module
 */

/** The HMAC node:crypto offers, passed in so that it is imported on first use only. */
export interface HmacProvider {
  createHmac(
    algorithm: "sha256",
    key: Uint8Array,
  ): { update(data: string): { digest(encoding: "base64"): string } };
}

/** A request to sign. */
export interface SharedKeyRequest {
  /** GET, HEAD or PUT. */
  method: string;
  /** The URL's path as sent (percent-encoded), starting with `/`. */
  path: string;
  /** Query parameters, decoded; Shared Key signs each. @default none */
  query?: Record<string, string>;
  /** Every header sent, names lowercase (`content-length`, `x-ms-date`, …). */
  headers: Record<string, string>;
}

/** The standard headers the string to sign lists, in its order. */
const STANDARD = [
  "content-encoding",
  "content-language",
  "content-length",
  "content-md5",
  "content-type",
  "date",
  "if-modified-since",
  "if-match",
  "if-none-match",
  "if-unmodified-since",
  "range",
] as const;

/** Signs blob requests for one account with its key. */
export class SharedKeySigner {
  readonly #crypto: HmacProvider;
  readonly #account: string;
  readonly #key: Uint8Array;

  /**
   * @param crypto node:crypto (or anything with its `createHmac`).
   * @param account The storage account.
   * @param key The account key, base64.
   * @throws {SyntaxError} When the key is not base64.
   */
  constructor(crypto: HmacProvider, account: string, key: string) {
    this.#crypto = crypto;
    this.#account = account;
    try {
      this.#key = Uint8Array.fromBase64(key);
    } catch (error) {
      throw new SyntaxError("Invalid Azure account key: not base64", { cause: error });
    }
  }

  /**
   * The string Shared Key signs.
   *
   * @param request The request.
   * @returns The string to sign.
   */
  stringToSign(request: SharedKeyRequest): string {
    const headers = request.headers;
    const lines = [request.method.toUpperCase()];
    for (const name of STANDARD) {
      let value = headers[name] ?? "";
      // Since 2015-02-21 a zero Content-Length is signed as empty.
      if (name === "content-length" && value === "0") value = "";
      lines.push(value);
    }
    const msHeaders = Object.keys(headers)
      .filter((name) => name.startsWith("x-ms-"))
      .sort()
      .map((name) => `${name}:${headers[name]!.replace(/\s+/g, " ").trim()}`);
    let resource = `/${this.#account}${request.path}`;
    const query = request.query ?? {};
    for (const name of Object.keys(query).map((n) => n.toLowerCase()).sort()) {
      resource += `\n${name}:${query[name]}`;
    }
    return [...lines, ...msHeaders, resource].join("\n");
  }

  /**
   * The Authorization header's value for a request.
   *
   * @param request The request, every header it will send included.
   * @returns `SharedKey ACCOUNT:SIGNATURE`.
   */
  authorization(request: SharedKeyRequest): string {
    const signature = this.#crypto.createHmac("sha256", this.#key)
      .update(this.stringToSign(request))
      .digest("base64");
    return `SharedKey ${this.#account}:${signature}`;
  }
}
