/**
 * The S3 tier's circuit breaker: after repeated failures it stops remote calls for a cool-down,
 * then lets one probe through. Its state can be shared through a small file in the cache
 * directory, so that in direct mode (one process per go command) a dead or slow bucket costs one
 * deadline per cool-down, not one per go command. The build cache (`cache/remote/tiered.ts`) and
 * each `BucketTier` (`bucket_tier.ts`: the module proxy's, the caching proxy's) have one; the
 * upload queue (`uploads.ts`) asks its owner's. Calls go through
 * {@linkcode CircuitBreaker.call}.
 *
 * ## Shared state
 *
 * `<cache-dir>/s3-breaker` holds one JSON object, replaced atomically (temporary file, rename):
 *
 * ```json
 * {"scope":"http://127.0.0.1:9000 my-bucket","openUntil":"2025-01-01T12:00:30.000Z",
 *  "failures":2,"updated":"2025-01-01T12:00:00.000Z","reason":"Cannot GET …: deadline exceeded"}
 * ```
 *
 * `openUntil` is `null` for a run of failures that has not opened the breaker yet. Only failures
 * that cost waiting (missed deadlines, transfers below the throughput floor, calls that took a
 * second or more) are written: a bucket that fails fast costs each process little, and sharing it
 * would only delay noticing that it is back. A configuration error is never shared. A success
 * removes the file. A file for another scope, an unreadable one, or one older than a cool-down
 * past its `openUntil` is ignored.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { StoreError, type StoreErrorKind } from "./object_store.ts";
import { TooSlowError } from "./throughput.ts";
import { atomicWrite } from "../util/files.ts";
import { errorMessage } from "../util/mod.ts";

/** Slow failures (sluggish lookups, too-slow downloads) within this many ms count together. */
const SLOW_WINDOW_MS = 20_000;
/** How many slow failures within the window open the breaker, quick answers between or not. */
const SLOW_BURST = 3;

/** Why a remote call failed, for the breaker: a store error's kind, or a too-slow transfer. */
export type FailureKind = StoreErrorKind | "slow";

/**
 * The counters the breaker reports: `s3_breaker_trips`, `s3_breaker_open`, `s3_breaker_shared`
 * (another prefix with {@linkcode CircuitBreakerOptions.metricPrefix}).
 */
export interface BreakerMetrics {
  add(name: string, value?: number): void;
  set(name: string, value: number): void;
}

/** Options for {@linkcode CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /**
   * Consecutive failures that open the breaker. A refused connection opens it at once; missed
   * deadlines and too-slow transfers after two.
   * @default {5}
   */
  threshold?: number;
  /**
   * Consecutive missed deadlines or too-slow transfers that open the breaker (at most
   * `threshold`): each of them cost a wait.
   * @default {2}
   */
  stallThreshold?: number;
  /** How long the breaker stays open before one call may try again, in ms. @default {30000} */
  cooldownMs?: number;
  /** The file that shares the breaker's state between processes. @default not shared */
  stateFile?: string;
  /** What the state is about (endpoint and bucket); other scopes' files are ignored. @default {""} */
  scope?: string;
  /**
   * How long a probe may take, in ms: while it runs, the shared file says "open" for this long,
   * so that other processes do not all probe at once.
   * @default {10000}
   */
  probeMs?: number;
  /** Where the pause (warn, once) and other transitions (info) go. @default silent */
  log?: Logger;
  /** Starts every log line, such as `"modproxy: "`. @default {""} */
  logPrefix?: string;
  /** The store's name in log lines (`GCS tier paused …`). @default {"S3"} */
  storeName?: string;
  /** What the log lines say is served while S3 is paused. @default {"the local tier"} */
  serving?: string;
  /** Counters. @default not counted */
  metrics?: BreakerMetrics;
  /** The counters' prefix: `<prefix>_trips`, `_open`, `_shared`. @default {"s3_breaker"} */
  metricPrefix?: string;
}

