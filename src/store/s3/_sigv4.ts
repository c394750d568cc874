/**
 * A minimal AWS Signature Version 4 signer for the S3 data path (GET, HEAD, PUT of one object):
 * header-based auth, no query parameters, `x-amz-content-sha256: UNSIGNED-PAYLOAD` by default.
 * Private to the S3 tier: `_connection.ts` makes the signer for the bucket's region and
 * `_signed_fetch.ts` signs each request with credentials from the connection.
 *
 * @module
 */

import type { Buffer } from "node:buffer";

/**
 * The node:crypto functions the signer uses; passed in so importing this module costs nothing
 * (node:crypto takes tens of milliseconds to load, and the S3 tier loads it with the SDK).
 */
export interface Hashes {
  createHash: typeof import("node:crypto").createHash;
  createHmac: typeof import("node:crypto").createHmac;
}

/** Credentials as the SDK's providers return them. */
export interface SigningCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The payload hash S3 accepts in place of the body's SHA-256. */
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";

/** One request to sign. */
export interface SignInput {
  /** `GET`, `HEAD`, `PUT`. */
  method: string;
  /** `host[:port]` exactly as sent (the URL's `host`). */
  host: string;
  /** The URI-encoded absolute path, such as from {@linkcode encodeKeyPath}. */
  path: string;
  /** Canonical query string (sorted, encoded). @default {""} */
  query?: string;
  /** Extra headers to sign, lower-case names, such as `range`. @default {{}} */
  headers?: Record<string, string>;
  /** The body's hex SHA-256. @default {UNSIGNED_PAYLOAD} */
  payloadHash?: string;
  /** When the request is signed. @default now */
  date?: Date;
}

/** Signs requests for one region and service; the signing key is kept per day and secret. */
export class SigV4Signer {
  readonly region: string;
  readonly service: string;
  #hashes: Hashes;
  #key?: { stamp: string; accessKeyId: string; secret: string; key: Buffer };

  /**
   * @param hashes `createHash` and `createHmac` from node:crypto.
   * @param region The signing region, such as `us-east-1`.
   * @param service The signing name. @default {"s3"}
   */
  constructor(hashes: Hashes, region: string, service = "s3") {
    this.#hashes = hashes;
    this.region = region;
    this.service = service;
  }

  /**
   * Signs a request.
   *
   * @param input Method, host, path and extra headers.
   * @param credentials The credentials to sign with.
   * @returns The headers to send: the extra ones plus `x-amz-date`, `x-amz-content-sha256`,
   *   `x-amz-security-token` (with a session token) and `authorization`. `host` is left to
   *   `fetch`, which sends the same value.
   */
  sign(input: SignInput, credentials: SigningCredentials): Record<string, string> {
    const amzDate = amzDateOf(input.date ?? new Date());
    const stamp = amzDate.slice(0, 8);
    const payloadHash = input.payloadHash ?? UNSIGNED_PAYLOAD;
    const headers: Record<string, string> = { ...input.headers };
    headers["x-amz-content-sha256"] = payloadHash;
    headers["x-amz-date"] = amzDate;
    if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;
    const signed: [string, string][] = [["host", input.host]];
    for (const name in headers) signed.push([name, headers[name]!]);
    signed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    let canonicalHeaders = "";
    let signedHeaders = "";
    for (const [name, value] of signed) {
      canonicalHeaders += `${name}:${value.trim().replace(/\s+/g, " ")}\n`;
      signedHeaders += signedHeaders === "" ? name : `;${name}`;
    }
    const canonicalRequest = `${input.method}\n${input.path}\n${input.query ?? ""}\n` +
      `${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`;
    const scope = `${stamp}/${this.region}/${this.service}/aws4_request`;
    const requestHash = this.#hashes.createHash("sha256").update(canonicalRequest).digest("hex");
    const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${requestHash}`;
    const signature = this.#hashes.createHmac("sha256", this.#signingKey(stamp, credentials))
      .update(stringToSign).digest("hex");
    headers["authorization"] = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope},` +
      `SignedHeaders=${signedHeaders},Signature=${signature}`;
    return headers;
  }

  #signingKey(stamp: string, credentials: SigningCredentials): Buffer {
    const cached = this.#key;
    if (
      cached && cached.stamp === stamp && cached.accessKeyId === credentials.accessKeyId &&
      cached.secret === credentials.secretAccessKey
    ) {
      return cached.key;
    }
    const hmac = (key: string | Buffer, data: string) =>
      this.#hashes.createHmac("sha256", key).update(data).digest();
    let key = hmac(`AWS4${credentials.secretAccessKey}`, stamp);
    key = hmac(key, this.region);
    key = hmac(key, this.service);
    key = hmac(key, "aws4_request");
    this.#key = {
      stamp,
      accessKeyId: credentials.accessKeyId,
      secret: credentials.secretAccessKey,
      key,
    };
    return key;
  }
}

/**
 * URI-encodes an object key for the canonical path and the URL, per SigV4: every byte but
 * `A-Z a-z 0-9 - . _ ~` as `%XX` (upper-case hex), `/` kept.
 *
 * @param key The object key, such as `ci/action/00/00ff…`.
 * @returns The encoded path, without a leading slash.
 */
export function encodeKeyPath(key: string): string {
  return key.split("/").map(encodeSegment).join("/");
}

function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** `20130524T000000Z` */
function amzDateOf(date: Date): string {
  const iso = date.toISOString(); // 2013-05-24T00:00:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 13)}${iso.slice(14, 16)}${
    iso.slice(17, 19)
  }Z`;
}
