/**
 * Cheap checks of files from upstream before they are cached: module zips (structure), `.info`
 * files (JSON with a valid `Version`), and the go.sum `h1:` hashes of zips and go.mod files
 * (x/mod `dirhash.Hash1`), read from disk one entry at a time. What the proxy does with the
 * hashes is in `_guard.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parseSemver } from "./paths.ts";

/** Largest module zip the go command accepts (500 MiB). */
export const MAX_ZIP = 500 << 20;
/** Largest go.mod the go command accepts (16 MiB). */
export const MAX_GO_MOD = 16 << 20;

/** A body failed verification against a checksum-database record. */
export class VerifyError extends Error {
  override name = "VerifyError";
}

/**
 * Checks an `.info` file from upstream: JSON whose `Version` is valid semver (and, for a
 * canonical version, that very version).
 *
 * @param path The file on disk.
 * @param version The version asked for, or `undefined` for a query (`@latest`, `master`, …).
 * @throws {SyntaxError} With a one-line reason when the file is unusable.
 */
export async function checkInfoFile(path: string, version: string | undefined): Promise<void> {
  let info: unknown;
  try {
    info = JSON.parse(await Deno.readTextFile(path));
  } catch (cause) {
    throw new SyntaxError("Bad info from upstream: not JSON", { cause });
  }
  const got = (info as { Version?: unknown } | null)?.Version;
  if (typeof got !== "string" || !parseSemver(got)) {
    throw new SyntaxError("Bad info from upstream: no valid Version");
  }
  if (version !== undefined && got !== version) {
    throw new SyntaxError(`Bad info from upstream: Version ${JSON.stringify(got)} for ${version}`);
  }
}

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

async function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = await file.read(buf.subarray(done));
    if (n === null) throw new RangeError(`Cannot read zip: unexpected end at ${offset + done}`);
    done += n;
  }
  return buf;
}

async function readEntries(file: Deno.FsFile, fileSize: number): Promise<ZipEntry[]> {
  const tailLen = Math.min(fileSize, 22 + 65535);
  const tail = await readAt(file, fileSize - tailLen, tailLen);
  const view = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new SyntaxError("Cannot read zip: no end of central directory");
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== 0x07064b50) {
      throw new SyntaxError("Cannot read zip: missing zip64 locator");
    }
    const at = Number(view.getBigUint64(loc + 8, true));
    const z = new DataView((await readAt(file, at, 56)).buffer);
    if (z.getUint32(0, true) !== 0x06064b50) {
      throw new SyntaxError("Cannot read zip: bad zip64 end record");
    }
    count = Number(z.getBigUint64(32, true));
    cdSize = Number(z.getBigUint64(40, true));
    cdOffset = Number(z.getBigUint64(48, true));
  }
  if (cdOffset + cdSize > fileSize || cdSize > 64 << 20) {
    throw new SyntaxError("Cannot read zip: bad central directory bounds");
  }
  const cd = await readAt(file, cdOffset, cdSize);
  const dv = new DataView(cd.buffer);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || dv.getUint32(p, true) !== 0x02014b50) {
      throw new SyntaxError("Cannot read zip: bad central directory entry");
    }
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    const entry: ZipEntry = {
      method: dv.getUint16(p + 10, true),
      compressedSize: dv.getUint32(p + 20, true),
      size: dv.getUint32(p + 24, true),
      localOffset: dv.getUint32(p + 42, true),
      name: decoder.decode(cd.subarray(p + 46, p + 46 + nameLen)),
    };
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = dv.getUint16(e, true);
      const len = dv.getUint16(e + 2, true);
      if (id === 0x0001) {
        let f = e + 4;
        if (entry.size === 0xffffffff) {
          entry.size = Number(dv.getBigUint64(f, true));
          f += 8;
        }
        if (entry.compressedSize === 0xffffffff) {
          entry.compressedSize = Number(dv.getBigUint64(f, true));
          f += 8;
        }
        if (entry.localOffset === 0xffffffff) entry.localOffset = Number(dv.getBigUint64(f, true));
      }
      e += 4 + len;
    }
    entries.push(entry);
    p = extraEnd + commentLen;
  }
  return entries;
}

/**
 * Checks a module zip's structure (x/mod zip rules the proxy can check cheaply): every entry
 * starts with `<module>@<version>/`, no two names fold to the same case, total size ≤ 500 MiB.
 *
 * @param path The zip on disk.
 * @param prefix `<module>@<version>/` with the real (decoded) path and version.
 * @throws {SyntaxError} With a one-line reason when the zip is unusable.
 */
