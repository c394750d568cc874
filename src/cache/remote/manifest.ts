/**
 * Working-set manifests: what the sessions of one warm key used, so a fresh machine can fetch it
 * in a few requests before go asks (see `warm.ts`). A manifest is a zstd-compressed JSON object
 * under `[prefix/]warm/<keyHash>/manifest.v2.json.zst`, beside its packs (`packs.ts`);
 * tailscale's plugin never reads these keys. Earlier versions wrote version 1, gzip-compressed,
 * under `manifest.json.gz` with packs stored raw: still read when no version 2 is there.
 * Every entry is also in the bucket's ordinary layout (`action/…`, `output/…`, raw), so a
 * manifest only saves requests and bytes: it never holds the only copy.
 *
 * ## Manifest format
 *
 * ```json
 * {
 *   "version": 2,
 *   "key": "dir:/home/runner/work/app",
 *   "session": 12,
 *   "written": "2025-01-02T03:04:05.678Z",
 *   "packs": [{ "name": "<sha256 hex of the object>", "size": 1048000, "encoding": "zstd",
 *     "raw": 4194304 }],
 *   "entries": [
 *     { "action": "<hex>", "output": "<hex>", "size": 1234, "time": "<unix nanos>",
 *       "seen": 12, "pack": "<sha256 hex>", "offset": 0 }
 *   ]
 * }
 * ```
 *
 * `session` counts the sessions (plugin processes, or a server's lifetime) that wrote the
 * manifest; `seen` is the last session that used an entry. `entries` is in the order the last
 * session asked for them, then older entries, newest use first. `pack` and `offset` say where the
 * output's bytes also are (`size` bytes at `offset` of that pack, once decompressed); without them
 * the output is fetched from `output/<xx>/<id>`. A pack with `"encoding": "zstd"` is one zstd
 * frame of `raw` bytes; one without an encoding (version 1) is stored raw. Readers ignore fields they do not know, any malformed entry, and packs of an encoding
 * they do not know (their entries are fetched one by one).
 *
 * Anyone who can write the prefix can write a manifest, so {@linkcode readManifest} checks every
 * number against {@linkcode MANIFEST_LIMITS} (a manifest past one is skipped whole), clamps put
 * times to now and `seen` values to the manifest's session, and decompresses it (zstd or gzip, by
 * its first bytes) streamed and bounded in bytes and nesting.
 *
 * @module
 */

import { HEX_ID } from "../../util/mod.ts";
import { MAX_OUTPUT_SIZE } from "./layout.ts";
import {
  BoundError,
  isZstd,
  readGzipJson,
  TurnPacer,
  zstdCompress,
  zstdDecompressed,
} from "../../store/mod.ts";

/** One action of a working set. */
export interface WarmEntry {
  /** Action id, hex. */
  actionId: string;
  /** Output id, hex. */
  outputId: string;
  /** Output size in bytes. */
  size: number;
  /** Put time, nanoseconds since the Unix epoch. */
  nanos: bigint;
  /** The last session that used it. */
  seen: number;
  /** The pack that also holds the output, by its SHA-256 hex. */
  pack?: string;
  /** Where in the pack. */
  offset?: number;
}

/** A pack: one object holding outputs back to back (see {@linkcode packKey}). */
export interface PackInfo {
  /** SHA-256 hex of the object's bytes (as stored). */
  name: string;
  /** Bytes of the object (as stored). */
  size: number;
  /** Bytes once decompressed: set when the object is one zstd frame; unset when stored raw. */
  raw?: number;
}

/**
 * Bytes a pack holds once decompressed (where its entries' offsets point).
 *
 * @param pack The pack.
 * @returns `raw` for a zstd pack, else `size`.
 */
export function packBytes(pack: PackInfo): number {
  return pack.raw ?? pack.size;
}

/** A decoded manifest. */
export interface WarmManifest {
  /** Format version read (1: gzip, raw packs; 2: zstd). @default {2} */
  version?: number;
  /** The warm key as given (for people reading the bucket). */
  key: string;
  /** Sessions that wrote it so far. */
  session: number;
  /** Newest use first. */
  entries: WarmEntry[];
  /** The packs entries point into. */
  packs: PackInfo[];
}

