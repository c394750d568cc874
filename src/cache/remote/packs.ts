/**
 * Packs: the small outputs of a working-set manifest (`manifest.ts`) back to back in a few large
 * objects, `[prefix/]warm/<keyHash>/packs/<sha256>.pack`, so a fresh machine fetches thousands of
 * them with a handful of GETs. A pack is the plain concatenation of outputs; the manifest says
 * where each one is (`pack`, `offset`, and the entry's `size`), and a reader checks each slice's
 * SHA-256 against its output id before using it, so a damaged pack costs misses, never a wrong
 * hit. Packs are named by their own SHA-256 and never rewritten: a new manifest keeps the packs
 * most of whose bytes it still wants, and packs only its new small outputs.
 *
 * @module
 */

import { hashingReady, sha256 } from "../../store/mod.ts";
import type { PackInfo, WarmEntry } from "./manifest.ts";

/** Options for {@linkcode planPacks}. */
export interface PackPolicy {
  /**
   * Outputs up to this size (bytes) are packed: below about a round trip's worth of transfer
   * (1 MiB is 10 ms at 100 MB/s), a request costs more than its bytes.
   * @default {1 MiB}
   */
  maxEntrySize?: number;
  /**
   * A new pack is closed at about this size: small enough that a get joining its fetch soon has
   * it, large enough that a working set of thousands of outputs is a few dozen requests.
   * @default {4 MiB}
   */
  packBytes?: number;
  /** A pack is kept while at least this share of its bytes is still wanted. @default {0.5} */
  keepShare?: number;
  /** New packs are made only for at least this many unpacked small outputs. @default {16} */
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
  info: PackInfo;
  bytes: Uint8Array;
  /** Where each output went, by action id. */
  offsets: Map<string, number>;
}

/**
 * Decides which packs a new manifest keeps and which small outputs go into new packs.
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
  const maxEntrySize = policy.maxEntrySize ?? 1 << 20;
  const keepShare = policy.keepShare ?? 0.5;
  const wanted = new Map<string, number>();
  for (const entry of entries) {
    if (entry.pack) wanted.set(entry.pack, (wanted.get(entry.pack) ?? 0) + entry.size);
  }
  const keep = packs.filter((p) => (wanted.get(p.name) ?? 0) >= p.size * keepShare && p.size > 0);
  const kept = new Set(keep.map((p) => p.name));
  const out: WarmEntry[] = [];
  const toPack: WarmEntry[] = [];
  for (const entry of entries) {
    if (entry.pack && kept.has(entry.pack)) {
      out.push(entry);
      continue;
    }
    const { pack: _pack, offset: _offset, ...bare } = entry;
    out.push(bare);
    if (bare.size > 0 && bare.size <= maxEntrySize) toPack.push(bare);
  }
  return {
    entries: out,
    keep,
    toPack: toPack.length >= (policy.minNewEntries ?? 16) ? toPack : [],
  };
}

/**
 * Builds packs of the given outputs one at a time, each closed at about `packBytes`, in one
 * buffer used again for every pack: a writer that is done with each pack before asking for the
 * next (it uploads it) holds one pack's memory in all and leaves no garbage behind. An output
 * that cannot be read (gone, or another size) is left out.
 *
 * @param entries The outputs to pack.
 * @param readInto Reads an output's bytes into `target` (exactly `entry.size` long); false when
 * it is not there or has another size.
 * @param policy `packBytes` and `maxEntrySize` (the buffer is their sum).
 * @returns The packs, named by their SHA-256, as each is closed; a pack's `bytes` are valid only
 * until the next one is asked for.
 */
export async function* buildPacks(
  entries: readonly WarmEntry[],
  readInto: (entry: WarmEntry, target: Uint8Array) => Promise<boolean> | boolean,
  policy: PackPolicy = {},
): AsyncGenerator<BuiltPack> {
  await hashingReady();
  const packBytes = policy.packBytes ?? 4 << 20;
  const maxEntrySize = policy.maxEntrySize ?? 1 << 20;
  let buffer: Uint8Array | undefined;
  let offsets = new Map<string, number>();
  let size = 0;
  const close = (): BuiltPack => {
    const bytes = buffer!.subarray(0, size);
    const name = sha256().update(bytes).digest("hex");
    const pack = { info: { name, size }, bytes, offsets };
    offsets = new Map();
    size = 0;
    return pack;
  };
  const seen = new Set<string>();
  for (const entry of entries) {
    if (seen.has(entry.actionId) || entry.size > maxEntrySize) continue;
    buffer ??= new Uint8Array(packBytes + maxEntrySize);
    const ok = await Promise.resolve(readInto(entry, buffer.subarray(size, size + entry.size)))
      .catch(() => false);
    if (!ok) continue;
    seen.add(entry.actionId);
    offsets.set(entry.actionId, size);
    size += entry.size;
    if (size >= packBytes) yield close();
  }
  if (size > 0) yield close();
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
