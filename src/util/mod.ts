/**
 * Small helpers every component needs, in one place below all of them: the hex-id pattern, the
 * text of an unknown error, bytes for people, a bounded wait, a write loop for short writes, and
 * a repeating check that loads no timer module. Beside it: `files.ts` (modes, atomic writes,
 * temporary names, absolute paths, an OS error's reason), `http.ts` (the raw request path,
 * read-only methods) and `byte_budget.ts` (a byte limit several users share). It imports nothing
 * outside `util/`.
 *
 * @module
 */

/** A lower-case hex SHA-256: an action or output id, or any digest the plugin names files by. */
export const HEX_ID: RegExp = /^[0-9a-f]{64}$/;

/**
 * The message of an error value of unknown type.
 *
 * @param error Anything thrown.
 * @returns Its `message` when it is an Error, else its string form.
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Bytes for people: `512 B`, `3.0 MiB`.
 *
 * @param bytes A count of bytes.
 * @returns The text.
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * Waits for `work` at most `ms` milliseconds; its failure counts as done.
 *
 * @param work The promise to wait for.
 * @param ms The bound.
 * @returns True when `work` settled in time.
 */
export async function settledWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const done = await Promise.race([
    work.then(() => true, () => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms)),
  ]);
  clearTimeout(timer);
  return done;
}

/**
 * Writes all of `bytes`, looping over short writes (pipes and sockets may take part of a write).
 *
 * @param writer Anything with Deno's `write(p): Promise<number>`.
 * @param bytes What to write.
 */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await writer.write(bytes.subarray(offset));
}

/**
 * Calls `check` every `ms` milliseconds until stopped, on the runtime's own timers
 * (`AbortSignal.timeout`). The first `setTimeout` or `setInterval` of a Deno 2.9 process loads its
 * Node-compatible timer module, 12–22 ms measured, and `connect` runs once per go command.
 * A stopped repeat still holds the process until its current period ends: for processes that
 * exit explicitly when done.
 *
 * @param ms The period.
 * @param check Called once per period.
 * @returns Stops the calls.
 */
export function repeatEvery(ms: number, check: () => void): () => void {
  let stopped = false;
  const arm = () => {
    AbortSignal.timeout(ms).addEventListener("abort", () => {
      if (stopped) return;
      check();
      arm();
    }, { once: true });
  };
  arm();
  return () => stopped = true;
}