/** Bounds of a merged manifest. */
export interface ManifestBounds {
  /** Entries unused for this many sessions drop out. @default {8} */
  maxIdleSessions?: number;
  /** At most this many entries. @default {50000} */
  maxEntries?: number;
  /** At most this many output bytes. @default {2 GiB} */
  maxBytes?: number;
}

/** What one session used: in the order it first asked. */
export interface SessionEntry {
  actionId: string;
  outputId: string;
  size: number;
  nanos: bigint;
}

/**
 * The manifest key of a warm key, relative to the prefix (version 2, zstd).
 *
 * @param keyHash {@linkcode warmKeyHash} of the warm key.
 * @returns `warm/<keyHash>/manifest.v2.json.zst`.
 */
export function manifestKey(keyHash: string): string {
  return `warm/${keyHash}/manifest.v2.json.zst`;
}

/**
 * The key earlier versions wrote their manifest under (version 1, gzip): read when there is no
 * {@linkcode manifestKey}, never written.
 *
 * @param keyHash {@linkcode warmKeyHash} of the warm key.
 * @returns `warm/<keyHash>/manifest.json.gz`.
 */
export function legacyManifestKey(keyHash: string): string {
  return `warm/${keyHash}/manifest.json.gz`;
}

/**
 * The key of a pack, relative to the prefix.
 *
 * @param keyHash {@linkcode warmKeyHash} of the warm key.
 * @param pack The pack (its name, and whether it is compressed).
 * @returns `warm/<keyHash>/packs/<name>.pack.zst`, or `….pack` for a raw one.
 */
export function packKey(keyHash: string, pack: PackInfo): string {
  return `warm/${keyHash}/packs/${pack.name}.pack${pack.raw !== undefined ? ".zst" : ""}`;
}

/**
 * A warm key's short hash: the first 16 hex digits of its SHA-256.
 *
 * @param key The warm key.
 * @returns The hash, as in `warm/<hash>/`.
 */
export async function warmKeyHash(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return new Uint8Array(digest).toHex().slice(0, 16);
}

/**
 * Merges what a session used into the manifest before it: the session's entries first, in the
 * order it asked (stamped `seen = session`, keeping the pack place of an unchanged output), then
 * the older entries still within `maxIdleSessions`, newest use first; cut at the caps.
 *
 * @param previous The manifest before this session (or none).
 * @param used What this session served or stored.
 * @param options This session's number and the bounds.
 * @returns The entries of the new manifest.
 */
export function mergeEntries(
  previous: readonly WarmEntry[],
  used: Iterable<SessionEntry>,
  options: ManifestBounds & { session: number },
): WarmEntry[] {
  const maxIdle = options.maxIdleSessions ?? 8;
  const maxEntries = options.maxEntries ?? 50_000;
  const maxBytes = options.maxBytes ?? 2 ** 31;
  const before = new Map(previous.map((entry) => [entry.actionId, entry]));
  const merged: WarmEntry[] = [];
  const taken = new Set<string>();
  let bytes = 0;
  const add = (entry: WarmEntry) => {
    if (taken.has(entry.actionId) || merged.length >= maxEntries) return;
    if (bytes + entry.size > maxBytes) return;
    taken.add(entry.actionId);
    bytes += entry.size;
    merged.push(entry);
  };
  for (const entry of used) {
    const old = before.get(entry.actionId);
    const place = old && old.outputId === entry.outputId && old.pack
      ? { pack: old.pack, offset: old.offset }
      : {};
    add({ ...entry, seen: options.session, ...place });
  }
  const older = [...previous].sort((a, b) => b.seen - a.seen); // stable: keeps their order
  for (const entry of older) {
    if (options.session - entry.seen < maxIdle) add(entry);
  }
  return merged;
}

/**
 * Joins two manifests of one key (the bucket's and this machine's copy): the one with more
 * sessions first, each entry once with the later `seen`.
 *
 * @param a One manifest.
 * @param b The other.
 * @returns The union.
 */
