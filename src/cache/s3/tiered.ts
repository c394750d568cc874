/**
 * The two-tier cache: the local directory first, an S3 bucket behind it. The remote tier can
 * only ever turn a miss into a hit: any remote failure is a miss plus a counted event, never an
 * error reply; a download slower than the throughput floor is given up on; and a circuit breaker
 * (`breaker.ts`, its state optionally shared between processes) stops asking a bucket that keeps
 * failing.
 *
 * @module
 */

import type { ActionRecord, LocalCache } from "../local.ts";
import type { Logger } from "../../log/mod.ts";
import type { CacheHandler, CacheHit, PutObject } from "../../protocol/mod.ts";
import type { ObjectStore } from "./object_store.ts";
import { CircuitBreaker } from "./breaker.ts";
import { AbortOnStream, CorruptError, fileBody, readSmall, VerifyStream } from "./_streams.ts";
import { ThroughputFloorStream, TooSlowError } from "./_throughput.ts";
import { actionKey, HEX_ID, outputKey, parseActionRecord } from "./layout.ts";

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
  /** Where problems (warn) and lifecycle events (info) go. @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: TieredMetrics;
}

/** Directory in the cache dir naming actions whose upload is still owed. */
const PENDING_DIR = "s3-pending";
/** Remote objects up to this size are read whole before they are written locally. */
const SMALL_OBJECT = 1 << 16;

/** One upload: the local entry to send. */
interface Upload {
  actionId: string;
  outputId: string;
  size: number;
  diskPath: string;
  time: Date;
  /** Came from `s3-pending/`: remove its marker once done. */
  resumed?: boolean;
  /** Its marker is written. */
  remembered?: boolean;
}

