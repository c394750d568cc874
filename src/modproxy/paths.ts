/**
 * Request-path parsing for the module proxy: raw-path traversal checks, percent- and
 * case-decoding, and golang.org/x/mod's module-path and semver rules ported to TypeScript.
 *
 * @module
 */

/** An error that becomes an HTTP response with this status and a one-line text body. */
export class HttpError extends Error {
  /** The HTTP status to answer with. */
  readonly status: number;

  /**
   * @param status The HTTP status.
   * @param message The one-line message sent to the client.
   * @param options The cause, if any.
   */
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
  }
}

/** What a module-proxy request asks for. */
export type ModuleRequest =
  | { kind: "list"; module: string }
  | { kind: "latest"; module: string }
  | { kind: "info" | "mod" | "zip"; module: string; version: string; canonical: boolean };

/** A checksum-database request below `/mod/sumdb/`, before the name is matched. */
export interface SumdbRequest {
  kind: "sumdb";
  /** The text after `sumdb/`, percent-decoded once (`sum.golang.org/lookup/...`). */
  rest: string;
}

/** The parsed route. */
export type ProxyRequest = ModuleRequest | SumdbRequest;

const PREFIX = "/mod/";
// Characters the go command sends unescaped in a proxy path (url.PathEscape per element,
// `/` kept), plus the escapes other clients may use for them.
const RAW_OK = /^(?:[A-Za-z0-9._~!+@\/-]|%21|%2[bB]|%40|%7[eE])*$/;

/**
 * Rejects traversal and smuggling attempts in a raw request path, before anything is decoded.
 *
 * @param raw The raw path (`rawPathOf` in `util/http.ts`).
 * @param url The full request URL, to compare with its WHATWG-normalised form.
 * @throws {HttpError} 400 for `..`, `.`, `%2e`, `//`, `\`, a trailing `/`, control characters or
 * any escape other than `%21`, `%2B`, `%40`, `%7E`.
 */
export function checkRawPath(raw: string, url: string): void {
  if (
    raw.includes("\\") || raw.includes("//") || raw.endsWith("/") ||
    /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i.test(raw) || /%2e/i.test(raw)
  ) {
    throw new HttpError(400, "Bad request path: traversal or empty element");
  }
  if (!RAW_OK.test(raw.slice(PREFIX.length))) {
    throw new HttpError(400, "Bad request path: unexpected character or escape");
  }
  let normalised: string;
  try {
    normalised = new URL(url).pathname;
  } catch {
    throw new HttpError(400, "Bad request path: not a URL");
  }
  if (normalised !== raw) throw new HttpError(400, "Bad request path: not in normal form");
}

/**
 * Parses a request path below `/mod/` into a route, validating module path and version.
 *
 * @param raw The raw path, already accepted by {@linkcode checkRawPath}.
 * @returns The route.
 * @throws {HttpError} 404 for unknown routes and invalid module paths or versions.
 */
export function parseRequestPath(raw: string): ProxyRequest {
  if (!raw.startsWith(PREFIX)) throw new HttpError(404, "Not found: not a module proxy path");
  let path: string;
  try {
    path = decodeURIComponent(raw.slice(PREFIX.length));
  } catch {
    throw new HttpError(400, "Bad request path: bad percent escape");
  }
  if (path.startsWith("sumdb/")) return { kind: "sumdb", rest: path.slice("sumdb/".length) };
  if (path.endsWith("/@latest")) {
    return { kind: "latest", module: decodeModule(path.slice(0, -"/@latest".length)) };
  }
  const at = path.indexOf("/@v/");
  if (at < 0) throw new HttpError(404, "Not found: unknown module proxy route");
  const module = decodeModule(path.slice(0, at));
  const file = path.slice(at + 4);
  if (file === "list") return { kind: "list", module };
  const dot = file.lastIndexOf(".");
  const ext = file.slice(dot + 1);
  if (dot <= 0 || (ext !== "info" && ext !== "mod" && ext !== "zip")) {
    throw new HttpError(404, "Not found: unknown module proxy route");
  }
  const version = unescapeString(file.slice(0, dot));
  if (version === undefined) {
    throw new HttpError(404, `Not found: invalid escaped version ${JSON.stringify(file)}`);
  }
  const canonical = canonicalVersion(version) === version && checkModuleVersion(module, version);
  if (ext === "info" && !canonical) {
    if (!/^[A-Za-z0-9._~+-]+$/.test(version) || /^\.|\.$/.test(version)) {
      throw new HttpError(404, `Not found: invalid version query ${JSON.stringify(version)}`);
    }
    if (version === "latest" || version === "upgrade" || version === "patch") {
      throw new HttpError(404, `Not found: version query ${JSON.stringify(version)} not allowed`);
    }
  } else if (!canonical) {
    throw new HttpError(404, `Not found: ${module}@${version}: version is not canonical`);
  }
  return { kind: ext, module, version, canonical };
}

