/**
 * Reading and checking flag values: the text of a flag or its variable becomes a boolean, an
 * integer, milliseconds or a list, and addresses are checked before anything listens or dials.
 * Every failure is a one-line {@linkcode UsageError} naming the flag.
 *
 * @module
 */

/** Raised for a bad flag or value; the program prints one line and exits with status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1e3,
  m: 60e3,
  h: 3600e3,
};

/**
 * Parses a Go duration (`300ms`, `1.5h`, `2h45m`) into milliseconds.
 *
 * @param text The duration.
 * @returns Milliseconds.
 * @throws {SyntaxError} When the text is not a Go duration.
 */
export function parseGoDuration(text: string): number {
  if (text === "0") return 0;
  const match = /^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.test(text);
  if (!match) {
    throw new SyntaxError(
      `Cannot parse duration ${JSON.stringify(text)}: use Go syntax such as 30m or 72h`,
    );
  }
  let total = 0;
  for (const [, number, unit] of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(number) * DURATION_UNITS[unit!]!;
  }
  return text.startsWith("-") ? -total : total;
}

/**
 * Writes milliseconds as a Go duration that {@linkcode parseGoDuration} reads back: `0`, whole
 * seconds as `60s`, else `ms`.
 *
 * @param ms Milliseconds, not negative.
 * @returns The duration text.
 */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return "0";
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * Reads a boolean the way Go's `strconv.ParseBool` does.
 *
 * @param flag The flag's name, for the message.
 * @param value Its text.
 * @returns The boolean.
 * @throws {UsageError} For anything but Go's spellings of true and false.
 */
export function toBool(flag: string, value: string): boolean {
  if (["1", "t", "T", "true", "TRUE", "True"].includes(value)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(value)) return false;
  throw new UsageError(`Invalid value ${JSON.stringify(value)} for -${flag}: want true or false`);
}

/**
 * Reads a decimal integer of at least `min`.
 *
 * @param flag The flag's name, for the message.
 * @param value Its text.
 * @param min The smallest value allowed.
 * @returns The integer.
 * @throws {UsageError} For a non-integer, an unsafe integer or one below `min`.
 */
export function toInt(flag: string, value: string, min: number): number {
  const number = Number(value);
  if (!/^[-+]?\d+$/.test(value.trim()) || !Number.isSafeInteger(number) || number < min) {
    throw new UsageError(
      `Invalid value ${JSON.stringify(value)} for -${flag}: want an integer >= ${min}`,
    );
  }
  return number;
}

/**
 * Reads a Go duration that is not negative.
 *
 * @param flag The flag's name, for the message.
 * @param value Its text.
 * @returns Milliseconds.
 * @throws {UsageError} For anything but a Go duration >= 0.
 */
export function toDuration(flag: string, value: string): number {
  try {
    const ms = parseGoDuration(value);
    if (ms < 0) throw new SyntaxError("negative");
    return ms;
  } catch (error) {
    throw new UsageError(
      `Invalid value ${JSON.stringify(value)} for --${flag}: want a Go duration such as 72h`,
      { cause: error },
    );
  }
}

const SIZE_UNITS: Readonly<Record<string, number>> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * Parses a byte size: a whole number, optionally followed by `K`, `M` or `G` (base 1024, either
 * case, an optional `B` or `iB` after it): `0`, `4096`, `512M`, `10G`, `1.5GiB`.
 *
 * @param text The size.
 * @returns Bytes, rounded down to a whole byte.
 * @throws {SyntaxError} When the text is not such a size.
 */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(?:([KMGkmg])(?:i?[Bb])?|[Bb])?$/.exec(text.trim());
  const bytes = match
    ? Math.floor(Number(match[1]) * SIZE_UNITS[(match[2] ?? "").toUpperCase()]!)
    : NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new SyntaxError(
      `Cannot parse size ${JSON.stringify(text)}: use bytes or a K, M or G suffix such as 512M`,
    );
  }
  return bytes;
}

/**
 * Writes bytes as {@linkcode parseSize} reads them back: the largest unit that divides them.
 *
 * @param bytes Bytes, not negative.
 * @returns The size text, such as `512M` or `0`.
 */
export function formatSize(bytes: number): string {
  for (const unit of ["G", "M", "K"]) {
    const size = SIZE_UNITS[unit]!;
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/**
 * Reads a byte size (see {@linkcode parseSize}).
 *
 * @param flag The flag's name, for the message.
 * @param value Its text.
 * @returns Bytes.
 * @throws {UsageError} For anything but a size.
 */
export function toSize(flag: string, value: string): number {
  try {
    return parseSize(value);
  } catch (error) {
    throw new UsageError(
      `Invalid value ${
        JSON.stringify(value)
      } for --${flag}: want bytes or a size such as 512M or 10G`,
      { cause: error },
    );
  }
}

/**
 * Reads a comma-separated list; blanks around and between items are dropped.
 *
 * @param value The text.
 * @returns The items.
 */
export function toList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * Checks what `serve --plugin` and `connect` take: a port 1-65535, or a Unix socket path.
 *
 * @param what The flag or command, for the message.
 * @param value The target.
 * @throws {UsageError} For a port out of range or a value that is neither.
 */
export function checkListenTarget(what: string, value: string): void {
  if (/^\d+$/.test(value)) {
    const port = Number(value);
    if (port < 1 || port > 65535) {
      throw new UsageError(`${what}: port ${value} is out of range 1-65535`);
    }
    return;
  }
  if (!value.includes("/")) {
    throw new UsageError(`${what}: ${JSON.stringify(value)} is neither a port nor a socket path`);
  }
}

/**
 * Checks `[host]:port` as `--http` takes it: an empty host means 127.0.0.1.
 *
 * @param value The address.
 * @throws {UsageError} For another shape or a port over 65535.
 */
export function checkHttpAddress(value: string): void {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]/\s]*)):(\d+)$/.exec(value);
  if (!match) {
    throw new UsageError(
      `--http: ${JSON.stringify(value)} is not [host]:port (e.g. 127.0.0.1:5970)`,
    );
  }
  const port = Number(match[3]);
  if (port > 65535) throw new UsageError(`--http: port ${match[3]} is out of range 0-65535`);
}

/**
 * Checks an S3 endpoint: an http(s) URL, since anything else would fail every call unseen.
 *
 * @param value The endpoint.
 * @throws {UsageError} For a non-URL or another scheme.
 */
export function checkEndpoint(value: string, flag = "--s3-endpoint-url"): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch (error) {
    throw new UsageError(`${flag}: ${JSON.stringify(value)} is not a URL`, {
      cause: error,
    });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(
      `${flag}: ${JSON.stringify(value)} must start with http:// or https://`,
    );
  }
}
