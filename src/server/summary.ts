/**
 * One account of what a server's cache did, and its views: the rows the status page and `stats`
 * show (a table, Markdown for a CI job summary, JSON), a one-line headline, and GitHub
 * annotations for faults (`stats --format=github`). Built from `/debug/vars` (or the live
 * registry): counters, histograms, the server's mode, its faults and the session log's
 * miss-to-put measurements.
 *
 * ## What the account says
 *
 * - Hits by where they came from: `local` (the local tier's own), `warm` (outputs the warm-up
 *   fetched), `s3` (looked up on demand under `--prefix`), `read prefix` (under a
 *   `--read-prefixes` prefix). They add up to the hits.
 * - Bytes from the store, the warm-up's included, and the requests made (the warm-up's too).
 * - Uploads done, failed, queued, left at a shutdown, and kept local by `--read-only`.
 * - The mode: store, bucket and prefix, read prefixes, read-only, warm key.
 * - Faults: the first message of each cause (credentials, bucket, TLS, endpoint, timeout,
 *   slow, breaker, upload) with a count (`src/metrics/faults.ts`).
 * - Time saved: measured where it can be (hits on actions this server saw produced: what go took
 *   from the miss to the put), else an estimate marked as one, at the median miss-to-put and
 *   never more than go spent producing outputs on this server. Rows for what is off (no bucket,
 *   no module proxy) are left out.
 *
 * @module
 */

import type { MissToPut } from "./session_log.ts";
import { type Fault, FAULT_CAUSES, FAULT_MEANING, type FaultCause } from "../metrics/faults.ts";
import { hitsByTier, remoteRequests } from "../metrics/catalog.ts";
import { formatBytes } from "../util/mod.ts";

/** How the server is set up, as `/debug/vars` `server` says. */
export interface ServerMode {
  /** The bucket; "" without one. */
  bucket: string;
  /** Where the bucket is: the endpoint URL, or "AWS S3". @default {"AWS S3"} */
  store?: string;
  /** The own prefix. @default {""} */
  prefix?: string;
  /** Prefixes read after a miss under the own one. @default none */
  readPrefixes?: string[];
  /** Nothing is written to the bucket. @default {false} */
  readOnly?: boolean;
  /** The warm key, "" when the warm-up is off. @default {""} */
  warmKey?: string;
}

/** What a summary is made of. */
export interface SummaryInput {
  /** The counters (`/debug/vars` `counters`). */
  counters: Record<string, number>;
  /** Requests made to the object store (the store's `*_request_seconds` histogram's count). @default {0} */
  remoteRequests?: number;
  /**
   * The miss-to-put measurements; `undefined` when none were made yet, `null` when the server
   * does not make them.
   */
  missToPut?: MissToPut | null;
  /** Whether the server has an S3 tier. @default whether any S3 counter is set, or `mode.bucket` */
  bucket?: boolean;
  /** Whether the server runs the module proxy. @default whether any module-proxy counter is set */
  modproxy?: boolean;
  /** The server's mode. @default unknown: not shown */
  mode?: ServerMode;
  /** The faults, first cause and count each. @default none */
  faults?: Fault[];
}

/** One line of the summary. */
export interface SummaryRow {
  /** What it shows, such as `Hit rate`. */
  label: string;
  /** The value for people, such as `93.1% (3920 of 4210 gets, 290 misses)`. */
  text: string;
  /** The values for machines (`stats --format=json`), by snake_case name. */
  json: Record<string, number | string | boolean | null>;
  /** A fault to show beside the value (the status page marks it). @default none */
  fault?: string;
}

