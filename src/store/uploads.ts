/**
 * The bounded background upload queue of the S3 tier, shared by the build cache (`tiered.ts`)
 * and the module proxy's store (`src/modproxy/store.ts`). It uploads entries: a local file to a
 * key (skipped when the bucket has it, for content-addressed objects), then optionally a small
 * record. At most `concurrency` run at once; each has its own deadline, and the owner's circuit
 * breaker both gates them and cuts them short when it opens.
 *
 * ## Pending uploads
 *
 * An upload that could not be done (it failed, the breaker was open, or `close()` stopped
 * waiting) leaves a marker file in the pending directory, named by {@linkcode UploadEntry.marker}
 * and holding {@linkcode UploadEntry.markerText}. A later session calls
 * {@linkcode UploadQueue.resume} with a function that rebuilds the entry from its marker; the
 * marker is removed once the entry is uploaded, or when it cannot be rebuilt.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { settledWithin } from "../util/mod.ts";
import type { CircuitBreaker } from "./breaker.ts";
import type { ObjectStore } from "./object_store.ts";
import { fileBody } from "./streams.ts";
import { FILE_MODE, makeDirs } from "../util/files.ts";

/** One upload: a local file sent to one key, then optionally a small record. */
export interface UploadEntry {
  /**
   * The marker's file name in the pending directory: unique per entry, and matching the queue's
   * {@linkcode UploadQueueOptions.markerPattern}.
   */
  readonly marker: string;
  /** What the marker file holds, handed back to the `resume` callback. @default {""} */
  readonly markerText?: string;
  /** Names the entry in log lines. @default the key, quoted */
  readonly label?: string;
  /** The object's key in the store. */
  readonly key: string;
  /** The local file to send. */
  readonly path: string;
  /**
   * Its size in bytes; `undefined` for the size of the file when the upload opens it (a file
   * that a rename may replace meanwhile).
   * @default the file's size
   */
  readonly size?: number;
  /** Skip the object when a HEAD finds its key (content-addressed objects). @default {false} */
  readonly skipIfPresent?: boolean;
  /** A small object written after the file, such as an action record. @default none */
  readonly record?: { key: string; bytes: Uint8Array };
}

/** The counters an {@linkcode UploadQueue} adds to. */
export interface UploadMetrics {
  add(name: string, value?: number): void;
}

/** The names of an {@linkcode UploadQueue}'s counters. */
export interface UploadMetricNames {
  /** Entries uploaded (their record too). @default {"uploads_done"} */
  done: string;
  /** Objects not sent because the store had them. @default {"uploads_skipped"} */
  skipped: string;
  /** Uploads that failed, found their file gone, or were dropped while paused. @default {"uploads_failed"} */
  failed: string;
  /** Uploads still pending when the wait at close ran out. @default {"uploads_left"} */
  left: string;
  /** Uploads an earlier session left undone, queued again. @default {"uploads_resumed"} */
  resumed: string;
  /** Bytes uploaded (objects and records). @default {"s3_bytes_up"} */
  bytesUp: string;
}

/** Options for {@linkcode UploadQueue}. */
export interface UploadQueueOptions {
  /** Gates every upload; uploads count as its successes and failures. */
  breaker: CircuitBreaker;
  /** Where markers of uploads still owed live (created on demand). */
  pendingDir: string;
  /** Uploads running at once. @default {navigator.hardwareConcurrency} */
  concurrency?: number;
  /** Deadline of each upload (object and record), in ms. @default {60000} */
  uploadTimeoutMs?: number;
  /** Deadline of the HEAD before a `skipIfPresent` object (a lookup), in ms. @default {10000} */
  headTimeoutMs?: number;
  /**
   * How long `close()` waits for pending uploads, in ms. It does not wait for uploads the breaker
   * has stopped: those are recorded as owed at once.
   * @default {60000}
   */
  closeTimeoutMs?: number;
  /** Names `resume` takes for markers; other files in the directory are left alone. @default safe names */
  markerPattern?: RegExp;
  /** What log lines call the entries. @default {"uploads"} */
  noun?: string;
  /** Called for each upload that the store failed (not one cut short by the breaker). @default none */
  onFailed?: (entry: UploadEntry, error: unknown) => void;
  /** Where lifecycle lines (info) and a close that ran out of time (warn) go. @default silent */
  log?: Logger;
  /** Counters. @default not counted */
  metrics?: UploadMetrics;
  /** The counters' names. @default the build cache's, see {@linkcode UploadMetricNames} */
  names?: Partial<UploadMetricNames>;
}

