/**
 * The summary of what a server's cache did, in one list of rows that every view shares: the
 * status page, and `stats` as a table, Markdown (a CI job summary) or JSON. Built from the
 * counters and the session log's miss-to-put measurements, or from a `/debug/vars` answer.
 *
 * @module
 */

import type { MissToPut } from "./session_log.ts";

/** What a summary is made of. */
export interface SummaryInput {
  /** The counters (`/debug/vars` `counters`). */
  counters: Record<string, number>;
  /**
   * The miss-to-put measurements; `undefined` when none were made yet, `null` when the server
   * does not make them.
   */
  missToPut?: MissToPut | null;
  /** Whether the server has an S3 tier. @default whether any S3 counter is set */
  bucket?: boolean;
  /** Whether the server runs the module proxy. @default whether any module-proxy counter is set */
  modproxy?: boolean;
}

/** One line of the summary. */
export interface SummaryRow {
  /** What it shows, such as `Hit rate`. */
  label: string;
  /** The value for people, such as `93.1% (3920 hits, 290 misses)`. */
  text: string;
  /** The values for machines (`stats --format=json`), by snake_case name. */
  json: Record<string, number | string | null>;
}

/** Fewer measured misses than this give no estimate of the time saved. */
export const MIN_MEASURED = 10;

/**
 * The summary rows.
 *
 * @param input Counters and measurements.
 * @returns The rows, in the order every view shows them.
 */
export function summarize(input: SummaryInput): SummaryRow[] {
  const counters = input.counters;
  const m = (name: string) => counters[name] ?? 0;
  const names = Object.keys(counters);
  const bucket = input.bucket ?? names.some((n) => n.startsWith("s3_") || n.startsWith("uploads_"));
  const modproxy = input.modproxy ?? names.some((n) => n.startsWith("modproxy_"));
  const gets = m("get_requests");
  const hits = m("get_hits");
  const misses = m("get_misses");
  const remote = m("s3_get_hits");
  const local = "local_hits" in counters ? m("local_hits") : Math.max(0, hits - remote);
  const pending = m("uploads_pending");
  const left = m("uploads_left");
  const classes = ["immutable", "mutable", "sumdb"];
  const modHits = classes.reduce((sum, c) => sum + m(`modproxy_${c}_hits`), 0);
  const modMisses = classes.reduce((sum, c) => sum + m(`modproxy_${c}_misses`), 0);
  const notFound = m("modproxy_not_found");
  const modErrors = m("modproxy_errors");
  const off = (why: string) => `off (${why})`;
  return [
    row("Go commands served", String(m("sessions_total")), { "go_commands": m("sessions_total") }),
    row("Gets", String(gets), { gets }),
    row(
      "Hit rate",
      gets > 0 ? `${percent(hits / gets)} (${hits} hits, ${misses} misses)` : "no requests yet",
      { "hit_rate": gets > 0 ? round(hits / gets, 4) : null, hits, misses },
    ),
    row("Local hits", String(local), { "local_hits": local }),
    row("Remote hits", bucket ? `${remote} from S3` : off("no --bucket"), {
      "remote_hits": remote,
    }),
    row("Served from cache", formatBytes(m("get_hit_bytes")), {
      "bytes_served": m("get_hit_bytes"),
    }),
    row("Downloaded from S3", bucket ? formatBytes(m("s3_bytes_down")) : off("no --bucket"), {
      "bytes_downloaded": m("s3_bytes_down"),
    }),
    row("Uploaded to S3", bucket ? formatBytes(m("s3_bytes_up")) : off("no --bucket"), {
      "bytes_uploaded": m("s3_bytes_up"),
    }),
    row("Waited on S3", bucket ? formatDuration(m("s3_wait_ms")) : off("no --bucket"), {
      "s3_wait_ms": m("s3_wait_ms"),
    }),
    row(
      "Uploads left",
      !bucket ? off("no --bucket") : [
        `${pending} queued or running`,
        ...left > 0 ? [`${left} left at a shutdown, retried by the next session`] : [],
      ].join(", "),
      { "uploads_pending": pending, "uploads_left": left },
    ),
    row("S3 breaker trips", bucket ? String(m("s3_breaker_trips")) : off("no --bucket"), {
      "breaker_trips": m("s3_breaker_trips"),
    }),
    row("Module proxy hits", modproxy ? String(modHits) : off("no --modproxy"), {
      "modproxy_hits": modHits,
    }),
    row(
      "Module proxy misses",
      modproxy
        ? `${modMisses} (${m("modproxy_upstream_fetches")} upstream fetches; ` +
          `${notFound} answered not found, ${modErrors} errors)`
        : off("no --modproxy"),
      {
        "modproxy_misses": modMisses,
        "modproxy_not_found": notFound,
        "modproxy_errors": modErrors,
      },
    ),
    ...(names.some((n) => n.startsWith("revproxy_")) ? revproxyRows(m) : []),
    timeSaved(hits, input.missToPut),
  ];
}

