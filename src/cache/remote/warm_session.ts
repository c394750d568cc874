/**
 * The other half of the warm-up (`warm.ts`): a {@linkcode WarmSession} records the entries a
 * session served or stored, in the order go first asked for them, and at the session's end
 * writes the warm key's manifest (`manifest.ts`): this session's entries merged with the
 * manifest before it, bounded, with its small outputs in packs (`packs.ts`).
 *
 * The merge base is the bucket's manifest as the warm-up fetched it (never fetched twice), joined
 * with this machine's copy of the last manifest it wrote,
 * `<cache-dir>/warm/<keyHash>.<scopeHash>.v2.json.zst` (per endpoint, bucket and prefix, so jobs of
 * other trust tiers sharing the directory never see it), which is written before the bucket's. So go commands run one after another on one machine
 * (`go build`, `go vet`, `go test`) end with one manifest covering all of them, even when the
 * next command started before the last one's upload finished. Two jobs writing the same key at
 * once: the last writer wins, and the other job's new entries wait for its next run.
 *
 * A manifest stays within its trust tier: a plain local hit (which any job sharing the directory
 * may have put there) is written only when a manifest of this tier already names it with the same
 * output, and packs the own prefix does not hold are dropped with their entries before a manifest
 * is written again (which repairs one an earlier version spoilt).
 *
 * @module
 */

import { WARM_DIR } from "../dir_layout.ts";
import type { LocalCache } from "../local.ts";
import type { Logger } from "../../log/mod.ts";
import type { ObjectStore } from "../../store/mod.ts";
import { hashingReady, sha256 } from "../../store/mod.ts";
import {
  encodeManifest,
  MANIFEST_LIMITS,
  type ManifestBounds,
  manifestKey,
  mergeEntries,
  type PackInfo,
  packKey,
  readManifest,
  type SessionEntry,
  unionManifests,
  type WarmEntry,
  type WarmManifest,
} from "./manifest.ts";
import { buildPacks, type PackPolicy, planPacks } from "./packs.ts";
import type { WarmMetrics } from "./warm.ts";
import type { CircuitBreaker } from "../../store/mod.ts";
import { atomicWrite, readFullSync } from "../../util/files.ts";

/** Options for {@linkcode WarmSession}. */
export interface WarmSessionOptions {
  /** The warm key as given. */
  key: string;
  /** Its hash (`warm/<keyHash>/`). */
  keyHash: string;
  /**
   * Where the manifest goes (bucket and own prefix): this machine's copy is kept per scope, so
   * jobs of other trust tiers sharing the cache directory never see each other's copies.
   * @default ""
   */
  scope?: string;
  /** Bounds of the manifest. @default see {@linkcode ManifestBounds} */
  bounds?: ManifestBounds;
  /** Packing policy. @default see {@linkcode PackPolicy} */
  packs?: PackPolicy;
  /** Problems and what was written (info). @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: WarmMetrics;
  /**
   * The S3 tier's breaker: no manifest is written while it is open (a dead or crawling bucket
   * must not keep the process alive past go), and one that opens cuts the write short.
   */
  breaker?: CircuitBreaker;
}

/** What a session used, and the writer of its manifest. */
export class WarmSession {
  readonly #local: LocalCache;
  readonly #store: ObjectStore;
  readonly #options: WarmSessionOptions;
  readonly #used = new Map<string, SessionEntry>();
  /** Entries used as local hits only: written only when a manifest of this scope had them. */
  readonly #unvouched = new Set<string>();
  #changed = false;
  #session?: number;
  #writing?: Promise<void>;

  /**
   * @param local The local tier (the outputs packed, and the manifest's local copy).
   * @param store The own prefix, where the manifest and packs go.
   * @param options Key, bounds, packing, logging and metrics.
   */
  constructor(local: LocalCache, store: ObjectStore, options: WarmSessionOptions) {
    this.#local = local;
    this.#store = store;
    this.#options = options;
  }

  /** Whether something was recorded since the last write. */
  get changed(): boolean {
    return this.#changed;
  }

