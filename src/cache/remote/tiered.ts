/**
 * The two-tier cache's local-first policy: the local directory answers first (at once, without a
 * promise), and only a local miss goes on to the warm-up's fetch of its entry (hedged) or the
 * remote lookup (`lookup.ts`), which can only ever turn a miss into a hit: any remote failure is
 * a miss plus a counted event, never an error reply. A circuit breaker (`store/breaker.ts`, its
 * state optionally shared between processes) stops asking a bucket that keeps failing. Puts are
 * uploaded in the background by an {@linkcode UploadQueue}, which records what it could not send
 * under `s3-pending/`.
 *
 * Given a {@linkcode ReadThroughStore}, a lookup that misses under the own prefix goes on to
 * each read prefix in order, and uploads go to the own prefix only. Read-only, the cache has no
 * upload queue at all: puts stay local, and owed uploads are neither sent nor recorded.
 *
 * @module
 */

import { PENDING_DIR } from "../dir_layout.ts";
import type { ActionRecord, LocalCache } from "../local.ts";
import type { Logger } from "../../log/mod.ts";
import type { CacheHandler, CacheHit, GetAnswer, PutObject } from "../../protocol/mod.ts";
import type { ObjectStore } from "../../store/mod.ts";
import { CircuitBreaker } from "../../store/mod.ts";
import { type UploadEntry, UploadQueue } from "../../store/mod.ts";
import { ReadThroughStore } from "../../store/mod.ts";
import { SharedFloor } from "../../store/mod.ts";
import { actionKey, HEX_ID, outputKey } from "./layout.ts";
import { RemoteLookup } from "./lookup.ts";
import { WarmUp } from "./warm.ts";
import type { PackPolicy } from "./packs.ts";
import { WarmSession } from "./warm_session.ts";

/** Counters and histograms the tiered cache reports (a subset of `Metrics`). */
export interface TieredMetrics {
  add(name: string, value?: number): void;
  set(name: string, value: number): void;
  observe(name: string, value: number): void;
}

/** Options for {@linkcode TieredCache}. */
export interface TieredCacheOptions {
  /** Outputs smaller than this many bytes are not uploaded. @default {0} */
  minUploadSize?: number;
  /** Uploads running at once. @default {navigator.hardwareConcurrency} */
  uploadConcurrency?: number;
  /** Deadline of each upload (object and action record), in ms. @default {60000} */
  uploadTimeoutMs?: number;
  /**
   * Deadline of a remote lookup (action record and the start of the object), in ms; the object's
   * body gets this plus one second per MiB.
   * @default {10000}
   */
  getTimeoutMs?: number;
  /**
   * How long `close()` waits for pending uploads, in ms. It does not wait for uploads the breaker
   * has stopped: those are recorded under `s3-pending/` at once.
   * @default {60000}
   */
  closeTimeoutMs?: number;
  /**
   * The floor of a remote object's download rate, in bytes per second: below it (after
   * `slowGraceMs`) the download is given up on, counted in `s3_too_slow` and toward the breaker,
   * and go compiles the output instead. 0 turns the floor off.
   * @default {1048576}
   */
  minDownloadRate?: number;
  /** How long a download runs before its rate is judged, in ms. @default {1500} */
  slowGraceMs?: number;
  /**
   * How long a whole lookup of a small entry may take, in ms, before it counts as sluggish (a hit
   * all the same, but evidence toward the breaker); larger objects get their size at
   * `minDownloadRate` on top. A healthy bucket answers in tens of milliseconds, and a lookup that
   * takes longer than compiling the package would is a loss.
   * @default {750}
   */
  sluggishLookupMs?: number;
  /**
   * Consecutive remote failures that open the circuit breaker. A refused connection opens it at
   * once, and missed deadlines after two.
   * @default {5}
   */
  breakerThreshold?: number;
  /** How long the breaker stays open before one request may try again, in ms. @default {30000} */
  breakerCooldownMs?: number;
  /**
   * A file sharing the breaker's state with other processes on the same cache directory (see
   * `breaker.ts`), such as `<cache-dir>/s3-breaker`; read before the first remote call.
   * @default not shared
   */
  breakerFile?: string;
  /** What the shared state is about (endpoint and bucket). @default {""} */
  breakerScope?: string;
  /** The store's name in the breaker's log lines (`GCS tier paused …`). @default {"S3"} */
  storeName?: string;
  /** Where problems (warn) and lifecycle events (info) go. @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: TieredMetrics;
  /**
   * The working-set warm-up (`warm.ts`) and manifest (`warm_session.ts`) of a warm key; the
   * warm-up starts with {@linkcode TieredCache.startWarmUp}, the manifest is written by
   * {@linkcode TieredCache.finishSession}. Read-only, the manifest is read but never written.
   * @default off
   */
  warm?: TieredWarmOptions;
}

