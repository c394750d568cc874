/**
 * Loopback helpers (free ports). It lives in `scripts/servers/net.ts`, shared with the benchmarks (dev-only tools that do
 * not borrow from `tests/`); tests import it from here.
 *
 * @module
 */

export * from "../../scripts/servers/net.ts";
