/**
 * The status page at `/` of `serve --http`: the account `stats` prints (`summary.ts`), the
 * server's own state (store health with the reason of any fault, errors, addresses), the hit rate
 * per minute as an inline SVG chart, and the recent go commands (`go build`, `go test`, …) as a
 * table. Rows for what is off (no bucket, no module proxy) are left out. One self-contained HTML
 * document, no external assets; a small script fetches `/status/fragment` every five seconds and
 * replaces the content, so it updates without reloading the page.
 *
 * @module
 */

import type { Metrics } from "../metrics/mod.ts";
import type { Fault } from "../metrics/faults.ts";
import { remoteRequests } from "../metrics/catalog.ts";
import type { MinuteCount, MissToPut, SessionRecord } from "./session_log.ts";
import { formatBytes } from "../util/mod.ts";
import { type ServerMode, storeNameOf, summarize } from "./summary.ts";

/** What the status page shows besides metrics. */
export interface StatusInfo {
  /** Where `connect` reaches the plugin listener. */
  pluginAddress: string;
  /** The local tier's directory. */
  cacheDir: string;
  /** The S3 bucket, or "" for the local tier alone. */
  bucket: string;
  /** Whether `/mod/` is served. */
  modproxy: boolean;
  /** The program's version. */
  version: string;
  /** The S3 tier's set-up. @default not shown */
  mode?: ServerMode;
  /** `--max-size` in bytes; 0 for none. @default {0} */
  maxSize?: number;
}

/** The session log as the HTTP side reads it (see `session_log.ts`). */
export interface SessionView {
  /** The listed sessions, newest first. */
  recent(): SessionRecord[];
  /** Gets and hits per minute, oldest first. */
  hitRateByMinute(): MinuteCount[];
  /** The miss-to-put measurements, `undefined` before the first. */
  missToPut(): MissToPut | undefined;
}

/** What the page is rendered from besides the registry and the static facts. */
export interface StatusPageOptions {
  /** When the server started (epoch ms). */
  startedAt: number;
  /** The session log, when there is one. */
  sessions?: SessionView;
  /** The faults by first cause. */
  faults?: Fault[];
}

/** How often the page fetches its content again, in ms. */
export const REFRESH_MS = 5000;

/**
 * Renders the status page.
 *
 * @param metrics The shared registry.
 * @param status Static facts about the server.
 * @param options Start time, the session log and the faults.
 * @returns The HTML document.
 */
export function statusPage(
  metrics: Metrics,
  status: StatusInfo,
  options: StatusPageOptions,
): string {
  return `<!doctype html>
<html><head><meta charset="utf-8">
<title>go-cache-plugin</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}td{padding:.2em 1em .2em 0}
th{text-align:left;padding-right:1em;font-weight:600}.ok{color:#080}.bad{color:#c00}
.why{color:#c00;display:block;font-size:.9em}#updated{color:#666;font-size:.9em}
table.runs td,table.runs th{text-align:right}table.runs td.cmd{text-align:left}
h2{font-size:1.1em;margin-top:1.5em}</style></head>
<body><h1>go-cache-plugin ${escapeHtml(status.version)}</h1>
<main id="status">
${statusFragment(metrics, status, options)}
</main>
<p><a href="/metrics">/metrics</a> · <a href="/debug/vars">/debug/vars</a> ·
<span id="updated">updates every ${REFRESH_MS / 1000} s</span></p>
<script>
(() => {
  const main = document.getElementById("status");
  const updated = document.getElementById("updated");
  const tick = async () => {
    try {
      const response = await fetch("/status/fragment", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      main.innerHTML = await response.text();
      updated.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      updated.textContent = "not updated: the server did not answer (" + error.message + ")";
    }
  };
  setInterval(tick, ${REFRESH_MS});
})();
</script>
</body></html>
`;
}

/**
 * Renders the page's content (what `/status/fragment` answers and the page swaps in).
 *
 * @param metrics The shared registry.
 * @param status Static facts about the server.
 * @param options Start time, the session log and the faults.
 * @returns An HTML fragment.
 */
