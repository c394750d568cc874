/**
 * The GCS adapter's data path: one JSON API request with `fetch`.
 *
 * - GET: `GET /storage/v1/b/<bucket>/o/<object>?alt=media`, the object's bytes.
 * - HEAD: `GET /storage/v1/b/<bucket>/o/<object>?fields=size`, its metadata (the JSON API has no
 *   HEAD of the media).
 * - PUT: `POST /upload/storage/v1/b/<bucket>/o?uploadType=media&name=<object>`, a single-request
 *   upload of the bytes. Small bodies are sent from memory and can be sent again; a body above
 *   4 MiB is streamed as it is read (a {@linkcode SizedBody}, with its Content-Length), never
 *   buffered whole: one request either way, so nothing is left half-written to resume.
 *
 * A request whose body can be sent again is retried once after a network failure or a 5xx/429
 * answer, and once after a 401 with a fresh token. Missing objects come back as `undefined`.
 *
 * @module
 */

import type { Session } from "./_connection.ts";
import { networkError } from "../_errors.ts";
import { GcsResponseError, responseError } from "./_errors.ts";
import { requestBody, SizedBody } from "../_body.ts";
import { sleep } from "../_adapter.ts";

/** One request of the data path. */
export interface GcsRequest {
  /** What is done. */
  op: "GET" | "HEAD" | "PUT";
  /** The bucket. */
  bucket: string;
  /** The object's name in the bucket, prefix included. */
  fullKey: string;
  /** The call's deadline. */
  signal: AbortSignal;
  /** The PUT body: bytes, or a stream of exactly `size` bytes. @default no body */
  body?: Uint8Array | ReadableStream<Uint8Array>;
  /** The body's size, sent as Content-Length. @default no body */
  size?: number;
}

/**
 * The URL and method of a request.
 *
 * @param base The JSON API's base URL.
 * @param request What is done, on which object.
 * @returns The method and URL.
 */
export function requestUrl(
  base: string,
  request: Pick<GcsRequest, "op" | "bucket" | "fullKey">,
): { method: string; url: string } {
  const bucket = encodeURIComponent(request.bucket);
  const name = encodeURIComponent(request.fullKey);
  switch (request.op) {
    case "GET":
      return { method: "GET", url: `${base}/storage/v1/b/${bucket}/o/${name}?alt=media` };
    case "HEAD":
      return { method: "GET", url: `${base}/storage/v1/b/${bucket}/o/${name}?fields=size` };
    case "PUT":
      return {
        method: "POST",
        url: `${base}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${name}&fields=size`,
      };
  }
}

/**
 * Sends one request; `undefined` for a missing object (GET/HEAD), the response for a success, a
 * {@linkcode GcsResponseError} for an error answer, a network error (with a Node-style `code`)
 * for a failed connection.
 *
 * @param session The open session: endpoint, credentials, CA bundle.
 * @param request Method, object, deadline and body.
 * @returns The answer, or `undefined` for a missing object on GET and HEAD.
 */
export async function sendRequest(
  session: Session,
  request: GcsRequest,
): Promise<Response | undefined> {
  const { op, signal, body, size } = request;
  const { method, url } = requestUrl(session.base, request);
  // A stream can be read once; bytes can be sent again.
  const retriable = !(body instanceof ReadableStream);
  let refreshed = false;
  for (let attempt = 1;; attempt++) {
    const headers: Record<string, string> = session.auth
      ? { ...await session.auth.headers(signal) }
      : {};
    // The size is the stored one: no transparent decompression.
    if (op === "GET") headers["accept-encoding"] = "identity";
    let payload: BodyInit | null = null;
    if (op === "PUT") {
      headers["content-type"] = "application/octet-stream";
      headers["content-length"] = String(size ?? 0);
      payload = requestBody(body ?? new Uint8Array(0), size ?? 0);
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: payload,
        signal,
        redirect: "manual",
        client: session.ca?.client,
      });
    } catch (error) {
      if (signal.aborted) throw error;
      // The body's own failure (a file gone short), not the network's: as it is.
      if (payload instanceof SizedBody && payload.failure !== undefined) throw payload.failure;
      if (retriable && attempt < 2) continue;
      throw networkError(error, session.host);
    }
    if (payload instanceof SizedBody && payload.failure !== undefined) {
      await response.body?.cancel();
      throw payload.failure;
    }
    if (response.ok) return response;
    const failure = await responseError(response, op);
    if (op !== "PUT" && failure.name === "NotFound") return undefined;
    if (response.status === 401 && session.auth && retriable && !refreshed) {
      // A token revoked or expired early: one more try with a fresh one.
      refreshed = true;
      session.auth.invalidate();
      continue;
    }
    if (retriable && attempt < 2 && (response.status >= 500 || response.status === 429)) {
      await sleep(50 + Math.random() * 100, signal);
      continue;
    }
    throw failure;
  }
}

export { GcsResponseError };
