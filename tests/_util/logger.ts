/**
 * A logger for unit tests that keeps what components say.
 *
 * @module
 */

import type { Logger } from "../../src/log/mod.ts";

/** What {@linkcode recordingLogger} kept. */
export interface RecordingLogger extends Logger {
  /** Warning lines. */
  warnings: string[];
  /** Info lines. */
  infos: string[];
  /** Every line in order, warnings prefixed with `warn: `. */
  lines: string[];
}

/** A {@linkcode Logger} that records warnings and info lines apart, and all lines in order. */
export function recordingLogger(): RecordingLogger {
  const warnings: string[] = [];
  const infos: string[] = [];
  const lines: string[] = [];
  return {
    warnings,
    infos,
    lines,
    info: (line) => void (infos.push(line), lines.push(line)),
    warn: (line) => void (warnings.push(line), lines.push(`warn: ${line}`)),
    trace: () => undefined,
  };
}