export function statusFragment(
  metrics: Metrics,
  status: StatusInfo,
  options: StatusPageOptions,
): string {
  const m = (name: string) => metrics.get(name);
  const sessions = options.sessions;
  const faults = options.faults ?? [];
  const histograms = metrics.histograms();
  const summary = summarize({
    counters: metrics.counters(),
    remoteRequests: remoteRequests(histograms),
    missToPut: sessions ? sessions.missToPut() : null,
    bucket: status.bucket !== "",
    modproxy: status.modproxy,
    mode: status.mode,
    faults,
  });
  const server: [string, string][] = [];
  if (status.bucket) {
    const reason = faults.find((f) => f.cause !== "upload" && f.cause !== "breaker") ??
      faults.find((f) => f.cause === "breaker");
    const why = reason
      ? `<span class="why">${escapeHtml(`${reason.cause}: ${reason.first}`)}</span>`
      : "";
    const s3 = m("s3_breaker_open") > 0
      ? `<b class="bad">DOWN</b>: serving the local tier (bucket ${
        escapeHtml(status.bucket)
      })${why}`
      : `<b class="ok">OK</b> (bucket ${escapeHtml(status.bucket)})${
        reason ? `, earlier fault${why}` : ""
      }`;
    const name = storeNameOf({ bucket: status.bucket });
    server.push(
      [name, s3],
      [
        `${name} errors`,
        `${m("s3_get_errors")} failed lookups, ${m("uploads_failed")} failed uploads`,
      ],
    );
  }
  server.push(
    ["Stored", `${m("put_requests")} puts, ${formatBytes(m("put_bytes"))}`],
    ["Sessions", `${m("sessions")} now, ${m("sessions_total")} since start`],
    ["Plugin", `<code>${escapeHtml(status.pluginAddress)}</code>`],
    [
      "Cache directory",
      `<code>${escapeHtml(status.cacheDir)}</code>` +
      (status.maxSize ? ` (kept under ${formatBytes(status.maxSize)})` : ""),
    ],
  );
  if (status.modproxy) server.push(["Module proxy", `on at <a href="/mod/">/mod/</a>`]);
  server.push(["Uptime", formatUptime(Date.now() - options.startedAt)]);
  const table = (rows: [string, string][]) =>
    `<table>\n${rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("\n")}\n</table>`;
  return `${
    table(summary.map((r) => [
      r.label,
      escapeHtml(r.text) +
      (r.fault ? `<span class="why">${escapeHtml(r.fault)}</span>` : ""),
    ]))
  }
<h2>Server</h2>
${table(server)}
${sessions ? hitRateChart(sessions.hitRateByMinute()) : ""}
${sessions ? recentTable(sessions.recent()) : ""}`;
}

const CHART_WIDTH = 600;
const CHART_HEIGHT = 120;

/** The hit rate per minute (minutes with gets), as bars under a 0-100% scale. */
function hitRateChart(minutes: MinuteCount[]): string {
  const shown = minutes.slice(-60);
  if (shown.length === 0) return "<h2>Hit rate over time</h2>\n<p>No gets yet.</p>";
  const left = 36;
  const plotWidth = CHART_WIDTH - left - 4;
  const plotHeight = CHART_HEIGHT - 20;
  const step = plotWidth / shown.length;
  const bars = shown.map((m, i) => {
    const rate = m.gets > 0 ? m.hits / m.gets : 0;
    const height = Math.max(1, rate * plotHeight);
    const x = left + i * step;
    const label = `${clock(m.minute)}: ${(100 * rate).toFixed(1)}% of ${m.gets} gets`;
    return `<rect x="${x.toFixed(1)}" y="${(4 + plotHeight - height).toFixed(1)}" width="${
      Math.max(1, step - 1).toFixed(1)
    }" height="${height.toFixed(1)}" fill="${rate >= 0.5 ? "#3a3" : "#c63"}">` +
      `<title>${label}</title></rect>`;
  });
  const first = clock(shown[0]!.minute);
  const last = clock(shown.at(-1)!.minute);
  return `<h2>Hit rate over time</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="${CHART_WIDTH}" height="${CHART_HEIGHT}" ` +
    `role="img" aria-label="hit rate per minute">
<line x1="${left}" y1="4" x2="${CHART_WIDTH - 4}" y2="4" stroke="#ddd"/>
<line x1="${left}" y1="${4 + plotHeight}" x2="${CHART_WIDTH - 4}" y2="${
      4 + plotHeight
    }" stroke="#999"/>
<text x="0" y="12" font-size="11">100%</text><text x="0" y="${
      4 + plotHeight
    }" font-size="11">0%</text>
${bars.join("\n")}
<text x="${left}" y="${CHART_HEIGHT - 2}" font-size="11">${first}</text>
<text x="${CHART_WIDTH - 4}" y="${CHART_HEIGHT - 2}" font-size="11" text-anchor="end">${last}</text>
</svg>
<p>Each bar is one minute with gets (the last ${shown.length}); hover for numbers.</p>`;
}

/** The recent go commands, newest first. */
function recentTable(records: SessionRecord[]): string {
  if (records.length === 0) return "<h2>Recent go commands</h2>\n<p>None yet.</p>";
  const rows = records.map((r) => {
    const rate = r.gets > 0 ? `${(100 * r.hits / r.gets).toFixed(1)}%` : "–";
    const duration = r.durationMs === undefined
      ? "running"
      : `${(r.durationMs / 1000).toFixed(1)} s`;
    return `<tr><td>${r.id}</td><td class="cmd">${escapeHtml(r.command)}</td>` +
      `<td>${new Date(r.start).toISOString().slice(0, 19)}Z</td>` +
      `<td>${duration}</td><td>${r.gets}</td><td>${rate}</td><td>${r.puts}</td></tr>`;
  });
  return `<h2>Recent go commands</h2>
<table class="runs"><tr><th>#</th><th>Command</th><th>Start (UTC)</th><th>Duration</th>` +
    `<th>Gets</th><th>Hit rate</th><th>Puts</th></tr>
${rows.join("\n")}
</table>`;
}

function clock(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(11, 16);
}

function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${s % 60}s` : `${s}s`;
}

/**
 * Escapes text for HTML.
 *
 * @param value Any text.
 * @returns It with `&<>"'` as character references.
 */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
