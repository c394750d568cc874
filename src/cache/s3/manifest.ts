/**
 * Working-set manifests: what the sessions of one warm key used, so a fresh machine can fetch it
 * in a few requests before go asks (see `warm.ts`). A manifest is a gzip-compressed JSON object
 * under `[prefix/]warm/<keyHash>/manifest.json.gz`, beside its packs (`packs.ts`); tailscale's
 * plugin never reads these keys. Every entry is also in the bucket's ordinary layout
 * (`action/…`, `output/…`), so a manifest only saves requests: it never holds the only copy.
 *
 * ## Manifest format
 *
 * ```json
 * {
 *   "version": 1,
 *   "key": "dir:/home/runner/work/app",
 *   "session": 12,
 *   "written": "2025-01-02T03:04:05.678Z",
 *   "packs": [{ "name": "<sha256 hex of the pack>", "size": 8388000 }],
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
 * output's bytes also are (`size` bytes at `offset` of that pack); without them the output is
 * fetched from `output/<xx>/<id>`. Readers ignore fields they do not know and any malformed
 * entry.
 *
 * @module
 */

import { HEX_ID } from "./layout.ts";

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

/** A pack: one object holding many small outputs back to back. */
export interface PackInfo {
  /** SHA-256 hex of the pack's bytes; its key is `warm/<keyHash>/packs/<name>.pack`. */
  name: string;
  /** Bytes. */
  size: number;
}

/** A decoded manifest. */
export interface WarmManifest {
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
 * The manifest key of a warm key, relative to the prefix.
 *
 * @param keyHash {@linkcode warmKeyHash} of the warm key.
 * @returns `warm/<keyHash>/manifest.json.gz`.
 */
export function manifestKey(keyHash: string): string {
  return `warm/${keyHash}/manifest.json.gz`;
}

/**
 * The key of a pack, relative to the prefix.
 *
 * @param keyHash {@linkcode warmKeyHash} of the warm key.
 * @param name The pack's SHA-256 hex.
 * @returns `warm/<keyHash>/packs/<name>.pack`.
 */
export function packKey(keyHash: string, name: string): string {
  return `warm/${keyHash}/packs/${name}.pack`;
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
    key: first.key,
    session: first.session,
    entries: [...byAction.values()],
    packs: [...packs.values()],
  };
}

/**
 * Encodes a manifest as gzip-compressed JSON.
 *
 * @param manifest The manifest.
 * @returns The object's bytes.
 */
export async function encodeManifest(manifest: WarmManifest): Promise<Uint8Array> {
  const json = JSON.stringify({
    version: 1,
    key: manifest.key,
    session: manifest.session,
    written: new Date().toISOString(),
    packs: manifest.packs,
    entries: manifest.entries.map((e) => ({
      action: e.actionId,
      output: e.outputId,
      size: e.size,
      time: String(e.nanos),
      seen: e.seen,
      ...(e.pack !== undefined ? { pack: e.pack, offset: e.offset } : {}),
    })),
  });
  const stream = ReadableStream.from([new TextEncoder().encode(json)])
    .pipeThrough(new CompressionStream("gzip"));
  return await new Response(stream).bytes();
}

/**
 * Decodes a manifest; malformed entries (and packs) are left out.
 *
 * @param bytes The object's bytes (gzip-compressed JSON).
 * @returns The manifest, or `undefined` when it is not one.
 */
export async function decodeManifest(bytes: Uint8Array): Promise<WarmManifest | undefined> {
  let raw: unknown;
  try {
    const stream = ReadableStream.from([bytes]).pipeThrough(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    );
    raw = JSON.parse(await new Response(stream).text());
  } catch {
    return undefined;
  }
  if (typeof raw !== "object" || raw === null) return undefined;
  const object = raw as Record<string, unknown>;
  if (object.version !== 1 || !Array.isArray(object.entries)) return undefined;
  const packs: PackInfo[] = [];
  for (const p of Array.isArray(object.packs) ? object.packs : []) {
    if (typeof p?.name === "string" && HEX_ID.test(p.name) && Number.isSafeInteger(p.size)) {
      packs.push({ name: p.name, size: p.size });
    }
  }
  const packNames = new Set(packs.map((p) => p.name));
  const entries: WarmEntry[] = [];
  for (const e of object.entries as Record<string, unknown>[]) {
    const entry = decodeEntry(e, packNames);
    if (entry) entries.push(entry);
  }
  return {
    key: typeof object.key === "string" ? object.key : "",
    session: Number.isSafeInteger(object.session) ? object.session as number : 0,
    entries,
    packs,
  };
}

function decodeEntry(e: Record<string, unknown>, packs: Set<string>): WarmEntry | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const { action, output, size, time, seen, pack, offset } = e;
  if (typeof action !== "string" || !HEX_ID.test(action)) return undefined;
  if (typeof output !== "string" || !HEX_ID.test(output)) return undefined;
  if (!Number.isSafeInteger(size) || (size as number) < 0) return undefined;
  if (typeof time !== "string" || !/^-?\d{1,19}$/.test(time)) return undefined;
  const entry: WarmEntry = {
    actionId: action,
    outputId: output,
    size: size as number,
    nanos: BigInt(time),
    seen: Number.isSafeInteger(seen) ? seen as number : 0,
  };
  if (
    typeof pack === "string" && packs.has(pack) && Number.isSafeInteger(offset) &&
    (offset as number) >= 0
  ) {
    entry.pack = pack;
    entry.offset = offset as number;
  }
  return entry;
}