/** The account: every figure the views show. */
export interface Account {
  sessions: number;
  gets: number;
  hits: number;
  misses: number;
  getErrors: number;
  /** Hits by where they came from. */
  hitsBy: { local: number; warm: number; s3: number; readPrefix: number };
  servedBytes: number;
  /** Bytes from the object store: on demand and by the warm-up. */
  fetched: { lookup: number; warmUp: number; warmUpRaw: number };
  remoteRequests: number;
  uploadedBytes: number;
  uploads: {
    done: number;
    failed: number;
    pending: number;
    left: number;
    skipped: number;
    readOnly: number;
  };
  waitedMs: number;
  breakerTrips: number;
  breakerOpen: boolean;
  /** Whether there is a bucket, and the module proxy. */
  bucket: boolean;
  modproxy: boolean;
  mode?: ServerMode;
  faults: Fault[];
}

/** Fewer measured misses than this give no estimate of the time saved. */
export const MIN_MEASURED = 10;

/** Causes that mean the object store was not usable at all: an error annotation. */
const SEVERE: readonly FaultCause[] = ["credentials", "bucket", "tls", "endpoint"];

/**
 * The account of a summary input.
 *
 * @param input Counters, mode, faults.
 * @returns The figures.
 */
export function accountOf(input: SummaryInput): Account {
  const counters = input.counters;
  const m = (name: string) => counters[name] ?? 0;
  const names = Object.keys(counters);
  const bucket = input.bucket ?? (input.mode ? input.mode.bucket !== "" : undefined) ??
    names.some((n) => n.startsWith("s3_") || n.startsWith("uploads_"));
  const modproxy = input.modproxy ?? names.some((n) => n.startsWith("modproxy_"));
  const tiers = hitsByTier(m);
  const hits = m("get_hits");
  // Without the local_hits counter (an older server, or no S3 tier) every hit not from S3 is local.
  const local = "local_hits" in counters
    ? tiers.local!
    : Math.max(0, hits - tiers.warm! - tiers.s3! - tiers.read_prefix!);
  return {
    sessions: m("sessions_total"),
    gets: m("get_requests"),
    hits,
    misses: m("get_misses"),
    getErrors: m("get_errors"),
    hitsBy: { local, warm: tiers.warm!, s3: tiers.s3!, readPrefix: tiers.read_prefix! },
    servedBytes: m("get_hit_bytes"),
    fetched: {
      lookup: m("s3_bytes_down"),
      warmUp: m("warm_bytes"),
      // Older counters (no warm_raw_bytes): the warm-up's bytes were all raw.
      warmUpRaw: "warm_raw_bytes" in counters ? m("warm_raw_bytes") : m("warm_bytes"),
    },
    remoteRequests: input.remoteRequests ?? 0,
    uploadedBytes: m("s3_bytes_up"),
    uploads: {
      done: m("uploads_done"),
      failed: m("uploads_failed"),
      pending: m("uploads_pending"),
      left: m("uploads_left"),
      skipped: m("uploads_skipped"),
      readOnly: m("uploads_skipped_read_only"),
    },
    waitedMs: m("s3_wait_ms"),
    breakerTrips: m("s3_breaker_trips"),
    breakerOpen: m("s3_breaker_open") > 0,
    bucket,
    modproxy,
    mode: input.mode,
    faults: input.faults ?? [],
  };
}

/**
 * The summary rows; rows for what is off are left out.
 *
 * @param input Counters, mode, faults and measurements.
 * @returns The rows, in the order every view shows them.
 */
