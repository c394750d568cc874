/**
 * The warm-up: at the start of a session, in the background, the working-set manifest of the
 * warm key (`manifest.ts`) is fetched and the local tier filled from it: outputs in the order go
 * asked for them last time, a pack (`packs.ts`, zstd-compressed: decompressed bounded by the size
 * the manifest declares) at a time, with a concurrency of their own. Outputs no pack
 * holds come one by one from `output/…`. Action records come from the manifest itself (no GET per action), and one is written
 * locally only after its output is there and verified (SHA-256 equals the output id).
 *
 * go's gets come first: {@linkcode WarmUp.join} hands a get the fetch of its entry when one is
 * running (or done), and starts one at once for an entry not reached yet (its whole pack, which
 * the warm-up would fetch anyway: no byte comes twice), which skips the action record's GET.
 * {@linkcode WarmUp.quiet} tells the caller when an entry's fetch has stalled (the hedge). A get that the warm-up cannot answer (output gone, bytes corrupt, S3 failing)
 * goes on to the ordinary lookup, so the warm-up never turns a hit into a miss or a miss into a
 * wrong hit. It is bounded in bytes and time, stops when the breaker opens, and stops early when
 * the first entries are already local (a warm machine has nothing to gain).
 *
 * @module
 */

import { hashingReady, sha256 } from "../../store/mod.ts";
import type { LocalCache } from "../local.ts";
import type { Logger } from "../../log/mod.ts";
import type { CacheHit } from "../../protocol/mod.ts";
import { ByteBudget } from "../../util/byte_budget.ts";
import { errorMessage } from "../../util/mod.ts";
import type { ObjectStore } from "../../store/mod.ts";
import type { CircuitBreaker } from "../../store/mod.ts";
import { bodyDeadlineMs, outputKey } from "./layout.ts";
import { fillFromObject, writeEntry } from "./fill.ts";
import {
  legacyManifestKey,
  MANIFEST_LIMITS,
  manifestKey,
  type ManifestLimits,
  packBytes,
  type PackInfo,
  packKey,
  readManifest,
  type WarmEntry,
  type WarmManifest,
} from "./manifest.ts";
import { slicePack } from "./packs.ts";
import {
  AbortOnStream,
  BoundError,
  CorruptError,
  readExactly,
  TurnPacer,
  zstdDecompress,
} from "../../store/mod.ts";
import { SharedFloor, ThroughputFloorStream, TooSlowError } from "../../store/mod.ts";

/** Counters the warm-up reports. */
export interface WarmMetrics {
  add(name: string, value?: number): void;
  set(name: string, value: number): void;
}

