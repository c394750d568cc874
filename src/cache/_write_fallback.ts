/**
 * Routing of the writes a cache directory refuses (a full disk, a read-only mount, no
 * permission) to its fallback directory (see `fallback.ts` for where that is):
 *
 * - a refused write is retried in the fallback, unless part of its streamed body was already
 *   read; errors of the body itself never fall back;
 * - after a refusal, writes go straight to the fallback for {@linkcode RETRY_AFTER_MS}, then the
 *   directory is tried again;
 * - the first refusal of a session is logged once, as a warning;
 * - lookups that miss in the directory look in the fallback, found once (never created for a
 *   read).
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { isBodyError, reason } from "../util/files.ts";
import type { FallbackOptions } from "./fallback.ts";

/** After a refused write, writes go to the fallback for this long before the directory is retried. */
export const RETRY_AFTER_MS = 60_000;

/** What {@linkcode WriteFallback} needs besides the {@linkcode FallbackOptions}. */
export interface WriteFallbackOptions<C> {
  /** Where the one warning goes. */
  log: Logger;
  /** Opens the cache of the fallback directory, once. */
  open(dir: string): C;
}

/**
 * The fallback state of one cache directory: the fallback's cache once found or made, and
 * whether writes currently skip the directory.
 *
 * @typeParam C The cache type of the fallback directory.
 */
export class WriteFallback<C extends { readonly root: string }> {
  readonly #root: string;
  readonly #options: FallbackOptions;
  readonly #log: Logger;
  readonly #open: (dir: string) => C;
  /** The fallback, once found or made. */
  #spill?: C;
  #lookedForSpill = false;
  /** Writes skip the directory until then (epoch ms). */
  #refusedUntil = 0;
  #refusal?: { what: string; error: unknown };
  #warned = false;

  /**
   * @param root The cache directory whose refused writes this routes.
   * @param options Where the fallback is.
   * @param more The logger and how to open the fallback's cache.
   */
  constructor(root: string, options: FallbackOptions, more: WriteFallbackOptions<C>) {
    this.#root = root;
    this.#options = options;
    this.#log = more.log;
    this.#open = more.open;
  }

  /** The fallback's cache, if it was found or made already. */
  get opened(): C | undefined {
    return this.#spill;
  }

  /**
   * The fallback's cache for a lookup: looked for once (not created); `undefined` when there is
   * none or it is unusable.
   */
  forReads(): C | undefined {
    if (this.#spill || this.#lookedForSpill) return this.#spill;
    this.#lookedForSpill = true;
    try {
      const dir = this.#options.dir({ create: false });
      if (dir !== undefined) this.#spill = this.#open(dir);
    } catch {
      // unusable: lookups miss, and the first refused write says why
    }
    return this.#spill;
  }

  /**
   * Runs a write in the directory, or in the fallback when the directory refuses it (or refused
   * one less than {@linkcode RETRY_AFTER_MS} ago).
   *
   * @param what Names the entry in messages, such as `output "0b1ec7"`.
   * @param here Writes it in the directory.
   * @param there Writes it in the fallback.
   * @param restartable Whether `there` may still run after `here` failed.
   * @returns What the write that succeeded returned.
   * @throws {Error} When both refuse it, with both reasons.
   */
  async store<T>(
    what: string,
    here: () => Promise<T>,
    there: (spill: C) => Promise<T>,
    restartable: () => boolean,
  ): Promise<T> {
    if (Date.now() >= this.#refusedUntil) {
      try {
        const result = await here();
        this.#refusedUntil = 0;
        return result;
      } catch (error) {
        if (isBodyError(error)) throw error;
        this.#refusedUntil = Date.now() + RETRY_AFTER_MS;
        this.#refusal = { what, error };
        if (!restartable()) throw error;
      }
    }
    const spill = this.#forWrites();
    try {
      return await there(spill);
    } catch (error) {
      if (isBodyError(error)) throw error;
      throw new Error(
        `Cannot store ${what} in ${JSON.stringify(this.#root)} or in ` +
          `${JSON.stringify(spill.root)}: ${reason(error)}`,
        { cause: error },
      );
    }
  }

  #forWrites(): C {
    const { what, error } = this.#refusal!;
    const refused = `Cannot store ${what} in ${JSON.stringify(this.#root)}: ${reason(error)}`;
    if (!this.#spill) {
      let dir: string | undefined;
      try {
        dir = this.#options.dir({ create: true });
        if (dir === undefined) throw new Error("no fallback directory");
      } catch (cause) {
        const text = reason(cause);
        throw new Error(`${refused}; ${text.charAt(0).toLowerCase()}${text.slice(1)}`, {
          cause: error,
        });
      }
      this.#spill = this.#open(dir);
    }
    if (!this.#warned) {
      this.#warned = true;
      this.#log.warn(`${refused}; storing puts in ${JSON.stringify(this.#spill.root)} instead`);
    }
    return this.#spill;
  }
}
