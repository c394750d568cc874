/**
 * The upstream side of the module proxy: GOPROXY-list parsing with the go command's `,` / `|`
 * fallback rules, fetching one file through the list, and resolving the list itself.
 *
 * @module
 */

import { errorMessage } from "../util/mod.ts";

/** One proxy entry of a GOPROXY list. */
export interface ProxyEntry {
  /** Base URL without a trailing slash (`http://127.0.0.1:8080/mod`). */
  url: string;
  /** `true` when the entry was followed by `|`: any error falls through to the next entry. */
  fallThroughAnyError: boolean;
}

/** A parsed GOPROXY list. */
export interface ProxyList {
  /** The proxies, in order. */
  entries: ProxyEntry[];
  /** `direct` or `off` when the list ends with that keyword; the proxy never fetches for them. */
  terminal?: "direct" | "off";
}

/**
 * Parses a GOPROXY-style list like the go command: entries separated by `,` (fall through on 404
 * and 410 only) or `|` (fall through on any error); `direct` and `off` end the list; entries
 * without a scheme get `https://`.
 *
 * @param list The list text.
 * @returns The parsed list.
 * @throws {SyntaxError} When the list has no entries or an entry is not a usable URL.
 */
export function parseProxyList(list: string): ProxyList {
  const entries: ProxyEntry[] = [];
  let terminal: ProxyList["terminal"];
  let rest = list.trim();
  let any = false;
  while (rest !== "") {
    const sep = rest.search(/[,|]/);
    const raw = (sep < 0 ? rest : rest.slice(0, sep)).trim();
    const fallThroughAnyError = sep >= 0 && rest[sep] === "|";
    rest = sep < 0 ? "" : rest.slice(sep + 1);
    if (raw === "") continue;
    any = true;
    if (raw === "direct" || raw === "off") {
      terminal = raw;
      break;
    }
    if (raw === "noproxy") continue;
    const withScheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(raw) ? raw : `https://${raw}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch (cause) {
      throw new SyntaxError(`Cannot parse GOPROXY entry ${JSON.stringify(raw)}`, { cause });
    }
    if (url.protocol !== "https:" && url.protocol !== "http:" && url.protocol !== "file:") {
      throw new SyntaxError(`Cannot use GOPROXY entry ${JSON.stringify(raw)}: unsupported scheme`);
    }
    if (url.search || url.hash) {
      throw new SyntaxError(`Cannot use GOPROXY entry ${JSON.stringify(raw)}: query or fragment`);
    }
    entries.push({ url: url.href.replace(/\/+$/, ""), fallThroughAnyError });
  }
  if (!any) {
    throw new SyntaxError(`Cannot use GOPROXY list ${JSON.stringify(list)}: it has no entries`);
  }
  return { entries, terminal };
}

/** The outcome of fetching one URL. */
export type FetchOneResult =
  | { kind: "ok"; response: Response }
  | { kind: "notfound"; message: string }
  | { kind: "error"; message: string; timeout: boolean };

/** The outcome of fetching one file through a proxy list. */
export type UpstreamResult =
  | { kind: "ok"; response: Response; entry: ProxyEntry }
  | { kind: "notfound"; message: string }
  | { kind: "error"; message: string; timeout: boolean };

/** Options for {@linkcode fetchThroughList}. */
export interface FetchThroughOptions {
  /** The fetch implementation. @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** Deadline for the response headers of one attempt, in ms. @default {30000} */
  headerTimeoutMs?: number;
  /** Signal that also bounds reading the body (the caller's overall deadline). */
  signal?: AbortSignal;
}

/**
 * Fetches `<entry>/<path>` through the list with the go command's fallback rules. A returned
 * `ok` response has status 200 and its body still unread. No client headers are ever sent.
 *
 * @param list The parsed upstream list.
 * @param path The validated, escaped path below the proxy base (`example.com/!x/@v/list`).
 * @param options Fetch function and timeouts.
 * @returns `ok`, `notfound` (every entry said 404/410, or the list is empty) or `error`.
 */
export async function fetchThroughList(
  list: ProxyList,
  path: string,
  options: FetchThroughOptions = {},
): Promise<UpstreamResult> {
  let firstError: UpstreamResult | undefined;
  let notFoundMessage = "";
  for (const entry of list.entries) {
    const result = await fetchOne(`${entry.url}/${path}`, options);
    if (result.kind === "ok") return { ...result, entry };
    if (result.kind === "notfound") {
      notFoundMessage ||= result.message;
      continue;
    }
    firstError ??= result;
    if (!entry.fallThroughAnyError) return result;
  }
  if (firstError) return firstError;
  if (list.terminal && !notFoundMessage) {
    notFoundMessage = `not found: GOPROXY entry ${JSON.stringify(list.terminal)} is not fetched`;
  }
  return { kind: "notfound", message: notFoundMessage || "not found" };
}

/**
 * Fetches one URL: follows redirects only within the same origin, maps 404/410 to `notfound`
 * and other statuses and network failures to `error`.
 *
 * @param url The absolute URL, built from validated parts.
 * @param options Fetch function and timeouts.
 * @returns The outcome; an `ok` response's body is unread.
 */
export async function fetchOne(
  url: string,
  options: FetchThroughOptions = {},
): Promise<FetchOneResult> {
  const doFetch = options.fetch ?? fetch;
  if (url.startsWith("file:")) return await readFileUrl(url);
  const origin = new URL(url).origin;
  let current = url;
  for (let hop = 0; hop <= 5; hop++) {
    const headerTimeout = AbortSignal.timeout(options.headerTimeoutMs ?? 30_000);
    const signal = options.signal
      ? AbortSignal.any([headerTimeout, options.signal])
      : headerTimeout;
    let response: Response;
    try {
      response = await doFetch(current, { redirect: "manual", signal });
    } catch (cause) {
      const timeout = cause instanceof DOMException &&
        (cause.name === "TimeoutError" || cause.name === "AbortError");
      return { kind: "error", message: describe(cause), timeout };
    }
    if (response.status === 200) return { kind: "ok", response };
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const next = new URL(location, current);
      if (next.origin !== origin) {
        return {
          kind: "error",
          message: `upstream redirected to another host (${next.origin})`,
          timeout: false,
        };
      }
      current = next.href;
      continue;
    }
    const text = await readErrorLine(response);
    if (response.status === 404 || response.status === 410) {
      return { kind: "notfound", message: text || `upstream answered ${response.status}` };
    }
    return {
      kind: "error",
      message: `upstream answered ${response.status}${text ? `: ${text}` : ""}`,
      timeout: false,
    };
  }
  return { kind: "error", message: "upstream redirected too many times", timeout: false };
}

async function readFileUrl(url: string): Promise<FetchOneResult> {
  const path = decodeURIComponent(new URL(url).pathname);
  try {
    const file = await Deno.open(path);
    return { kind: "ok", response: new Response(file.readable) };
  } catch {
    return { kind: "notfound", message: "not found" };
  }
}

/** Reads the first printable line (at most 200 characters) of an error body. */
async function readErrorLine(response: Response): Promise<string> {
  try {
    const reader = response.body?.getReader();
    if (!reader) return "";
    const { value } = await reader.read();
    await reader.cancel();
    const text = new TextDecoder().decode(value?.subarray(0, 400) ?? new Uint8Array());
    return sanitizeLine(text.split("\n", 1)[0] ?? "");
  } catch {
    return "";
  }
}

/**
 * Keeps only printable ASCII of one line, at most 200 characters, so an upstream message can be
 * passed on safely.
 *
 * @param text Any text.
 * @returns The cleaned single line.
 */
export function sanitizeLine(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?").trim().slice(0, 200);
}

function describe(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") return "upstream timed out";
  let message = errorMessage(error);
  if (error instanceof Error && error.cause instanceof Error) message += `: ${error.cause.message}`;
  return `cannot reach upstream: ${sanitizeLine(message.split("\n", 1)[0] ?? "")}`;
}

/** Runs `go env <name>` and returns its trimmed output. */
export type GoEnvRunner = (name: string) => Promise<string>;

/**
 * Runs `go env NAME` with `GOCACHEPROG` cleared (so the go command does not start this plugin).
 *
 * @param name The variable name, such as `GOPROXY`.
 * @returns The value, trimmed.
 */
export async function runGoEnv(name: string): Promise<string> {
  const output = await new Deno.Command("go", {
    args: ["env", name],
    env: { GOCACHEPROG: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const err = sanitizeLine(new TextDecoder().decode(output.stderr));
    throw new Error(`Cannot run "go env ${name}": exit code ${output.code}: ${err}`);
  }
  return new TextDecoder().decode(output.stdout).trim();
}

/**
 * Picks the upstream GOPROXY list: the `--upstream` flag, else `GOPROXY` from the environment,
 * else what `go env GOPROXY` prints (run with `GOCACHEPROG` cleared).
 *
 * @param flag The `--upstream` flag value; empty when not given.
 * @param env Reads an environment variable.
 * @param goEnv Runs `go env NAME`. @default {runGoEnv}
 * @returns The list text, validated with {@linkcode parseProxyList}.
 * @throws {Error} When no source gives a usable list.
 */
export async function resolveUpstream(
  flag: string,
  env: (name: string) => string | undefined,
  goEnv: GoEnvRunner = runGoEnv,
): Promise<string> {
  let list = flag.trim();
  let source = "--upstream";
  if (list === "") {
    list = env("GOPROXY")?.trim() ?? "";
    source = "GOPROXY";
  }
  if (list === "") {
    try {
      list = await goEnv("GOPROXY");
    } catch (cause) {
      throw new Error("Cannot resolve the module proxy upstream: no --upstream or GOPROXY", {
        cause,
      });
    }
    source = "go env GOPROXY";
  }
  try {
    parseProxyList(list);
  } catch (cause) {
    throw new Error(`Cannot use the module proxy upstream from ${source}`, { cause });
  }
  return list;
}