/** Options for {@linkcode WarmUp}. */
export interface WarmUpOptions {
  /** The warm key's hash (`warm/<keyHash>/`). */
  keyHash: string;
  /** Stop starting fetches after this many bytes. @default {1 GiB} */
  maxBytes?: number;
  /** Fetches at once. @default {16} */
  concurrency?: number;
  /** Pack bytes held in memory at once (a larger pack still goes, alone). @default {32 MiB} */
  maxInFlightBytes?: number;
  /** Stop after this long, in ms. @default {120000} */
  timeoutMs?: number;
  /** Deadline of one request, in ms (a body gets one more second per MiB). @default {10000} */
  requestTimeoutMs?: number;
  /**
   * The throughput floor this warm-up's bodies share with the ordinary lookups: a body below its
   * share once `slowGraceMs` has passed is given up on and counts toward the breaker.
   * @default 1 MiB/s shared by the warm-up's own bodies
   */
  floor?: SharedFloor;
  /** @default {1500} */
  slowGraceMs?: number;
  /** Stop when the first this many entries are all local already. @default {64} */
  warmStreak?: number;
  /** What a manifest may hold (sizes, counts, bytes). @default {@linkcode MANIFEST_LIMITS} */
  limits?: Partial<ManifestLimits>;
  /** Entries the warm-up considers per turn of the event loop. @default {32} */
  entriesPerTurn?: number;
  /** The breaker: the warm-up stops while it is open, and reports failures to it. */
  breaker: CircuitBreaker;
  /** Problems (info only: the warm-up is an optimisation). @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: WarmMetrics;
}

/** SHA-256 of no bytes. */
const EMPTY_ID = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** A pack of the manifest: fetched once, by a worker or by a get that jumped to it. */
interface PackJob {
  pack: PackInfo;
  entries: WarmEntry[];
  started: boolean;
}

type Job = { entry: WarmEntry } | PackJob;

/** When a fetch last made progress (its request sent, or bytes of its body arrived). */
interface Progress {
  at: number;
}

/** One session's warm-up of the local tier from a manifest. */
export class WarmUp {
  readonly #local: LocalCache;
  readonly #options: WarmUpOptions;
  readonly #metrics?: WarmMetrics;
  #store?: ObjectStore;
  /** Manifest entries by action id. */
  readonly #entries = new Map<string, WarmEntry>();
  /** Fetches started, by action id: what a get joins. */
  readonly #started = new Map<string, Promise<CacheHit | undefined>>();
  /** Progress of the fetch of each entry started (shared by a pack's entries). */
  readonly #progress = new Map<string, Progress>();
  /** The manifest's packs, by name. */
  readonly #packJobs = new Map<string, PackJob>();
  /** Room for packs a get jumped to while the warm-up's own room is taken. */
  readonly #jumpRoom: ByteBudget;
  /** Filled by the warm-up and not asked for yet: their bytes are wasted unless go asks. */
  readonly #filled = new Map<string, number>();
  readonly #stop = new AbortController();
  /** Pack bytes held in memory at once (the rest of the warm-up streams to disk). */
  readonly #inFlight: ByteBudget;
  #bytes = 0;
  #fetching = false;
  readonly #floor: SharedFloor;
  #packWaste = 0;
  #checked = 0;
  #present = 0;
  /** The session's deadline (the warm-up's wall-time bound). */
  #deadline?: AbortSignal;
  /**
   * Packs of the manifest fetched (true) or found missing (false) under the manifest's prefix:
   * the next manifest keeps none that are missing (see `warm_session.ts`).
   */
  readonly packsSeen: Map<string, boolean> = new Map();
  /** The manifest found, and whether under the own prefix. */
  manifest?: WarmManifest;
  /** The manifest came from the own prefix (its packs may be reused). */
  fromOwn = false;
  /** Settles when the manifest has been looked up (found or not). */
  readonly loaded: Promise<void>;
  #loaded!: () => void;
  /** Settles when the warm-up has ended. */
  done: Promise<void> = Promise.resolve();

