/**
 * The Azure adapter's data path: one Get Blob, Get Blob Properties (HEAD) or Put Blob, sent with
 * `fetch` and authorized by Shared Key, a SAS token or a bearer token. A Put Blob body goes out as
 * the S3 path's `SizedBody` (our Content-Length, the bytes without a copy, a big stream sent as
 * it is read): one request for any object up to Put Blob's 5000 MiB, so no block list is needed
 * for build outputs. A request whose body can be sent again is retried once after a network
 * failure or a 5xx/429 answer. A missing blob comes back as `undefined`.
 *
 * @module
 */

import type { Connection, Session } from "./_connection.ts";
import { azureResponseError } from "./_errors.ts";
import { networkError } from "../_errors.ts";
import { requestBody, SizedBody } from "../_body.ts";
import { sleep } from "../_adapter.ts";

/** The REST API version sent (and signed). */
export const API_VERSION = "2023-11-03";

/** Put Blob's largest body (API versions since 2019-12-12). */
export const MAX_PUT_BLOB = 5000 * 1024 * 1024;

/** One request of the data path. */
export interface BlobRequest {
  /** The method. */
  method: "GET" | "HEAD" | "PUT";
  /** The blob's name in the container, prefix included. */
  name: string;
  /** The call's deadline. */
  signal: AbortSignal;
  /** The PUT body: bytes, or a stream of exactly `size` bytes. @default no body */
  body?: Uint8Array | ReadableStream<Uint8Array>;
  /** The body's size, sent as Content-Length. @default no body */
  size?: number;
}

/**
 * Sends one request; `undefined` for a missing blob (GET/HEAD), the response for a success, an
 * `AzureResponseError` or a network error otherwise.
 *
 * @param connection Supplies bearer tokens (refreshed as they expire).
 * @param session The open session: endpoint and authorization.
 * @param request Method, blob, deadline and body.
 * @returns The answer, or `undefined` for a missing blob on GET and HEAD.
 */
export async function sendBlobRequest(
  connection: Connection,
  session: Session,
  request: BlobRequest,
): Promise<Response | undefined> {
  const { method, name, signal, body, size } = request;
  const encoded = name.split("/").map(encodeURIComponent).join("/");
  const path = `${session.basePath}/${encoded}`;
  const auth = session.auth;
  const url = session.origin + path + (auth.kind === "sas" ? `?${auth.query}` : "");
  if (method === "PUT" && (size ?? 0) > MAX_PUT_BLOB) {
    throw new RangeError(`${size} bytes is more than Put Blob takes (${MAX_PUT_BLOB})`);
  }
  const host = new URL(session.origin).host;
  const retriable = !(body instanceof ReadableStream);
  for (let attempt = 1;; attempt++) {
    const headers: Record<string, string> = {
      "x-ms-version": API_VERSION,
      "x-ms-date": new Date().toUTCString(),
    };
    if (method === "PUT") {
      headers["x-ms-blob-type"] = "BlockBlob";
      headers["content-type"] = "application/octet-stream";
      headers["content-length"] = String(size ?? 0);
    }
    // The size is the stored one: no transparent decompression.
    if (method === "GET") headers["accept-encoding"] = "identity";
    if (auth.kind === "shared-key") {
      headers["authorization"] = auth.signer.authorization({ method, path, headers });
    } else if (auth.kind === "token") {
      headers["authorization"] = `Bearer ${await connection.token(auth.credential, signal)}`;
    }
    const payload = method !== "PUT" ? null : requestBody(body ?? new Uint8Array(0), size ?? 0);
    let response: Response;
    try {
      response = await fetch(url, { method, headers, body: payload, signal, redirect: "manual" });
    } catch (error) {
      if (signal.aborted) throw error;
      if (payload instanceof SizedBody && payload.failure !== undefined) throw payload.failure;
      if (retriable && attempt < 2) continue;
      throw networkError(error, host);
    }
    if (payload instanceof SizedBody && payload.failure !== undefined) {
      await response.body?.cancel();
      throw payload.failure;
    }
    if (response.ok) return response;
    const failure = await azureResponseError(response, method);
    if (method !== "PUT" && failure.missing) return undefined;
    if (retriable && attempt < 2 && (response.status >= 500 || response.status === 429)) {
      await sleep(50 + Math.random() * 100, signal);
      continue;
    }
    throw failure;
  }
}
