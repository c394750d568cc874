/**
 * `stats`: asks a running `serve` for its account (`GET /debug/vars` on its `--http` address,
 * default 127.0.0.1:5970) and prints what the status page shows (`server/summary.ts`), with the
 * cache directory (its size and entries, read here, and `--max-size`): as a two-column table
 * (`--format=text`, the default), Markdown for a CI job summary with a one-line headline
 * (`--format=markdown`), one JSON object (`--format=json`), or GitHub annotations for faults
 * (`--format=github`: `::error::`/`::warning::` lines, nothing when all is well), or the raw
 * counters, one `name value` line each, for scripts (`--format=counters`). `--reset` then
 * sets the server's counters and faults back to zero (`POST /debug/reset`). A server that cannot
 * be reached or does not answer with counters is one line on stderr and status 1.
 *
 * @example
 * ```ts ignore
 * // go-cache-plugin stats --http=127.0.0.1:5970 --format=markdown >> "$GITHUB_STEP_SUMMARY"
 * // go-cache-plugin stats --http=127.0.0.1:5970 --format=github   # annotations on stdout
 * ```
 *
 * @module
 */

import { cacheDirUsage } from "../cache/dir_usage.ts";
import type { Logger } from "../log/mod.ts";
import {
  annotations,
  headline,
  summarize,
  type SummaryInput,
  summaryInputOf,
  summaryJson,
  type SummaryRow,
} from "../server/summary.ts";
import { reason as osReason } from "../util/files.ts";
import { formatBytes, writeAll } from "../util/mod.ts";
import type { Config, StatsFormat } from "./config.ts";

/** How long the server has to answer. */
const TIMEOUT_MS = 5_000;

/**
 * Runs `stats`.
 *
 * @param config The parsed configuration (`statsAddress`, `statsFormat`, `statsReset`).
 * @param log Where a failure goes (stderr).
 * @returns The exit status: 0, or 1 when the server cannot be asked.
 */
export async function runStats(config: Config, log: Logger): Promise<number> {
  const base = `http://${dialable(config.statsAddress)}`;
  const url = `${base}/debug/vars`;
  let input: SummaryInput;
  let rows: SummaryRow[];
  let counters: Record<string, unknown> = {};
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`it answered ${response.status} ${response.statusText}`.trim());
    }
    const vars = await response.json();
    input = summaryInputOf(vars);
    counters = vars.counters;
    rows = summarize(input);
    const server = (vars.server ?? {}) as Record<string, unknown>;
    if (typeof server.cache_dir === "string") {
      rows.push(await cacheDirRow(server.cache_dir, Number(server.max_size) || 0));
    }
  } catch (error) {
    log.warn(`Cannot read the server's counters from ${url}: ${reason(error)}`);
    return 1;
  }
  const out = config.statsFormat === "github"
    ? annotations(input)
    : config.statsFormat === "counters"
    ? counterLines(counters)
    : formatSummary(rows, config.statsFormat, headline(input));
  await writeAll(Deno.stdout, new TextEncoder().encode(out));
  if (!config.statsReset) return 0;
  try {
    const response = await fetch(`${base}/debug/reset`, {
      method: "POST",
      headers: { "x-go-cache-plugin": "reset" },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = (await response.text()).trim();
    if (!response.ok) throw new Error(`it answered ${response.status}: ${text}`);
    log.warn(`the server's counters were reset`);
    return 0;
  } catch (error) {
    log.warn(`Cannot reset the server's counters at ${base}/debug/reset: ${reason(error)}`);
    return 1;
  }
}

/**
 * Formats summary rows.
 *
 * @param rows The rows of `summarize`.
 * @param format `text`: aligned columns; `markdown`: a headline and a table under a heading;
 * `json`: one object.
 * @param lead The headline for Markdown. @default none
 * @returns The text, ending with a newline.
 */
export function formatSummary(
  rows: readonly SummaryRow[],
  format: Exclude<StatsFormat, "github"> | StatsFormat,
  lead?: string,
): string {
  switch (format) {
    case "json":
      return JSON.stringify(summaryJson(rows), null, 2) + "\n";
    case "markdown":
      return [
        "### Go build cache",
        "",
        ...lead ? [lead, ""] : [],
        "| Metric | Value |",
        "| --- | --- |",
        ...rows.map((r) =>
          `| ${cell(r.label)} | ${cell(r.text)}${r.fault ? ` **(${cell(r.fault)})**` : ""} |`
        ),
        "",
      ].join("\n");
    case "text":
    case "counters":
    case "github": {
      const width = Math.max(...rows.map((r) => r.label.length));
      return rows.map((r) => `${r.label.padEnd(width)}  ${r.text}\n`).join("");
    }
  }
}

/** The flat counters of `/debug/vars`, one `name value` line each, sorted by name. */
function counterLines(counters: Record<string, unknown>): string {
  return Object.entries(counters)
    .filter(([name, value]) => /^[A-Za-z0-9_]+$/.test(name) && typeof value === "number")
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([name, value]) => `${name} ${value}\n`).join("");
}

/** The cache directory's row: where, how big, how many entries, and the cap. */
async function cacheDirRow(dir: string, maxSize: number): Promise<SummaryRow> {
  const usage = await cacheDirUsage(dir);
  const cap = maxSize > 0 ? `--max-size ${formatBytes(maxSize)}` : "no --max-size";
  const text = usage
    ? `${dir}: ${formatBytes(usage.bytes)} in ${usage.entries} entries (${cap})`
    : `${dir} (not readable here; ${cap})`;
  return {
    label: "Cache directory",
    text,
    json: {
      "cache_dir": dir,
      "cache_bytes": usage?.bytes ?? null,
      "cache_entries": usage?.entries ?? null,
      "max_size": maxSize,
    },
  };
}

/** `--http` as a place to dial: an empty or any-address host means this machine. */
function dialable(address: string): string {
  const match = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(address);
  if (!match) return address;
  const host = match[1] ?? match[2] ?? "";
  if (host === "" || host === "0.0.0.0") return `127.0.0.1:${match[3]}`;
  if (host === "::") return `[::1]:${match[3]}`;
  return match[1] !== undefined ? `[${host}]:${match[3]}` : `${host}:${match[3]}`;
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

function reason(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return `no answer within ${TIMEOUT_MS / 1000}s`;
  }
  // fetch says "error sending request for url (…)"; the cause names the problem.
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
  return osReason(cause ?? error).split("\n")[0]!;
}