  /**
   * @param local The local tier to fill.
   * @param options Key, bounds, breaker, logging and metrics.
   */
  constructor(local: LocalCache, options: WarmUpOptions) {
    this.#local = local;
    this.#options = options;
    this.#metrics = options.metrics;
    this.#inFlight = new ByteBudget(options.maxInFlightBytes ?? 32 << 20);
    this.#jumpRoom = new ByteBudget((options.maxInFlightBytes ?? 32 << 20) / 2);
    this.#floor = options.floor ?? new SharedFloor(1 << 20);
    this.loaded = new Promise((resolve) => this.#loaded = resolve);
  }

  /**
   * Starts the warm-up in the background: the manifest from the first store that has one, then
   * the fetches. Never rejects.
   *
   * @param stores The own prefix first, then the read prefixes.
   * @param options `manifestOnly`: load the manifest and fetch nothing else (the merge base of a
   * session whose warm-up never started), even after {@linkcode stop}.
   * @returns The warm-up's end (also {@linkcode done}).
   */
  start(stores: readonly ObjectStore[], options: { manifestOnly?: boolean } = {}): Promise<void> {
    const started = performance.now();
    this.#deadline = AbortSignal.timeout(this.#options.timeoutMs ?? 120_000);
    this.done = hashingReady().then(() => this.#run(stores, options.manifestOnly ?? false)).catch(
      (error) => {
        this.#options.log?.info(`warm-up stopped: ${errorMessage(error)}`);
      },
    ).finally(() => {
      this.#loaded();
      this.#metrics?.set("warm_ms", Math.round(performance.now() - started));
    });
    return this.done;
  }

  /** Stops starting fetches; running ones are cut short. */
  stop(): void {
    this.#stop.abort();
  }

  /**
   * The warm-up's answer for a get that missed locally: the running (or finished) fetch of its
   * entry, or one started at once for an entry not reached yet (its pack's, when a pack holds
   * it). `undefined` when the manifest does not name the action or S3 is paused; a fetch that
   * resolves `undefined` (gone, corrupt, failed) leaves the get to the ordinary lookup.
   *
   * @param actionId The action go asked for.
   * @returns The fetch, or `undefined`.
   */
  join(actionId: string): Promise<CacheHit | undefined> | undefined {
    const started = this.#started.get(actionId);
    if (started) return started;
    const entry = this.#entries.get(actionId);
    if (!entry || !this.#store || this.#options.breaker.paused) return undefined;
    this.#metrics?.add("warm_jumped");
    const job = entry.pack !== undefined ? this.#packJobs.get(entry.pack) : undefined;
    if (job && !job.started) {
      void this.#warmPack(job, true);
      const joined = this.#started.get(actionId);
      if (joined) return joined;
    }
    return this.#begin(entry, () => this.#fetchOne(entry, false));
  }

  /**
   * Resolves once the fetch of an entry has made no progress for `ms` (no request sent, no body
   * bytes arrived): the moment a get waiting on the warm-up should look up on its own (hedge). A
   * fetch that keeps arriving, however slowly the shared link goes, is not hedged: the lookup
   * would fetch the same bytes again. Stops waiting when `until` settles.
   *
   * @param actionId The entry.
   * @param ms Silence that counts as a stall.
   * @param until The fetch itself: once it settles there is nothing to hedge.
   * @returns When the fetch stalled (never, if `until` settles first).
   */
  async quiet(actionId: string, ms: number, until: Promise<unknown>): Promise<void> {
    let settled = false;
    const done = until.then(() => settled = true, () => settled = true);
    const progress = this.#progress.get(actionId) ?? { at: performance.now() };
    while (!settled) {
      const idle = performance.now() - progress.at;
      if (idle >= ms) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([done, new Promise((r) => timer = setTimeout(r, ms - idle))]);
      clearTimeout(timer);
    }
    await new Promise(() => {}); // settled first: never hedged
  }

  /**
   * Notes a local hit: true when the warm-up put the entry there this session (a warm hit).
   *
   * @param actionId The action.
   * @returns Whether it was filled by the warm-up.
   */
  claim(actionId: string): boolean {
    return this.#filled.delete(actionId);
  }

  /** True while the warm-up's own fetches run (the link is busy with them). */
  get fetching(): boolean {
    return this.#fetching;
  }

  /** Bytes fetched and never asked for so far: filled outputs go did not get, unused pack bytes. */
  get wastedBytes(): number {
    let bytes = this.#packWaste;
    for (const size of this.#filled.values()) bytes += size;
    return bytes;
  }

  async #run(stores: readonly ObjectStore[], manifestOnly: boolean): Promise<void> {
    const { breaker } = this.#options;
    await breaker.ready();
    const deadline = this.#deadline!;
    const keys = [manifestKey(this.#options.keyHash), legacyManifestKey(this.#options.keyHash)];
    const tries = stores.flatMap((store, index) => keys.map((key) => ({ store, index, key })));
    for (const { store, index, key } of tries) {
      if (breaker.paused || deadline.aborted) return;
      const read = await this.#request(async () => {
        const object = await store.get(key, { signal: this.#signal(0, manifestOnly) });
        if (!object) return undefined;
        // Bounded however large the body or its declared size (`ManifestLimits`).
        return await readManifest(
          object.body.pipeThrough(this.#deadlined()),
          object.size,
          this.#limits,
        );
      });
      if (!read) continue;
      const { manifest, problem } = read;
      if (!manifest) {
        this.#metrics?.add("warm_manifest_corrupt");
        this.#options.log?.info(
          `ignoring the warm-up manifest under prefix #${index} (${JSON.stringify(key)}): ` +
            problem,
        );
        continue;
      }
      this.manifest = manifest;
      this.fromOwn = index === 0;
      this.#store = store;
      break;
    }
    const manifest = this.manifest;
    if (!manifest) return;
    for (const entry of manifest.entries) this.#entries.set(entry.actionId, entry);
    this.#loaded();
    if (manifestOnly) return;
    const jobs = jobsOf(manifest);
    for (const job of jobs) if ("pack" in job) this.#packJobs.set(job.pack.name, job);
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        await this.#pace();
        if (this.#stop.signal.aborted || deadline.aborted || breaker.paused) return;
        if (this.#bytes >= (this.#options.maxBytes ?? 2 ** 30)) return;
        if (next >= jobs.length) return;
        const job = jobs[next++]!;
        if ("pack" in job) await this.#warmPack(job, false);
        else await this.#warmOne(job.entry);
      }
    };
    const workers = Math.max(1, this.#options.concurrency ?? 16);
    this.#fetching = true;
    try {
      await Promise.all(Array.from({ length: workers }, worker));
    } finally {
      this.#fetching = false;
    }
  }

  /**
   * Caps the warm-up's work per turn of the event loop. Local work (an entry already here, an
   * empty output, a slice of a pack written) is synchronous file calls that never yield by
   * themselves: after `entriesPerTurn` entries or 4 ms every worker rests together as long as
   * the slice took, so go's requests and the HTTP side get at least half the time.
   */
  #pace(): Promise<void> {
    this.#pacer ??= new TurnPacer({ perTurn: this.#options.entriesPerTurn ?? 32, rest: true });
    return this.#pacer.pace();
  }

  #pacer?: TurnPacer;

  /** Whether the machine turned out to be warm already: the first entries are all local. */
  #warmAlready(): boolean {
    const streak = this.#options.warmStreak ?? 64;
    if (this.#checked >= streak && this.#present === this.#checked) {
      if (!this.#stop.signal.aborted) this.#options.log?.info("warm-up: local tier already warm");
      this.#stop.abort();
      return true;
    }
    return false;
  }

  /** Whether an entry is already a local hit (counted toward the warm-machine check). */
  #isLocal(entry: WarmEntry): boolean {
    return this.#localHit(entry) !== undefined;
  }

  /** An entry's local hit, if any (counted toward the warm-machine check). */
  #localHit(entry: WarmEntry): CacheHit | undefined {
    let hit;
    try {
      hit = this.#local.get(entry.actionId);
    } catch {
      hit = undefined;
    }
    this.#checked++;
    if (hit) this.#present++;
    return hit;
  }

  async #warmOne(entry: WarmEntry): Promise<void> {
    if (this.#started.has(entry.actionId)) return;
    if (this.#isLocal(entry) || this.#warmAlready()) return;
    if (this.#started.has(entry.actionId)) return;
    await this.#begin(entry, () => this.#fetchOne(entry, true));
  }

  /** An empty output needs no request: its bytes are known (its id must be their hash). */
  async #fillEmpty(entry: WarmEntry, ahead: boolean): Promise<CacheHit | undefined> {
    if (entry.outputId !== EMPTY_ID) return undefined;
    return await this.#fill(entry, new Uint8Array(0), ahead);
  }

  /**
   * Fetches a pack once and fills its entries that are not local yet. The worker's way waits for
   * room first, and claims the entries only then (until then a get for one of them jumps: starts
   * the pack itself, in room of its own, at once); a get's way (`jumped`) claims them at once.
   */
  async #warmPack(job: PackJob, jumped: boolean): Promise<void> {
    if (job.started) return;
    const { pack } = job;
    // In memory: the object, and the pack once decompressed.
    const held = pack.size + (pack.raw ?? 0);
    let release: (() => void) | undefined;
    if (!jumped) {
      release = await this.#inFlight.acquire(held);
      if (job.started) return release();
    }
    job.started = true;
    const claimed = this.#claim(job.entries);
    try {
      release ??= this.#inFlight.tryAcquire(held) ?? await this.#jumpRoom.acquire(held);
      await this.#warmPackNow(pack, claimed);
    } finally {
      release?.();
      for (const resolve of claimed.values()) resolve(undefined); // any left: misses
    }
  }

  /** Registers the fetch of each entry not started yet; their resolvers, by action id. */
  #claim(entries: readonly WarmEntry[]): Map<string, (hit: CacheHit | undefined) => void> {
    const claimed = new Map<string, (hit: CacheHit | undefined) => void>();
    const progress: Progress = { at: performance.now() };
    for (const entry of entries) {
      if (this.#started.has(entry.actionId)) continue;
      void this.#begin(
        entry,
        () => new Promise((resolve) => claimed.set(entry.actionId, resolve)),
        progress,
      );
    }
    return claimed;
  }

  async #warmPackNow(
    pack: PackInfo,
    claimed: Map<string, (hit: CacheHit | undefined) => void>,
  ): Promise<void> {
    const settle = (entry: WarmEntry, hit: CacheHit | undefined) => {
      claimed.get(entry.actionId)?.(hit);
      claimed.delete(entry.actionId);
    };
    if (this.#stop.signal.aborted) return;
    const entries = [...claimed.keys()].map((id) => this.#entries.get(id)!);
    const missing: WarmEntry[] = [];
    for (const entry of entries) {
      await this.#pace();
      const hit = this.#localHit(entry);
      if (hit) settle(entry, hit); // here already: not the warm-up's fill
      else missing.push(entry);
    }
    if (this.#warmAlready() || missing.length === 0) return;
    const progress = this.#progress.get(missing[0]!.actionId);
    let bytes: Uint8Array | undefined;
    try {
      bytes = await this.#request(async () => {
        const signal = this.#signal(packBytes(pack));
        const key = packKey(this.#options.keyHash, pack);
        const object = await this.#store!.get(key, { signal });
        if (this.fromOwn) this.packsSeen.set(pack.name, object !== undefined);
        if (!object) return undefined;
        if (object.size !== pack.size) {
          // Never read past the size the manifest declared (the memory bound holds).
          await object.body.cancel().catch(() => {});
          throw new CorruptError(
            `Ignoring bucket object ${JSON.stringify(key)}: ${object.size} bytes, ` +
              `the manifest says ${pack.size}`,
          );
        }
        this.#bytes += pack.size;
        this.#metrics?.add("warm_bytes", pack.size);
        const body = this.#floored(object.body, pack.size, key, progress);
        const stored = await this.#floor.arriving(() => readExactly(body, pack.size, key));
        if (pack.raw === undefined) return stored;
        // Bounded by the size the manifest declares; every slice is verified below.
        const bytes = zstdDecompress(stored, { maxOutputBytes: pack.raw, key });
        if (bytes.length !== pack.raw) {
          throw new CorruptError(
            `Ignoring bucket object ${JSON.stringify(key)}: ${bytes.length} bytes once ` +
              `decompressed, the manifest says ${pack.raw}`,
          );
        }
        return bytes;
      });
    } catch (error) {
      if (error instanceof CorruptError || error instanceof BoundError) {
        this.#options.log?.info(`warm-up pack ${pack.name.slice(0, 12)} skipped: ${error.message}`);
        // Not reused: the next manifest packs its outputs again (see `warm_session.ts`).
        if (this.fromOwn) this.packsSeen.set(pack.name, false);
      }
      bytes = undefined;
    }
    let used = 0;
    for (const entry of missing) {
      const slice = bytes && slicePack(bytes, entry);
      if (!slice || sha256().update(slice).digest("hex") !== entry.outputId) {
        if (bytes) {
          this.#metrics?.add("s3_corrupt");
          if (this.fromOwn) this.packsSeen.set(pack.name, false); // packed again next time
        }
        settle(entry, undefined);
        continue;
      }
      try {
        used += entry.size;
        await this.#pace();
        // A view on the pack: written before the pack is let go, so no copy is needed.
        settle(entry, await this.#fill(entry, slice, true));
      } catch {
        settle(entry, undefined);
      }
    }
    if (bytes) {
      this.#metrics?.add("warm_raw_bytes", bytes.length);
      this.#packWaste += bytes.length - used;
    }
  }

  /** Registers an entry's fetch, so gets join it; a failed fetch is a miss for the warm-up. */
  #begin(
    entry: WarmEntry,
    fetch: () => Promise<CacheHit | undefined>,
    progress: Progress = { at: performance.now() },
  ): Promise<CacheHit | undefined> {
    this.#progress.set(entry.actionId, progress);
    const promise = fetch().catch(() => undefined);
    this.#started.set(entry.actionId, promise);
    return promise;
  }

  /** Fetches one output from `output/<xx>/<id>`, verified, and writes the entry locally. */
  async #fetchOne(entry: WarmEntry, ahead: boolean): Promise<CacheHit | undefined> {
    if (entry.size === 0) return await this.#fillEmpty(entry, ahead);
    const key = outputKey(entry.outputId);
    const signal = this.#signal(entry.size, !ahead);
    const object = await this.#request(() => this.#store!.get(key, { signal }));
    if (!object) return undefined;
    if (object.size !== entry.size) {
      await object.body.cancel();
      return undefined;
    }
    this.#bytes += entry.size;
    this.#metrics?.add("warm_bytes", entry.size);
    this.#metrics?.add("warm_raw_bytes", entry.size);
    const progress = this.#progress.get(entry.actionId);
    const tapped = progress ? { ...object, body: object.body.pipeThrough(tap(progress)) } : object;
    try {
      const hit = await fillFromObject(this.#local, tapped, {
        entry,
        key,
        floor: this.#floor,
        slowGraceMs: this.#options.slowGraceMs ?? 1_500,
      });
      return this.#filledNow(entry, hit, ahead);
    } catch (error) {
      // The body is read after the request "succeeded": a crawl still tells the breaker.
      if (error instanceof TooSlowError) {
        this.#metrics?.add("s3_too_slow");
        this.#failed(error);
      }
      throw error;
    }
  }

