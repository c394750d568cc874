/**
 * Packs: the outputs of a working-set manifest (`manifest.ts`) back to back in a few large
 * objects, `[prefix/]warm/<keyHash>/packs/<sha256>.pack.zst`, so a fresh machine fetches thousands
 * of them with a handful of GETs, compressed. A pack is one zstd frame of the concatenation of
 * outputs (earlier versions stored it raw, as `….pack`); the manifest says where each one is
 * (`pack`, `offset` once decompressed, and the entry's `size`), and a reader checks each slice's
 * SHA-256 against its output id before using it, so a damaged pack costs misses, never a wrong
 * hit. Small outputs share packs of about `packBytes`; a larger one gets a pack of its own (up to
 * `maxLoneSize`; beyond that it is fetched raw from `output/…`). Packs are named by their own
 * SHA-256 and never rewritten: a new manifest keeps the compressed packs most of whose bytes it
 * still wants, and packs only its new outputs.
 *
 * @module
 */

import { hashingReady, sha256, zstdCompress } from "../../store/mod.ts";
import { packBytes, type PackInfo, type WarmEntry } from "./manifest.ts";

/** Options for {@linkcode planPacks}. */
export interface PackPolicy {
  /**
   * Outputs up to this size (bytes) are packed: below about a round trip's worth of transfer
   * (1 MiB is 10 ms at 100 MB/s), a request costs more than its bytes.
   * @default {1 MiB}
   */
  maxEntrySize?: number;
  /**
   * Larger outputs get a pack of their own up to this size (a pack is held in memory to be
   * compressed and decompressed; `MANIFEST_LIMITS.maxPackSize` is the readers' cap); beyond, a
   * fresh machine fetches them raw from `output/…`.
   * @default {32 MiB}
   */
  maxLoneSize?: number;
  /**
   * The zstd level (measured on x/tools' outputs: level 1 and 3 give about the same ratio; see
   * BENCHMARKS.md "fewer bytes").
   * @default {3}
   */
  level?: number;
  /**
   * A new pack is closed at about this size: small enough that a get joining its fetch soon has
   * it, large enough that a working set of thousands of outputs is a few dozen requests.
   * @default {4 MiB}
   */
  packBytes?: number;
  /** A pack is kept while at least this share of its bytes is still wanted. @default {0.5} */
  keepShare?: number;
  /**
   * New packs are made only for at least this many unpacked outputs, or a pack's worth of bytes.
   * @default {16}
   */
  minNewEntries?: number;
}

/** What {@linkcode planPacks} decided. */
export interface PackPlan {
  /** The entries, with places in dropped packs removed. */
  entries: WarmEntry[];
  /** The packs kept. */
  keep: PackInfo[];
  /** Small entries to put into new packs (in manifest order). */
  toPack: WarmEntry[];
}

/** A pack made by {@linkcode buildPacks}. */
export interface BuiltPack {
  /** Its name (SHA-256 of `bytes`), size, and size once decompressed. */
  info: PackInfo;
  /** The object: one zstd frame. */
  bytes: Uint8Array;
  /** Where each output went, by action id. */
  offsets: Map<string, number>;
}

/**
 * Decides which packs a new manifest keeps and which outputs go into new packs. Raw packs (of
 * earlier versions) are never kept: their outputs go into compressed ones.
 *
 * @param entries The new manifest's entries (some with places in earlier packs).
 * @param packs The earlier manifest's packs.
 * @param policy Sizes and the keep threshold.
 * @returns The plan.
 */
