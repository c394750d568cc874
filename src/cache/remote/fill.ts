/**
 * The remote fill: how an output read from the bucket becomes a local hit, the same for go's
 * lookups (`lookup.ts`) and the warm-up (`warm.ts`). The body is held to the throughput floor,
 * its SHA-256 checked against the output id as it arrives, read whole when small (the local
 * tier's cheap synchronous write) or streamed to disk when large; then the object is written,
 * then its action record, so a local record always has its object.
 *
 * @module
 */

import type { LocalCache } from "../local.ts";
import type { CacheHit } from "../../protocol/mod.ts";
import {
  AbortOnStream,
  type SharedFloor,
  type StoredObject,
  ThroughputFloorStream,
  VerifyStream,
} from "../../store/mod.ts";

/** Remote objects up to this size are read whole before they are written locally. */
export const SMALL_OBJECT = 1 << 16;

/** One cache entry: an action and its output, with the put time in nanoseconds. */
export interface FillEntry {
  actionId: string;
  outputId: string;
  /** The put time, in nanoseconds since the Unix epoch; go gets it back as `Time`. */
  nanos: bigint;
}

/** Options for {@linkcode fillFromObject}. */
export interface FillOptions {
  /** The action, its output id and put time. */
  entry: FillEntry;
  /** The object's key, for messages. */
  key: string;
  /** The download throughput floor the body is held to (shared by concurrent downloads). */
  floor: SharedFloor;
  /** How long a body runs before its rate is judged, in ms. */
  slowGraceMs: number;
  /** Ends the body's read (its deadline, the breaker opening). @default the store call's own */
  signal?: AbortSignal;
}

/**
 * Fills the local tier from a remote object: floor, hash check, read (small: whole; large:
 * streamed), write the object, write the action record. Rejects with `TooSlowError` for a crawl
 * and `CorruptError` for bytes that do not hash to the output id; nothing is written then.
 *
 * @param local The local tier.
 * @param object The remote object, already checked for an acceptable size; its body is consumed.
 * @param options The entry, key, floor and deadline.
 * @returns The local hit.
 */
export async function fillFromObject(
  local: LocalCache,
  object: StoredObject,
  options: FillOptions,
): Promise<CacheHit> {
  const { entry } = options;
  let body = object.body
    .pipeThrough(
      new ThroughputFloorStream(object.size, {
        minBytesPerSecond: () => options.floor.share(),
        graceMs: options.slowGraceMs,
        key: options.key,
      }),
    )
    .pipeThrough(new VerifyStream(entry.outputId, object.size, options.key));
  if (options.signal) body = body.pipeThrough(new AbortOnStream(options.signal));
  const verified = body;
  return await options.floor.arriving(async () => {
    // Most outputs are small: take them whole (verified) and let the local tier write them
    // with its cheap synchronous path; stream the large ones to disk.
    const bytes = object.size <= SMALL_OBJECT ? await new Response(verified).bytes() : verified;
    return await writeEntry(local, { ...entry, size: object.size, body: bytes });
  });
}

/** A verified output to write, with its entry. */
export interface VerifiedEntry extends FillEntry {
  /** The output's size in bytes. */
  size: number;
  /** The output's bytes, already verified. */
  body: Uint8Array | ReadableStream<Uint8Array>;
}

/**
 * Writes a verified output, then its action record, locally. The output's file time is its last
 * use (pruning and `--max-size` go by it): now; the record carries the original put time.
 *
 * @param local The local tier.
 * @param entry The entry and its output's bytes.
 * @returns The local hit.
 */
export async function writeEntry(local: LocalCache, entry: VerifiedEntry): Promise<CacheHit> {
  const { actionId, outputId, nanos, size, body } = entry;
  const diskPath = await local.writeObject(outputId, body, { size });
  const time = new Date(Number(nanos / 1_000_000n));
  await local.writeAction(actionId, { outputId, size, time });
  return { outputId, size, diskPath, time, timeNanos: nanos };
}