  /** Writes a verified output, then its action record, locally. */
  async #fill(
    entry: WarmEntry,
    body: Uint8Array | ReadableStream<Uint8Array>,
    ahead: boolean,
  ): Promise<CacheHit> {
    return this.#filledNow(entry, await writeEntry(this.#local, { ...entry, body }), ahead);
  }

  /** Counts an entry the warm-up wrote; one fetched ahead of go is a warm hit when claimed. */
  #filledNow(entry: WarmEntry, hit: CacheHit, ahead: boolean): CacheHit {
    this.#metrics?.add("warm_entries");
    if (ahead) this.#filled.set(entry.actionId, entry.size);
    return hit;
  }

  /** A body given up on when it crawls (see `_throughput.ts`); its arrivals mark progress. */
  #floored(
    body: ReadableStream<Uint8Array>,
    size: number,
    key: string,
    progress?: Progress,
  ): ReadableStream<Uint8Array> {
    const floored = body.pipeThrough(
      new ThroughputFloorStream(size, {
        minBytesPerSecond: () => this.#floor.share(),
        graceMs: this.#options.slowGraceMs ?? 1_500,
        key,
      }),
    );
    return progress ? floored.pipeThrough(tap(progress)) : floored;
  }

  /**
   * One request of the warm-up, through the breaker (not gated: the warm-up checks
   * `paused` itself): counted, and its failure reported unless the warm-up was stopped or the
   * breaker is already paused (a call cut short because it opened is not another failure).
   */
  #request<T>(call: () => Promise<T>): Promise<T> {
    this.#metrics?.add("warm_requests");
    return this.#options.breaker.call(call, {
      evidence: (error) => {
        if (error instanceof CorruptError) {
          this.#metrics?.add("s3_corrupt");
          return "nothing";
        }
        // A pack's body is read inside the call: a crawl is counted as a lookup's would be.
        if (error instanceof TooSlowError) this.#metrics?.add("s3_too_slow");
        return this.#stop.signal.aborted || this.#options.breaker.paused ? "nothing" : "failed";
      },
    });
  }

  /** Tells the breaker of a failure after the request, unless stopped or already paused. */
  #failed(error: unknown): void {
    if (this.#stop.signal.aborted || this.#options.breaker.paused) return;
    this.#options.breaker.failed(error);
  }

  /**
   * A request's deadline (plus a second per MiB of body, the size bounded by the manifest's
   * limits and the timer by the warm-up's own); warm-up fetches also end on stop and at the
   * warm-up's deadline.
   */
  #signal(size = 0, asked = false): AbortSignal {
    const ms = Math.min(
      bodyDeadlineMs(this.#options.requestTimeoutMs ?? 10_000, size),
      this.#options.timeoutMs ?? 120_000,
    );
    const signals = [AbortSignal.timeout(ms), this.#options.breaker.signal];
    if (!asked) signals.push(this.#stop.signal, this.#deadline ?? this.#stop.signal);
    return AbortSignal.any(signals);
  }

  /** The manifest's bounds. */
  get #limits(): ManifestLimits {
    return { ...MANIFEST_LIMITS, ...this.#options.limits };
  }

  /** Errors a body at the warm-up's deadline. */
  #deadlined(): TransformStream<Uint8Array, Uint8Array> {
    return new AbortOnStream(this.#deadline ?? this.#stop.signal);
  }
}

/** The manifest's work in its order: each pack at its first entry, other entries one by one. */
function jobsOf(manifest: WarmManifest): Job[] {
  const packs = new Map(manifest.packs.map((p) => [p.name, p]));
  const byPack = new Map<string, PackJob>();
  const jobs: Job[] = [];
  for (const entry of manifest.entries) {
    const pack = entry.pack !== undefined ? packs.get(entry.pack) : undefined;
    if (!pack) {
      jobs.push({ entry });
      continue;
    }
    let job = byPack.get(pack.name);
    if (!job) {
      job = { pack, entries: [], started: false };
      byPack.set(pack.name, job);
      jobs.push(job);
    }
    job.entries.push(entry);
  }
  return jobs;
}

/** Marks progress as each chunk of a body arrives. */
function tap(progress: Progress): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      progress.at = performance.now();
      controller.enqueue(chunk);
    },
  });
}
