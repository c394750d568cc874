/**
 * `stats`: asks a running `serve` for its counters (`GET /debug/vars` on its `--http` address,
 * default 127.0.0.1:5970) and prints the summary the status page shows (`server/summary.ts`):
 * as a two-column table (`--format=text`, the default), a Markdown table for a CI job summary
 * (`--format=markdown`), or one JSON object (`--format=json`). A server that cannot be reached
 * or does not answer with counters is one line on stderr and status 1.
 *
 * @example
 * ```ts ignore
 * // go-cache-plugin stats --http=127.0.0.1:5970 --format=markdown >> "$GITHUB_STEP_SUMMARY"
 * ```
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { summarize, summaryInputOf, summaryJson, type SummaryRow } from "../server/summary.ts";
import { errorMessage, writeAll } from "../util/mod.ts";
import type { Config, StatsFormat } from "./config.ts";

/** How long the server has to answer. */
const TIMEOUT_MS = 5_000;

/**
 * Runs `stats`.
 *
 * @param config The parsed configuration (`statsAddress`, `statsFormat`).
 * @param log Where a failure goes (stderr).
 * @returns The exit status: 0, or 1 when the server cannot be asked.
 */
export async function runStats(config: Config, log: Logger): Promise<number> {
  const url = `http://${dialable(config.statsAddress)}/debug/vars`;
  let rows: SummaryRow[];
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`it answered ${response.status} ${response.statusText}`.trim());
    }
    rows = summarize(summaryInputOf(await response.json()));
  } catch (error) {
    log.warn(`Cannot read the server's counters from ${url}: ${reason(error)}`);
    return 1;
  }
  await writeAll(Deno.stdout, new TextEncoder().encode(formatSummary(rows, config.statsFormat)));
  return 0;
}

/**
 * Formats summary rows.
 *
 * @param rows The rows of `summarize`.
 * @param format `text`: aligned columns; `markdown`: a table under a heading; `json`: one object.
 * @returns The text, ending with a newline.
 */
export function formatSummary(rows: readonly SummaryRow[], format: StatsFormat): string {
  switch (format) {
    case "json":
      return JSON.stringify(summaryJson(rows), null, 2) + "\n";
    case "markdown":
      return [
        "### Go build cache",
        "",
        "| Metric | Value |",
        "| --- | --- |",
        ...rows.map((r) => `| ${cell(r.label)} | ${cell(r.text)} |`),
        "",
      ].join("\n");
    case "text": {
      const width = Math.max(...rows.map((r) => r.label.length));
      return rows.map((r) => `${r.label.padEnd(width)}  ${r.text}\n`).join("");
    }
  }
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
  let message = errorMessage(error).split("\n")[0]!;
  // fetch says "error sending request for url (…)"; the cause names the problem.
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
  if (cause) message = errorMessage(cause).split("\n")[0]!;
  return message.replace(/ \(os error \d+\)$/, "");
}
