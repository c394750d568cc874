/**
 * The checksum-database guard: what the proxy does with the go.sum hashes it learns from the
 * sumdb lookups that pass through it. A `.mod` or `.zip` fetched after such a lookup is refused
 * when its `h1:` hash contradicts it, and a fresh lookup re-hashes the files of that version that
 * are already cached locally and evicts those that do not match. The hashing itself is in
 * `_verify.ts`.
 *
 * The lookup's signature is not checked here (the go command does): a forged lookup can only make
 * the proxy refuse or evict files, never serve different ones.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { errorMessage } from "../util/mod.ts";
import {
  checkModuleZip,
  hashGoMod,
  hashZip,
  parseLookup,
  type RecordHashes,
  VerifyError,
} from "./_verify.ts";
import { escapeString } from "./paths.ts";
import type { ModuleStore } from "./store.ts";
import { lookupKey } from "./sumdb.ts";

/** At most this many "already matched" stamps are remembered; the map is cleared when full. */
const VERIFIED_MAX = 10_000;

/** Options for {@linkcode ChecksumGuard}. */
export interface ChecksumGuardOptions {
  /** The allow-listed checksum databases, in the order their lookups are consulted. */
  sumdbNames: readonly string[];
  /** Counters `modproxy_verify_failures`, `modproxy_evictions`. @default {undefined} */
  metrics?: Metrics;
  /** Where evictions are logged. */
  log: Logger;
}

/** Checks module files against the checksum-database lookups cached in the store. */
export class ChecksumGuard {
  readonly #store: ModuleStore;
  readonly #names: readonly string[];
  readonly #metrics?: Metrics;
  readonly #log: Logger;
  /** Cached files already matched against a lookup: key → `size:mtime:hash`. */
  readonly #verified = new Map<string, string>();

  /**
   * @param store The store holding both the module files and the cached lookups.
   * @param options The database names, metrics and logger.
   */
  constructor(store: ModuleStore, options: ChecksumGuardOptions) {
    this.#store = store;
    this.#names = options.sumdbNames;
    this.#metrics = options.metrics;
    this.#log = options.log;
  }

  /**
   * Checks a downloaded or cached `.mod`/`.zip` against the hashes learned from checksum
   * database lookups that passed through this proxy (and the zip's structure).
   *
   * @param module The decoded module path.
   * @param version The version.
   * @param kind Which file.
   * @param path The complete file on disk (a temp file before it is cached).
   * @throws {VerifyError} When its hash contradicts a cached lookup.
   * @throws {SyntaxError} When a zip is structurally unusable.
   */
  async verify(module: string, version: string, kind: "mod" | "zip", path: string): Promise<void> {
    if (kind === "zip") await checkModuleZip(path, `${module}@${version}/`);
    const known = await this.#knownHashes(module, version);
    const want = known[kind];
    if (!want) return;
    const got = kind === "zip" ? await hashZip(path) : hashGoMod(await Deno.readFile(path));
    if (got !== want) {
      this.#metrics?.add("modproxy_verify_failures");
      throw new VerifyError(
        `Checksum mismatch for ${module}@${version} ${kind}: upstream has ${got}, ` +
          `checksum database has ${want}`,
      );
    }
  }

  async #knownHashes(module: string, version: string): Promise<RecordHashes> {
    for (const name of this.#names) {
      const bytes = await this.#store.readLocal(lookupKey(name, module, version));
      if (!bytes) continue;
      const hashes = parseLookup(new TextDecoder().decode(bytes), module, version);
      if (hashes.zip || hashes.mod) return hashes;
    }
    return {};
  }

  /**
   * After a fresh lookup: drops the locally cached `.mod`/`.zip` of that version that do not
   * match it. Files already matched (same size, mtime and expected hash) are not hashed again.
   *
   * @param module The decoded module path.
   * @param version The version.
   * @param body The lookup body just stored.
   */
  async checkCached(module: string, version: string, body: Uint8Array): Promise<void> {
    const hashes = parseLookup(new TextDecoder().decode(body), module, version);
    const base = `${escapeString(module)}/@v/${escapeString(version)}`;
    for (const kind of ["mod", "zip"] as const) {
      const want = hashes[kind];
      const key = `${base}.${kind}`;
      if (!want) continue;
      const path = this.#store.localPath(key);
      const stamp = await Deno.stat(path).then((i) => `${i.size}:${i.mtime?.getTime()}`, () => "");
      if (stamp === "") continue;
      if (this.#verified.get(key) === `${stamp}:${want}`) continue;
      let got: string;
      try {
        got = kind === "zip" ? await hashZip(path) : hashGoMod(await Deno.readFile(path));
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) continue;
        got = `unreadable (${errorMessage(error)})`;
      }
      if (got === want) {
        if (this.#verified.size >= VERIFIED_MAX) this.#verified.clear();
        this.#verified.set(key, `${stamp}:${want}`);
        continue;
      }
      await this.#store.removeLocal(key);
      this.#metrics?.add("modproxy_verify_failures");
      this.#metrics?.add("modproxy_evictions");
      this.#log.warn(
        `Evicted ${
          JSON.stringify(key)
        }: cached ${got} does not match the checksum database ${want}`,
      );
    }
  }
}