export function planPacks(
  entries: readonly WarmEntry[],
  packs: readonly PackInfo[],
  policy: PackPolicy = {},
): PackPlan {
  const maxLoneSize = policy.maxLoneSize ?? 32 << 20;
  const keepShare = policy.keepShare ?? 0.5;
  const wanted = new Map<string, number>();
  for (const entry of entries) {
    if (entry.pack) wanted.set(entry.pack, (wanted.get(entry.pack) ?? 0) + entry.size);
  }
  const keep = packs.filter((p) =>
    p.raw !== undefined && (wanted.get(p.name) ?? 0) >= packBytes(p) * keepShare && p.size > 0
  );
  const kept = new Set(keep.map((p) => p.name));
  const out: WarmEntry[] = [];
  const toPack: WarmEntry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    if (entry.pack && kept.has(entry.pack)) {
      out.push(entry);
      continue;
    }
    const { pack: _pack, offset: _offset, ...bare } = entry;
    out.push(bare);
    if (bare.size > 0 && bare.size <= maxLoneSize) {
      toPack.push(bare);
      bytes += bare.size;
    }
  }
  const enough = toPack.length >= (policy.minNewEntries ?? 16) ||
    bytes >= (policy.packBytes ?? 4 << 20);
  return { entries: out, keep, toPack: enough ? toPack : [] };
}

/**
 * Builds packs of the given outputs one at a time, each closed at about `packBytes` and
 * compressed (zstd, on the runtime's thread pool: off the event loop), in one buffer used again
 * for every pack: a writer that is done with each pack before asking for the next (it uploads
 * it) holds one pack's memory in all. An output above `maxEntrySize` gets a pack of its own (its
 * own buffer); one that cannot be read (gone, or another size) is left out.
 *
 * @param entries The outputs to pack.
 * @param readInto Reads an output's bytes into `target` (exactly `entry.size` long); false when
 * it is not there or has another size.
 * @param policy `packBytes`, `maxEntrySize` (the shared buffer is their sum), `maxLoneSize` and
 * the zstd `level`.
 * @returns The packs, named by their SHA-256, as each is closed.
 */
export async function* buildPacks(
  entries: readonly WarmEntry[],
  readInto: (entry: WarmEntry, target: Uint8Array) => Promise<boolean> | boolean,
  policy: PackPolicy = {},
): AsyncGenerator<BuiltPack> {
  await hashingReady();
  const closeAt = policy.packBytes ?? 4 << 20;
  const maxEntrySize = policy.maxEntrySize ?? 1 << 20;
  const maxLoneSize = policy.maxLoneSize ?? 32 << 20;
  let buffer: Uint8Array | undefined;
  let offsets = new Map<string, number>();
  let size = 0;
  const compress = async (raw: Uint8Array, places: Map<string, number>): Promise<BuiltPack> => {
    const bytes = await zstdCompress(raw, { level: policy.level });
    const name = sha256().update(bytes).digest("hex");
    return { info: { name, size: bytes.length, raw: raw.length }, bytes, offsets: places };
  };
  const close = async (): Promise<BuiltPack> => {
    const pack = await compress(buffer!.subarray(0, size), offsets);
    offsets = new Map();
    size = 0;
    return pack;
  };
  const seen = new Set<string>();
  for (const entry of entries) {
    if (seen.has(entry.actionId) || entry.size > maxLoneSize) continue;
    if (entry.size > maxEntrySize) {
      const alone = new Uint8Array(entry.size);
      const ok = await Promise.resolve(readInto(entry, alone)).catch(() => false);
      if (!ok) continue;
      seen.add(entry.actionId);
      yield await compress(alone, new Map([[entry.actionId, 0]]));
      continue;
    }
    buffer ??= new Uint8Array(closeAt + maxEntrySize);
    const ok = await Promise.resolve(readInto(entry, buffer.subarray(size, size + entry.size)))
      .catch(() => false);
    if (!ok) continue;
    seen.add(entry.actionId);
    offsets.set(entry.actionId, size);
    size += entry.size;
    if (size >= closeAt) yield await close();
  }
  if (size > 0) yield await close();
}

/**
 * The bytes of one output in a pack, if the pack is long enough.
 *
 * @param pack The pack's bytes.
 * @param entry The entry (`offset` and `size`).
 * @returns A view on the bytes, unchecked; the caller verifies them.
 */
export function slicePack(pack: Uint8Array, entry: WarmEntry): Uint8Array | undefined {
  const offset = entry.offset ?? -1;
  if (offset < 0 || offset + entry.size > pack.length) return undefined;
  return pack.subarray(offset, offset + entry.size);
}
