/**
 * The remote lookup of the tiered cache: an action record, then its output, under the own prefix
 * and then each read prefix, through the circuit breaker's guarded call, and the verified fill
 * of the local tier (`fill.ts`). Any failure is a miss plus a counted event; a download below
 * the throughput floor is given up on; a lookup slower than compiling would be is evidence
 * against the bucket, though its bytes are used. Concurrent lookups of one action collapse into
 * one.
 *
 * @module
 */

import type { LocalCache } from "../local.ts";
import type { Logger } from "../../log/mod.ts";
import type { CacheHit } from "../../protocol/mod.ts";
import {
  type CircuitBreaker,
  CorruptError,
  hashingReady,
  type ObjectStore,
  readSmall,
  type SharedFloor,
  TooSlowError,
} from "../../store/mod.ts";
import {
  actionKey,
  bodyDeadlineMs,
  MAX_OUTPUT_SIZE,
  outputKey,
  parseActionRecord,
} from "./layout.ts";
import { fillFromObject } from "./fill.ts";

/** Counters the lookup reports (a subset of `Metrics`). */
export interface LookupMetrics {
  add(name: string, value?: number): void;
}

/** Options for {@linkcode RemoteLookup}. */
export interface RemoteLookupOptions {
  /** The breaker every lookup goes through. */
  breaker: CircuitBreaker;
  /** The throughput floor downloads share (with the warm-up's). */
  floor: SharedFloor;
  /** Deadline of a record's GET and of an object's start, in ms; bodies get a second per MiB more. */
  getTimeoutMs: number;
  /** How long a download runs before its rate is judged, in ms. */
  slowGraceMs: number;
  /** The floor's rate, in bytes per second (0: off), for the sluggishness bound. */
  minDownloadRate: number;
  /** How long a lookup of a small entry may take before it counts as sluggish, in ms. */
  sluggishLookupMs: number;
  /**
   * Whether the warm-up's own downloads fill the link now: a sluggish lookup then is no
   * evidence against the bucket. @default never
   */
  warmUpFetching?: () => boolean;
  /** Where corrupt entries are reported. @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: LookupMetrics;
}

/** Looks actions up in the bucket and fills the local tier with what it finds. */
export class RemoteLookup {
  #local: LocalCache;
  /** The own prefix first, then the read prefixes. */
  #stores: readonly ObjectStore[];
  #options: RemoteLookupOptions;
  #inflight = new Map<string, Promise<CacheHit | undefined>>();
  /** Corrupt remote entries seen; only the first is a warning. */
  #corrupt = 0;

  /**
   * @param local The local tier every hit is written to.
   * @param stores The own prefix first, then the read prefixes.
   * @param options Breaker, floor, deadlines, logging and metrics.
   */
  constructor(local: LocalCache, stores: readonly ObjectStore[], options: RemoteLookupOptions) {
    this.#local = local;
    this.#stores = stores;
    this.#options = options;
  }

  /** Lookups under way. */
  get running(): number {
    return this.#inflight.size;
  }

  /** Corrupt remote entries seen so far. */
  get corrupt(): number {
    return this.#corrupt;
  }

  /**
   * Looks an action up (one lookup at a time per action); a hit is verified and written to the
   * local tier before it is returned. Never rejects: a failure is a miss.
   *
   * @param actionId The action, lower-case hex.
   * @returns The local hit, or `undefined`.
   */
  lookup(actionId: string): Promise<CacheHit | undefined> {
    let pending = this.#inflight.get(actionId);
    if (!pending) {
      pending = this.#fetch(actionId).finally(() => this.#inflight.delete(actionId));
      this.#inflight.set(actionId, pending);
    } else {
      this.#options.metrics?.add("s3_get_collapsed");
    }
    return pending;
  }