export function summarize(input: SummaryInput): SummaryRow[] {
  const a = accountOf(input);
  const m = (name: string) => input.counters[name] ?? 0;
  const rows: SummaryRow[] = [
    row("Go commands served", String(a.sessions), { "go_commands": a.sessions }),
    row("Gets", String(a.gets), { gets: a.gets }),
    row("Hit rate", hitRate(a), {
      "hit_rate": a.gets > 0 ? round(a.hits / a.gets, 4) : null,
      hits: a.hits,
      misses: a.misses,
      "get_errors": a.getErrors,
    }),
    row("Hits by source", hitSources(a), {
      "local_hits": a.hitsBy.local,
      "warm_hits": a.hitsBy.warm,
      "remote_hits": a.hitsBy.s3 + a.hitsBy.readPrefix,
      "read_prefix_hits": a.hitsBy.readPrefix,
    }),
    row("Served from cache", formatBytes(a.servedBytes), { "bytes_served": a.servedBytes }),
    row(
      "Errors",
      `${a.getErrors} get, ${m("put_errors")} put, ${m("session_errors")} session` +
        (a.bucket ? `, ${m("s3_get_errors")} ${storeNameOf(a.mode)} lookup` : ""),
      {
        "put_errors": m("put_errors"),
        "session_errors": m("session_errors"),
        "s3_get_errors": m("s3_get_errors"),
      },
    ),
  ];
  if (a.bucket) {
    const mode = a.mode;
    if (mode) rows.push(row("Store", storeText(mode), modeJson(mode)));
    const fetched = a.fetched.lookup + a.fetched.warmUp;
    const delivered = a.fetched.lookup + a.fetched.warmUpRaw;
    rows.push(
      row(
        "Fetched from the store",
        `${formatBytes(fetched)} (${formatBytes(a.fetched.warmUp)} by the warm-up, ` +
          `${formatBytes(a.fetched.lookup)} on demand) in ${a.remoteRequests} requests` +
          (delivered > fetched
            ? `; ${formatBytes(delivered)} once decompressed (${round(delivered / fetched, 2)}×)`
            : ""),
        {
          "bytes_downloaded": fetched,
          "bytes_downloaded_warm": a.fetched.warmUp,
          "bytes_downloaded_lookup": a.fetched.lookup,
          "bytes_delivered": delivered,
          "compression_ratio": fetched > 0 ? round(delivered / fetched, 3) : null,
          "remote_requests": a.remoteRequests,
        },
      ),
      row("Uploads", uploadsText(a), {
        "uploads_done": a.uploads.done,
        "uploads_failed": a.uploads.failed,
        "uploads_pending": a.uploads.pending,
        "uploads_left": a.uploads.left,
        "uploads_skipped_read_only": a.uploads.readOnly,
        "bytes_uploaded": a.uploadedBytes,
      }, uploadFault(a)),
      row("Waited on the store", formatDuration(a.waitedMs), {
        "s3_wait_seconds": round(a.waitedMs / 1000, 3),
      }),
      row(
        "Store health",
        a.breakerOpen
          ? `paused or disabled: serving the local tier (breaker tripped ${a.breakerTrips} times)`
          : a.breakerTrips > 0
          ? `answering (breaker tripped ${a.breakerTrips} times)`
          : "answering",
        { "breaker_trips": a.breakerTrips, "breaker_open": a.breakerOpen },
        a.breakerOpen ? firstCause(a.faults) : undefined,
      ),
    );
  }
  if (a.bucket || a.faults.length > 0) {
    rows.push(
      row("Faults", faultsText(a.faults), {
        faults: a.faults.length === 0
          ? "none"
          : a.faults.map((f) => `${f.cause} x${f.count}: ${f.first}`).join("; "),
        ...Object.fromEntries(
          FAULT_CAUSES.map((c) => [`faults_${c}`, a.faults.find((f) => f.cause === c)?.count ?? 0]),
        ),
      }, a.faults.length > 0 ? faultsText(a.faults) : undefined),
    );
  }
  if (a.modproxy) {
    const classes = ["immutable", "mutable", "sumdb"];
    const modHits = classes.reduce((sum, c) => sum + m(`modproxy_${c}_hits`), 0);
    const modMisses = classes.reduce((sum, c) => sum + m(`modproxy_${c}_misses`), 0);
    const notFound = m("modproxy_not_found");
    const modErrors = m("modproxy_errors");
    rows.push(
      row("Module proxy hits", String(modHits), { "modproxy_hits": modHits }),
      row(
        "Module proxy misses",
        `${modMisses} (${m("modproxy_upstream_fetches")} upstream fetches; ` +
          `${notFound} answered not found, ${modErrors} errors)`,
        {
          "modproxy_misses": modMisses,
          "modproxy_not_found": notFound,
          "modproxy_errors": modErrors,
        },
      ),
    );
  }
  if (Object.keys(input.counters).some((n) => n.startsWith("revproxy_"))) {
    rows.push(...revproxyRows(m));
  }
  rows.push(timeSaved(a.hits, input.missToPut, a.bucket));
  return rows;
}

