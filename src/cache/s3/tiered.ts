/**
 * The two-tier cache: the local directory first, an S3 bucket behind it. The remote tier can
 * only ever turn a miss into a hit: any remote failure is a miss plus a counted event, never an
 * error reply, and a circuit breaker stops asking a bucket that keeps failing.
 *
 * @module
 */

import type { ActionRecord, LocalCache } from "../local.ts";
import type { Logger } from "../../log/mod.ts";
import type { CacheHandler, CacheHit, PutObject } from "../../protocol/mod.ts";
import type { ObjectStore } from "./object_store.ts";
import { StoreError, type StoreErrorKind } from "./aws_store.ts";
import { AbortOnStream, CorruptError, fileBody, readSmall, VerifyStream } from "./_streams.ts";

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
  /** How long `close()` waits for pending uploads, in ms. @default {60000} */
  closeTimeoutMs?: number;
  /**
   * Consecutive remote failures that open the circuit breaker. A refused connection opens it at
   * once, and missed deadlines after two.
   * @default {5}
   */
  breakerThreshold?: number;
  /** How long the breaker stays open before one request may try again, in ms. @default {30000} */
  breakerCooldownMs?: number;
  /** Where problems (warn) and lifecycle events (info) go. @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: TieredMetrics;
}

const HEX_ID = /^[0-9a-f]{64}$/;
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
  #options: Required<Omit<TieredCacheOptions, "log" | "metrics">>;
  #log?: Logger;
  #metrics?: TieredMetrics;
  #inflight = new Map<string, Promise<CacheHit | undefined>>();
  #queue: Upload[] = [];
  #active = new Set<Upload>();
  #idle: (() => void)[] = [];
  #failures = 0;
  #openUntil = 0;
  #probing = false;
  #disabled = false;
  #warnedBreaker = false;
  /** Aborted when the breaker opens, cutting short lookups still waiting on S3. */
  #trip = new AbortController();

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
      breakerThreshold: Math.max(1, options.breakerThreshold ?? 5),
      breakerCooldownMs: options.breakerCooldownMs ?? 30_000,
    };
    this.#metrics?.set("s3_breaker_open", 0);
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
   * Waits for pending uploads, at most `closeTimeoutMs`; what is left is counted in
   * `uploads_left` and logged.
   */
  async close(): Promise<void> {
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
    if (!this.#remoteAllowed()) {
      this.#metrics?.add("s3_get_skipped");
      return undefined;
    }
    const started = performance.now();
    const trip = this.#trip.signal;
    try {
      const hit = await this.#fetchRemote(actionId, trip);
      this.#succeeded();
      if (hit) {
        this.#metrics?.add("s3_get_hits");
        this.#metrics?.add("s3_bytes_down", hit.size);
      } else {
        this.#metrics?.add("s3_get_misses");
      }
      return hit;
    } catch (error) {
      if (error instanceof CorruptError) {
        this.#succeeded();
        this.#metrics?.add("s3_corrupt");
        this.#log?.warn(error.message);
        return undefined;
      }
      this.#metrics?.add("s3_get_errors");
      if (!trip.aborted) this.#failed(error); // else cut short by the breaker: not new evidence
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
      .pipeThrough(new VerifyStream(outputId, object.size, outputKey(outputId)))
      .pipeThrough(new AbortOnStream(bodyDeadline));
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
    if (!this.#remoteAllowed()) {
      this.#metrics?.add("uploads_failed");
      this.#log?.info(`not uploading ${actionId}: S3 tier paused or disabled`);
      await this.#remember(upload);
      return;
    }
    const signal = AbortSignal.timeout(this.#options.uploadTimeoutMs);
    try {
      if (await this.#store.has(outputKey(outputId), { signal })) {
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
      this.#succeeded();
      if (upload.resumed) await this.#forget(actionId);
    } catch (error) {
      this.#metrics?.add("uploads_failed");
      if (error instanceof Deno.errors.NotFound) {
        // go moved the file away (`go build -o` outside $GOCACHE): nothing left to upload.
        this.#log?.info(`not uploading ${outputId}: local file is gone`);
        this.#probing = false;
        if (upload.resumed) await this.#forget(actionId);
        return;
      }
      this.#failed(error);
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

  /** Aborts the lookups in flight: they wait on the S3 that just failed. */
  #cutShort(): void {
    this.#trip.abort(new StoreError("S3 tier paused", "timeout"));
    this.#trip = new AbortController();
  }

  /** Whether a remote call may be made now; half-opens the breaker after its cool-down. */
  #remoteAllowed(): boolean {
    if (this.#disabled) return false;
    if (this.#openUntil === 0) return true;
    if (Date.now() < this.#openUntil || this.#probing) return false;
    this.#probing = true; // one request tries; its outcome closes or re-opens the breaker
    return true;
  }

  #succeeded(): void {
    this.#failures = 0;
    if (this.#openUntil !== 0) {
      this.#openUntil = 0;
      this.#probing = false;
      this.#metrics?.set("s3_breaker_open", 0);
      this.#log?.info("S3 answers again: breaker closed");
    }
  }

  #failed(error: unknown): void {
    const kind: StoreErrorKind = error instanceof StoreError ? error.kind : "other";
    const text = error instanceof Error ? error.message : String(error);
    this.#failures++;
    this.#log?.info(`S3 failure ${this.#failures} (${kind}): ${text}`);
    if (kind === "config") {
      if (this.#disabled) return;
      this.#disabled = true;
      this.#metrics?.add("s3_breaker_trips");
      this.#cutShort();
      this.#metrics?.set("s3_breaker_open", 1);
      this.#log?.warn(`S3 tier disabled: ${text}; serving the local tier only`);
      return;
    }
    const wasOpen = this.#openUntil !== 0;
    // A refused connection opens the breaker at once, and stalls (each costing a full deadline)
    // after two: waiting on them is what would slow the build.
    const threshold = kind === "unreachable"
      ? 1
      : kind === "timeout"
      ? Math.min(2, this.#options.breakerThreshold)
      : this.#options.breakerThreshold;
    if (!wasOpen && this.#failures < threshold) return;
    this.#openUntil = Date.now() + this.#options.breakerCooldownMs;
    this.#probing = false;
    if (wasOpen) return; // a failed probe: stay open for another cool-down
    this.#metrics?.add("s3_breaker_trips");
    this.#cutShort();
    this.#metrics?.set("s3_breaker_open", 1);
    const line = `S3 tier paused for ${Math.round(this.#options.breakerCooldownMs / 1000)}s ` +
      `after ${this.#failures} consecutive failure${this.#failures === 1 ? "" : "s"}: ${text}; ` +
      `serving the local tier`;
    if (this.#warnedBreaker) {
      this.#log?.info(line);
    } else {
      this.#warnedBreaker = true;
      this.#log?.warn(line);
    }
  }
}

/** The key of an action record, relative to the prefix. */
export function actionKey(actionId: string): string {
  return `action/${actionId.slice(0, 2)}/${actionId}`;
}

/** The key of an output object, relative to the prefix. */
export function outputKey(outputId: string): string {
  return `output/${outputId.slice(0, 2)}/${outputId}`;
}

/**
 * Parses an action record, `"<outputHex> <unixNanos>"` (any whitespace between, as Go's
 * `strings.Fields` splits it).
 *
 * @param text The record.
 * @returns The output id and put time, or `undefined` when malformed.
 */
export function parseActionRecord(text: string): { outputId: string; nanos: bigint } | undefined {
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 2) return undefined;
  const [outputId, nanosText] = fields as [string, string];
  if (!HEX_ID.test(outputId) || !/^-?\d{1,19}$/.test(nanosText)) return undefined;
  return { outputId, nanos: BigInt(nanosText) };
}
