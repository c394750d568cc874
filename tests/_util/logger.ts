/**
 * A logger for unit tests that keeps what components say.
 *
 * @module
 */

import type { Logger } from "../../src/log/mod.ts";

/** A {@linkcode Logger} that records warnings and info lines apart. */
export function recordingLogger(): Logger & { warnings: string[]; infos: string[] } {
  const warnings: string[] = [];
  const infos: string[] = [];
  return {
    warnings,
    infos,
    info: (line) => void infos.push(line),
    warn: (line) => void warnings.push(line),
    trace: () => undefined,
  };
}