/**
 * What an outcome of a guarded call tells the breaker: the store `answered` (a success, even
 * when what it sent was unusable), the call `failed` because of the store, or it tells `nothing`
 * about the store (a local file gone, a call stopped for reasons of its own: a probe is given
 * back).
 */
export type Evidence = "answered" | "failed" | "nothing";

/** Options for {@linkcode CircuitBreaker.call}. */
export interface GuardedCallOptions<T> {
  /**
   * The call's deadline, in ms: the signal handed to it aborts then (and whenever the breaker
   * opens). @default no deadline of its own (calls pass their own to the store)
   */
  timeoutMs?: number;
  /** Another signal that ends the call, such as a stop. @default none */
  signal?: AbortSignal;
  /**
   * The answer while the breaker holds calls back (disabled, or open and no probe due): the call
   * is then not made. Without it the call is always made and only its outcome recorded (the
   * warm-up, which checks {@linkcode CircuitBreaker.paused} at its own pace).
   * @default the call is not gated
   */
  whenPaused?: () => T;
  /**
   * Judges a returned value: an `Error` counts as a failure (a sluggish answer), though the value
   * is still returned. @default {"answered"}
   */
  judge?: (value: T, elapsedMs: number) => Exclude<Evidence, "failed"> | Error;
  /**
   * What a thrown error tells (after it is recorded, it is rethrown). A call cut short because
   * the breaker opened is never counted again.
   * @default {"failed"}
   */
  evidence?: (error: unknown) => Evidence;
  /**
   * Called for a failure the breaker counted (not one cut short by the breaker opening, nor one
   * telling nothing), before it is rethrown. @default none
   */
  onFailed?: (error: unknown) => void;
}

/** What the shared file holds. */
interface SharedState {
  scope: string;
  openUntil: string | null;
  failures: number;
  updated: string;
  reason: string;
}

/** A failure taking this long (ms) is worth sharing even when it is not a missed deadline. */
const COSTLY_MS = 1000;

/**
 * A circuit breaker for remote calls. Make each call through {@linkcode CircuitBreaker.call}: it
 * reads the shared state before the first one, skips calls while the breaker is open, hands the
 * call a signal that aborts at its deadline or when the breaker opens, and records the outcome.
 * (The steps it takes are public too: {@linkcode CircuitBreaker.ready},
 * {@linkcode CircuitBreaker.allow}, {@linkcode CircuitBreaker.succeeded},
 * {@linkcode CircuitBreaker.failed}.)
 *
 * @example
 * ```ts
 * import { CircuitBreaker } from "./breaker.ts";
 * import { StoreError } from "./object_store.ts";
 * const breaker = new CircuitBreaker({ threshold: 1 });
 * const refused = () => Promise.reject(new StoreError("connect ECONNREFUSED", "unreachable"));
 * await breaker.call(refused, { whenPaused: () => "skipped" }).catch(() => {});
 * const second = await breaker.call(refused, { whenPaused: () => "skipped" });
 * if (second !== "skipped") throw new Error("expected the breaker to be open");
 * ```
 */
export class CircuitBreaker {
  #threshold: number;
  #stallThreshold: number;
  /** When recent slow failures happened (ms since the epoch), within {@linkcode SLOW_WINDOW_MS}. */
  #slowAt: number[] = [];
  #cooldownMs: number;
  #probeMs: number;
  #shared?: { path: string; scope: string };
  #log?: Logger;
  #prefix: string;
  #name: string;
  #serving: string;
  #metrics?: BreakerMetrics;
  #names: { trips: string; open: string; shared: string };
  #failures = 0;
  /** The current run of failures includes one that cost waiting. */
  #costly = false;
  #openUntil = 0;
  #probing = false;
  #disabled = false;
  #warned = false;
  /** The last failure's message, for the shared file. */
  #reason = "";
  #trip = new AbortController();
  #loaded?: Promise<void>;
  /** The shared file may hold something this process should remove on success. */
  #fileMayExist = false;
  #next?: SharedState;
  #dirty = false;
  #writing?: Promise<void>;