const DEFAULT_NAMES: UploadMetricNames = {
  done: "uploads_done",
  skipped: "uploads_skipped",
  failed: "uploads_failed",
  left: "uploads_left",
  resumed: "uploads_resumed",
  bytesUp: "s3_bytes_up",
};

/** A marker name without path separators or a leading dot. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/** One queued or running upload. */
interface Job {
  entry: UploadEntry;
  /** Came from the pending directory: remove its marker once done. */
  resumed: boolean;
  /** Its marker is written. */
  remembered: boolean;
}

/**
 * Uploads entries in the background, a bounded number at once, remembering the ones it could not
 * do for a later session.
 *
 * @example
 * ```ts
 * import { CircuitBreaker } from "./breaker.ts";
 * import { MemoryObjectStore } from "./object_store.ts";
 * import { UploadQueue } from "./uploads.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/file`, "hello");
 * const store = new MemoryObjectStore();
 * const queue = new UploadQueue(store, { breaker: new CircuitBreaker(), pendingDir: `${dir}/p` });
 * queue.enqueue({ marker: "m1", key: "a/b", path: `${dir}/file` });
 * await queue.close();
 * if (store.objects.get("a/b")?.length !== 5) throw new Error("expected the upload");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class UploadQueue {
  #store: ObjectStore;
  #breaker: CircuitBreaker;
  #dir: string;
  #concurrency: number;
  #uploadTimeoutMs: number;
  #headTimeoutMs: number;
  #closeTimeoutMs: number;
  #pattern: RegExp;
  #noun: string;
  #onFailed?: (entry: UploadEntry, error: unknown) => void;
  #log?: Logger;
  #metrics?: UploadMetrics;
  #names: UploadMetricNames;
  #queue: Job[] = [];
  #active = new Set<Job>();
  #idle: (() => void)[] = [];

  /**
   * @param store Where entries go.
   * @param options Breaker, pending directory, limits, deadlines, logging and counters.
   */
  constructor(store: ObjectStore, options: UploadQueueOptions) {
    this.#store = store;
    this.#breaker = options.breaker;
    this.#dir = options.pendingDir;
    this.#concurrency = Math.max(1, options.concurrency ?? navigator.hardwareConcurrency ?? 4);
    this.#uploadTimeoutMs = options.uploadTimeoutMs ?? 60_000;
    this.#headTimeoutMs = options.headTimeoutMs ?? 10_000;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 60_000;
    this.#pattern = options.markerPattern ?? SAFE_NAME;
    this.#noun = options.noun ?? "uploads";
    this.#onFailed = options.onFailed;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#names = { ...DEFAULT_NAMES, ...options.names };
  }

  /** Uploads queued or running. */
  get pending(): number {
    return this.#queue.length + this.#active.size;
  }

  /**
   * Queues an upload; it starts as soon as fewer than `concurrency` run.
   *
   * @param entry What to upload.
   */
  enqueue(entry: UploadEntry): void {
    this.#push({ entry, resumed: false, remembered: false });
  }

  /**
   * Queues the uploads an earlier session could not finish (failed, dropped while S3 was
   * paused, or left at exit), recorded in the pending directory. Nothing is queued while the
   * breaker is paused: they stay owed.
   *
   * @param rebuild Turns a marker (its name, and a reader of its text) back into its entry;
   * `undefined` when there is nothing left to upload, which removes the marker (a rejection
   * keeps it).
   * @param limit At most this many. @default {1000}
   * @returns How many were queued.
   */
  async resume(
    rebuild: (marker: string, text: () => Promise<string>) => Promise<UploadEntry | undefined>,
    limit = 1000,
  ): Promise<number> {
    let names: string[];
    try {
      names = (await Array.fromAsync(Deno.readDir(this.#dir)))
        .filter((e) => e.isFile && this.#pattern.test(e.name))
        .slice(0, limit).map((e) => e.name);
    } catch {
      return 0;
    }
    if (names.length === 0) return 0;
    await this.#breaker.ready();
    if (this.#breaker.paused) return 0; // still owed; a later session sends them
    let queued = 0;
    for (const marker of names) {
      const path = `${this.#dir}/${marker}`;
      let entry: UploadEntry | undefined;
      try {
        entry = await rebuild(marker, () => Deno.readTextFile(path));
      } catch {
        continue; // cannot tell now: still owed
      }
      if (!entry) {
        await Deno.remove(path).catch(() => {});
        continue;
      }
      this.#push({ entry: { ...entry, marker }, resumed: true, remembered: true });
      queued++;
    }
    if (queued > 0) {
      this.#metrics?.add(this.#names.resumed, queued);
      this.#log?.info(`resuming ${queued} ${this.#noun} an earlier session left undone`);
    }
    return queued;
  }

  /**
   * Waits for pending uploads, at most `closeTimeoutMs` (uploads the breaker stopped end at once,
   * recorded as owed); what is left is counted, logged and recorded for a later session.
   */
  async close(): Promise<void> {
    if (this.pending === 0) return;
    const started = performance.now();
    this.#log?.info(`waiting for ${this.pending} ${this.#noun}`);
    const idle = new Promise<void>((resolve) => this.#idle.push(resolve));
    if (await settledWithin(idle, this.#closeTimeoutMs)) {
      this.#log?.info(`${this.#noun} complete in ${(performance.now() - started).toFixed(0)}ms`);
      return;
    }
    const left = [...this.#active, ...this.#queue];
    this.#metrics?.add(this.#names.left, left.length);
    this.#log?.warn(
      `${left.length} ${this.#noun} to the bucket left undone after ${this.#closeTimeoutMs}ms; ` +
        `the next session retries them`,
    );
    // Queued uploads will not start; running ones end at their own deadline.
    this.#queue.length = 0;
    await Promise.all(left.map((job) => this.#remember(job)));
  }

  #push(job: Job): void {
    this.#queue.push(job);
    this.#pump();
  }

  #pump(): void {
    while (this.#active.size < this.#concurrency && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      this.#active.add(job);
      this.#upload(job).finally(() => {
        this.#active.delete(job);
        this.#pump();
        if (this.pending === 0) {
          for (const resolve of this.#idle.splice(0)) resolve();
        }
      });
    }
  }

  async #upload(job: Job): Promise<void> {
    const { entry } = job;
    const label = entry.label ?? JSON.stringify(entry.key);
    let paused = false;
    try {
      // The breaker opening cuts uploads short too: close() must not wait on a bucket that failed.
      await this.#breaker.call((signal, answered) => this.#send(entry, signal, answered), {
        timeoutMs: this.#uploadTimeoutMs,
        whenPaused: () => void (paused = true),
        // go moved the file away (`go build -o` outside $GOCACHE): nothing about the store.
        evidence: (error) => error instanceof Deno.errors.NotFound ? "nothing" : "failed",
        onFailed: (error) => this.#onFailed?.(entry, error),
      });
    } catch (error) {
      this.#metrics?.add(this.#names.failed);
      if (error instanceof Deno.errors.NotFound) {
        this.#log?.info(`not uploading ${label}: local file is gone`);
        if (job.resumed) await this.#forget(entry);
        return;
      }
      await this.#remember(job);
      return;
    }
    if (paused) {
      this.#metrics?.add(this.#names.failed);
      this.#log?.info(`not uploading ${label}: remote tier paused or disabled`);
      await this.#remember(job);
      return;
    }
    this.#metrics?.add(this.#names.done);
    if (job.resumed) await this.#forget(entry);
  }

  /** The requests of one upload: the HEAD that may skip the object, the object, the record. */
  async #send(entry: UploadEntry, signal: AbortSignal, answered: () => void): Promise<void> {
    let present = false;
    if (entry.skipIfPresent) {
      // The HEAD is a lookup: it gets a lookup's deadline, so a black-holed bucket costs that.
      const headSignal = AbortSignal.any([
        signal,
        AbortSignal.timeout(Math.min(this.#headTimeoutMs, this.#uploadTimeoutMs)),
      ]);
      present = await this.#store.has(entry.key, { signal: headSignal });
      answered();
    }
    if (present) {
      this.#metrics?.add(this.#names.skipped);
    } else {
      const body = await fileBody(entry.path, entry.size);
      try {
        await this.#store.put(entry.key, body.stream, { size: body.size, signal });
      } finally {
        body.close();
      }
      this.#metrics?.add(this.#names.bytesUp, body.size);
    }
    if (entry.record) {
      const { key, bytes } = entry.record;
      await this.#store.put(key, bytes, { size: bytes.length, signal });
      this.#metrics?.add(this.#names.bytesUp, bytes.length);
    }
  }

  /** Records an upload for a later session (best effort). */
  async #remember(job: Job): Promise<void> {
    if (job.remembered) return;
    job.remembered = true;
    try {
      await makeDirs(this.#dir);
      await Deno.writeTextFile(`${this.#dir}/${job.entry.marker}`, job.entry.markerText ?? "", {
        mode: FILE_MODE,
      });
    } catch {
      // the entry stays local-only
    }
  }

  async #forget(entry: UploadEntry): Promise<void> {
    await Deno.remove(`${this.#dir}/${entry.marker}`).catch(() => {});
  }
}