function decodeModule(escaped: string): string {
  const module = unescapeString(escaped);
  const problem = module === undefined ? "bad case escape" : checkPath(module);
  if (problem !== undefined) {
    throw new HttpError(
      404,
      `Not found: invalid module path ${JSON.stringify(escaped)}: ${problem}`,
    );
  }
  return module!;
}

/**
 * Case-encodes a module path or version: each upper-case letter becomes `!` and the letter.
 *
 * @param s A module path or version.
 * @returns The escaped form used in proxy URLs and cache keys.
 */
export function escapeString(s: string): string {
  return s.replace(/[A-Z]/g, (c) => "!" + c.toLowerCase());
}

/**
 * Reverses {@linkcode escapeString}, rejecting upper case, non-ASCII and bad `!` escapes.
 *
 * @param escaped The escaped text.
 * @returns The decoded text, or `undefined` when the escape is invalid.
 */
export function unescapeString(escaped: string): string | undefined {
  let out = "";
  let bang = false;
  for (let i = 0; i < escaped.length; i++) {
    const c = escaped.charCodeAt(i);
    if (c >= 0x80) return undefined;
    if (bang) {
      bang = false;
      if (c < 0x61 || c > 0x7a) return undefined;
      out += String.fromCharCode(c - 0x20);
      continue;
    }
    if (c === 0x21) {
      bang = true;
      continue;
    }
    if (c >= 0x41 && c <= 0x5a) return undefined;
    out += escaped[i];
  }
  return bang ? undefined : out;
}

const BAD_WINDOWS_NAMES = new Set([
  "CON",
  "PRN",
  "AUX",
  "NUL",
  ...Array.from({ length: 9 }, (_, i) => `COM${i + 1}`),
  ...Array.from({ length: 9 }, (_, i) => `LPT${i + 1}`),
]);

function checkElem(elem: string): string | undefined {
  if (elem === "") return "empty path element";
  if (/^\.+$/.test(elem)) return `${JSON.stringify(elem)} is not a valid path element`;
  if (elem.startsWith(".")) return "leading dot in path element";
  if (elem.endsWith(".")) return "trailing dot in path element";
  if (!/^[A-Za-z0-9._~-]+$/.test(elem)) return "invalid char in path element";
  const dot = elem.indexOf(".");
  const short = dot >= 0 ? elem.slice(0, dot) : elem;
  if (BAD_WINDOWS_NAMES.has(short.toUpperCase())) {
    return `${JSON.stringify(short)} disallowed as path element component on Windows`;
  }
  const tilde = short.lastIndexOf("~");
  if (tilde >= 0 && tilde < short.length - 1 && /^[0-9]+$/.test(short.slice(tilde + 1))) {
    return "trailing tilde and digits in path element";
  }
  return undefined;
}

/**
 * Checks a module path like x/mod's `module.CheckPath`.
 *
 * @param path The decoded module path.
 * @returns A description of the problem, or `undefined` when the path is valid.
 */
export function checkPath(path: string): string | undefined {
  if (path === "") return "empty string";
  if (path.startsWith("-")) return "leading dash";
  if (path.includes("//")) return "double slash";
  if (path.endsWith("/")) return "trailing slash";
  for (const elem of path.split("/")) {
    const problem = checkElem(elem);
    if (problem) return problem;
  }
  const first = path.split("/", 1)[0]!;
  if (!first.includes(".")) return "missing dot in first path element";
  if (!/^[a-z0-9.-]+$/.test(first)) return "invalid char in first path element";
  if (!splitPathVersion(path)) return "invalid version suffix";
  return undefined;
}

