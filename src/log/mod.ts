/**
 * Logging to stderr: stdout belongs to the protocol. This leaf module is the only one that calls
 * `console`, and `console.error` writes to stderr. It imports nothing.
 *
 * @module
 */

/** `--debug` bit: one trace line per build-cache request. */
export const DEBUG_BUILD_CACHE = 1;
/** `--debug` bit: one trace line per module-proxy request. */
export const DEBUG_MODPROXY = 2;
/** `--debug` bit: one trace line per S3 call. */
export const DEBUG_S3 = 4;
/** `--debug` bit: caching proxy requests (`--revproxy`). */
export const DEBUG_REVPROXY = 8;

/** Where components send lines; each method may be a no-op. */
export interface Logger {
  /** Lifecycle events, shown with `-v`. */
  info(message: string): void;
  /** Problems worth a line even without `-v` (remote tier down, bad configuration). */
  warn(message: string): void;
  /** Per-request trace lines for one `--debug` bit; undefined when that bit is off. */
  trace(bit: number): ((line: string) => void) | undefined;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Show `info` lines. @default {false} */
  verbose?: boolean;
  /** `--debug` bit mask. @default {0} */
  debug?: number;
  /** Where lines go. @default {console.error} */
  sink?: (line: string) => void;
}

/**
 * Creates a logger that prefixes lines with a millisecond timestamp and the program's name.
 *
 * @param options Verbosity, debug mask and sink.
 * @returns The logger.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  // deno-lint-ignore no-console
  const sink = options.sink ?? ((line: string) => console.error(line));
  const debug = options.debug ?? 0;
  const verbose = (options.verbose ?? false) || debug !== 0;
  const emit = (line: string) => sink(`${stamp()} go-cache-plugin: ${line}`);
  return {
    info: verbose ? emit : () => {},
    warn: emit,
    trace: (bit) => (debug & bit ? emit : undefined),
  };
}

/** A logger that drops everything, the default for components. */
export const SILENT: Logger = { info() {}, warn() {}, trace: () => undefined };

function stamp(): string {
  return new Date().toISOString().slice(11, 23);
}
