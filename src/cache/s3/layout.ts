/**
 * The bucket layout the S3 tier shares with tailscale's plugin (see `mod.ts`, "Cache layout"):
 * keys of action records and objects, and the action record's format.
 *
 * @module
 */

/** A lower-case hex SHA-256: an action or output id. */
export const HEX_ID: RegExp = /^[0-9a-f]{64}$/;

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
 * `strings.Fields` splits it).
 *
 * @param text The record.
 * @returns The output id and put time, or `undefined` when malformed.
 */
export function parseActionRecord(text: string): { outputId: string; nanos: bigint } | undefined {
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 2) return undefined;
  const [outputId, nanosText] = fields as [string, string];
  if (!HEX_ID.test(outputId) || !/^-?\d{1,19}$/.test(nanosText)) return undefined;
  return { outputId, nanos: BigInt(nanosText) };
}
