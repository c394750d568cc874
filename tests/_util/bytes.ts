/**
 * Byte helpers shared by the tests.
 *
 * @module
 */

/** Hex SHA-256 of bytes. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>))
    .toHex();
}

/**
 * A deterministic 64-hex-digit id from a small number, its hex repeated to fill the width (so
 * ids differ in their shard digits too).
 *
 * @param n The number.
 * @param digits Hex digits per repeat: 2 (n < 256) or 4 (n < 65536). @default {2}
 */
export function repeatedId(n: number, digits: 2 | 4 = 2): string {
  return n.toString(16).padStart(digits, "0").repeat(64 / digits);
}
