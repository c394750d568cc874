/**
 * The Go toolchain's JSON shapes for the GOCACHEPROG protocol, their decoding into domain
 * values with lower-case hex ids, the handshake line and the ID of a response line. Only this
 * file knows Go's field names.
 *
 * @module
 */

import { writeAll } from "../util/mod.ts";

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
const HANDSHAKE_BYTES = new TextEncoder().encode(HANDSHAKE_LINE);

/**
 * Writes {@linkcode HANDSHAKE_LINE}, the one way every mode sends it on its own (a session
 * server queues the same line ahead of its replies).
 *
 * @param out Where go reads replies, e.g. `Deno.stdout`; short writes are retried.
 */
export async function writeHandshake(
  out: { write(p: Uint8Array): Promise<number> },
): Promise<void> {
  await writeAll(out, HANDSHAKE_BYTES);
}

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

/** The part of a request that says how it is framed and answered: no ids decoded. */
export type RequestHeader = Pick<CacheRequest, "id" | "command" | "bodySize">;

/**
 * Decodes one parsed request object.
 *
 * @param value The result of `JSON.parse` on a request line.
 * @returns The request with hex ids; `outputId` falls back to `ObjectID` for Go 1.21–1.23.
 * @throws {ProtocolError} When the value is not a request object (wrong types, bad base64).
 */
export function decodeRequest(value: unknown): CacheRequest {
  const { id, command, bodySize } = decodeRequestHeader(value);
  const raw = value as Record<string, unknown>;
  const outputId = hexField(raw.OutputID, "OutputID", id) || hexField(raw.ObjectID, "ObjectID", id);
  return { id, command, actionId: hexField(raw.ActionID, "ActionID", id), outputId, bodySize };
}

/**
 * Decodes the ID, command and body size of one parsed request object, for a reader that
 * follows the stream without serving it (the ids are left undecoded, which costs most).
 *
 * @param value The result of `JSON.parse` on a request line.
 * @returns The request's ID, command and body size (0 when absent).
 * @throws {ProtocolError} When those fields are missing or of the wrong type.
 */
export function decodeRequestHeader(value: unknown): RequestHeader {
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
  return { id, command: raw.Command, bodySize };
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

/** `{"ID":`, how every response this plugin's server writes begins. */
const ID_PREFIX = [0x7b, 0x22, 0x49, 0x44, 0x22, 0x3a];
const decoder = new TextDecoder();

/**
 * Reads the `ID` of one response line. Lines that begin `{"ID":<digits>` (all that this
 * plugin's server writes) are read without a JSON parse; any other JSON object is parsed.
 *
 * @param line One response line, without its newline.
 * @returns The ID (0 for an object without a numeric `ID`, as go reads it), or undefined when
 * the line is not JSON.
 */
export function responseId(line: Uint8Array): number | undefined {
  let i = 0;
  while (i < line.length && (line[i] === 0x20 || line[i] === 0x09 || line[i] === 0x0d)) i++;
  if (line.length - i <= ID_PREFIX.length) return undefined; // shorter than `{"ID":0`
  let prefix = true;
  for (let k = 0; k < ID_PREFIX.length; k++) {
    if (line[i + k] !== ID_PREFIX[k]) {
      prefix = false;
      break;
    }
  }
  if (prefix) {
    let id = 0;
    let digits = 0;
    for (let k = i + ID_PREFIX.length; k < line.length; k++) {
      const c = line[k]!;
      if (c < 0x30 || c > 0x39) break;
      id = id * 10 + (c - 0x30);
      digits++;
    }
    if (digits > 0) return id;
  }
  try {
    const value = JSON.parse(decoder.decode(line.subarray(i)));
    return typeof value?.ID === "number" ? value.ID : 0;
  } catch {
    return undefined;
  }
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
