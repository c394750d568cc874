/**
 * The Prometheus text exposition (format 0.0.4) of a {@linkcode Metrics} registry, by the
 * catalogue (`catalog.ts`): every family with its HELP and TYPE from the start, counters ending
 * in `_total`, durations in seconds, sizes in bytes, labels (`tier`, `result`, `op`, `store`,
 * `class`, `cause`) where one quantity is split. Besides the catalogue: the histograms
 * (`remote_request_seconds` for S3, `gcs_request_seconds`, `miss_to_put_seconds`), `faults_total{cause}`, a
 * `build_info{version,deno}` gauge, and the standard process metrics (`process_*`). A counter the
 * catalogue does not know (none should: a test checks) is still exported, as
 * `go_cache_plugin_uncatalogued{name}`.
 *
 * @module
 */

import { cpuUsage } from "node:process";
import { catalogued, FAMILIES } from "./catalog.ts";
import { FAULT_CAUSES, type Faults } from "./faults.ts";
import type { Metrics } from "./mod.ts";

/** The prefix of every family of this program. */
export const PREFIX = "go_cache_plugin_";

/** Histograms by their registry name: exported name and HELP. */
const HISTOGRAMS: Record<string, { name: string; help: string; labels?: string }> = {
  "s3_request_seconds": {
    name: "remote_request_seconds",
    help: "Latency of object store requests made on demand (lookups and uploads); the count " +
      "is the requests made",
    labels: `store="build"`,
  },
  "gcs_request_seconds": {
    name: "gcs_request_seconds",
    help: "Latency of Google Cloud Storage requests made on demand (lookups and uploads); the " +
      "count is the requests made",
    labels: `store="build"`,
  },
  "miss_to_put_seconds": {
    name: "miss_to_put_seconds",
    help: "How long go took from a miss to the put of the same action (what producing it cost)",
  },
};

/** Options for {@linkcode prometheusText}. */
export interface ExpositionOptions {
  /** Faults by cause. @default none: all zero */
  faults?: Faults;
  /** The program's version, for `build_info`. @default {"unknown"} */
  version?: string;
  /** When the process started (epoch ms). @default {the module's load time} */
  startedAt?: number;
}

const LOADED_AT = performance.timeOrigin;

/**
 * Renders the registry in the Prometheus text exposition format (version 0.0.4).
 *
 * @example
 * ```ts
 * import { Metrics } from "./mod.ts";
 * import { prometheusText } from "./prometheus.ts";
 * const metrics = new Metrics();
 * metrics.add("get_requests");
 * metrics.add("get_hits");
 * if (!prometheusText(metrics).includes('go_cache_plugin_gets_total{result="hit"} 1')) {
 *   throw new Error("the hit is exported");
 * }
 * ```
 *
 * @param metrics The registry.
 * @param options Faults, version and start time.
 * @returns The exposition, ending with a newline.
 */
export function prometheusText(metrics: Metrics, options: ExpositionOptions = {}): string {
  const lines: string[] = [];
  const counters = metrics.counters();
  const m = (name: string) => counters[name] ?? 0;
  const family = (name: string, type: string, help: string) => {
    lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  };
  for (const spec of FAMILIES) {
    const full = PREFIX + spec.name;
    family(full, spec.type, spec.help);
    for (const series of spec.series) {
      const raw = typeof series.value === "string" ? m(series.value) : series.value(m);
      lines.push(`${full}${labels(series.labels)} ${formatNumber(raw * (series.scale ?? 1))}`);
    }
  }
  const faults = options.faults;
  family(
    `${PREFIX}faults_total`,
    "counter",
    "Failures by first cause (credentials, bucket, tls, endpoint, timeout, slow, breaker: " +
      "the breaker paused the store, upload: uploads not made, other)",
  );
  for (const cause of FAULT_CAUSES) {
    lines.push(`${PREFIX}faults_total{cause="${cause}"} ${faults?.count(cause) ?? 0}`);
  }
  const histograms = metrics.histograms();
  for (const [name, spec] of Object.entries(HISTOGRAMS)) {
    const h = histograms[name] ?? { buckets: [], sum: 0, count: 0 };
    const full = PREFIX + spec.name;
    const extra = spec.labels ? `${spec.labels},` : "";
    family(full, "histogram", spec.help);
    for (const bucket of h.buckets) {
      lines.push(
        `${full}_bucket{${extra}le="${formatNumber(bucket.le)}"} ${formatNumber(bucket.count)}`,
      );
    }
    lines.push(`${full}_bucket{${extra}le="+Inf"} ${formatNumber(h.count)}`);
    const plain = spec.labels ? `{${spec.labels}}` : "";
    lines.push(`${full}_sum${plain} ${formatNumber(h.sum)}`);
    lines.push(`${full}_count${plain} ${formatNumber(h.count)}`);
  }
  const known = catalogued();
  const others = Object.keys(counters).filter((name) =>
    !known.has(name) && !(name.replace(/_count$/, "") in HISTOGRAMS)
  );
  if (others.length > 0) {
    family(
      `${PREFIX}uncatalogued`,
      "gauge",
      "Counters not yet in the catalogue of src/metrics/catalog.ts, by name",
    );
    for (const name of others) lines.push(`${PREFIX}uncatalogued{name="${name}"} ${m(name)}`);
  }
  family(`${PREFIX}build_info`, "gauge", "Always 1: the program's version and its Deno runtime");
  lines.push(
    `${PREFIX}build_info{version="${escapeLabel(options.version ?? "unknown")}",deno="${
      escapeLabel(Deno.version.deno)
    }"} 1`,
  );
  lines.push(...processMetrics(options.startedAt ?? LOADED_AT));
  return lines.join("\n") + "\n";
}

/** The standard process metrics (names as the Prometheus client libraries export them). */
function processMetrics(startedAt: number): string[] {
  const cpu = cpuUsage();
  const memory = Deno.memoryUsage();
  return [
    "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
    "# TYPE process_cpu_seconds_total counter",
    `process_cpu_seconds_total ${formatNumber((cpu.user + cpu.system) / 1e6)}`,
    "# HELP process_resident_memory_bytes Resident memory size in bytes.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${memory.rss}`,
    "# HELP process_heap_bytes Process heap size in bytes (V8 heap used).",
    "# TYPE process_heap_bytes gauge",
    `process_heap_bytes ${memory.heapUsed}`,
    "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
    "# TYPE process_start_time_seconds gauge",
    `process_start_time_seconds ${formatNumber(Math.round(startedAt) / 1000)}`,
  ];
}

function labels(pairs: Record<string, string> | undefined): string {
  if (!pairs) return "";
  const inner = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
  return `{${inner}}`;
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