export async function checkModuleZip(path: string, prefix: string): Promise<void> {
  using file = await Deno.open(path);
  const entries = await readEntries(file, (await file.stat()).size);
  const seen = new Set<string>();
  let total = 0;
  for (const entry of entries) {
    if (!entry.name.startsWith(prefix)) {
      throw new SyntaxError(`Bad module zip: entry ${JSON.stringify(entry.name)} outside prefix`);
    }
    const folded = entry.name.toLowerCase();
    if (seen.has(folded)) {
      throw new SyntaxError(`Bad module zip: duplicate entry ${JSON.stringify(entry.name)}`);
    }
    seen.add(folded);
    total += entry.size;
    if (total > MAX_ZIP) throw new SyntaxError("Bad module zip: uncompressed size too large");
  }
}

function h1(lines: string[]): string {
  return "h1:" + createHash("sha256").update(lines.join("")).digest("base64");
}

/**
 * The go.sum hash of a go.mod file (`path version/go.mod h1:…`).
 *
 * @param bytes The go.mod content.
 * @returns `h1:<base64>`.
 */
export function hashGoMod(bytes: Uint8Array): string {
  const sum = createHash("sha256").update(bytes).digest("hex");
  return h1([`${sum}  go.mod\n`]);
}

/**
 * The go.sum hash of a module zip on disk (x/mod `dirhash.HashZip`), inflating one entry at a
 * time.
 *
 * @param path The zip file.
 * @returns `h1:<base64>`.
 */
export async function hashZip(path: string): Promise<string> {
  using file = await Deno.open(path);
  const entries = await readEntries(file, (await file.stat()).size);
  const lines: string[] = [];
  for (const entry of entries) {
    if (entry.name.includes("\n")) throw new SyntaxError("Bad module zip: newline in entry name");
    const header = new DataView((await readAt(file, entry.localOffset, 30)).buffer);
    if (header.getUint32(0, true) !== 0x04034b50) {
      throw new SyntaxError(`Bad module zip: bad local header for ${JSON.stringify(entry.name)}`);
    }
    const start = entry.localOffset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
    const hash = createHash("sha256");
    // Deflated input in small slices: the decompressor expands each slice in one go (up to about
    // 1000×), so a bomb's 16 KiB slice is at most ~16 MiB in memory, never hundreds.
    const slice = entry.method === 8 ? 16 << 10 : 256 << 10;
    let raw: ReadableStream<Uint8Array> = rangeStream(file, start, entry.compressedSize, slice);
    if (entry.method === 8) {
      raw = raw.pipeThrough(
        new DecompressionStream("deflate-raw") as unknown as TransformStream<
          Uint8Array,
          Uint8Array
        >,
      );
    } else if (entry.method !== 0) {
      throw new SyntaxError(`Bad module zip: unsupported compression ${entry.method}`);
    }
    let inflated = 0;
    for await (const chunk of raw) {
      inflated += chunk.length;
      if (inflated > entry.size) {
        throw new SyntaxError(
          `Bad module zip: entry ${
            JSON.stringify(entry.name)
          } inflates past its ${entry.size} bytes`,
        );
      }
      hash.update(chunk);
    }
    lines.push(`${hash.digest("hex")}  ${entry.name}\n`);
  }
  lines.sort((a, b) => {
    const an = a.slice(66);
    const bn = b.slice(66);
    return an < bn ? -1 : an > bn ? 1 : 0;
  });
  return h1(lines);
}

function rangeStream(
  file: Deno.FsFile,
  start: number,
  length: number,
  slice: number,
): ReadableStream<Uint8Array> {
  let position = start;
  const end = start + length;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (position >= end) {
        controller.close();
        return;
      }
      const chunk = await readAt(file, position, Math.min(slice, end - position));
      position += chunk.length;
      controller.enqueue(chunk);
    },
  });
}

/** The hashes of one module version learned from a checksum-database record. */
export interface RecordHashes {
  /** `h1:` of the zip. */
  zip?: string;
  /** `h1:` of the go.mod. */
  mod?: string;
}

/**
 * Extracts the go.sum lines for `module version` from a sumdb `/lookup` body (record part only).
 *
 * @param body The lookup body: `<id>\n<go.sum lines>\n<signed note>`.
 * @param module The decoded module path.
 * @param version The version.
 * @returns The hashes found; empty when the body has none for this module.
 */
export function parseLookup(body: string, module: string, version: string): RecordHashes {
  const out: RecordHashes = {};
  const record = body.split("\n\n", 1)[0] ?? "";
  for (const line of record.split("\n").slice(1)) {
    const [path, v, hash] = line.split(" ");
    if (path !== module || !hash?.startsWith("h1:")) continue;
    if (v === version) out.zip = hash;
    else if (v === `${version}/go.mod`) out.mod = hash;
  }
  return out;
}
