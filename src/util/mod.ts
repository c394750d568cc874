/**
 * Small helpers every component needs, in one place below all of them: the text of an unknown
 * error, a bounded wait, and a write loop for short writes.
 *
 * @module
 */

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
