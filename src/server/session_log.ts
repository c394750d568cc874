/**
 * What `serve` remembers about its go commands, for the status page, `/debug/vars` and `stats`:
 * the last sessions (go command, start, duration, gets, hits, puts), the hit rate per minute, the outputs
 * running sessions were handed (a trim must keep them), and how long go took to produce what it
 * missed.
 *
 * ## Build time saved, and how it is measured
 *
 * go asks for an action before it runs it: a miss means it runs the action (compiles a package,
 * runs a test, indexes a module) and then puts the result under the same action id. The time
 * between a miss and the put of that action is therefore what that output cost go to produce.
 * The log remembers it per action (the last {@linkcode ACTIONS_KEPT} actions), so a later hit on
 * the same action saved exactly that much: the time saved by hits on actions this server saw
 * produced is measured, not estimated. Hits on actions it never saw produced (warm from an earlier
 * server, or from S3) can only be estimated: at the median of the last {@linkcode DURATIONS_KEPT}
 * miss-to-put durations, a conservative figure (the distribution has a long tail). Both are
 * compute time, not wall-clock time: go runs actions in parallel.
 *
 * @module
 */

import type { Metrics } from "../metrics/mod.ts";
import type { CacheHandler, CacheHit } from "../protocol/mod.ts";
import type { SessionObserver, SessionWatch } from "./listener.ts";

/** Names which go command each session serves; `serve` hands one to {@linkcode SessionLog}. */
export { GoCommands } from "./_go_command.ts";

/** One go command (one session), as the status page lists it. */
export interface SessionRecord {
  /** The session's number since the server started. */
  id: number;
  /** When it started (epoch ms). */
  start: number;
  /** How long it ran, in ms; `undefined` while it runs. */
  durationMs?: number;
  /** Gets answered. */
  gets: number;
  /** Of which hits. */
  hits: number;
  /** Puts stored. */
  puts: number;
  /** How it ended (`close`, `end of input`, `error`); `undefined` while it runs. */
  end?: string;
  /** The go command it served (`go build`, `go test`, …), or `go` when not known. */
  command: string;
}

/** Gets and hits of one minute. */
export interface MinuteCount {
  /** The minute's start (epoch ms). */
  minute: number;
  /** Gets answered in it. */
  gets: number;
  /** Of which hits. */
  hits: number;
}

/** The measurements behind the build time saved. */
export interface MissToPut {
  /** Misses followed by a put of the same action, among the last {@linkcode DURATIONS_KEPT}. */
  measured: number;
  /** Their median duration in ms. */
  medianMs: number;
  /** Hits on actions this server saw produced. */
  savedHits: number;
  /** What producing them had cost, in ms: the time those hits saved. */
  savedMs: number;
  /**
   * What go spent producing outputs on this server (every miss-to-put measured), in ms: the bound
   * of an estimate. @default unknown (an older server)
   */
  producedMs?: number;
}

/** Options for {@linkcode SessionLog}. */
export interface SessionLogOptions {
  /** How many sessions to list. @default {50} */
  keep?: number;
  /** How many minutes with gets to remember. @default {120} */
  minutes?: number;
  /** Where `miss_to_put_seconds` is observed. @default none */
  metrics?: Metrics;
  /**
   * Tells which go command a session serves (see `_go_command.ts`), and is told when it ends.
   * @default none: every session is `go`
   */
  commands?: { identify(id: number): Promise<string>; release(id: number): void };
}

/** How many miss-to-put durations the median is taken over. */
export const DURATIONS_KEPT = 2000;
/** How many actions' miss-to-put durations are remembered for their later hits. */
export const ACTIONS_KEPT = 100_000;
/** Misses a session waits to see put, at most (go never puts some, such as links). */
const MISSES_TRACKED = 100_000;
/** Buckets of `miss_to_put_seconds`, in seconds. */
const MISS_TO_PUT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * Remembers sessions for a {@linkcode PluginListener} (pass it as `sessions`).
 *
 * @example
 * ```ts
 * import { SessionLog } from "./session_log.ts";
 * const log = new SessionLog();
 * const watch = log.begin(1);
 * const cache = watch.wrap({
 *   get: () => Promise.resolve(undefined),
 *   put: () => Promise.resolve("/tmp/x"),
 * });
 * await cache.get("00".repeat(32));
 * watch.end("close");
 * if (log.recent()[0]?.gets !== 1) throw new Error("the get is counted");
 * ```
 */
export class SessionLog implements SessionObserver {
  readonly #keep: number;
  readonly #minutesKept: number;
  readonly #metrics?: Metrics;
  readonly #commands?: SessionLogOptions["commands"];
  readonly #records: SessionRecord[] = [];
  readonly #minutes: MinuteCount[] = [];
  readonly #inUse = new Map<string, number>();
  readonly #durations: number[] = [];
  #nextDuration = 0;
  /** Action id → ms it took go to produce, oldest first. */
  readonly #produced = new Map<string, number>();
  #savedHits = 0;
  #savedMs = 0;
  #producedMs = 0;

