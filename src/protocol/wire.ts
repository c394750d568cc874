/**
 * The Go toolchain's JSON shapes for the GOCACHEPROG protocol, and their decoding into
 * domain values with lower-case hex ids. Only this file knows Go's field names.
 *
 * @module
 */

/** A request as the go command encodes it (`cacheprog.Request`, `ProgRequest` before Go 1.24). */
export interface WireRequest {
  ID: number;
  Command: string;
  ActionID?: string;
  /** Go 1.24 and later. */
  OutputID?: string;
  /** Go 1.21–1.23 (and 1.24 built with GOEXPERIMENT=cacheprog). */
  ObjectID?: string;
  /** Omitted by go when the body is empty. */
  BodySize?: number;
}

/** A response as the go command decodes it (`cacheprog.Response`). */
export interface WireResponse {
  ID: number;
  Err?: string;
  KnownCommands?: string[];
  Miss?: boolean;
  OutputID?: string;
  Size?: number;
  Time?: string;
  DiskPath?: string;
}

/** The commands this plugin serves, in the order the handshake lists them. */
export const KNOWN_COMMANDS: readonly string[] = Object.freeze(["get", "put", "close"]);

/** The unsolicited capability message: go sends nothing until it has read this line. */
export const HANDSHAKE_LINE = `{"ID":0,"KnownCommands":${JSON.stringify(KNOWN_COMMANDS)}}\n`;

/** A request decoded into domain form. Ids are lower-case hex, or "" when absent. */
export interface CacheRequest {
  id: number;
  command: string;
  actionId: string;
  outputId: string;
  bodySize: number;
}

/** Raised for bytes that cannot be a protocol frame; it ends the session. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/**
 * Decodes one parsed request object.
 *
 * @param value The result of `JSON.parse` on a request line.
 * @returns The request with hex ids; `outputId` falls back to `ObjectID` for Go 1.21–1.23.
 * @throws {ProtocolError} When the value is not a request object (wrong types, bad base64).
 */
export function decodeRequest(value: unknown): CacheRequest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(
      `Cannot decode request: expected a JSON object, got ${typeName(value)}`,
    );
  }
  const raw = value as Record<string, unknown>;
  const id = raw.ID;
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
    throw new ProtocolError(`Cannot decode request: "ID" must be a non-negative integer`);
  }
  if (typeof raw.Command !== "string") {
    throw new ProtocolError(`Cannot decode request ${id}: "Command" must be a string`);
  }
  const bodySize = raw.BodySize ?? 0;
  if (typeof bodySize !== "number" || !Number.isSafeInteger(bodySize) || bodySize < 0) {
    throw new ProtocolError(
      `Cannot decode request ${id}: "BodySize" must be a non-negative integer`,
    );
  }
  const outputId = hexField(raw.OutputID, "OutputID", id) || hexField(raw.ObjectID, "ObjectID", id);
  return {
    id,
    command: raw.Command,
    actionId: hexField(raw.ActionID, "ActionID", id),
    outputId,
    bodySize,
  };
}

/**
 * Encodes one response as a compact JSON line.
 *
 * @param response The response; `ID` comes first, absent fields are left out.
 * @returns The line, ending in `\n`.
 */
export function encodeResponse(response: WireResponse): string {
  return JSON.stringify(response) + "\n";
}

/** Converts a lower-case hex id to the padded standard base64 go expects. */
export function hexToBase64(hex: string): string {
  return Uint8Array.fromHex(hex).toBase64();
}

/** Formats a time as RFC 3339 with nanoseconds when known (go parses any precision). */
export function formatTime(time: Date, nanos?: bigint): string {
  if (nanos === undefined) return time.toISOString();
  const iso = new Date(Number(nanos / 1_000_000n)).toISOString(); // …T…:…:….mmmZ
  const frac = (nanos % 1_000_000_000n).toString().padStart(9, "0");
  return `${iso.slice(0, 19)}.${frac}Z`;
}

function hexField(value: unknown, name: string, id: number): string {
  if (value === undefined || value === null || value === "") return "";
  if (typeof value !== "string") {
    throw new ProtocolError(`Cannot decode request ${id}: "${name}" must be a base64 string`);
  }
  try {
    return Uint8Array.fromBase64(value).toHex();
  } catch (error) {
    throw new ProtocolError(`Cannot decode request ${id}: "${name}" is not base64`, {
      cause: error,
    });
  }
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  return Array.isArray(value) ? "array" : typeof value;
}