/** The warm-up settings of a {@linkcode TieredCache}. */
export interface TieredWarmOptions {
  /** The warm key as given (or derived). */
  key: string;
  /** Its hash, `warm/<keyHash>/` in the bucket. */
  keyHash: string;
  /** Bucket and own prefix: this machine's manifest copy is kept per scope. @default "" */
  scope?: string;
  /** Bytes the warm-up fetches at most. @default {1 GiB} */
  maxBytes?: number;
  /** Warm-up fetches at once. @default {16} */
  concurrency?: number;
  /** How long the warm-up runs at most, in ms. @default {120000} */
  timeoutMs?: number;
  /** Pack bytes the warm-up holds in memory at once. @default {32 MiB} */
  maxInFlightBytes?: number;
  /** How the manifest's packs are made (sizes, zstd level). @default see {@linkcode PackPolicy} */
  packs?: PackPolicy;
}

/** How long a get's first misses wait for the warm-up's manifest before they look up alone. */
const WARM_HEDGE_MS = 150;

/**
 * How long the warm-up's fetch of an entry may make no progress (no byte arriving) before a get
 * waiting on it also starts the ordinary lookup: longer than a pack's first byte takes on a busy
 * link or machine (a lookup started then fetches the same bytes again), shorter than the
 * throughput floor's grace, which ends a fetch that crawls.
 */
const WARM_STALL_MS = 500;

/**
 * Local misses after which the warm-up starts on a machine whose first answers were local hits.
 * A fresh machine misses at once and starts it at the first miss; a warm one misses only what go
 * never built (a few per build), and fetching the manifest for those would cost a request for
 * nothing.
 */
const WARM_AFTER_MISSES = 16;

