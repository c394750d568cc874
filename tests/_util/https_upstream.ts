/**
 * An HTTPS origin on loopback behind a private CA. It lives in `scripts/servers/https_upstream.ts`, shared with the benchmarks (dev-only tools that do
 * not borrow from `tests/`); tests import it from here.
 *
 * @module
 */

export * from "../../scripts/servers/https_upstream.ts";