/**
 * The one-line headline a CI engineer reads first: hit rate, where hits came from, what was
 * uploaded (or why not), and the fault that mattered.
 *
 * @param input The summary input.
 * @returns One line of Markdown.
 */
export function headline(input: SummaryInput): string {
  const a = accountOf(input);
  const parts = [
    a.gets > 0
      ? `**${percent(a.hits / a.gets)} hits** (${a.hits} of ${a.gets} gets): ${hitSources(a)}`
      : "**no gets yet**",
  ];
  if (a.bucket) {
    const ro = a.mode?.readOnly || (a.uploads.readOnly > 0 && a.uploads.done === 0);
    if (ro) {
      parts.push(`read-only: nothing uploaded (${a.uploads.readOnly} outputs kept local)`);
    } else {
      parts.push(
        `uploaded ${a.uploads.done} (${formatBytes(a.uploadedBytes)})` +
          (a.uploads.failed > 0 ? `, **${a.uploads.failed} failed**` : "") +
          (a.uploads.left > 0 ? `, ${a.uploads.left} left for the next run` : ""),
      );
    }
    const severe = a.faults.find((f) => SEVERE.includes(f.cause));
    if (severe) parts.push(`**store unusable: ${FAULT_MEANING[severe.cause]}**`);
  } else {
    parts.push("local tier only (no bucket)");
  }
  return parts.join(" · ");
}

/**
 * GitHub workflow commands for what went wrong: an `::error::` when the store could not be used
 * (credentials, bucket, TLS, endpoint) or uploads failed, a `::warning::` for other faults and
 * for uploads left undone, a `::notice::` for read-only. One line each; none when all is well.
 *
 * @param input The summary input.
 * @returns The lines, each ending with a newline ("" for none).
 */
export function annotations(input: SummaryInput): string {
  const a = accountOf(input);
  const lines: string[] = [];
  const title = "Go build cache";
  const add = (level: "error" | "warning" | "notice", text: string) =>
    lines.push(`::${level} title=${title}::${escapeCommand(text)}`);
  for (const f of a.faults) {
    const what = `${FAULT_MEANING[f.cause]} (${f.count} time${f.count === 1 ? "" : "s"}), ` +
      `first: ${f.first}`;
    const name = storeNameOf(a.mode);
    if (SEVERE.includes(f.cause)) add("error", `The ${name} tier was not used: ${what}`);
    else if (f.cause !== "upload") add("warning", `${name} tier: ${what}`);
  }
  if (a.uploads.failed > 0) {
    const cause = firstCause(a.faults);
    add(
      "error",
      `${a.uploads.failed} uploads to the bucket failed (${a.uploads.done} done)` +
        (cause ? `: ${cause}` : ""),
    );
  }
  if (a.uploads.left > 0) {
    add("warning", `${a.uploads.left} uploads were left undone at shutdown`);
  }
  if (a.bucket && a.mode?.readOnly) {
    add("notice", `Read-only: nothing was uploaded (${a.uploads.readOnly} outputs kept local)`);
  }
  return lines.map((l) => l + "\n").join("");
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
export function summaryJson(
  rows: readonly SummaryRow[],
): Record<string, number | string | boolean | null> {
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
        producedMs: "produced_ms" in measured ? Number(measured.produced_ms) || 0 : undefined,
      }
      : undefined;
  }
  const histograms = (record.histograms ?? {}) as Record<string, { count?: unknown }>;
  const mode = typeof server.mode === "object" && server.mode !== null
    ? server.mode as ServerMode
    : undefined;
  const faults = Array.isArray(record.faults) ? record.faults as Fault[] : undefined;
  return {
    counters: counters as Record<string, number>,
    remoteRequests: remoteRequests(histograms),
    missToPut,
    bucket: typeof server.bucket === "boolean" ? server.bucket : undefined,
    modproxy: typeof server.modproxy === "boolean" ? server.modproxy : undefined,
    mode,
    faults,
  };
}