export function unionManifests(
  a: WarmManifest | undefined,
  b: WarmManifest | undefined,
): WarmManifest | undefined {
  if (!a || !b) return a ?? b;
  const [first, second] = a.session >= b.session ? [a, b] : [b, a];
  const byAction = new Map<string, WarmEntry>();
  for (const entry of [...first.entries, ...second.entries]) {
    const known = byAction.get(entry.actionId);
    if (!known) byAction.set(entry.actionId, entry);
    else if (entry.seen > known.seen) {
      const place = known.pack && !entry.pack ? { pack: known.pack, offset: known.offset } : {};
      byAction.set(entry.actionId, { ...entry, ...place });
    }
  }
  const packs = new Map([...second.packs, ...first.packs].map((p) => [p.name, p]));
  return {
    version: Math.min(first.version ?? 2, second.version ?? 2),
    key: first.key,
    session: first.session,
    entries: [...byAction.values()],
    packs: [...packs.values()],
  };
}

/**
 * Encodes a manifest as zstd-compressed JSON (version 2).
 *
 * @param manifest The manifest.
 * @returns The object's bytes.
 */
export async function encodeManifest(manifest: WarmManifest): Promise<Uint8Array> {
  const json = JSON.stringify({
    version: 2,
    key: manifest.key,
    session: manifest.session,
    written: new Date().toISOString(),
    packs: manifest.packs.map((p) =>
      p.raw !== undefined
        ? { name: p.name, size: p.size, encoding: "zstd", raw: p.raw }
        : { name: p.name, size: p.size }
    ),
    entries: manifest.entries.map((e) => ({
      action: e.actionId,
      output: e.outputId,
      size: e.size,
      time: String(e.nanos),
      seen: e.seen,
      ...(e.pack !== undefined ? { pack: e.pack, offset: e.offset } : {}),
    })),
  });
  return await zstdCompress(new TextEncoder().encode(json));
}

/**
 * What a manifest read from the bucket may hold: each number is checked before it is used, and
 * a manifest past any of these is skipped whole (one log line; it costs only misses).
 */
export interface ManifestLimits {
  /** Bytes of the compressed object. @default {16 MiB} */
  maxObjectBytes: number;
  /** Bytes of its JSON once decompressed. @default {32 MiB} */
  maxJsonBytes: number;
  /** Nesting of arrays and objects in its JSON (a manifest needs 3). @default {16} */
  maxDepth: number;
  /** Entries (as many as a written manifest keeps). @default {50000} */
  maxEntries: number;
  /** Packs. @default {1024} */
  maxPacks: number;
  /** Size of one entry's output (go's largest put). @default {1 GiB} */
  maxEntrySize: number;
  /**
   * Size of one pack, stored and decompressed: at most what the warm-up holds in memory.
   * @default {32 MiB}
   */
  maxPackSize: number;
  /** All the entries' sizes together (what a written manifest keeps). @default {2 GiB} */
  maxTotalBytes: number;
  /** Sessions. @default {2^31 - 1} */
  maxSession: number;
}

/** The default {@linkcode ManifestLimits}. */
export const MANIFEST_LIMITS: Readonly<ManifestLimits> = Object.freeze({
  maxObjectBytes: 16 << 20,
  maxJsonBytes: 32 << 20,
  maxDepth: 16,
  maxEntries: 50_000,
  maxPacks: 1024,
  maxEntrySize: MAX_OUTPUT_SIZE,
  maxPackSize: 32 << 20,
  maxTotalBytes: 2 ** 31,
  maxSession: 2 ** 31 - 1,
});

/** A manifest read, or why it was skipped (one line). */
export type ManifestRead = { manifest: WarmManifest; problem?: undefined } | {
  manifest?: undefined;
  problem: string;
};

