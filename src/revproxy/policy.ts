/**
 * What the proxy may keep, and where: tailscale's rules, with the holes closed.
 *
 * - Only a `GET` answered `200` is ever kept, and only when the request did not say
 *   `Cache-Control: no-store`.
 * - **Disk and bucket**: `Cache-Control: immutable`, or `must-revalidate` with a `max-age` beyond
 *   60 days; never with `no-store`, `no-cache` or `private`.
 * - **Memory** (until it expires): a `max-age` under an hour (counting down any `Age`), not
 *   `no-store`, `no-cache` or `private`, at most {@linkcode MEMORY_ENTRY_MAX} bytes.
 * - **Never**, whatever the above: a response to a request that carried `Authorization` or
 *   `Cookie` (unless the response says `public`), one with `Vary` on anything but
 *   `Accept-Encoding` (or `Vary: *`), one that sets a cookie.
 *
 * @module
 */

/** Disk entries need a max-age beyond this when they are `must-revalidate` and not `immutable`. */
export const LONG_MAX_AGE_S = 60 * 86_400;
/** Memory entries need a max-age below this. */
export const SHORT_MAX_AGE_S = 3_600;
/** The largest body the memory tier holds. */
export const MEMORY_ENTRY_MAX = 1 << 20;

/** A parsed `Cache-Control` header. */
export interface CacheControl {
  /** The directives present, lower case. */
  directives: Set<string>;
  /** `max-age` in seconds, or `undefined` when absent or malformed. */
  maxAge?: number;
}

/**
 * Parses a `Cache-Control` header: comma-separated directives, case-insensitive, values after `=`
 * (quotes removed).
 *
 * @param header The header's value, or `null`.
 * @returns The directives and `max-age`.
 */
export function parseCacheControl(header: string | null): CacheControl {
  const directives = new Set<string>();
  let maxAge: number | undefined;
  for (const part of (header ?? "").split(",")) {
    const [rawName, ...rest] = part.split("=");
    const name = rawName!.trim().toLowerCase();
    if (!name) continue;
    directives.add(name);
    if (name === "max-age") {
      const value = rest.join("=").trim().replace(/^"(.*)"$/, "$1");
      if (/^\d{1,12}$/.test(value)) maxAge = Number(value);
    }
  }
  return { directives, maxAge };
}

/** Where a response may be kept. */
export type Keep =
  | { where: "disk" }
  | { where: "memory"; expiresAt: number }
  | { where: "none"; why: string };

/**
 * Whether a request may be answered from the cache and its response kept: a `GET` that does not
 * say `Cache-Control: no-store`.
 *
 * @param request The client's request.
 * @returns Whether to look up and store.
 */
export function requestCacheable(request: Request): boolean {
  if (request.method !== "GET") return false;
  return !parseCacheControl(request.headers.get("cache-control")).directives.has("no-store");
}

/**
 * Decides where a response may be kept (see the module doc).
 *
 * @param request The client's request (its `Authorization` and `Cookie` headers count).
 * @param response The upstream's status and headers.
 * @param now The time, ms since the epoch, for memory expiry.
 * @returns Disk, memory (with its expiry) or none (with the reason).
 */
export function decideKeep(
  request: Request,
  response: { status: number; headers: Headers },
  now: number = Date.now(),
): Keep {
  if (!requestCacheable(request)) return { where: "none", why: "request not cacheable" };
  if (response.status !== 200) return { where: "none", why: `status ${response.status}` };
  const headers = response.headers;
  const cc = parseCacheControl(headers.get("cache-control"));
  if (cc.directives.has("no-store") || cc.directives.has("no-cache")) {
    return { where: "none", why: "no-store or no-cache" };
  }
  if (cc.directives.has("private")) return { where: "none", why: "private" };
  if (headers.has("set-cookie")) return { where: "none", why: "sets a cookie" };
  const vary = (headers.get("vary") ?? "").split(",").map((v) => v.trim().toLowerCase())
    .filter((v) => v !== "");
  if (vary.some((v) => v !== "accept-encoding")) return { where: "none", why: "varies" };
  const credentials = request.headers.has("authorization") || request.headers.has("cookie");
  if (credentials && !cc.directives.has("public")) {
    return { where: "none", why: "request had credentials" };
  }
  if (
    cc.directives.has("immutable") ||
    (cc.directives.has("must-revalidate") && (cc.maxAge ?? 0) > LONG_MAX_AGE_S)
  ) {
    return { where: "disk" };
  }
  if (cc.maxAge !== undefined && cc.maxAge > 0 && cc.maxAge < SHORT_MAX_AGE_S) {
    const age = Number(headers.get("age") ?? 0);
    const left = cc.maxAge - (Number.isFinite(age) && age > 0 ? age : 0);
    const length = Number(headers.get("content-length") ?? NaN);
    if (left <= 0) return { where: "none", why: "already stale" };
    if (!(length >= 0 && length <= MEMORY_ENTRY_MAX)) {
      return { where: "none", why: "short-lived and not small" };
    }
    return { where: "memory", expiresAt: now + left * 1000 };
  }
  return { where: "none", why: "not immutable" };
}