function hitRate(a: Account): string {
  if (a.gets === 0) return "no requests yet";
  return `${percent(a.hits / a.gets)} (${a.hits} of ${a.gets} gets, ${a.misses} misses` +
    (a.getErrors > 0 ? `, ${a.getErrors} errors` : "") + ")";
}

function hitSources(a: Account): string {
  if (a.hits === 0) return "no hits";
  if (!a.bucket) return `${a.hitsBy.local} local`;
  const parts = [
    `${a.hitsBy.local} local`,
    `${a.hitsBy.warm} from the warm-up`,
    `${a.hitsBy.s3} from ${storeNameOf(a.mode)} on demand`,
  ];
  if (a.hitsBy.readPrefix > 0 || (a.mode?.readPrefixes?.length ?? 0) > 0) {
    parts.push(`${a.hitsBy.readPrefix} from read prefixes`);
  }
  return parts.join(", ");
}

/**
 * The store's name in the account's lines, from the bucket's scheme (`gs://` is GCS).
 *
 * @param mode The server's set-up; `bucket` is its bucket's URL.
 * @returns `S3`, `GCS` or `Azure`.
 */
export function storeNameOf(mode: Pick<ServerMode, "bucket"> | undefined): string {
  const scheme = /^([a-z]+):\/\//.exec(mode?.bucket ?? "")?.[1];
  return scheme === "gs" ? "GCS" : scheme === "azblob" ? "Azure" : "S3";
}

function storeText(mode: ServerMode): string {
  const url = mode.bucket.includes("://") ? mode.bucket : `s3://${mode.bucket}`;
  const where = `${url}${mode.prefix ? `/${mode.prefix}` : ""}` +
    ` (${mode.store || "AWS S3"})`;
  const parts = [where];
  if (mode.readPrefixes?.length) {
    parts.push(`read prefixes ${mode.readPrefixes.map((p) => p || "/").join(", ")}`);
  }
  parts.push(
    mode.readOnly ? "read-only: nothing is written to the bucket" : "read-write",
    mode.warmKey ? `warm key ${JSON.stringify(mode.warmKey)}` : "warm-up off",
  );
  return parts.join("; ");
}

function modeJson(mode: ServerMode): SummaryRow["json"] {
  return {
    bucket: mode.bucket,
    prefix: mode.prefix ?? "",
    "read_prefixes": (mode.readPrefixes ?? []).join(","),
    "read_only": mode.readOnly ?? false,
    "warm_key": mode.warmKey ?? "",
    store: mode.store || "AWS S3",
  };
}

function uploadsText(a: Account): string {
  const u = a.uploads;
  if (a.mode?.readOnly) {
    return `none: read-only (${u.readOnly} outputs kept local)`;
  }
  const parts = [
    `${u.done} done (${formatBytes(a.uploadedBytes)})`,
    `${u.failed} failed`,
    `${u.pending} queued or running`,
  ];
  if (u.left > 0) parts.push(`${u.left} left at a shutdown, retried by the next session`);
  if (u.readOnly > 0) parts.push(`${u.readOnly} kept local (read-only)`);
  return parts.join(", ");
}

function uploadFault(a: Account): string | undefined {
  if (a.uploads.failed === 0) return undefined;
  const cause = firstCause(a.faults);
  return `${a.uploads.failed} failed` + (cause ? `: ${cause}` : "");
}

