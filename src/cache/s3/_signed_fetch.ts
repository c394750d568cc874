/**
 * The S3 adapter's data path: one GET, HEAD or PUT, signed with SigV4 and sent with `fetch`, or
 * for a stream body through node:http(s), which keeps our Content-Length and sends the body as
 * it is read (Deno's `fetch` would send a stream chunked, which S3 rejects). A request whose body
 * can be sent again is retried once after a network failure or a 5xx/429 answer, as the SDK did.
 * Missing objects come back as `undefined`; other failures as the errors of `_errors.ts`.
 *
 * @module
 */

import type { Connection, Session } from "./_connection.ts";
import { networkError, responseError } from "./_errors.ts";
import { encodeKeyPath } from "./_sigv4.ts";

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
    let response: Response;
    try {
      response = body instanceof ReadableStream
        ? await streamPut(url, headers, body, {
          size: size ?? 0,
          signal,
          ca: session.ca?.certificates,
        })
        : await fetch(url, {
          method: op,
          headers,
          body: (body ?? null) as BodyInit | null,
          signal,
          redirect: "manual",
          client: session.ca?.client,
        });
    } catch (error) {
      if (signal.aborted) throw error;
      if (retriable && attempt < 2) continue;
      if (typeof (error as { code?: unknown }).code === "string") throw error; // node:http
      throw networkError(error, session.host);
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

/** Stream bodies up to this size are read into memory and sent with `fetch`. */
const STREAM_PUT_THRESHOLD = 4 << 20;

/**
 * The body to send for a PUT of `size` bytes: bytes as they are; a stream of up to 4 MiB read
 * into memory first (Deno's `fetch` drops Content-Length from a stream body and sends it
 * chunked, which S3 rejects); a bigger stream as it is, for {@linkcode sendSigned} to send
 * through node:http as it is read, never buffered whole.
 *
 * @param body The bytes, or a stream of exactly `size` bytes.
 * @param size The body's size.
 * @returns What to pass as {@linkcode SignedRequest.body}.
 * @throws {RangeError} When a small stream holds more or fewer than `size` bytes.
 */
export async function putPayload(
  body: Uint8Array | ReadableStream<Uint8Array>,
  size: number,
): Promise<Uint8Array | ReadableStream<Uint8Array>> {
  return body instanceof Uint8Array || size > STREAM_PUT_THRESHOLD
    ? body
    : await readExactly(body, size);
}

/** Reads a stream that must hold exactly `size` bytes. */
async function readExactly(stream: ReadableStream<Uint8Array>, size: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(size);
  let at = 0;
  for await (const chunk of stream) {
    if (at + chunk.length > size) throw new RangeError(`got more than ${size} bytes`);
    bytes.set(chunk, at);
    at += chunk.length;
  }
  if (at !== size) throw new RangeError(`got ${at} bytes, expected ${size}`);
  return bytes;
}

/**
 * PUTs a stream of known size through node:http(s), which keeps our Content-Length, sending it
 * as it is read; the answer comes back as a `Response` for the common handling. `ca` is
 * node:https's trust list (a configured CA bundle, in place of the roots).
 */
async function streamPut(
  url: string,
  headers: Record<string, string>,
  body: ReadableStream<Uint8Array>,
  options: { size: number; signal: AbortSignal; ca?: string[] },
): Promise<Response> {
  const { size, signal, ca } = options;
  const https = url.startsWith("https:");
  const { request } = https ? await import("node:https") : await import("node:http");
  const { EventEmitter } = await import("node:events");
  const tls = https && ca ? { ca } : {};
  return await new Promise<Response>((resolve, reject) => {
    const req = request(url, { method: "PUT", headers, signal, ...tls }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const answer = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (value !== undefined) {
            answer.set(name, Array.isArray(value) ? value.join(", ") : value);
          }
        }
        const bytes = chunks.length === 0 ? null : new Blob(chunks as BlobPart[]);
        resolve(new Response(bytes, { status: res.statusCode ?? 500, headers: answer }));
      });
    });
    req.on("error", reject);
    (async () => {
      let sent = 0;
      for await (const chunk of body) {
        sent += chunk.length;
        if (sent > size) throw new RangeError(`got more than ${size} bytes`);
        if (!req.write(chunk)) await EventEmitter.once(req, "drain", { signal });
      }
      if (sent !== size) throw new RangeError(`got ${sent} bytes, expected ${size}`);
      req.end();
    })().catch((error) => {
      req.destroy(error);
      reject(error);
    });
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
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
