/**
 * The S3 adapter's data path: one GET, HEAD or PUT, signed with SigV4 and sent with `fetch`. A
 * PUT body goes out as a {@linkcode SizedBody}, which keeps our Content-Length and is sent as it
 * is read, bytes without a copy; a stream of up to 4 MiB is read into one buffer first (freed
 * once sent) so that it can be sent again. A request whose body can be sent again is retried once
 * after a network failure or a 5xx/429 answer, as the SDK did. Missing objects come back as
 * `undefined`; other failures as the errors of `_errors.ts`.
 *
 * @module
 */

import type { Connection, Session } from "./_connection.ts";
import { networkError, responseError } from "../_errors.ts";
import { encodeKeyPath } from "./_sigv4.ts";
import { requestBody, SizedBody } from "../_body.ts";
import { sleep } from "../_adapter.ts";
export { type PutPayload, putPayload, SizedBody } from "../_body.ts";

/** One request of the data path. */
export interface SignedRequest {
  /** The method. */
  op: "GET" | "HEAD" | "PUT";
  /** The object's key in the bucket, prefix included. */
  fullKey: string;
  /** The call's deadline. */
  signal: AbortSignal;
  /** The PUT body: bytes, or a stream of exactly `size` bytes. @default no body */
  body?: Uint8Array | ReadableStream<Uint8Array>;
  /** The body's size, sent as Content-Length. @default no Content-Length */
  size?: number;
}

/**
 * Sends one signed request; `undefined` for a missing object (GET/HEAD), the response for a
 * success, an S3-shaped error (`name` = S3 error code) otherwise. A request whose body can be
 * sent again is retried once after a network failure or a 5xx/429 answer, as the SDK did.
 *
 * @param connection Supplies the credentials (refreshed as they expire).
 * @param session The open session: endpoint, signer, CA bundle.
 * @param request Method, key, deadline and body.
 * @returns The answer, or `undefined` for NoSuchKey/NotFound on GET and HEAD.
 */
export async function sendSigned(
  connection: Connection,
  session: Session,
  request: SignedRequest,
): Promise<Response | undefined> {
  const { op, fullKey, signal, body, size } = request;
  const encoded = encodeKeyPath(fullKey);
  if (encoded.split("/").some((s) => s === "." || s === "..")) {
    throw new Error("a key segment is . or .., which URLs cannot carry");
  }
  const path = `${session.basePath}/${encoded}`;
  const url = session.origin + path;
  // A stream can be read once; bytes can be sent again.
  const retriable = !(body instanceof ReadableStream);
  for (let attempt = 1;; attempt++) {
    const credentials = await connection.credentials(session);
    const headers = session.signer.sign(
      { method: op, host: session.host, path },
      credentials,
    );
    if (size !== undefined) headers["content-length"] = String(size);
    // The size is the stored one: no transparent decompression (unsigned, so not signed).
    if (op === "GET") headers["accept-encoding"] = "identity";
    const payload = body === undefined ? null : requestBody(body, size ?? 0);
    let response: Response;
    try {
      response = await fetch(url, {
        method: op,
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
    if (op !== "PUT" && (failure.name === "NoSuchKey" || failure.name === "NotFound")) {
      return undefined;
    }
    if (retriable && attempt < 2 && (response.status >= 500 || response.status === 429)) {
      await sleep(50 + Math.random() * 100, signal);
      continue;
    }
    throw failure;
  }
}