  /** @param options Threshold, cool-down, shared file, logging and metrics. */
  constructor(options: CircuitBreakerOptions = {}) {
    this.#threshold = Math.max(1, options.threshold ?? 5);
    this.#stallThreshold = Math.max(1, Math.min(options.stallThreshold ?? 2, this.#threshold));
    this.#cooldownMs = options.cooldownMs ?? 30_000;
    this.#probeMs = options.probeMs ?? 10_000;
    if (options.stateFile) this.#shared = { path: options.stateFile, scope: options.scope ?? "" };
    this.#log = options.log;
    this.#prefix = options.logPrefix ?? "";
    this.#name = options.storeName ?? "S3";
    this.#serving = options.serving ?? "the local tier";
    this.#metrics = options.metrics;
    const names = options.metricPrefix ?? "s3_breaker";
    this.#names = { trips: `${names}_trips`, open: `${names}_open`, shared: `${names}_shared` };
    this.#metrics?.set(this.#names.open, 0);
  }

  /**
   * Aborted when the breaker opens (or S3 is disabled), to cut short the calls still waiting on
   * the S3 that just failed; a fresh signal is handed out after that.
   */
  get signal(): AbortSignal {
    return this.#trip.signal;
  }

  /** True while no call may be made and no probe is due: disabled, or open within the cool-down. */
  get paused(): boolean {
    return this.#disabled ||
      (this.#openUntil !== 0 && (this.#probing || Date.now() < this.#openUntil));
  }

  /**
   * Reads the shared state, once; later calls return the same promise. Never rejects.
   *
   * @returns When the state is known.
   */
  ready(): Promise<void> {
    this.#loaded ??= this.#load();
    return this.#loaded;
  }

  /**
   * Whether a remote call may be made now. After the cool-down the first caller becomes the probe
   * (true) and everyone else waits for its outcome (false).
   *
   * @returns Whether to make the call.
   */
  allow(): boolean {
    if (this.#disabled) return false;
    if (this.#openUntil === 0) return true;
    const now = Date.now();
    if (now < this.#openUntil || this.#probing) return false;
    this.#probing = true; // one call tries; its outcome closes or re-opens the breaker
    if (this.#costly) this.#persist(now + this.#probeMs);
    return true;
  }

  /**
   * Makes one remote call under the breaker: waits for the shared state (first call only),
   * answers `whenPaused()` without calling while calls are held back, runs `call` with a signal
   * that aborts at `timeoutMs`, on `signal` and when the breaker opens, then records what the
   * outcome tells (see {@linkcode GuardedCallOptions}). Failures are rethrown once recorded.
   *
   * @param call The call; `signal` ends it, `answered()` records that the store has answered
   * part of it (a lookup before its body, a HEAD before a PUT).
   * @param options Deadline, gating and how outcomes count.
   * @returns What the call returned, or `whenPaused()`.
   */
  async call<T>(
    call: (signal: AbortSignal, answered: () => void) => Promise<T>,
    options: GuardedCallOptions<T> = {},
  ): Promise<T> {
    await this.ready();
    if (options.whenPaused && !this.allow()) return options.whenPaused();
    // This call is the probe after a cool-down: one telling nothing gives the turn back.
    const probe = options.whenPaused !== undefined && this.#openUntil !== 0;
    const started = performance.now();
    const trip = this.#trip.signal;
    const signals = [trip];
    if (options.timeoutMs !== undefined) signals.push(AbortSignal.timeout(options.timeoutMs));
    if (options.signal) signals.push(options.signal);
    const signal = signals.length === 1 ? trip : AbortSignal.any(signals);
    let value: T;
    try {
      value = await call(signal, () => this.succeeded());
    } catch (error) {
      const evidence = options.evidence?.(error) ?? "failed";
      // A call cut short because the breaker opened is not new evidence.
      if (evidence === "answered") this.succeeded();
      else if (evidence === "nothing") {
        if (probe) this.cancelProbe();
      } else if (!trip.aborted) {
        this.failed(error, performance.now() - started);
        options.onFailed?.(error);
      }
      throw error;
    }
    const verdict = options.judge?.(value, performance.now() - started) ?? "answered";
    if (verdict === "answered") this.succeeded();
    else if (verdict !== "nothing") this.failed(verdict, performance.now() - started);
    else if (probe) this.cancelProbe();
    return value;
  }

  /** The probe ended without telling anything about S3 (say, its local file was gone). */
  cancelProbe(): void {
    this.#probing = false;
  }

  /** Records a remote call that S3 answered: the failure count resets and an open breaker closes. */
  succeeded(): void {
    this.#failures = 0;
    this.#costly = false;
    if (this.#openUntil !== 0) {
      this.#openUntil = 0;
      this.#probing = false;
      this.#metrics?.set(this.#names.open, 0);
      this.#log?.info(`${this.#prefix}${this.#name} answers again: breaker closed`);
    }
    if (this.#fileMayExist) this.#schedule(undefined);
  }

  /**
   * Records a failed remote call; opens the breaker when there have been enough in a row.
   *
   * @param error What the call threw (a {@linkcode StoreError} or {@linkcode TooSlowError} says
   * what kind of failure it was).
   * @param elapsedMs How long the call took, in ms (0 when unknown): failures that took a second
   * or more are shared with other processes whatever their kind.
   */
  failed(error: unknown, elapsedMs = 0): void {
    const kind = failureKind(error);
    const text = errorMessage(error);
    this.#failures++;
    this.#reason = text;
    this.#log?.info(`${this.#prefix}${this.#name} failure ${this.#failures} (${kind}): ${text}`);
    if (kind === "config") {
      if (this.#disabled) return;
      this.#disabled = true;
      this.#metrics?.add(this.#names.trips);
      this.#cutShort();
      this.#metrics?.set(this.#names.open, 1);
      this.#log?.warn(
        `${this.#prefix}${this.#name} tier disabled: ${text}; serving ${this.#serving} only`,
      );
      return;
    }
    if (kind === "timeout" || kind === "slow" || elapsedMs >= COSTLY_MS) this.#costly = true;
    const wasOpen = this.#openUntil !== 0;
    // A refused connection opens the breaker at once, and stalls or crawling transfers (each
    // costing a deadline or a grace period) after two (`stallThreshold`): waiting on them is what
    // slows the build.
    const threshold = kind === "unreachable"
      ? 1
      : kind === "timeout" || kind === "slow"
      ? this.#stallThreshold
      : this.#threshold;
    // Slow answers between quick ones (small objects arrive, large ones crawl) reset the count
    // of consecutive failures; three within a short window are as telling as two in a row.
    const slowBurst = kind === "slow" && this.#noteSlow() >= SLOW_BURST;
    if (!wasOpen && this.#failures < threshold && !slowBurst) {
      if (this.#costly) this.#persist(0);
      return;
    }
    this.#openUntil = Date.now() + this.#cooldownMs;
    this.#probing = false;
    this.#metrics?.set(this.#names.open, 1);
    if (this.#costly) this.#persist(this.#openUntil);
    if (wasOpen) return; // a failed probe: stay open for another cool-down
    this.#metrics?.add(this.#names.trips);
    this.#cutShort();
    const line =
      `${this.#prefix}${this.#name} tier paused for ${Math.round(this.#cooldownMs / 1000)}s ` +
      `after ${this.#failures} consecutive failure${this.#failures === 1 ? "" : "s"}: ${text}; ` +
      `serving ${this.#serving}`;
    if (this.#warned) {
      this.#log?.info(line);
    } else {
      this.#warned = true;
      this.#log?.warn(line);
    }
  }

  /** Notes a slow failure now; returns how many fell within the last {@linkcode SLOW_WINDOW_MS}. */
  #noteSlow(): number {
    const now = Date.now();
    this.#slowAt = this.#slowAt.filter((at) => now - at < SLOW_WINDOW_MS);
    this.#slowAt.push(now);
    return this.#slowAt.length;
  }

  /**
   * Waits for writes of the shared file still in flight (call before the process exits).
   *
   * @returns When the file is up to date.
   */
  flush(): Promise<void> {
    return this.#writing ?? Promise.resolve();
  }

  #cutShort(): void {
    this.#trip.abort(new StoreError(`${this.#name} tier paused`, "timeout"));
    this.#trip = new AbortController();
  }

  async #load(): Promise<void> {
    if (!this.#shared) return;
    let text: string;
    try {
      text = await Deno.readTextFile(this.#shared.path);
    } catch {
      return; // no file: nobody found S3 failing
    }
    this.#fileMayExist = true;
    const state = parseState(text);
    if (!state || state.scope !== this.#shared.scope) return;
    const now = Date.now();
    if (state.openUntil > 0) {
      // Open, or its cool-down just ended (then the first call here is the probe).
      if (now >= state.openUntil + this.#cooldownMs) return;
      this.#openUntil = Math.max(this.#openUntil, state.openUntil);
      this.#failures = Math.max(this.#failures, state.failures);
      this.#costly = true;
      this.#reason = state.reason;
      if (now < state.openUntil) {
        this.#metrics?.add(this.#names.shared);
        this.#metrics?.set(this.#names.open, 1);
        this.#log?.info(
          `${this.#prefix}${this.#name} tier paused for another ` +
            `${Math.ceil((state.openUntil - now) / 1000)}s, as an earlier session found: ` +
            `${state.reason}; serving ${this.#serving}`,
        );
      }
    } else if (now - state.updated < this.#cooldownMs) {
      // A recent run of failures that has not opened the breaker yet: continue it.
      this.#failures += state.failures;
      this.#costly = true;
      this.#reason = state.reason;
    }
  }

  /** Shares the current state, open until `openUntil` (0: a run of failures, not open yet). */
  #persist(openUntil: number): void {
    if (!this.#shared) return;
    this.#schedule({
      scope: this.#shared.scope,
      openUntil: openUntil === 0 ? null : new Date(openUntil).toISOString(),
      failures: this.#failures,
      updated: new Date().toISOString(),
      reason: this.#reason,
    });
  }

  /** Writes `state` (or removes the file for `undefined`), after any write in flight. */
  #schedule(state: SharedState | undefined): void {
    if (!this.#shared) return;
    this.#next = state;
    this.#dirty = true;
    this.#fileMayExist = state !== undefined;
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    const path = this.#shared!.path;
    while (this.#dirty) {
      this.#dirty = false;
      const state = this.#next;
      try {
        if (state) await atomicWrite(path, new TextEncoder().encode(JSON.stringify(state) + "\n"));
        else await Deno.remove(path);
      } catch {
        // best effort: every process still has its own breaker
      }
    }
    this.#writing = undefined;
  }
}

/**
 * The kind of a failure as the breaker counts it.
 *
 * @param error What a remote call threw.
 * @returns Its kind; `"other"` for anything unrecognised.
 */
export function failureKind(error: unknown): FailureKind {
  if (error instanceof TooSlowError) return "slow";
  if (error instanceof StoreError) return error.kind;
  return "other";
}

/** The shared file's contents with times as ms since the epoch (`openUntil` 0 when closed). */
interface LoadedState {
  scope: string;
  openUntil: number;
  failures: number;
  updated: number;
  reason: string;
}

function parseState(text: string): LoadedState | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const state = value as Partial<Record<keyof SharedState, unknown>>;
  const openUntil = state.openUntil === null ? 0 : Date.parse(String(state.openUntil));
  const updated = Date.parse(String(state.updated));
  const failures = Number(state.failures);
  if (!Number.isFinite(openUntil) || !Number.isFinite(updated)) return undefined;
  if (!Number.isSafeInteger(failures) || failures < 0) return undefined;
  return {
    scope: typeof state.scope === "string" ? state.scope : "",
    openUntil,
    failures,
    updated,
    reason: typeof state.reason === "string" ? state.reason : "",
  };
}
