/**
 * Error answers of the GCS JSON API, and their classification into {@linkcode StoreError}
 * kinds. An answer's body is `{"error":{"code":403,"message":"…","errors":[{"reason":"…"}]}}`
 * (emulators may answer plain text). What they mean for the tier:
 *
 * - 404 on a read: a missing object (a miss), unless the message says the bucket does not exist;
 *   404 on an upload: the bucket does not exist. A missing bucket is `config`.
 * - 401 (no or bad credentials), 403 (no permission), 400 naming an invalid bucket: `config`,
 *   except a 403 whose reason is a rate limit, which is `other`.
 * - 429 and 5xx: `other`, after one retry (`_request.ts`).
 *
 * Network failures and missed deadlines are classified by the shared `classify`.
 *
 * @module
 */

import { classify, firstLine } from "../_errors.ts";
import { StoreError } from "../object_store.ts";

/** A GCS error answer, shaped like the errors `classify` reads. */
export class GcsResponseError extends Error {
  override name: string;
  /** The answer's status. */
  readonly $metadata: { httpStatusCode: number };
  /** The first `reason` of the answer (`notFound`, `forbidden`, `rateLimitExceeded`, …). */
  readonly reason: string;

  /**
   * @param name What the error is: `NotFound` (a missing object), `NoSuchBucket`, or a name
   * from the status (`Forbidden`, `Unauthorized`, `HTTP 503`, …).
   * @param message GCS's message.
   * @param status The HTTP status.
   * @param reason GCS's reason code, "" when none.
   */
  constructor(name: string, message: string, status: number, reason: string) {
    super(message);
    this.name = name;
    this.$metadata = { httpStatusCode: status };
    this.reason = reason;
  }
}

/** Status codes by name, for messages. */
const STATUS_NAMES: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  409: "Conflict",
  412: "PreconditionFailed",
  429: "TooManyRequests",
};

/**
 * Reads a GCS error answer (consuming its body).
 *
 * @param response A non-2xx answer.
 * @param op What the request did: a 404 on an upload means the bucket is missing.
 * @returns The error.
 */
export async function responseError(response: Response, op: string): Promise<GcsResponseError> {
  const status = response.status;
  const text = await response.text().catch(() => "");
  let message = "";
  let reason = "";
  try {
    const parsed = JSON.parse(text) as {
      error?: { message?: unknown; errors?: { reason?: unknown }[] };
    };
    if (typeof parsed.error?.message === "string") message = parsed.error.message;
    const first = parsed.error?.errors?.[0]?.reason;
    if (typeof first === "string") reason = first;
  } catch {
    message = text.trim();
  }
  message = firstLine(message) || `HTTP ${status}`;
  let name = STATUS_NAMES[status] ?? (status >= 300 && status < 400 ? "Redirect" : `HTTP${status}`);
  if (status === 404 && (op === "PUT" || /bucket does not exist/i.test(message))) {
    name = "NoSuchBucket";
    if (op === "PUT" && !/bucket/i.test(message)) message = `${message}: the bucket does not exist`;
  }
  if (status === 400 && /bucket/i.test(message) && /invalid/i.test(message)) {
    name = "InvalidBucketName";
  }
  return new GcsResponseError(name, message, status, reason);
}

/**
 * Any failure of a GCS call as a one-line {@linkcode StoreError} of the right kind.
 *
 * @param error What the call threw.
 * @param action What was being done, for the message.
 * @param signal The call's signal, to recognise its deadline.
 * @returns The wrapped error.
 */
export function classifyGcs(error: unknown, action: string, signal?: AbortSignal): StoreError {
  if (error instanceof StoreError) return error;
  if (
    error instanceof GcsResponseError && error.$metadata.httpStatusCode === 403 &&
    /ratelimit/i.test(error.reason) && !signal?.aborted
  ) {
    return new StoreError(`${action}: ${error.reason} (HTTP 403): ${error.message}`, "other", {
      cause: error,
    });
  }
  return classify(error, action, signal);
}