/**
 * A {@linkcode CacheHandler} serving from a {@linkcode LocalCache} and filling it from an
 * {@linkcode ObjectStore} laid out like tailscale's plugin (`action/<xx>/<id>`,
 * `output/<xx>/<id>`; see `mod.ts`).
 *
 * @example
 * ```ts
 * import { LocalCache } from "../local.ts";
 * import { MemoryObjectStore } from "./object_store.ts";
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
  #store: ObjectStore;
  #options: Required<
    Omit<
      TieredCacheOptions,
      "log" | "metrics" | "breakerThreshold" | "breakerCooldownMs" | "breakerFile" | "breakerScope"
    >
  >;
  #log?: Logger;
  #metrics?: TieredMetrics;
  #inflight = new Map<string, Promise<CacheHit | undefined>>();
  #queue: Upload[] = [];
  #active = new Set<Upload>();
  #idle: (() => void)[] = [];
  #breaker: CircuitBreaker;
  /** Corrupt remote entries seen; only the first is a warning. */
  #corrupt = 0;
  #closed = false;

  /**
   * @param local The local tier; it answers first and holds every remote hit.
   * @param store The bucket, keys relative to the configured prefix.
   * @param options Upload policy, deadlines, breaker, logging and metrics.
   */
  constructor(local: LocalCache, store: ObjectStore, options: TieredCacheOptions = {}) {
    this.local = local;
    this.#store = store;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#options = {
      minUploadSize: options.minUploadSize ?? 0,
      uploadConcurrency: Math.max(
        1,
        options.uploadConcurrency ?? navigator.hardwareConcurrency ?? 4,
      ),
      uploadTimeoutMs: options.uploadTimeoutMs ?? 60_000,
      getTimeoutMs: options.getTimeoutMs ?? 10_000,
      closeTimeoutMs: options.closeTimeoutMs ?? 60_000,
      minDownloadRate: options.minDownloadRate ?? 1 << 20,
      slowGraceMs: options.slowGraceMs ?? 1_500,
    };
    this.#breaker = new CircuitBreaker({
      threshold: options.breakerThreshold,
      cooldownMs: options.breakerCooldownMs,
      stateFile: options.breakerFile,
      scope: options.breakerScope,
      probeMs: this.#options.getTimeoutMs,
      log: options.log,
      metrics: options.metrics,
    });
  }

  /** Uploads queued or running. */
  get pendingUploads(): number {
    return this.#queue.length + this.#active.size;
  }

  /**
   * Looks up an action locally, then in the bucket. A remote hit is verified (SHA-256 of the
   * object equals its output id) and written to the local tier before it is returned.
   */
  async get(actionId: string): Promise<CacheHit | undefined> {
    const hit = await this.local.get(actionId);
    if (hit) {
      this.#metrics?.add("local_hits");
      return hit;
    }
    if (!HEX_ID.test(actionId)) return undefined;
    let pending = this.#inflight.get(actionId);
    if (!pending) {
      pending = this.#fetch(actionId).finally(() => this.#inflight.delete(actionId));
      this.#inflight.set(actionId, pending);
    } else {
      this.#metrics?.add("s3_get_collapsed");
    }
    return await pending;
  }

  /**
   * Stores an output locally and resolves as soon as that is durable; the upload to the bucket
   * (object first, then action record) runs in the background.
   */
  async put(object: PutObject): Promise<string> {
    const time = new Date();
    const size = object.body.length;
    const diskPath = await this.local.writeObject(object.outputId, object.body);
    await this.local.writeAction(object.actionId, { outputId: object.outputId, size, time });
    if (size < this.#options.minUploadSize) {
      this.#metrics?.add("uploads_skipped");
      this.#metrics?.add("uploads_small");
    } else {
      this.#enqueue({ actionId: object.actionId, outputId: object.outputId, size, diskPath, time });
    }
    return diskPath;
  }

  /**
   * Waits for pending uploads, at most `closeTimeoutMs` (uploads the breaker stopped end at once,
   * recorded as owed); what is left is counted in `uploads_left` and logged. Then writes the
   * breaker's shared state, if any.
   */
  async close(): Promise<void> {
    await this.#drainUploads();
    if (!this.#closed && this.#corrupt > 1) {
      this.#log?.info(`ignored ${this.#corrupt} corrupt S3 entries this session (see s3_corrupt)`);
    }
    this.#closed = true;
    await this.#breaker.flush();
  }

  async #drainUploads(): Promise<void> {
    if (this.pendingUploads === 0) return;
    const started = performance.now();
    this.#log?.info(`waiting for ${this.pendingUploads} uploads`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.#idle.push(() => resolve(true))),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.#options.closeTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (done) {
      this.#log?.info(`uploads complete in ${(performance.now() - started).toFixed(0)}ms`);
      return;
    }
    const left = [...this.#active, ...this.#queue];
    this.#metrics?.add("uploads_left", left.length);
    this.#log?.warn(
      `${left.length} uploads to S3 left undone after ${this.#options.closeTimeoutMs}ms; ` +
        `the next session retries them`,
    );
    // Queued uploads will not start; running ones end at their own deadline.
    this.#queue.length = 0;
    await Promise.all(left.map((upload) => this.#remember(upload)));
  }

  /**
   * Queues the uploads an earlier session could not finish (failed, dropped while S3 was
   * paused, or left at exit), recorded under `s3-pending/` in the cache directory.
   *
   * @param limit At most this many. @default {1000}
   * @returns How many were queued.
   */
  async resumePending(limit = 1000): Promise<number> {
    const dir = `${this.local.root}/${PENDING_DIR}`;
    let names: string[];
    try {
      names = (await Array.fromAsync(Deno.readDir(dir))).filter((e) => HEX_ID.test(e.name))
        .slice(0, limit).map((e) => e.name);
    } catch {
      return 0;
    }
    if (names.length === 0) return 0;
    await this.#breaker.ready();
    if (this.#breaker.paused) return 0; // still owed; a later session sends them
    let queued = 0;
    for (const actionId of names) {
      const record = await this.local.readAction(actionId);
      if (!record) {
        await Deno.remove(`${dir}/${actionId}`).catch(() => {});
        continue;
      }
      const { outputId, size, time } = record;
      const diskPath = this.local.outputPath(outputId);
      this.#enqueue({ actionId, outputId, size, diskPath, time, resumed: true });
      queued++;
    }
    if (queued > 0) {
      this.#metrics?.add("uploads_resumed", queued);
      this.#log?.info(`resuming ${queued} uploads an earlier session left undone`);
    }
    return queued;
  }

  async #fetch(actionId: string): Promise<CacheHit | undefined> {
    await this.#breaker.ready();
    if (!this.#breaker.allow()) {
      this.#metrics?.add("s3_get_skipped");
      return undefined;
    }
    const started = performance.now();
    const trip = this.#breaker.signal;
    try {
      const hit = await this.#fetchRemote(actionId, trip);
      this.#breaker.succeeded();
      if (hit) {
        this.#metrics?.add("s3_get_hits");
        this.#metrics?.add("s3_bytes_down", hit.size);
      } else {
        this.#metrics?.add("s3_get_misses");
      }
      return hit;
    } catch (error) {
      if (error instanceof CorruptError) {
        this.#breaker.succeeded();
        this.#metrics?.add("s3_corrupt");
        if (++this.#corrupt === 1) {
          this.#log?.warn(`${error.message}; further corrupt S3 entries are only counted`);
        } else {
          this.#log?.info(error.message);
        }
        return undefined;
      }
      this.#metrics?.add(error instanceof TooSlowError ? "s3_too_slow" : "s3_get_errors");
      // Cut short by the breaker: not new evidence.
      if (!trip.aborted) this.#breaker.failed(error, performance.now() - started);
      return undefined;
    } finally {
      this.#metrics?.add("s3_wait_ms", Math.round(performance.now() - started));
    }
  }

  async #fetchRemote(actionId: string, trip: AbortSignal): Promise<CacheHit | undefined> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.#options.getTimeoutMs), trip]);
    const record = await this.#store.get(actionKey(actionId), { signal });
    if (!record) return undefined;
    const text = await readSmall(record.body, record.size, signal);
    const parsed = parseActionRecord(text);
    if (!parsed) {
      throw new CorruptError(
        `Ignoring S3 action record ${JSON.stringify(actionKey(actionId))}: ` +
          `malformed ${JSON.stringify(text.slice(0, 80))}`,
      );
    }
    const { outputId, nanos } = parsed;
    const bodySignal = AbortSignal.any([
      signal,
      AbortSignal.timeout(this.#options.getTimeoutMs),
    ]);
    const object = await this.#store.get(outputKey(outputId), { signal: bodySignal });
    if (!object) return undefined; // the action was written but its object is gone
    const bodyDeadline = AbortSignal.timeout(
      this.#options.getTimeoutMs + Math.ceil(object.size / 1048576) * 1000,
    );
    const time = new Date(Number(nanos / 1_000_000n));
    const verified = object.body
      .pipeThrough(
        new ThroughputFloorStream(object.size, {
          minBytesPerSecond: this.#options.minDownloadRate,
          graceMs: this.#options.slowGraceMs,
          key: outputKey(outputId),
        }),
      )
      .pipeThrough(new VerifyStream(outputId, object.size, outputKey(outputId)))
      .pipeThrough(new AbortOnStream(AbortSignal.any([bodyDeadline, trip])));
    // Most outputs are small: take them whole (verified) and let the local tier write them with
    // its cheap synchronous path; stream the large ones to disk.
    const body = object.size <= SMALL_OBJECT ? await new Response(verified).bytes() : verified;
    const diskPath = await this.local.writeObject(outputId, body, {
      size: object.size,
      mtime: time,
    });
    const local: ActionRecord = { outputId, size: object.size, time };
    await this.local.writeAction(actionId, local);
    return { outputId, size: object.size, diskPath, time, timeNanos: nanos };
  }

  #enqueue(upload: Upload): void {
    this.#queue.push(upload);
    this.#pump();
  }

  #pump(): void {
    while (this.#active.size < this.#options.uploadConcurrency && this.#queue.length > 0) {
      const upload = this.#queue.shift()!;
      this.#active.add(upload);
      this.#upload(upload).finally(() => {
        this.#active.delete(upload);
        this.#pump();
        if (this.pendingUploads === 0) {
          for (const resolve of this.#idle.splice(0)) resolve();
        }
      });
    }
  }

  async #upload(upload: Upload): Promise<void> {
    const { actionId, outputId, size, diskPath, time } = upload;
    await this.#breaker.ready();
    if (!this.#breaker.allow()) {
      this.#metrics?.add("uploads_failed");
      this.#log?.info(`not uploading ${actionId}: S3 tier paused or disabled`);
      await this.#remember(upload);
      return;
    }
    const started = performance.now();
    // The breaker opening cuts uploads short too: close() must not wait on a bucket that failed.
    const trip = this.#breaker.signal;
    const signal = AbortSignal.any([AbortSignal.timeout(this.#options.uploadTimeoutMs), trip]);
    // The HEAD is a lookup: it gets a lookup's deadline, so a black-holed bucket costs that.
    const headSignal = AbortSignal.any([
      signal,
      AbortSignal.timeout(Math.min(this.#options.getTimeoutMs, this.#options.uploadTimeoutMs)),
    ]);
    try {
      const present = await this.#store.has(outputKey(outputId), { signal: headSignal });
      this.#breaker.succeeded();
      if (present) {
        this.#metrics?.add("uploads_skipped");
      } else {
        const body = await fileBody(diskPath, size);
        try {
          await this.#store.put(outputKey(outputId), body.stream, { size, signal });
        } finally {
          body.close();
        }
        this.#metrics?.add("s3_bytes_up", size);
      }
      const nanos = BigInt(time.getTime()) * 1_000_000n;
      const record = new TextEncoder().encode(`${outputId} ${nanos}`);
      await this.#store.put(actionKey(actionId), record, { size: record.length, signal });
      this.#metrics?.add("s3_bytes_up", record.length);
      this.#metrics?.add("uploads_done");
      this.#breaker.succeeded();
      if (upload.resumed) await this.#forget(actionId);
    } catch (error) {
      this.#metrics?.add("uploads_failed");
      if (error instanceof Deno.errors.NotFound) {
        // go moved the file away (`go build -o` outside $GOCACHE): nothing left to upload.
        this.#log?.info(`not uploading ${outputId}: local file is gone`);
        this.#breaker.cancelProbe();
        if (upload.resumed) await this.#forget(actionId);
        return;
      }
      if (!trip.aborted) this.#breaker.failed(error, performance.now() - started);
      await this.#remember(upload);
    }
  }

  /** Records an upload for a later session (best effort). */
  async #remember(upload: Upload): Promise<void> {
    if (upload.resumed || upload.remembered) return;
    upload.remembered = true;
    const dir = `${this.local.root}/${PENDING_DIR}`;
    try {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeFile(`${dir}/${upload.actionId}`, new Uint8Array(0));
    } catch {
      // the entry stays local-only
    }
  }

  async #forget(actionId: string): Promise<void> {
    await Deno.remove(`${this.local.root}/${PENDING_DIR}/${actionId}`).catch(() => {});
  }
}