  /** @param options How much to keep, and where to count. */
  constructor(options: SessionLogOptions = {}) {
    this.#keep = options.keep ?? 50;
    this.#minutesKept = options.minutes ?? 120;
    this.#metrics = options.metrics;
    this.#commands = options.commands;
  }

  /**
   * A session starts: its record is listed at once.
   *
   * @param id The session's number.
   * @returns Its watch: wrap the cache with it, and end it when the session ends.
   */
  begin(id: number): SessionWatch {
    const record: SessionRecord = {
      id,
      start: Date.now(),
      gets: 0,
      hits: 0,
      puts: 0,
      command: "go",
    };
    const commands = this.#commands;
    if (commands) {
      void commands.identify(id).then((command) => {
        record.command = command;
        if (record.end !== undefined) commands.release(id);
      });
    }
    this.#records.push(record);
    if (this.#records.length > this.#keep) this.#records.shift();
    const started = performance.now();
    const used = new Set<string>();
    const missedAt = new Map<string, number>();
    const use = (outputId: string) => {
      if (used.has(outputId)) return;
      used.add(outputId);
      this.#inUse.set(outputId, (this.#inUse.get(outputId) ?? 0) + 1);
    };
    const saw = (actionId: string, hit: CacheHit | undefined) => {
      record.gets++;
      this.#count(hit !== undefined);
      if (hit) {
        record.hits++;
        use(hit.outputId);
        const cost = this.#produced.get(actionId);
        if (cost !== undefined) {
          this.#savedHits++;
          this.#savedMs += cost;
        }
      } else if (missedAt.size < MISSES_TRACKED) {
        missedAt.set(actionId, performance.now());
      }
    };
    return {
      wrap: (handler: CacheHandler): CacheHandler => {
        return {
          // A hit answered at once stays a value: the protocol answers it without waiting.
          get: (actionId) => {
            const answer = handler.get(actionId);
            if (!(answer instanceof Promise)) {
              saw(actionId, answer);
              return answer;
            }
            return answer.then((hit) => {
              saw(actionId, hit);
              return hit;
            });
          },
          put: async (object) => {
            const path = await handler.put(object);
            record.puts++;
            use(object.outputId);
            const missed = missedAt.get(object.actionId);
            if (missed !== undefined) {
              missedAt.delete(object.actionId);
              this.#measure(object.actionId, performance.now() - missed);
            }
            return path;
          },
        };
      },
      end: (how) => {
        if (record.end !== undefined) return;
        record.end = how;
        record.durationMs = Math.round(performance.now() - started);
        this.#commands?.release(id);
        for (const outputId of used) {
          const left = (this.#inUse.get(outputId) ?? 1) - 1;
          if (left > 0) this.#inUse.set(outputId, left);
          else this.#inUse.delete(outputId);
        }
        used.clear();
        missedAt.clear();
      },
    };
  }

  /**
   * Whether a running session was handed this output (by a hit or its own put).
   *
   * @param outputId Hex output id.
   * @returns True while such a session runs.
   */
  inUse(outputId: string): boolean {
    return this.#inUse.has(outputId);
  }

  /** The listed sessions, newest first (copies). */
  recent(): SessionRecord[] {
    return this.#records.map((r) => ({ ...r })).reverse();
  }

  /** Gets and hits per minute, oldest first, for the minutes that had gets (copies). */
  hitRateByMinute(): MinuteCount[] {
    return this.#minutes.map((m) => ({ ...m }));
  }

  /** The miss-to-put measurements, or `undefined` before the first. */
  missToPut(): MissToPut | undefined {
    if (this.#durations.length === 0) return undefined;
    const sorted = [...this.#durations].sort((a, b) => a - b);
    const middle = sorted.length >> 1;
    const medianMs = sorted.length % 2 === 1
      ? sorted[middle]!
      : (sorted[middle - 1]! + sorted[middle]!) / 2;
    return {
      measured: sorted.length,
      medianMs: Math.round(medianMs * 10) / 10,
      savedHits: this.#savedHits,
      savedMs: Math.round(this.#savedMs),
      producedMs: Math.round(this.#producedMs),
    };
  }

  #count(hit: boolean): void {
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    let last = this.#minutes.at(-1);
    if (last?.minute !== minute) {
      last = { minute, gets: 0, hits: 0 };
      this.#minutes.push(last);
      if (this.#minutes.length > this.#minutesKept) this.#minutes.shift();
    }
    last.gets++;
    if (hit) last.hits++;
  }

  #measure(actionId: string, ms: number): void {
    this.#metrics?.observe("miss_to_put_seconds", ms / 1000, MISS_TO_PUT_BUCKETS);
    this.#producedMs += ms;
    this.#produced.delete(actionId);
    this.#produced.set(actionId, ms);
    if (this.#produced.size > ACTIONS_KEPT) {
      this.#produced.delete(this.#produced.keys().next().value!);
    }
    if (this.#durations.length < DURATIONS_KEPT) this.#durations.push(ms);
    else this.#durations[this.#nextDuration] = ms;
    this.#nextDuration = (this.#nextDuration + 1) % DURATIONS_KEPT;
  }
}