  async #fetch(actionId: string): Promise<CacheHit | undefined> {
    const { breaker, metrics } = this.#options;
    await hashingReady();
    const started = performance.now();
    const asked = { prefixes: 0 };
    let skipped = false;
    try {
      const hit = await breaker.call((trip) => this.#fetchRemote(actionId, trip, asked), {
        whenPaused: () => {
          skipped = true;
          return undefined;
        },
        judge: (hit, elapsed) => {
          const sluggish = elapsed > this.#sluggishAfterMs(hit?.size ?? 0, asked.prefixes);
          if (!sluggish) return "answered";
          metrics?.add("s3_get_sluggish");
          // Answered, but slower than compiling would be: evidence against asking this bucket,
          // though the bytes are good and go gets them. (Not while the warm-up's own downloads
          // fill the link: that slowness is ours.)
          if (this.#options.warmUpFetching?.()) return "nothing";
          return new TooSlowError(
            `bucket lookup of ${actionId.slice(0, 12)} took ${Math.round(elapsed)}ms`,
          );
        },
        evidence: (error) => error instanceof CorruptError ? "answered" : "failed",
      });
      if (skipped) {
        metrics?.add("s3_get_skipped");
        return undefined;
      }
      if (hit) {
        metrics?.add("s3_get_hits");
        metrics?.add("s3_bytes_down", hit.size);
      } else {
        metrics?.add("s3_get_misses");
      }
      return hit;
    } catch (error) {
      if (error instanceof CorruptError) this.#reportCorrupt(error);
      else metrics?.add(error instanceof TooSlowError ? "s3_too_slow" : "s3_get_errors");
      return undefined;
    } finally {
      if (!skipped) metrics?.add("s3_wait_ms", Math.round(performance.now() - started));
    }
  }

  /**
   * How long a whole lookup (record, then object of `size` bytes) may take before it counts as
   * sluggish: `sluggishLookupMs`, plus the object at the throughput floor. Each read prefix asked
   * after the own one adds half of `sluggishLookupMs`: one more request, a record's GET.
   */
  #sluggishAfterMs(size: number, prefixes: number): number {
    const rate = this.#options.minDownloadRate;
    const lookup = this.#options.sluggishLookupMs * (1 + Math.max(0, prefixes - 1) / 2);
    return lookup + (rate > 0 ? (size / rate) * 1000 : 0);
  }

  /** Counts a corrupt remote entry; only the first of a session is a warning. */
  #reportCorrupt(error: CorruptError): void {
    this.#options.metrics?.add("s3_corrupt");
    if (++this.#corrupt === 1) {
      this.#options.log?.warn(`${error.message}; further corrupt bucket entries are only counted`);
    } else {
      this.#options.log?.info(error.message);
    }
  }

  /**
   * Looks the action up under the own prefix, then under each read prefix in turn: the first
   * prefix holding both the record and its (verified) object answers. A corrupt entry under one
   * prefix is counted and the next one asked; a failed call ends the lookup (same bucket).
   * `asked.prefixes` counts the prefixes asked.
   */
  async #fetchRemote(
    actionId: string,
    trip: AbortSignal,
    asked: { prefixes: number },
  ): Promise<CacheHit | undefined> {
    const last = this.#stores.length - 1;
    for (const [index, store] of this.#stores.entries()) {
      asked.prefixes++;
      let hit: CacheHit | undefined;
      try {
        hit = await this.#fetchFrom(store, actionId, trip);
      } catch (error) {
        if (!(error instanceof CorruptError) || index === last) throw error;
        this.#reportCorrupt(error);
        continue;
      }
      if (hit) {
        if (index > 0) this.#options.metrics?.add("s3_read_prefix_hits");
        return hit;
      }
    }
    return undefined;
  }

  async #fetchFrom(
    store: ObjectStore,
    actionId: string,
    trip: AbortSignal,
  ): Promise<CacheHit | undefined> {
    const { getTimeoutMs } = this.#options;
    const signal = AbortSignal.any([AbortSignal.timeout(getTimeoutMs), trip]);
    const record = await store.get(actionKey(actionId), { signal });
    if (!record) return undefined;
    const text = await readSmall(record.body, record.size, signal);
    const parsed = parseActionRecord(text);
    if (!parsed) {
      throw new CorruptError(
        `Ignoring bucket action record ${JSON.stringify(actionKey(actionId))}: ` +
          `malformed ${JSON.stringify(text.slice(0, 80))}`,
      );
    }
    const { outputId, nanos } = parsed;
    const key = outputKey(outputId);
    const bodySignal = AbortSignal.any([signal, AbortSignal.timeout(getTimeoutMs)]);
    const object = await store.get(key, { signal: bodySignal });
    if (!object) return undefined; // the action was written but its object is gone
    if (object.size > MAX_OUTPUT_SIZE) {
      await object.body.cancel().catch(() => {});
      throw new CorruptError(
        `Ignoring bucket object ${JSON.stringify(key)}: ${object.size} bytes, ` +
          `above go's largest output (${MAX_OUTPUT_SIZE})`,
      );
    }
    const bodyDeadline = AbortSignal.timeout(bodyDeadlineMs(getTimeoutMs, object.size));
    return await fillFromObject(this.#local, object, {
      entry: { actionId, outputId, nanos },
      key,
      floor: this.#options.floor,
      slowGraceMs: this.#options.slowGraceMs,
      signal: AbortSignal.any([bodyDeadline, trip]),
    });
  }
}
