/**
 * The {@linkcode CacheStack} type: what `stack.ts` (local tier) and `remote_stack.ts` (S3 tier) build
 * and the run functions serve from. In a file of its own so the two builders share it without
 * importing each other.
 *
 * @module
 */

import type { LocalCache } from "../cache/local.ts";
import type { ObjectStore } from "../store/mod.ts";
import type { CacheHandler } from "../protocol/mod.ts";

/** The cache a process serves, with its end-of-life hooks. */
export interface CacheStack {
  /** What protocol sessions call. */
  handler: CacheHandler;
  /** The local tier underneath. */
  local: LocalCache;
  /** Waits (bounded) for background work such as uploads; called once at exit. */
  shutdown(): Promise<void>;
  /**
   * Work after the last reply (direct mode calls it once stdout is closed): the warm-up
   * manifest. Bounded; never rejects.
   */
  finish?(): Promise<void>;
  /**
   * Whether nothing runs in the background, so that a direct-mode session may block on go's next
   * request (see `ServeOptions.blockingReads`). @default always idle (the local tier alone)
   */
  idle?(): boolean;
  /** With a bucket: the store under `[prefix/]module/`, for the module proxy. */
  moduleStore?: ObjectStore;
  /** With a bucket: the store under `[prefix/]revproxy/`, for the caching proxy. */
  revproxyStore?: ObjectStore;
}
