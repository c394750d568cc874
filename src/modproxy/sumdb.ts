/**
 * The checksum-database side of the proxy: the allow-list, request parsing for
 * `/mod/sumdb/<name>/{supported,latest,lookup/…,tile/…}`, and the choice of upstream per name
 * (the upstream proxy's own `/sumdb/<name>/` route when it answers `supported`, else
 * `https://<name>`, or an explicit URL from the configuration).
 *
 * @module
 */

import { type Logger, SILENT } from "../log/mod.ts";
import { checkPath, escapeString, HttpError, parseSemver, unescapeString } from "./paths.ts";
import { fetchOne, type ProxyList } from "./upstream.ts";

/** A parsed checksum-database request. */
export type SumdbRoute =
  | { kind: "supported"; name: string }
  | { kind: "latest"; name: string; key: string; sub: string }
  | { kind: "lookup"; name: string; key: string; sub: string; module: string; version: string }
  | { kind: "tile"; name: string; key: string; sub: string; maxBytes: number };

const NAME_RE = /^[a-z0-9][a-z0-9.-]*(?:\/[A-Za-z0-9._~-]+)*$/;
const TILE_RE =
  /^tile\/([1-9]|[12][0-9]|30)\/(data|[0-9]|[1-5][0-9]|6[0-3])\/(?:x[0-9]{3}\/)*[0-9]{3}(?:\.p\/([1-9][0-9]*))?$/;
const LOOKUP_RE = /^[^@]+@v[0-9]+\.[0-9]+\.[0-9]+(-[^@]*)?(\+incompatible)?$/;

/**
 * The key under which a lookup for `module@version` is cached.
 *
 * @param name The database name.
 * @param module The decoded module path.
 * @param version The version.
 * @returns `sumdb/<name>/lookup/<escaped module>@<escaped version>`.
 */
export function lookupKey(name: string, module: string, version: string): string {
  return `sumdb/${name}/lookup/${escapeString(module)}@${escapeString(version)}`;
}

/** Options for {@linkcode SumdbRoutes}. */
export interface SumdbRoutesOptions {
  /** The fetch implementation. @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** Where the chosen route per name is logged. @default {SILENT} */
  log?: Logger;
  /** How long a probed route is remembered, in ms. @default {600000} */
  routeTtlMs?: number;
}

/** The allow-listed databases and how to reach each one. */
export class SumdbRoutes {
  readonly #names: string[];
  readonly #explicit = new Map<string, string>();
  readonly #list: ProxyList;
  readonly #fetch?: typeof fetch;
  readonly #log: Logger;
  readonly #routeTtlMs: number;
  readonly #routes = new Map<string, { base: string; expires: number }>();

  /**
   * @param list The upstream proxy list, probed for `/sumdb/<name>/supported`.
   * @param sumdbs Allow-list entries: `<name>` or `<name> <https URL>`.
   * @param options Fetch, logger, route TTL.
   * @throws {SyntaxError} For a malformed entry.
   */
  constructor(list: ProxyList, sumdbs: string[], options: SumdbRoutesOptions = {}) {
    this.#list = list;
    this.#fetch = options.fetch;
    this.#log = options.log ?? SILENT;
    this.#routeTtlMs = options.routeTtlMs ?? 600_000;
    this.#names = [];
    for (const entry of sumdbs) {
      const [name = "", url, extra] = entry.trim().split(/\s+/);
      if (!NAME_RE.test(name) || /(^|\/)\.+(\/|$)/.test(name) || extra !== undefined) {
        throw new SyntaxError(`Cannot use checksum database entry ${JSON.stringify(entry)}`);
      }
      if (url !== undefined) {
        const parsed = URL.canParse(url) ? new URL(url) : undefined;
        if (!parsed || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) {
          throw new SyntaxError(`Cannot use checksum database URL ${JSON.stringify(url)}`);
        }
        this.#explicit.set(name, parsed.href.replace(/\/+$/, ""));
      }
      this.#names.push(name);
    }
    // Longest first, so `a.example/b` wins over `a.example`.
    this.#names.sort((a, b) => b.length - a.length);
  }

  /** The allow-listed names. */
  get names(): readonly string[] {
    return this.#names;
  }

  /**
   * Parses the text after `/mod/sumdb/` (percent-decoded once).
   *
   * @param rest Such as `sum.golang.org/lookup/example.com/!hello@v1.0.0`.
   * @returns The route with its cache key, built from validated parts.
   * @throws {HttpError} 404 for names not on the allow-list and malformed paths.
   */
  parse(rest: string): SumdbRoute {
    const name = this.#names.find((n) => rest.startsWith(`${n}/`));
    if (!name) throw new HttpError(404, "Not found: checksum database not proxied");
    const sub = rest.slice(name.length + 1);
    if (sub === "supported") return { kind: "supported", name };
    if (sub === "latest") return { kind: "latest", name, key: `sumdb/${name}/latest`, sub };
    if (sub.startsWith("lookup/")) {
      const target = sub.slice("lookup/".length);
      const at = target.lastIndexOf("@");
      const module = at > 0 ? unescapeString(target.slice(0, at)) : undefined;
      const version = at > 0 ? unescapeString(target.slice(at + 1)) : undefined;
      if (
        !LOOKUP_RE.test(target) || module === undefined || version === undefined ||
        checkPath(module) !== undefined || !parseSemver(version)
      ) {
        throw new HttpError(404, "Not found: malformed checksum database lookup");
      }
      const key = lookupKey(name, module, version);
      return {
        kind: "lookup",
        name,
        module,
        version,
        key,
        sub: key.slice(`sumdb/${name}/`.length),
      };
    }
    const m = TILE_RE.exec(sub);
    if (m) {
      const height = Number(m[1]);
      const width = m[3] === undefined ? undefined : Number(m[3]);
      if (width !== undefined && width >= 2 ** height) {
        throw new HttpError(404, "Not found: malformed checksum database tile");
      }
      const maxBytes = m[2] === "data" ? 16 << 20 : (width ?? 2 ** height) * 32;
      return { kind: "tile", name, key: `sumdb/${name}/${sub}`, sub, maxBytes };
    }
    throw new HttpError(404, "Not found: unknown checksum database route");
  }

  /**
   * The upstream base URL for a database: an explicit URL, else the first upstream proxy whose
   * `/sumdb/<name>/supported` answers 200 (404/410 try the next, other errors stop unless the
   * entry was followed by `|`), else `https://<name>`.
   *
   * @param name An allow-listed name.
   * @returns The base URL, or an error message when an upstream proxy failed.
   */
  async base(name: string): Promise<{ base: string } | { error: string }> {
    const explicit = this.#explicit.get(name);
    if (explicit) return { base: explicit };
    const known = this.#routes.get(name);
    if (known && known.expires > Date.now()) return { base: known.base };
    let base = `https://${name}`;
    for (const entry of this.#list.entries) {
      const candidate = `${entry.url}/sumdb/${name}`;
      const result = await fetchOne(`${candidate}/supported`, {
        fetch: this.#fetch,
        headerTimeoutMs: 15_000,
      });
      if (result.kind === "ok") {
        await result.response.body?.cancel();
        base = candidate;
        break;
      }
      if (result.kind === "error" && !entry.fallThroughAnyError) {
        return { error: `cannot probe checksum database route: ${result.message}` };
      }
    }
    this.#log.info(`modproxy: checksum database ${JSON.stringify(name)} via ${base}`);
    this.#routes.set(name, { base, expires: Date.now() + this.#routeTtlMs });
    return { base };
  }
}
