/**
 * The bucket layout the S3 tier shares with tailscale's plugin (see `mod.ts`, "Cache layout"):
 * keys of action records and objects, and the action record's format.
 *
 * @module
 */

import { HEX_ID } from "../../util/mod.ts";

/** Re-exported for the tier's files: the pattern itself is defined once, in `util/`. */
export { HEX_ID };

/**
 * The key of an action record, relative to the prefix.
 *
 * @param actionId The action id, hex.
 * @returns `action/<xx>/<actionId>`.
 */
export function actionKey(actionId: string): string {
  return `action/${actionId.slice(0, 2)}/${actionId}`;
}

/**
 * The key of an output object, relative to the prefix.
 *
 * @param outputId The output id, hex.
 * @returns `output/<xx>/<outputId>`.
 */
export function outputKey(outputId: string): string {
  return `output/${outputId.slice(0, 2)}/${outputId}`;
}

/**
 * Parses an action record, `"<outputHex> <unixNanos>"` (any whitespace between, as Go's
 * `strings.Fields` splits it). The put time is clamped to 1970..now: a time in the future (which
 * would outlive `go clean -testcache`) is read as now.
 *
 * @param text The record.
 * @returns The output id and put time, or `undefined` when malformed.
 */
export function parseActionRecord(text: string): { outputId: string; nanos: bigint } | undefined {
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 2) return undefined;
  const [outputId, nanosText] = fields as [string, string];
  if (!HEX_ID.test(outputId) || !/^-?\d{1,19}$/.test(nanosText)) return undefined;
  return { outputId, nanos: clampNanos(BigInt(nanosText)) };
}

/**
 * A put time read from the bucket, clamped to 1970..now.
 *
 * @param nanos Nanoseconds since the Unix epoch.
 * @returns The time, at most now and at least 0.
 */
export function clampNanos(nanos: bigint): bigint {
  const now = BigInt(Date.now()) * 1_000_000n;
  return nanos > now ? now : nanos < 0n ? 0n : nanos;
}

/**
 * The largest output the S3 tier reads: go's largest put (the protocol's body cap). A bucket
 * object announcing more is refused before it is read.
 */
export const MAX_OUTPUT_SIZE: number = 1 << 30;

/**
 * A body's deadline from its announced size: `baseMs` plus a second per MiB, never past a
 * timer's range (a longer delay would fire at once).
 *
 * @param baseMs The deadline of the request.
 * @param size The body's announced size, bytes.
 * @returns The deadline in ms.
 */
export function bodyDeadlineMs(baseMs: number, size: number): number {
  const mib = Math.ceil(Math.min(Math.max(0, size), MAX_OUTPUT_SIZE) / 1048576);
  return Math.min(baseMs + mib * 1000, 2 ** 31 - 1);
}