/**
 * Reads a manifest object from the bucket, bounded (see {@linkcode ManifestLimits}): its body is
 * streamed through zstd or gunzip (by its first bytes) and abandoned past a bound whatever its
 * declared size says; its numbers are checked, its times and `seen` values clamped; malformed
 * entries are left out.
 *
 * @param body The object's body (zstd- or gzip-compressed JSON); read to its end or cancelled.
 * @param size Its declared size.
 * @param limits The bounds. @default {@linkcode MANIFEST_LIMITS}
 * @returns The manifest, or the problem that made it skipped.
 */
export async function readManifest(
  body: ReadableStream<Uint8Array>,
  size: number,
  limits: Partial<ManifestLimits> = {},
): Promise<ManifestRead> {
  const bounds = { ...MANIFEST_LIMITS, ...limits };
  if (!(size <= bounds.maxObjectBytes)) {
    await body.cancel().catch(() => {});
    return { problem: `its size of ${size} bytes is above the cap of ${bounds.maxObjectBytes}` };
  }
  let raw: unknown;
  try {
    const { head, stream } = await peek(body);
    raw = await readGzipJson(
      stream,
      {
        maxInputBytes: bounds.maxObjectBytes,
        maxOutputBytes: bounds.maxJsonBytes,
        maxDepth: bounds.maxDepth,
      },
      isZstd(head)
        ? (compressed) =>
          zstdDecompressed(compressed, {
            maxInputBytes: bounds.maxObjectBytes,
            maxOutputBytes: bounds.maxJsonBytes,
          })
        : undefined,
    );
  } catch (error) {
    return {
      problem: error instanceof BoundError
        ? error.message
        : `not zstd- or gzip-compressed JSON (${error instanceof Error ? error.message : error})`,
    };
  }
  return await checkManifest(raw, bounds);
}

/**
 * Decodes a manifest held in memory, as {@linkcode readManifest} does; malformed entries are
 * left out.
 *
 * @param bytes The object's bytes (gzip-compressed JSON).
 * @param limits The bounds. @default {@linkcode MANIFEST_LIMITS}
 * @returns The manifest, or `undefined` when it is not one or breaks a bound.
 */
export async function decodeManifest(
  bytes: Uint8Array,
  limits: Partial<ManifestLimits> = {},
): Promise<WarmManifest | undefined> {
  return (await readManifest(ReadableStream.from([bytes]), bytes.length, limits)).manifest;
}

/** The first chunk of a body (to tell its format), and the whole body again. */
async function peek(
  body: ReadableStream<Uint8Array>,
): Promise<{ head: Uint8Array; stream: ReadableStream<Uint8Array> }> {
  const reader = body.getReader();
  const first = await reader.read();
  const head = first.done ? new Uint8Array(0) : first.value;
  let sent = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sent) {
        sent = true;
        if (head.length > 0) return controller.enqueue(head);
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return { head, stream };
}