/** The caching proxy's rows (`--revproxy`), shown only when it has counted something. */
function revproxyRows(m: (name: string) => number): SummaryRow[] {
  const memory = m("revproxy_hits_memory");
  const local = m("revproxy_hits_local");
  const remote = m("revproxy_hits_remote");
  return [
    row(
      "Proxy hits",
      `${memory + local + remote} (memory ${memory}, disk ${local}, bucket ${remote})`,
      {
        "revproxy_hits": memory + local + remote,
        "revproxy_hits_memory": memory,
        "revproxy_hits_local": local,
        "revproxy_hits_remote": remote,
      },
    ),
    row(
      "Proxy fetches",
      `${m("revproxy_fetches")} (${m("revproxy_fetch_cached")} kept on disk, ` +
        `${m("revproxy_fetch_memory")} in memory, ${
          m("revproxy_fetch_uncached")
        } passed through; ` +
        `${m("revproxy_tunnels")} tunnels, ${m("revproxy_refused")} refused)`,
      {
        "revproxy_fetches": m("revproxy_fetches"),
        "revproxy_fetch_cached": m("revproxy_fetch_cached"),
        "revproxy_tunnels": m("revproxy_tunnels"),
        "revproxy_refused": m("revproxy_refused"),
      },
    ),
    row("Proxy bytes served", formatBytes(m("revproxy_bytes_served")), {
      "revproxy_bytes_served": m("revproxy_bytes_served"),
      "revproxy_bytes_fetched": m("revproxy_bytes_fetched"),
    }),
  ];
}

/**
 * The summary as one JSON object: every row's values.
 *
 * @param rows The rows of {@linkcode summarize}.
 * @returns The values by name.
 */
export function summaryJson(rows: readonly SummaryRow[]): Record<string, number | string | null> {
  return Object.assign({}, ...rows.map((r) => r.json));
}

/**
 * Reads the summary input out of a `/debug/vars` answer.
 *
 * @param vars The parsed JSON.
 * @returns The input for {@linkcode summarize}.
 * @throws {TypeError} When it has no `counters` object.
 */
export function summaryInputOf(vars: unknown): SummaryInput {
  const record = (vars ?? {}) as Record<string, unknown>;
  const counters = record.counters;
  if (typeof counters !== "object" || counters === null) {
    throw new TypeError("Cannot read the server's counters: the answer has no counters object");
  }
  const server = (record.server ?? {}) as Record<string, unknown>;
  let missToPut: MissToPut | null | undefined = null; // an older server: not measured
  if ("miss_to_put" in record) {
    const measured = record.miss_to_put as Record<string, unknown> | null;
    missToPut = measured
      ? {
        measured: Number(measured.measured) || 0,
        medianMs: Number(measured.median_ms) || 0,
        savedHits: Number(measured.saved_hits) || 0,
        savedMs: Number(measured.saved_ms) || 0,
      }
      : undefined;
  }
  return {
    counters: counters as Record<string, number>,
    missToPut,
    bucket: typeof server.bucket === "boolean" ? server.bucket : undefined,
    modproxy: typeof server.modproxy === "boolean" ? server.modproxy : undefined,
  };
}

function timeSaved(hits: number, missToPut: MissToPut | null | undefined): SummaryRow {
  const label = "Build time saved";
  const none = (text: string, basis: string) =>
    row(label, text, {
      "time_saved_ms": null,
      "time_saved_measured_hits": 0,
      "time_saved_basis": basis,
    });
  if (missToPut === null) {
    return none(
      "not estimated: this server does not measure how long go takes per miss",
      "not measured by this server",
    );
  }
  if (hits === 0) return none("none yet: no hits", "no hits yet");
  const savedHits = Math.min(missToPut?.savedHits ?? 0, hits);
  const savedMs = missToPut?.savedMs ?? 0;
  const others = hits - savedHits;
  const measured = missToPut?.measured ?? 0;
  const canEstimate = missToPut !== undefined && measured >= MIN_MEASURED;
  if (savedHits === 0 && !canEstimate) {
    const why = `no hit on an action produced here yet, and ${measured} misses measured so far ` +
      `(${MIN_MEASURED} needed for an estimate)`;
    return none(`not estimated yet: ${why}`, why);
  }
  const parts: string[] = [];
  if (savedHits > 0) {
    parts.push(
      `${savedHits} hits measured, ${formatDuration(savedMs)}: what go took from the miss to ` +
        "the put of each same action earlier on this server",
    );
  }
  let ms = savedMs;
  if (others > 0 && canEstimate) {
    ms += others * missToPut!.medianMs;
    parts.push(
      `${others} hits on actions this server did not see produced, estimated at the median ` +
        `miss-to-put, ${missToPut!.medianMs} ms (over the last ${measured} misses)`,
    );
  } else if (others > 0) {
    parts.push(`${others} hits on actions this server did not see produced, not counted`);
  }
  parts.push("compute time, not wall-clock time: go runs steps in parallel");
  const basis = parts.join("; ");
  const exact = others === 0;
  const approx = exact ? "" : others > 0 && canEstimate ? "about " : "at least ";
  return row(label, `${approx}${formatDuration(Math.round(ms))} (${basis})`, {
    "time_saved_ms": Math.round(ms),
    "time_saved_measured_hits": savedHits,
    "time_saved_basis": basis,
  });
}

function row(label: string, text: string, json: SummaryRow["json"]): SummaryRow {
  return { label, text, json };
}

function percent(fraction: number): string {
  return `${(100 * fraction).toFixed(1)}%`;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/**
 * Bytes for people: `512 B`, `3.0 MiB`.
 *
 * @param bytes A count of bytes.
 * @returns The text.
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * Milliseconds for people: `850 ms`, `12.3 s`, `4m12s`, `2h05m`.
 *
 * @param ms A duration.
 * @returns The text.
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const min = Math.floor((s % 3600) / 60);
  return h > 0
    ? `${h}h${String(min).padStart(2, "0")}m`
    : `${min}m${String(s % 60).padStart(2, "0")}s`;
}
