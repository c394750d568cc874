/**
 * A small metrics registry shared by every component: named counters and histograms, read by
 * `--metrics`, `/debug/vars`, `/metrics` (Prometheus text format, by the catalogue of
 * `catalog.ts`: see `prometheus.ts`) and the status page. `faults.ts` keeps the first cause of
 * each kind of failure with a count.
 *
 * Start reading here ({@linkcode Metrics}), then `catalog.ts`. Imports: `log/` only.
 *
 * @module
 */

/** Default histogram bounds in seconds, for remote-call latency. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
]);

/** A histogram's state: cumulative counts per upper bound, plus sum and count. */
export interface HistogramSnapshot {
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

/** Counters and histograms, keyed by snake_case names. Unknown names start at zero. */
export class Metrics {
  #counters = new Map<string, number>();
  #histograms = new Map<string, { bounds: readonly number[]; counts: number[]; sum: number }>();
  #help = new Map<string, string>();

  /**
   * Adds to a counter.
   *
   * @param name The counter's name, such as `get_hits`.
   * @param value How much to add. @default {1}
   */
  add(name: string, value = 1): void {
    this.#counters.set(name, (this.#counters.get(name) ?? 0) + value);
  }

  /** Sets a gauge-like value (the last write wins). */
  set(name: string, value: number): void {
    this.#counters.set(name, value);
  }

  /** Reads a counter; zero when never touched. */
  get(name: string): number {
    return this.#counters.get(name) ?? 0;
  }

  /**
   * Records one observation in a histogram, creating it with `bounds` on first use.
   *
   * @param name The histogram's name, such as `s3_request_seconds`.
   * @param value The observed value (seconds for latencies).
   * @param bounds Upper bounds of the buckets. @default {LATENCY_BUCKETS}
   */
  observe(name: string, value: number, bounds: readonly number[] = LATENCY_BUCKETS): void {
    let histogram = this.#histograms.get(name);
    if (!histogram) {
      histogram = { bounds, counts: new Array(bounds.length).fill(0), sum: 0 };
      this.#histograms.set(name, histogram);
    }
    histogram.sum += value;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) histogram.counts[i]!++;
    }
    this.add(`${name}_count`);
  }

  /**
   * Sets every counter and histogram back to zero (`stats --reset`), except the names `keep`
   * says are state rather than counts (gauges).
   *
   * @param keep Which names to leave alone. @default none
   */
  reset(keep: (name: string) => boolean = () => false): void {
    for (const name of [...this.#counters.keys()]) {
      if (!keep(name)) this.#counters.set(name, 0);
    }
    for (const h of this.#histograms.values()) {
      h.counts.fill(0);
      h.sum = 0;
    }
  }

  /** Documents a metric for the Prometheus `# HELP` line. */
  describe(name: string, help: string): void {
    this.#help.set(name, help);
  }

  /** The help text given with {@linkcode Metrics.describe}, if any. */
  help(name: string): string | undefined {
    return this.#help.get(name);
  }

  /** All counters, sorted by name. */
  counters(): Record<string, number> {
    return Object.fromEntries(
      [...this.#counters].filter(([name]) => !this.#histograms.has(name.replace(/_count$/, "")))
        .sort(([a], [b]) => a.localeCompare(b)),
    );
  }

  /** All histograms, sorted by name. */
  histograms(): Record<string, HistogramSnapshot> {
    const out: Record<string, HistogramSnapshot> = {};
    for (const [name, h] of [...this.#histograms].sort(([a], [b]) => a.localeCompare(b))) {
      out[name] = {
        buckets: h.bounds.map((le, i) => ({ le, count: h.counts[i]! })),
        sum: h.sum,
        count: this.get(`${name}_count`),
      };
    }
    return out;
  }
}

export {
  classifyFault,
  type CollapsingLogger,
  collapsingLogger,
  type Fault,
  FAULT_CAUSES,
  FAULT_MEANING,
  type FaultCause,
  Faults,
} from "./faults.ts";
