/**
 * Server mode's parts, each taking plain options (the configuration is read in `cli/`). Start
 * reading at `listener.ts`, then `http.ts`:
 *
 * - `listener.ts`: {@linkcode PluginListener}, protocol sessions over TCP on 127.0.0.1 or a
 *   Unix socket, sharing one cache;
 * - `connect.ts`: {@linkcode bridge} and {@linkcode dial}, the byte relay behind `connect`;
 * - `http.ts`: the status page, `/metrics`, `/debug/vars` and the module proxy's mount point,
 *   served behind `_http_guard.ts` (a connection cap, header and idle timeouts);
 *   `session_log.ts` keeps the recent go commands and the measured miss-to-put times, and
 *   `summary.ts` turns counters into the summary `stats` and the status page show.
 *
 * Imports point down only: to `protocol/` (sessions), `metrics/`, `log/` and `util/`; the cache
 * and the module proxy come in as options from `cli/serve.ts`.
 *
 * @example
 * ```ts ignore
 * import { PluginListener } from "./mod.ts";
 * await using listener = await PluginListener.listen("5930", { handler: myCache });
 * ```
 *
 * @module
 */

export * from "./listener.ts";
export * from "./connect.ts";
export * from "./http.ts";
export * from "./session_log.ts";
export * from "./summary.ts";
