/**
 * What every adapter's face shares: key prefixes, and a GET's answer as a
 * {@linkcode StoredObject} of known size.
 *
 * @module
 */

import type { StoredObject } from "./object_store.ts";

/** `text` without leading or trailing slashes. */
export function trimSlashes(text: string): string {
  return text.replace(/^\/+|\/+$/g, "");
}

/** The prefix `sub/` within `prefix` (either may be empty). */
export function joinPrefix(prefix: string, sub: string): string {
  return [prefix, trimSlashes(sub)].filter((p) => p !== "").join("/");
}

/**
 * A GET's answer as an object of the size the store states; a body without one is refused
 * (the size bounds what is read).
 *
 * @param response The answer, with a body.
 * @param length The stated size. @default the Content-Length header
 */
export async function storedObject(
  response: Response,
  length: string | null = response.headers.get("content-length"),
): Promise<StoredObject> {
  if (!response.body) throw new Error("response has no body");
  const size = Number(length ?? NaN);
  if (!Number.isSafeInteger(size)) {
    await response.body.cancel();
    throw new Error("response has no Content-Length");
  }
  return { size, body: response.body };
}

/** Waits `ms` before a retry; rejects when `signal` aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
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
