/**
 * SHA-256 for the S3 tier on node:crypto, which hashes bytes where they lie and incrementally,
 * loaded on first need: loading node:crypto costs 30–90 ms of a process's start (measured with
 * `--cpu-prof` of a warm build), and a warm build with a bucket never hashes a remote object.
 * Every path that hashes awaits {@linkcode hashingReady} first: a remote lookup, the warm-up and
 * the manifest writer.
 *
 * @module
 */

import type { Hash } from "node:crypto";

let nodeCrypto: typeof import("node:crypto") | undefined;

/** Loads node:crypto once; {@linkcode sha256} may be called after it resolves. */
export async function hashingReady(): Promise<void> {
  nodeCrypto ??= await import("node:crypto");
}

/**
 * A new incremental SHA-256.
 *
 * @returns The hash.
 * @throws {Error} When {@linkcode hashingReady} has not resolved yet (a bug of the caller).
 */
export function sha256(): Hash {
  if (!nodeCrypto) throw new Error("Cannot hash: hashingReady() was not awaited");
  return nodeCrypto.createHash("sha256");
}