/** The first cause that explains a failure: a severe one, else any but `upload`. */
function firstCause(faults: Fault[]): string | undefined {
  const f = faults.find((f) => SEVERE.includes(f.cause)) ??
    faults.find((f) => f.cause !== "upload" && f.cause !== "breaker") ??
    faults.find((f) => f.cause === "breaker");
  return f && `${FAULT_MEANING[f.cause]}: ${f.first}`;
}

function faultsText(faults: Fault[]): string {
  if (faults.length === 0) return "none";
  return faults.map((f) => `${f.cause} ×${f.count} (first: ${f.first})`).join("; ");
}

function timeSaved(
  hits: number,
  missToPut: MissToPut | null | undefined,
  bucket: boolean,
): SummaryRow {
  const elsewhere = bucket
    ? "warm-up, the bucket or an earlier server"
    : "an earlier server or process";
  const label = "Build time saved";
  const none = (text: string, basis: string) =>
    row(label, text, {
      "time_saved_ms": null,
      "time_saved_measured_ms": null,
      "time_saved_estimated_ms": null,
      "time_saved_measured_hits": 0,
      "time_saved_basis": basis,
    });
  if (missToPut === null) {
    return none(
      "not known: this server does not measure how long go takes per miss",
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
    const why = `${others} hits on outputs built elsewhere (${elsewhere}), ` +
      `and ${measured} misses measured here (${MIN_MEASURED} needed for an estimate)`;
    return none(`not measured: ${why}`, why);
  }
  const parts: string[] = [];
  if (savedHits > 0) {
    parts.push(
      `${savedHits} hits measured, ${formatDuration(savedMs)}: what go took from the miss to ` +
        "the put of each same action earlier on this server",
    );
  }
  let estimatedMs: number | null = null;
  if (others > 0 && canEstimate) {
    // Bounded by what producing outputs cost go on this server: never more than the builds took.
    const bound = missToPut!.producedMs ?? Infinity;
    const raw = others * missToPut!.medianMs;
    estimatedMs = Math.round(Math.min(raw, bound));
    parts.push(
      `estimate for ${others} hits on outputs built elsewhere: ${
        formatDuration(estimatedMs)
      } (the median miss-to-put here, ${missToPut!.medianMs} ms over the last ${measured} ` +
        `misses, times the hits` +
        (raw > bound ? `, capped at the ${formatDuration(bound)} go spent building here` : "") +
        ")",
    );
  } else if (others > 0) {
    parts.push(`${others} hits on outputs built elsewhere, not counted`);
  }
  parts.push("compute time, not wall-clock time: go runs steps in parallel");
  const basis = parts.join("; ");
  const measuredText = savedHits > 0 ? `${formatDuration(savedMs)} measured` : "";
  const estimateText = estimatedMs !== null ? `about ${formatDuration(estimatedMs)} estimated` : "";
  const lead = others > 0 && estimatedMs === null
    ? `at least ${measuredText}`
    : [measuredText, estimateText].filter((s) => s).join(" + ");
  return row(label, `${lead} (${basis})`, {
    "time_saved_ms": savedHits > 0 || estimatedMs !== null
      ? Math.round(savedMs + (estimatedMs ?? 0))
      : null,
    "time_saved_measured_ms": savedHits > 0 ? Math.round(savedMs) : 0,
    "time_saved_estimated_ms": estimatedMs,
    "time_saved_measured_hits": savedHits,
    "time_saved_basis": basis,
  });
}

function row(
  label: string,
  text: string,
  json: SummaryRow["json"],
  fault?: string,
): SummaryRow {
  return fault ? { label, text, json, fault } : { label, text, json };
}

function percent(fraction: number): string {
  return `${(100 * fraction).toFixed(1)}%`;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Escapes a GitHub workflow command's message (`%`, CR, LF). */
function escapeCommand(text: string): string {
  return text.replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
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
