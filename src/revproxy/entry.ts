/**
 * Cache keys and the stored object format, tailscale's: a header section of `Name: value` lines,
 * one blank line, then the body, byte for byte.
 *
 * The key is the SHA-256 (lower-case hex) of the whole URL with an explicit port,
 * `<scheme>://<host>:<port><path>[?<query>]` (host lower case), so `/x` on two hosts, or on two
 * ports of one host, are two entries, and nothing of ours is mistaken for one of tailscale's
 * (whose key is the path alone for HTTPS). Besides the response headers kept
 * ({@linkcode KEPT_HEADERS}) every object of ours holds `X-Cache-Url` (the keyed URL) and
 * `X-Body-Sha256` (the body's SHA-256, hex); an object without them, or whose body does not match,
 * is never served.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { HEX_ID } from "../util/mod.ts";

/** Response headers kept with a stored body, in this order. */
export const KEPT_HEADERS: readonly string[] = [
  "Content-Type",
  "Content-Encoding",
  "Content-Disposition",
  "Cache-Control",
  "Date",
  "Etag",
  "Last-Modified",
];

/** The header holding the body's digest. */
export const DIGEST_HEADER = "X-Body-Sha256";
/** The header holding the keyed URL. */
export const URL_HEADER = "X-Cache-Url";
/** The longest header section read back. */
export const MAX_HEAD_BYTES = 16 << 10;
/** A placeholder digest, overwritten in place once the body is complete. */
export const ZERO_DIGEST = "0".repeat(64);

/** A request's target origin. */
export interface Origin {
  /** `http` or `https`. */
  scheme: "http" | "https";
  /** Host name or address, lower case; IPv6 in brackets. */
  host: string;
  /** The port, explicit. */
  port: number;
}

/**
 * The URL a key is made from: scheme, host, explicit port, then path and query as given.
 *
 * @param origin Scheme, host and port.
 * @param pathAndQuery The request target's path and query, starting with `/`.
 * @returns `<scheme>://<host>:<port><path>[?<query>]`.
 */
export function keyedUrl(origin: Origin, pathAndQuery: string): string {
  return `${origin.scheme}://${origin.host.toLowerCase()}:${origin.port}${pathAndQuery}`;
}

/**
 * The cache key of a keyed URL.
 *
 * @param url From {@linkcode keyedUrl}.
 * @returns Its SHA-256, lower-case hex.
 */
export function cacheKey(url: string): string {
  return createHash("sha256").update(url).digest("hex");
}

/** A stored object's header section, parsed. */
export interface EntryHead {
  /** The response headers kept (not the two of ours). */
  headers: Headers;
  /** `X-Cache-Url`. */
  url: string;
  /** `X-Body-Sha256`, hex. */
  digest: string;
  /** Where the body starts, in bytes from the start of the object. */
  bodyOffset: number;
}

/**
 * Encodes the header section of an object, ending with the blank line. The digest line holds
 * {@linkcode ZERO_DIGEST} until {@linkcode digestOffset} is overwritten.
 *
 * @param headers The response's headers (only {@linkcode KEPT_HEADERS} are written).
 * @param url The keyed URL.
 * @param digest The body's digest, or the placeholder.
 * @returns The bytes.
 */
export function encodeHead(headers: Headers, url: string, digest = ZERO_DIGEST): Uint8Array {
  let text = "";
  for (const name of KEPT_HEADERS) {
    const value = headers.get(name);
    if (value !== null && value.length <= 1024 && !/[\r\n]/.test(value)) {
      text += `${name}: ${value}\n`;
    }
  }
  text += `${URL_HEADER}: ${url}\n${DIGEST_HEADER}: ${digest}\n\n`;
  return new TextEncoder().encode(text);
}

/**
 * Where the digest's 64 hex digits start in a head from {@linkcode encodeHead}.
 *
 * @param head The encoded head.
 * @returns The byte offset.
 */
export function digestOffset(head: Uint8Array): number {
  return head.length - 2 - 64;
}

/**
 * Parses an object's start: the header section up to the first blank line.
 *
 * @param bytes The object's first bytes (at least the header section).
 * @returns The head, or `undefined` when there is no complete header section or it lacks the
 * URL or a well-formed digest.
 */
export function parseHead(bytes: Uint8Array): EntryHead | undefined {
  let end = -1;
  for (let i = 0; i + 1 < bytes.length && i < MAX_HEAD_BYTES; i++) {
    if (bytes[i] === 10 && bytes[i + 1] === 10) {
      end = i;
      break;
    }
  }
  if (end < 0) return undefined;
  const headers = new Headers();
  let url = "";
  let digest = "";
  const text = new TextDecoder().decode(bytes.subarray(0, end));
  for (const line of text.split("\n")) {
    const colon = line.indexOf(": ");
    if (colon <= 0) continue;
    const name = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (name === URL_HEADER) url = value;
    else if (name === DIGEST_HEADER) digest = value;
    else {
      try {
        headers.append(name, value);
      } catch {
        // not a valid header: ignored
      }
    }
  }
  if (!url || !HEX_ID.test(digest)) return undefined;
  return { headers, url, digest, bodyOffset: end + 2 };
}