/** The checks of {@linkcode readManifest} on parsed JSON. */
async function checkManifest(raw: unknown, limits: ManifestLimits): Promise<ManifestRead> {
  if (typeof raw !== "object" || raw === null) return { problem: "not a JSON object" };
  const object = raw as Record<string, unknown>;
  if (object.version !== 1 && object.version !== 2) {
    return { problem: `version ${JSON.stringify(object.version)}` };
  }
  if (!Array.isArray(object.entries)) return { problem: "no entries" };
  const session = object.session ?? 0;
  if (!Number.isSafeInteger(session) || (session as number) < 0) {
    return { problem: `session ${JSON.stringify(session)} is not a count` };
  }
  if ((session as number) > limits.maxSession) {
    return { problem: `session ${session} is above the cap of ${limits.maxSession}` };
  }
  const rawPacks = Array.isArray(object.packs) ? object.packs : [];
  if (rawPacks.length > limits.maxPacks) {
    return { problem: `${rawPacks.length} packs, above the cap of ${limits.maxPacks}` };
  }
  if (object.entries.length > limits.maxEntries) {
    return {
      problem: `${object.entries.length} entries, above the cap of ${limits.maxEntries}`,
    };
  }
  const packs = new Map<string, PackInfo>();
  for (const p of rawPacks) {
    if (typeof p?.name !== "string" || !HEX_ID.test(p.name) || packs.has(p.name)) continue;
    if (!Number.isSafeInteger(p.size) || p.size <= 0 || p.size > limits.maxPackSize) {
      return {
        problem: `pack ${p.name.slice(0, 12)} has size ${JSON.stringify(p.size)}, outside ` +
          `1..${limits.maxPackSize}`,
      };
    }
    if (p.encoding === undefined) {
      packs.set(p.name, { name: p.name, size: p.size });
      continue;
    }
    if (p.encoding !== "zstd") continue; // not known here: its entries are fetched one by one
    if (!Number.isSafeInteger(p.raw) || p.raw <= 0 || p.raw > limits.maxPackSize) {
      return {
        problem: `pack ${p.name.slice(0, 12)} holds ${JSON.stringify(p.raw)} bytes, outside ` +
          `1..${limits.maxPackSize}`,
      };
    }
    packs.set(p.name, { name: p.name, size: p.size, raw: p.raw });
  }
  const context: EntryContext = {
    packs,
    limits,
    session: session as number,
    nowNanos: BigInt(Date.now()) * 1_000_000n,
  };
  const entries: WarmEntry[] = [];
  const seen = new Set<string>();
  let total = 0;
  const pacer = new TurnPacer();
  for (const [index, e] of object.entries.entries()) {
    if (index % 256 === 0) await pacer.pace();
    const entry = decodeEntry(e, context);
    if (typeof entry === "string") return { problem: `entry ${index} ${entry}` };
    if (!entry || seen.has(entry.actionId)) continue;
    seen.add(entry.actionId);
    total += entry.size;
    if (total > limits.maxTotalBytes) {
      return { problem: `its entries hold more than the cap of ${limits.maxTotalBytes} bytes` };
    }
    entries.push(entry);
  }
  return {
    manifest: {
      version: object.version as number,
      key: typeof object.key === "string" ? object.key : "",
      session: session as number,
      entries,
      packs: [...packs.values()],
    },
  };
}

interface EntryContext {
  packs: Map<string, PackInfo>;
  limits: ManifestLimits;
  session: number;
  nowNanos: bigint;
}

/**
 * One entry: `undefined` when malformed (left out), a problem when it breaks a bound (the
 * manifest is skipped). A put time in the future is read as now, before 1970 as 1970; a `seen`
 * past the manifest's session, or not a count, as 0 (never used: it ages out).
 */
function decodeEntry(e: unknown, context: EntryContext): WarmEntry | string | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const { action, output, size, time, seen, pack, offset } = e as Record<string, unknown>;
  if (typeof action !== "string" || !HEX_ID.test(action)) return undefined;
  if (typeof output !== "string" || !HEX_ID.test(output)) return undefined;
  if (!Number.isSafeInteger(size) || (size as number) < 0) return undefined;
  if (typeof time !== "string" || !/^-?\d{1,19}$/.test(time)) return undefined;
  const { limits } = context;
  if ((size as number) > limits.maxEntrySize) {
    return `has size ${size}, above the cap of ${limits.maxEntrySize}`;
  }
  let nanos = BigInt(time);
  if (nanos > context.nowNanos) nanos = context.nowNanos;
  if (nanos < 0n) nanos = 0n;
  const used = Number.isSafeInteger(seen) && (seen as number) >= 0 &&
      (seen as number) <= context.session
    ? seen as number
    : 0;
  const entry: WarmEntry = {
    actionId: action,
    outputId: output,
    size: size as number,
    nanos,
    seen: used,
  };
  const info = typeof pack === "string" ? context.packs.get(pack) : undefined;
  if (info && Number.isSafeInteger(offset) && (offset as number) >= 0) {
    if ((offset as number) + entry.size > packBytes(info)) {
      return `lies at ${offset}+${entry.size}, outside pack ${info.name.slice(0, 12)} of ` +
        `${packBytes(info)} bytes`;
    }
    entry.pack = info.name;
    entry.offset = offset as number;
  }
  return entry;
}