  /** The entries recorded, in the order first used. */
  get used(): readonly SessionEntry[] {
    return [...this.#used.values()];
  }

  /**
   * Records an entry this session served or stored (the first use keeps its place; a later put
   * of the same action takes the new output).
   *
   * @param entry The entry.
   * @param options `local`: a plain local hit, which anyone sharing the cache directory may
   * have put there (another trust tier's job): written only when this scope's manifest (the
   * bucket's or this machine's copy) already vouches for it. Served from the bucket, filled by
   * the warm-up or stored by this session, an entry is vouched for.
   */
  record(entry: SessionEntry, options: { local?: boolean } = {}): void {
    const known = this.#used.get(entry.actionId);
    if (known && known.outputId === entry.outputId) {
      if (!options.local) this.#unvouched.delete(entry.actionId);
      return;
    }
    const max = this.#options.bounds?.maxEntries ?? 50_000;
    if (!known && this.#used.size >= max) return;
    this.#used.set(entry.actionId, entry);
    if (options.local) this.#unvouched.add(entry.actionId);
    else this.#unvouched.delete(entry.actionId);
    this.#changed = true;
  }

  /** The path of this machine's copy of the manifest (per warm key and scope). */
  get localCopy(): string {
    const scope = sha256().update(this.#options.scope ?? "").digest("hex");
    return `${this.#local.root}/${WARM_DIR}/${this.#options.keyHash}.${
      scope.slice(0, 16)
    }.v2.json.zst`;
  }

  /**
   * Writes the manifest: merged with `base` and this machine's copy, its packs first, then the
   * manifest itself. Nothing when nothing was recorded since the last write. Never rejects:
   * failures are logged and counted (`warm_manifest_errors`).
   *
   * @param base The bucket's manifest the warm-up found, and whether under the own prefix (only
   * then are its packs reused).
   * @param signal Ends the write (a deadline).
   */
  write(base: WarmBase, signal: AbortSignal): Promise<void> {
    if (!this.#changed) return this.#writing ?? Promise.resolve();
    const breaker = this.#options.breaker;
    if (breaker?.paused) {
      // Kept as changed: a server writes it once the bucket is back.
      this.#options.metrics?.add("warm_manifest_skipped");
      this.#options.log?.info("warm-up manifest not written: the remote tier is paused");
      return this.#writing ?? Promise.resolve();
    }
    this.#changed = false;
    const previous = this.#writing ?? Promise.resolve();
    // Cut short when the breaker opens; the writes are not evidence about the bucket.
    const write = (cut: AbortSignal) => this.#write(base, cut);
    const guarded = () =>
      breaker
        ? breaker.call(write, { signal, evidence: () => "nothing", judge: () => "nothing" })
        : write(signal);
    this.#writing = previous.then(guarded).catch((error) => {
      this.#options.metrics?.add("warm_manifest_errors");
      this.#options.log?.info(
        `Cannot write the warm-up manifest: ${error instanceof Error ? error.message : error}`,
      );
    });
    return this.#writing;
  }

  async #write(base: WarmBase, signal: AbortSignal) {
    await hashingReady();
    const { keyHash, metrics } = this.#options;
    const mine = await this.#readLocalCopy();
    if (!base.manifest && base.load && (!mine || this.#addsTo(mine, this.#vouched(mine)))) {
      base = await base.load(); // a write is likely: the bucket's manifest is its merge base
    }
    const remote = base.manifest && !base.fromOwn ? withoutPacks(base.manifest) : base.manifest;
    let union = unionManifests(remote, mine);
    this.#session ??= (union?.session ?? 0) + 1;
    const used = this.#vouched(union);
    let entries = mergeEntries(union?.entries ?? [], used, {
      ...this.#options.bounds,
      session: this.#session,
    });
    let plan = planPacks(entries, union?.packs ?? [], this.#options.packs);
    if (!union && entries.length === 0) return; // nothing this session can vouch for
    if (union && !this.#addsTo(union, used) && plan.toPack.length === 0) {
      // A warm machine re-running what it ran before: the manifest would say the same again.
      metrics?.add("warm_manifest_skipped");
      return;
    }
    if (union && plan.keep.length > 0) {
      // Packs are named by their hash, not by prefix: one the own prefix does not hold (gone,
      // or named by a manifest an earlier version spoilt) is dropped with its entries.
      const repaired = await this.#withoutMissingPacks(union, plan.keep, base.packsSeen, signal);
      if (repaired !== union) {
        union = repaired;
        entries = mergeEntries(union.entries, this.#vouched(union), {
          ...this.#options.bounds,
          session: this.#session,
        });
        plan = planPacks(entries, union.packs, this.#options.packs);
      }
    }
    const manifest: WarmManifest = {
      key: this.#options.key,
      session: this.#session,
      entries: plan.entries,
      packs: plan.keep,
    };
    // First this machine's copy, for the next go command; then the bucket's.
    await this.#writeLocalCopy(manifest);
    // One pack in memory at a time: built, uploaded, dropped.
    const packs = buildPacks(plan.toPack, (entry, target) => this.#readOutput(entry, target), {
      ...this.#options.packs,
    });
    const placed = new Map<string, { pack: string; offset: number }>();
    let newPacks = 0;
    for await (const pack of packs) {
      signal.throwIfAborted();
      try {
        await this.#store.put(packKey(keyHash, pack.info), pack.bytes, {
          size: pack.bytes.length,
          signal,
        });
      } catch (error) {
        this.#options.log?.info(
          `Cannot upload warm-up pack ${pack.info.name.slice(0, 12)}: ${
            error instanceof Error ? error.message : error
          }`,
        );
        continue;
      }
      newPacks++;
      metrics?.add("warm_packs_written");
      metrics?.add("s3_bytes_up", pack.bytes.length);
      manifest.packs.push(pack.info);
      for (const [actionId, offset] of pack.offsets) {
        placed.set(actionId, { pack: pack.info.name, offset });
      }
    }
    manifest.entries = manifest.entries.map((e) => {
      const place = placed.get(e.actionId);
      return place ? { ...e, ...place } : e;
    });
    const bytes = await encodeManifest(manifest);
    await this.#store.put(manifestKey(keyHash), bytes, { size: bytes.length, signal });
    metrics?.add("warm_manifest_writes");
    metrics?.set("warm_manifest_entries", manifest.entries.length);
    metrics?.add("s3_bytes_up", bytes.length);
    if (placed.size > 0) await this.#writeLocalCopy(manifest, bytes);
    this.#options.log?.info(
      `warm-up manifest written: ${manifest.entries.length} entries, ` +
        `${manifest.packs.length} packs (${newPacks} new), session ${manifest.session}`,
    );
  }

  /**
   * The entries this session may write: all it used, but a plain local hit only when the
   * manifest of this scope names it with the same output (counted in `warm_unvouched`).
   */
  #vouched(manifest: WarmManifest | undefined): SessionEntry[] {
    const known = new Map(manifest?.entries.map((e) => [e.actionId, e.outputId]));
    const entries: SessionEntry[] = [];
    let dropped = 0;
    for (const entry of this.#used.values()) {
      if (this.#unvouched.has(entry.actionId) && known.get(entry.actionId) !== entry.outputId) {
        dropped++;
        continue;
      }
      entries.push(entry);
    }
    this.#options.metrics?.set("warm_unvouched", dropped);
    return entries;
  }

  /**
   * The manifest without the packs the own prefix does not hold (those the warm-up found
   * missing, and any it did not fetch that a HEAD finds missing), and without their entries.
   * The same manifest when none is missing.
   */
  async #withoutMissingPacks(
    manifest: WarmManifest,
    keep: readonly PackInfo[],
    seen: ReadonlyMap<string, boolean> | undefined,
    signal: AbortSignal,
  ): Promise<WarmManifest> {
    const missing = new Set<string>();
    const unknown = keep.filter((p) => {
      const known = seen?.get(p.name);
      if (known === false) missing.add(p.name);
      return known === undefined;
    }).slice(0, MANIFEST_LIMITS.maxPacks);
    let next = 0;
    const check = async () => {
      while (next < unknown.length) {
        const pack = unknown[next++]!;
        signal.throwIfAborted();
        const there = await this.#store.has(packKey(this.#options.keyHash, pack), { signal });
        if (!there) missing.add(pack.name);
      }
    };
    await Promise.all(Array.from({ length: PACK_CHECKS }, check));
    if (missing.size === 0) return manifest;
    const entries = manifest.entries.filter((e) => !e.pack || !missing.has(e.pack));
    this.#options.metrics?.add("warm_packs_missing", missing.size);
    this.#options.log?.info(
      `warm-up manifest: dropping ${missing.size} packs the own prefix does not hold, and ` +
        `their ${manifest.entries.length - entries.length} entries`,
    );
    return { ...manifest, entries, packs: manifest.packs.filter((p) => !missing.has(p.name)) };
  }

  /**
   * Whether this session used something the manifest lacks: an entry it does not name, another
   * output, or one it has not seen used for half the idle bound (refreshed so it does not age
   * out while still in use).
   */
  #addsTo(manifest: WarmManifest, used: readonly SessionEntry[]): boolean {
    const known = new Map(manifest.entries.map((e) => [e.actionId, e]));
    const refresh = Math.ceil((this.#options.bounds?.maxIdleSessions ?? 8) / 2);
    for (const entry of used) {
      const before = known.get(entry.actionId);
      if (!before || before.outputId !== entry.outputId) return true;
      if (manifest.session - before.seen >= refresh) return true;
    }
    return false;
  }

  /** Reads an output's bytes into `target` (its exact size); false when gone or resized. */
  #readOutput(entry: WarmEntry, target: Uint8Array): boolean {
    try {
      using file = Deno.openSync(this.#local.outputPath(entry.outputId));
      return file.statSync().size === target.length && readFullSync(file, target);
    } catch {
      return false;
    }
  }

  /** This machine's copy, read with the bucket's bounds (anyone sharing the directory wrote). */
  async #readLocalCopy(): Promise<WarmManifest | undefined> {
    await hashingReady();
    try {
      const file = await Deno.open(this.localCopy);
      const { size } = await file.stat();
      const read = await readManifest(file.readable, size);
      if (read.problem) this.#options.log?.info(`ignoring ${this.localCopy}: ${read.problem}`);
      return read.manifest;
    } catch {
      return undefined;
    }
  }

  async #writeLocalCopy(manifest: WarmManifest, encoded?: Uint8Array): Promise<void> {
    await hashingReady();
    try {
      const bytes = encoded ?? await encodeManifest(manifest);
      await atomicWrite(this.localCopy, bytes);
    } catch {
      // A directory that takes no writes: the bucket's copy still counts.
    }
  }
}

/** What the warm-up found: the merge base of a {@linkcode WarmSession.write}. */
export interface WarmBase {
  /** The bucket's manifest, if one was found. */
  manifest?: WarmManifest;
  /** Whether it came from the own prefix (only then are its packs kept). */
  fromOwn: boolean;
  /** Packs the warm-up fetched (true) or found missing (false) under the own prefix. */
  packsSeen?: ReadonlyMap<string, boolean>;
  /**
   * Fetches the bucket's manifest when none was fetched (the warm-up never started): called only
   * when this machine's copy cannot decide alone, so a warm machine re-running its build makes
   * no request for it. @default no manifest beyond the one given
   */
  load?: () => Promise<WarmBase>;
}

/** Pack HEADs at once when a manifest is checked before it is written again. */
const PACK_CHECKS = 8;

function withoutPacks(manifest: WarmManifest): WarmManifest {
  return {
    ...manifest,
    packs: [],
    entries: manifest.entries.map(({ pack: _p, offset: _o, ...entry }) => entry),
  };
}
