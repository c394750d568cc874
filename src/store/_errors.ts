/**
 * Error classification of the S3 adapter: what S3, `fetch`, node:http and the SDK report,
 * turned into one-line {@linkcode StoreError}s of the right `kind`, so the
 * circuit breaker can tell a misconfiguration (disable) from an unreachable endpoint (pause at
 * once), a missed deadline (pause after two) and a one-off failure (count it).
 *
 * - {@linkcode responseError}: an S3 error answer (XML body, or MinIO's headers for HEAD) as an
 *   SDK-shaped error (`name` = the S3 error code, `$metadata.httpStatusCode`).
 * - {@linkcode networkError}: a `fetch` failure as an error with a Node-style `code`.
 * - {@linkcode classify}: any of those (or an SDK exception) as a {@linkcode StoreError}.
 *
 * @module
 */

import { StoreError } from "./object_store.ts";

/** S3 error codes that mean the bucket or the credentials are wrong: retrying will not help. */
const CONFIG_ERRORS = new Set([
  "NoSuchBucket",
  "InvalidBucketName",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "AccessDenied",
  "AllAccessDisabled",
  "AuthorizationHeaderMalformed",
  "PermanentRedirect",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "CredentialsProviderError",
]);

/** Network error codes (or names) that mean the endpoint cannot be reached at all. */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "TimeoutError", // the SDK's name for a connection timeout
]);

/**
 * Wraps an SDK error in a one-line {@linkcode StoreError} of the right kind.
 *
 * @param error What the SDK threw.
 * @param action What was being done, for the message.
 * @param signal The call's signal, to recognise its deadline.
 * @returns The wrapped error.
 */
export function classify(error: unknown, action: string, signal?: AbortSignal): StoreError {
  if (error instanceof StoreError) return error;
  const e = (error ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const name = e.name ?? "Error";
  const status = e.$metadata?.httpStatusCode;
  const text = firstLine(e.message || name);
  if (signal?.aborted || name === "AbortError") {
    const reason = signal?.reason instanceof Error && signal.reason.name === "TimeoutError"
      ? "deadline exceeded"
      : "aborted";
    return new StoreError(`${action}: ${reason}`, "timeout", { cause: error });
  }
  if (CONFIG_ERRORS.has(name)) {
    return new StoreError(`${action}: ${name}: ${text}`, "config", { cause: error });
  }
  if (status === 401 || status === 403) {
    // HEAD answers carry no error code: say what the status means.
    const detail = name === "Unknown" || name === "UnknownError" || name === String(status)
      ? `access denied (HTTP ${status}): check the credentials and the bucket's policy`
      : `${name} (HTTP ${status}): ${text}`;
    return new StoreError(`${action}: ${detail}`, "config", { cause: error });
  }
  const code = e.code ?? errorCode(error);
  if ((code && UNREACHABLE_CODES.has(code)) || UNREACHABLE_CODES.has(name)) {
    return new StoreError(`${action}: ${text}`, "unreachable", { cause: error });
  }
  const detail = status ? `${name} (HTTP ${status}): ${text}` : `${name}: ${text}`;
  return new StoreError(`${action}: ${detail}`, "other", { cause: error });
}

/** An S3 error answer, shaped like the SDK's service exceptions for {@linkcode classify}. */
export class S3ResponseError extends Error {
  override name: string;
  /** The answer's status, where the SDK keeps it. */
  readonly $metadata: { httpStatusCode: number };

  /**
   * @param code The S3 error code (`NoSuchKey`, `AccessDenied`, …), the error's `name`.
   * @param message S3's message.
   * @param status The HTTP status.
   */
  constructor(code: string, message: string, status: number) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status };
  }
}

/**
 * Reads an S3 error answer (consuming its body).
 *
 * @param response A non-2xx answer.
 * @param op The request's method: HEAD answers have no body.
 * @returns The error, `name` = the S3 error code (`NotFound` for a bare 404).
 */
export async function responseError(response: Response, op: string): Promise<S3ResponseError> {
  const status = response.status;
  let code: string | undefined;
  let message: string | undefined;
  if (op === "HEAD" || !response.body) {
    await response.body?.cancel();
  } else {
    const text = await response.text().catch(() => "");
    code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
  }
  // HEAD answers have no body; MinIO (and some others) name the error in a header.
  code ||= response.headers.get("x-minio-error-code") ?? undefined;
  message ||= response.headers.get("x-minio-error-desc")?.replace(/^"(.*)"$/, "$1");
  code ||= status === 404 ? "NotFound" : status === 0 ? "Redirect" : String(status);
  return new S3ResponseError(code, unescapeXml(message || `HTTP ${status}`), status);
}

/**
 * A `fetch` failure as a one-line error with a Node-style `code` where one is recognised.
 *
 * @param error What `fetch` threw.
 * @param host The endpoint's `host[:port]`, for the message.
 * @returns The error, `code` set for a refused connection, an unknown host and the like.
 */
export function networkError(error: unknown, host: string): Error {
  let detail = "";
  let e: unknown = error;
  for (let depth = 0; e && depth < 5; depth++) {
    const message = (e as { message?: unknown }).message;
    if (typeof message === "string" && message !== "") detail = message;
    e = (e as { cause?: unknown }).cause;
  }
  const code = NETWORK_CODES.find(([pattern]) => pattern.test(detail))?.[1];
  const text = code ? `connect ${code} ${host}` : firstLine(detail || "fetch failed");
  return Object.assign(new Error(text, { cause: error }), code ? { code } : {});
}

const NETWORK_CODES: [RegExp, string][] = [
  [/connection refused/i, "ECONNREFUSED"],
  [/no route to host/i, "EHOSTUNREACH"],
  [/network is unreachable/i, "ENETUNREACH"],
  [/temporary failure in name resolution/i, "EAI_AGAIN"],
  [/dns error|failed to lookup address|name or service not known|no address/i, "ENOTFOUND"],
];

/**
 * The first line of a message, trimmed: errors from the SDK and from Deno can span lines.
 *
 * @param text A message.
 * @returns Its first line.
 */
export function firstLine(text: string): string {
  return text.split("\n")[0]!.trim();
}

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|quot|apos|amp);/g, (_, name: string) => XML_ENTITIES[name]!);
}

const XML_ENTITIES: Record<string, string> = {
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  amp: "&",
};

function errorCode(error: unknown): string | undefined {
  // Node errors carry `code`; AggregateError (happy eyeballs) hides it in `errors`.
  let e: unknown = error;
  for (let depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const inner = (e as { errors?: unknown[] }).errors?.[0];
    e = inner ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}