/**
 * A {@linkcode CacheHandler} serving from a {@linkcode LocalCache} and filling it from an
 * {@linkcode ObjectStore} laid out like tailscale's plugin (`action/<xx>/<id>`,
 * `output/<xx>/<id>`; see `mod.ts`).
 *
 * @example
 * ```ts
 * import { LocalCache } from "../local.ts";
 * import { MemoryObjectStore } from "../../store/mod.ts";
 * import { TieredCache } from "./tiered.ts";
 * const dir = await Deno.makeTempDir();
 * const cache = new TieredCache(await LocalCache.open(dir), new MemoryObjectStore());
 * if (await cache.get("ab".repeat(32)) !== undefined) throw new Error("expected a miss");
 * await cache.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class TieredCache implements CacheHandler {
  /** The local tier. */
  readonly local: LocalCache;
  /** The own prefix first, then the read prefixes. */
  #stores: readonly ObjectStore[];
  #minUploadSize: number;
  #log?: Logger;
  #metrics?: TieredMetrics;
  #remote: RemoteLookup;
  /** None when read-only: nothing can be uploaded. */
  #uploads?: UploadQueue;
  #breaker: CircuitBreaker;
  #closed = false;
  #warmUp?: WarmUp;
  /** None when read-only or without a warm key: no manifest is written. */
  #session?: WarmSession;

  /**
   * @param local The local tier; it answers first and holds every remote hit.
   * @param store The bucket, keys relative to the configured prefix; a
   * {@linkcode ReadThroughStore} adds read prefixes and read-only mode.
   * @param options Upload policy, deadlines, breaker, logging and metrics.
   */
  constructor(local: LocalCache, store: ObjectStore, options: TieredCacheOptions = {}) {
    this.local = local;
    const view = ReadThroughStore.of(store);
    this.#stores = view.lookupOrder;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#minUploadSize = options.minUploadSize ?? 0;
    const getTimeoutMs = options.getTimeoutMs ?? 10_000;
    const minDownloadRate = options.minDownloadRate ?? 1 << 20;
    const slowGraceMs = options.slowGraceMs ?? 1_500;
    // The throughput floor every download shares: go's lookups and the warm-up's fetches.
    const floor = new SharedFloor(minDownloadRate);
    this.#breaker = new CircuitBreaker({
      threshold: options.breakerThreshold,
      cooldownMs: options.breakerCooldownMs,
      stateFile: options.breakerFile,
      scope: options.breakerScope,
      storeName: options.storeName,
      probeMs: getTimeoutMs,
      log: options.log,
      metrics: options.metrics,
    });
    this.#remote = new RemoteLookup(local, this.#stores, {
      breaker: this.#breaker,
      floor,
      getTimeoutMs,
      slowGraceMs,
      minDownloadRate,
      sluggishLookupMs: options.sluggishLookupMs ?? 750,
      warmUpFetching: () => this.#warmUp?.fetching ?? false,
      log: options.log,
      metrics: options.metrics,
    });
    this.#uploads = view.readOnly ? undefined : new UploadQueue(view.own, {
      breaker: this.#breaker,
      pendingDir: `${local.root}/${PENDING_DIR}`,
      concurrency: options.uploadConcurrency,
      uploadTimeoutMs: options.uploadTimeoutMs,
      headTimeoutMs: getTimeoutMs,
      closeTimeoutMs: options.closeTimeoutMs,
      markerPattern: HEX_ID,
      log: options.log,
      metrics: options.metrics,
    });
    const warm = options.warm;
    if (warm) {
      this.#warmUp = new WarmUp(local, {
        keyHash: warm.keyHash,
        maxBytes: warm.maxBytes,
        concurrency: warm.concurrency,
        timeoutMs: warm.timeoutMs,
        maxInFlightBytes: warm.maxInFlightBytes,
        requestTimeoutMs: getTimeoutMs,
        floor,
        slowGraceMs,
        breaker: this.#breaker,
        log: options.log,
        metrics: options.metrics,
      });
      if (!view.readOnly) {
        this.#session = new WarmSession(local, view.own, {
          key: warm.key,
          keyHash: warm.keyHash,
          scope: warm.scope,
          packs: warm.packs,
          log: options.log,
          metrics: options.metrics,
          breaker: this.#breaker,
        });
      }
    }
  }

  /**
   * Starts the warm-up in the background (once): the warm key's manifest, then its outputs into
   * the local tier. Never delays a get; never rejects.
   *
   * @returns When the warm-up has ended.
   */
  startWarmUp(): Promise<void> {
    const warm = this.#warmUp;
    if (!warm) return Promise.resolve();
    this.#warmStarted ??= this.#inBackground(warm.start(this.#stores));
    return this.#warmStarted;
  }

  #warmStarted?: Promise<void>;

  /**
   * Ends the session's warm-up part: stops the warm-up, reports its wasted bytes, and writes
   * the manifest when something was used since the last write (never read-only). Bounded by
   * `timeoutMs`; never rejects. Direct mode calls it after go has its last reply; a server
   * periodically and at shutdown.
   *
   * @param timeoutMs The deadline of the write. @default {30000}
   */
  async finishSession(timeoutMs = 30_000): Promise<void> {
    const warm = this.#warmUp;
    if (!warm) return;
    // A manifest still loading is the merge base: wait for it, briefly.
    const loaded = async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([warm.loaded, new Promise((r) => timer = setTimeout(r, 2_000))]);
      clearTimeout(timer);
      return warm;
    };
    if (this.#warmStarted) await loaded();
    this.#metrics?.set("warm_wasted_bytes", warm.wastedBytes);
    // The warm-up never started (a warm machine): the bucket's manifest is fetched alone, after
    // go has its replies, and only when this machine's copy cannot decide the write alone.
    const base = this.#warmStarted ? warm : {
      fromOwn: false,
      load: () => {
        this.#warmStarted ??= this.#inBackground(warm.start(this.#stores, { manifestOnly: true }));
        return loaded();
      },
    };
    await this.#session?.write(base, AbortSignal.timeout(timeoutMs));
  }

  /**
   * Writes the manifest every `everyMs` when entries were used since the last write: a server
   * serves many sessions in one process and keeps its manifest current without waiting for its
   * shutdown (which writes it once more).
   *
   * @param everyMs The period. @default {60000}
   * @returns Stops the timer.
   */
  writeManifestEvery(everyMs = 60_000): () => void {
    const timer = setInterval(() => {
      if (this.warmChanged) void this.finishSession();
    }, everyMs);
    Deno.unrefTimer(timer);
    return () => clearInterval(timer);
  }

  /** Stops the warm-up's own fetches (a get may still start one). */
  stopWarmUp(): void {
    this.#warmUp?.stop();
  }

  /** Whether entries were used since the manifest was last written. */
  get warmChanged(): boolean {
    return this.#session?.changed ?? false;
  }

  /** Uploads queued or running. */
  get pendingUploads(): number {
    return this.#uploads?.pending ?? 0;
  }

  /**
   * Whether nothing of this tier runs in the background: no upload queued or running, no remote
   * lookup, no warm-up under way and no owed uploads being read back. Direct mode blocks on go's
   * next request only then (`ServeOptions.blockingReads`): a warm build pays nothing for its
   * bucket, and background work is never stalled by it.
   */
  get idle(): boolean {
    return this.pendingUploads === 0 && this.#remote.running === 0 && this.#background === 0;
  }

  /** Warm-ups and resumptions of owed uploads under way. */
  #background = 0;

  /** Counts `work` as background work until it settles. */
  #inBackground<T>(work: Promise<T>): Promise<T> {
    this.#background++;
    return work.finally(() => this.#background--);
  }

  /**
   * Looks up an action locally, then in the bucket. A local hit is answered at once (no
   * promise); a miss goes on to the warm-up and the bucket. A remote hit is verified (SHA-256 of
   * the object equals its output id) and written to the local tier before it is returned.
   */
  get(actionId: string): GetAnswer {
    const hit = this.local.get(actionId);
    if (hit) {
      this.#metrics?.add("local_hits");
      this.#used(actionId, hit);
      return hit;
    }
    if (!HEX_ID.test(actionId)) return undefined;
    return this.#getRemote(actionId);
  }

  /** A local miss: the warm-up's fetch of the entry (hedged), else the remote lookup. */
  async #getRemote(actionId: string): Promise<CacheHit | undefined> {
    await this.#localMiss();
    const warm = this.#warmUp?.join(actionId);
    if (warm) {
      const answer = await this.#hedged(actionId, warm);
      if (answer.hit) {
        if (answer.fromWarmUp) {
          this.#warmUp!.claim(actionId);
          this.#metrics?.add("warm_hits");
        }
        this.#session?.record(sessionEntry(actionId, answer.hit));
        return answer.hit;
      }
      if (answer.lookedUp) return undefined;
    }
    const remote = await this.#remote.lookup(actionId);
    if (remote) this.#session?.record(sessionEntry(actionId, remote));
    return remote;
  }

  /**
   * The warm-up's fetch of an entry, hedged: when it has made no progress for
   * {@linkcode WARM_STALL_MS} (stalled; one still arriving is left alone, or its bytes would come
   * twice), the ordinary lookup starts beside it and the first hit wins, so a get never waits on a
   * stalled warm-up much longer than it would without.
   * No hit when the warm-up missed before the hedge (the caller looks up), or when neither had
   * one (`lookedUp`: the ordinary lookup has been made).
   */
  async #hedged(
    actionId: string,
    warm: Promise<CacheHit | undefined>,
  ): Promise<{ hit?: CacheHit; fromWarmUp: boolean; lookedUp?: boolean }> {
    const early = await Promise.race([
      warm,
      this.#warmUp!.quiet(actionId, WARM_STALL_MS, warm).then(() => "late" as const),
    ]);
    if (early !== "late") return { hit: early, fromWarmUp: true };
    this.#metrics?.add("warm_hedged");
    const ordinary = this.#remote.lookup(actionId);
    return await new Promise((resolve) => {
      let left = 2;
      const settle = (hit: CacheHit | undefined, fromWarmUp: boolean) => {
        if (hit) resolve({ hit, fromWarmUp });
        else if (--left === 0) resolve({ fromWarmUp: false, lookedUp: true });
      };
      warm.then((hit) => settle(hit, true), () => settle(undefined, true));
      ordinary.then((hit) => settle(hit, false), () => settle(undefined, false));
    });
  }

  /**
   * Starts the warm-up once the local tier looks cold: at the first miss when nothing was a local
   * hit before it, else after {@linkcode WARM_AFTER_MISSES} misses. Resolves once its manifest is
   * loaded, or after {@linkcode WARM_HEDGE_MS}.
   */
  async #localMiss(): Promise<void> {
    const warm = this.#warmUp;
    if (!warm) return;
    if (this.#warmLoaded) return;
    if (!this.#warmStarted) {
      this.#localMisses++;
      if (this.#localMisses < (this.#localHits > 0 ? WARM_AFTER_MISSES : 1)) return;
      void this.startWarmUp();
      void warm.loaded.then(() => this.#warmLoaded = true);
    }
    // While the manifest loads, wait for it briefly rather than fetch what it may name.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([warm.loaded, new Promise((r) => timer = setTimeout(r, WARM_HEDGE_MS))]);
    clearTimeout(timer);
  }

  #localHits = 0;
  #localMisses = 0;
  #warmLoaded = false;

  /**
   * A local hit: recorded for the manifest, and a warm hit when the warm-up put it there (counted
   * in `warm_local_hits` too, so that the summary can tell the local tier's own hits from the
   * warm-up's: `local_hits` counts both).
   */
  #used(actionId: string, hit: CacheHit): void {
    this.#localHits++;
    const filled = this.#warmUp?.claim(actionId) ?? false;
    if (filled) {
      this.#metrics?.add("warm_hits");
      this.#metrics?.add("warm_local_hits");
    }
    // Not filled by the warm-up: anyone sharing the directory may have put it there.
    this.#session?.record(sessionEntry(actionId, hit), { local: !filled });
  }

  /**
   * Stores an output locally and resolves as soon as that is durable; the upload to the bucket
   * (object first, then action record) runs in the background. Read-only, nothing is uploaded
   * (counted in `uploads_skipped_read_only`).
   */
  async put(object: PutObject): Promise<string> {
    const time = new Date();
    const size = object.body.length;
    const diskPath = await this.local.writeObject(object.outputId, object.body);
    await this.local.writeAction(object.actionId, { outputId: object.outputId, size, time });
    if (!this.#uploads) {
      this.#metrics?.add("uploads_skipped_read_only");
    } else if (size < this.#minUploadSize) {
      this.#metrics?.add("uploads_skipped");
      this.#metrics?.add("uploads_small");
    } else {
      this.#uploads.enqueue(
        uploadEntry(object.actionId, { outputId: object.outputId, size, time }, diskPath),
      );
      this.#session?.record({
        actionId: object.actionId,
        outputId: object.outputId,
        size,
        nanos: BigInt(time.getTime()) * 1_000_000n,
      });
    }
    return diskPath;
  }

  /**
   * Waits for pending uploads, at most `closeTimeoutMs` (uploads the breaker stopped end at once,
   * recorded as owed); what is left is counted in `uploads_left` and logged. Then writes the
   * breaker's shared state, if any.
   */
  async close(): Promise<void> {
    await this.#uploads?.close();
    const corrupt = this.#remote.corrupt;
    if (!this.#closed && corrupt > 1) {
      this.#log?.info(`ignored ${corrupt} corrupt bucket entries this session (see s3_corrupt)`);
    }
    this.#closed = true;
    await this.#breaker.flush();
  }

  /**
   * Queues the uploads an earlier session could not finish (failed, dropped while S3 was
   * paused, or left at exit), recorded under `s3-pending/` in the cache directory. Read-only,
   * nothing is queued and the directory is not read: they stay owed to a writing session.
   *
   * @param limit At most this many. @default {1000}
   * @returns How many were queued.
   */
  resumePending(limit = 1000): Promise<number> {
    if (!this.#uploads) return Promise.resolve(0);
    return this.#inBackground(this.#uploads.resume(async (actionId) => {
      const record = await this.local.readAction(actionId);
      return record && uploadEntry(actionId, record, this.local.outputPath(record.outputId));
    }, limit));
  }
}

/** The manifest's view of a hit. */
function sessionEntry(actionId: string, hit: CacheHit) {
  const nanos = hit.timeNanos ?? BigInt(hit.time?.getTime() ?? Date.now()) * 1_000_000n;
  return { actionId, outputId: hit.outputId, size: hit.size, nanos };
}

/**
 * The upload of one put: the object (skipped when the bucket has it), then the action record.
 * The marker in `s3-pending/` is the action id.
 */
function uploadEntry(actionId: string, record: ActionRecord, diskPath: string): UploadEntry {
  const { outputId, size, time } = record;
  const nanos = BigInt(time.getTime()) * 1_000_000n;
  return {
    marker: actionId,
    label: actionId,
    key: outputKey(outputId),
    path: diskPath,
    size,
    skipIfPresent: true,
    record: { key: actionKey(actionId), bytes: new TextEncoder().encode(`${outputId} ${nanos}`) },
  };
}
