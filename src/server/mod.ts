/**
 * Server mode: `serve --plugin` and `connect`. (Placeholder until the server-mode work lands.)
 *
 * @module
 */

import type { Config } from "../cli/config.ts";
import type { Logger } from "../log/mod.ts";

/** Runs `serve`. */
export function runServe(_config: Config, log: Logger): Promise<number> {
  log.warn("serve is not implemented yet");
  return Promise.resolve(1);
}

/** Runs `connect`. */
export function runConnect(_config: Config, log: Logger): Promise<number> {
  log.warn("connect is not implemented yet");
  return Promise.resolve(1);
}
