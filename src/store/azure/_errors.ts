/**
 * Error classification of the Azure adapter: Blob Storage's error answers (the `x-ms-error-code`
 * header, and an XML body on GET and PUT) as errors {@linkcode classifyAzure} turns into
 * one-line {@linkcode StoreError}s of the right kind. Network failures and deadlines are
 * recognised as for S3 (`../_errors.ts`).
 *
 * @module
 */

import { classify } from "../_errors.ts";
import { StoreError } from "../object_store.ts";

/** Error codes that mean the container, the account or the credentials are wrong. */
const CONFIG_ERRORS = new Set([
  "ContainerNotFound",
  "ContainerBeingDeleted",
  "ContainerDisabled",
  "AccountIsDisabled",
  "AuthenticationFailed",
  "AuthorizationFailure",
  "AuthorizationPermissionMismatch",
  "AuthorizationProtocolMismatch",
  "AuthorizationResourceTypeMismatch",
  "AuthorizationServiceMismatch",
  "AuthorizationSourceIPMismatch",
  "InsufficientAccountPermissions",
  "InvalidAuthenticationInfo",
  "NoAuthenticationInformation",
  "InvalidResourceName",
  "InvalidUri",
  "UnsupportedHeader",
  "InvalidHeaderValue",
  "KeyVaultEncryptionKeyNotFound",
]);

/** Codes of a missing blob: a miss on GET and HEAD. */
const MISSING = new Set(["BlobNotFound", "NotFound"]);

/** A Blob Storage error answer, shaped for {@linkcode classify} (`name` = the error code). */
export class AzureResponseError extends Error {
  override name: string;
  /** The answer's status, where {@linkcode classify} reads it. */
  readonly $metadata: { httpStatusCode: number };

  /**
   * @param code The error code (`BlobNotFound`, `AuthenticationFailed`, …), the error's `name`.
   * @param message The service's message (its first line).
   * @param status The HTTP status.
   */
  constructor(code: string, message: string, status: number) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status };
  }

  /** Whether the answer says the blob does not exist. */
  get missing(): boolean {
    return MISSING.has(this.name);
  }
}

/**
 * Reads an error answer (consuming its body).
 *
 * @param response A non-2xx answer.
 * @param method The request's method: HEAD answers have no body.
 * @returns The error; `name` = the `x-ms-error-code` (`NotFound` for a bare 404).
 */
export async function azureResponseError(
  response: Response,
  method: string,
): Promise<AzureResponseError> {
  const status = response.status;
  let code = response.headers.get("x-ms-error-code") ?? "";
  let message = "";
  if (method === "HEAD" || !response.body) {
    await response.body?.cancel();
  } else {
    const text = await response.text().catch(() => "");
    code ||= /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? "";
    message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? "";
  }
  code ||= status === 404
    ? "NotFound"
    : status >= 300 && status < 400
    ? "Redirect"
    : String(status);
  message = message.split("\n")[0]!.trim() || `HTTP ${status}`;
  return new AzureResponseError(code, unescapeXml(message), status);
}

/**
 * Wraps any failure of an Azure call in a one-line {@linkcode StoreError} of the right kind:
 * the codes of a wrong container, account or credentials are `config`; the rest as
 * {@linkcode classify} sorts them (401/403 `config`, refused connections `unreachable`, the
 * deadline `timeout`, anything else `other`).
 *
 * @param error What failed.
 * @param action What was being done, for the message.
 * @param signal The call's signal, to recognise its deadline.
 * @returns The wrapped error.
 */
export function classifyAzure(error: unknown, action: string, signal?: AbortSignal): StoreError {
  if (error instanceof StoreError) return error;
  if (error instanceof AzureResponseError && !signal?.aborted && CONFIG_ERRORS.has(error.name)) {
    const status = error.$metadata.httpStatusCode;
    // HEAD answers carry the code alone.
    const detail = error.message === `HTTP ${status}` ? "" : `: ${error.message}`;
    return new StoreError(
      `${action}: ${error.name} (HTTP ${status})${detail}`,
      "config",
      { cause: error },
    );
  }
  return classify(error, action, signal);
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
