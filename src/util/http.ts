/**
 * Request helpers the HTTP side and the module proxy share: the raw request path, as sent, and
 * the read-only methods both serve.
 *
 * @module
 */

/**
 * Extracts the raw path (no origin, no query) from a request URL without normalising it:
 * `new URL()` would resolve `..`, which the module proxy must see to refuse it.
 *
 * @param url The request URL as Deno passes it (`req.url`), which keeps `..`, `%2e` and `\`.
 * @returns The raw path, starting with `/`.
 */
export function rawPathOf(url: string): string {
  const scheme = url.indexOf("://");
  let start = url.indexOf("/", scheme < 0 ? 0 : scheme + 3);
  if (start < 0) start = url.length;
  let end = url.length;
  for (const stop of ["?", "#"]) {
    const i = url.indexOf(stop, start);
    if (i >= 0 && i < end) end = i;
  }
  return url.slice(start, end) || "/";
}

/**
 * Whether a request method only reads: `GET` or `HEAD`, the methods the HTTP side and the module
 * proxy answer.
 *
 * @param method The request's method.
 * @returns True for `GET` and `HEAD`.
 */
export function isReadMethod(method: string): boolean {
  return method === "GET" || method === "HEAD";
}
