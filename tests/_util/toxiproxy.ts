/**
 * Starts toxiproxy on loopback for slow, stalled and cut links. It lives in `scripts/servers/toxiproxy.ts`, shared with the benchmarks (dev-only tools that do
 * not borrow from `tests/`); tests import it from here.
 *
 * @module
 */

export * from "../../scripts/servers/toxiproxy.ts";