/**
 * Splits a module path into prefix and major-version suffix like x/mod's `SplitPathVersion`.
 *
 * @param path The module path.
 * @returns `[prefix, pathMajor]` (`pathMajor` empty when there is none), or `undefined` when the
 * suffix is malformed (`/v1`, `/v01`, `/v2.0`).
 */
export function splitPathVersion(path: string): [string, string] | undefined {
  if (path.startsWith("gopkg.in/")) {
    const m = /^(.*)(\.v[0-9]+)(-unstable)?$/.exec(path);
    if (!m || m[1]!.length < 1) return undefined;
    const major = m[2]!;
    if (major.length <= 2 || (major[2] === "0" && major !== ".v0")) return undefined;
    return [m[1]!, major + (m[3] ?? "")];
  }
  const m = /^(.*)\/v([0-9.]+)$/.exec(path);
  if (!m || m[1] === "") return [path, ""];
  const digits = m[2]!;
  if (digits.includes(".") || digits.startsWith("0") || digits === "1") return undefined;
  return [m[1]!, "/v" + digits];
}

/**
 * Whether a canonical version fits a module path's major suffix, like x/mod's `module.Check`.
 *
 * @param path A valid module path.
 * @param version A valid semantic version.
 * @returns `true` when they agree (`v0`/`v1`/`+incompatible` without suffix, `vN` with `/vN`).
 */
export function checkModuleVersion(path: string, version: string): boolean {
  const split = splitPathVersion(path);
  const parsed = parseSemver(version);
  if (!split || !parsed) return false;
  const pathMajor = split[1];
  if (pathMajor.startsWith(".v") && pathMajor.endsWith("-unstable")) return true;
  if (version.startsWith("v0.0.0-") && pathMajor === ".v1") return true;
  const major = "v" + parsed.major;
  if (pathMajor === "") return major === "v0" || major === "v1" || parsed.build === "+incompatible";
  return major === pathMajor.slice(1);
}

/** The parts of a semantic version. */
export interface Semver {
  major: string;
  minor: string;
  patch: string;
  /** `-pre.1` or empty. */
  prerelease: string;
  /** `+build` or empty. */
  build: string;
  /** Whether minor or patch was left out (`v1`, `v1.2`). */
  short: boolean;
}

const NUM = "(0|[1-9][0-9]*)";
const PRE_ID = "(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
const SEMVER_RE = new RegExp(
  `^v${NUM}(?:\\.${NUM}(?:\\.${NUM}(-${PRE_ID}(?:\\.${PRE_ID})*)?(\\+[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?)?)?$`,
);

/**
 * Parses a semantic version the way x/mod/semver does (`v1`, `v1.2` are valid shorthands).
 *
 * @param v The version text.
 * @returns Its parts, or `undefined` when invalid.
 */
export function parseSemver(v: string): Semver | undefined {
  const m = SEMVER_RE.exec(v);
  if (!m) return undefined;
  return {
    major: m[1]!,
    minor: m[2] ?? "0",
    patch: m[3] ?? "0",
    prerelease: m[4] ?? "",
    build: m[5] ?? "",
    short: m[3] === undefined,
  };
}

/**
 * The canonical form of a version like x/mod's `module.CanonicalVersion`: `vX.Y.Z[-pre]`, build
 * metadata dropped except `+incompatible`.
 *
 * @param v The version text.
 * @returns The canonical form, or `""` when `v` is not valid semver.
 */
export function canonicalVersion(v: string): string {
  const p = parseSemver(v);
  if (!p) return "";
  const base = `v${p.major}.${p.minor}.${p.patch}${p.prerelease}`;
  return p.build === "+incompatible" ? base + p.build : base;
}

const PSEUDO_RE =
  /^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;

/**
 * Whether a version is a pseudo-version (x/mod's `module.IsPseudoVersion`).
 *
 * @param v The version text.
 * @returns `true` for `v0.0.0-20240102030405-abcdefabcdef` and the other two forms.
 */
export function isPseudoVersion(v: string): boolean {
  return v.split("-").length >= 3 && parseSemver(v) !== undefined && PSEUDO_RE.test(v);
}
