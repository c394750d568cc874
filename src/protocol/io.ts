/**
 * The two ends of a session as `serve()` takes them: a `ReadableStream` or a reader that fills a
 * buffer the session reuses (stdin, a socket), and a `WritableStream` or a sink of whole writes.
 * The reader and sink forms skip the streams' promise machinery, which is most of the cost of a
 * local hit otherwise.
 *
 * @module
 */

/** A byte source read into the caller's buffer, like `Deno.stdin` or a `Deno.Conn`. */
export interface ByteSource {
  /** Reads into `buffer`; resolves to the count, or `null` at end of input. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** The same as a blocking call, for `ServeOptions.blockingReads`. @default not offered */
  readSync?(buffer: Uint8Array): number | null;
  /** Stops a read in flight because a deadline passed (may close the source). @default nothing */
  cancel?(): void;
}

/** Where replies go: each call gets whole lines; a returned promise is awaited before the next. */
export interface ByteSink {
  write(bytes: Uint8Array): void | Promise<void>;
  /** Gives up on a write that will not finish (a deadline passed). @default nothing to do */
  abort?(): void;
}

/** Size of the buffer a {@linkcode ByteSource} is read into, reused for every read. */
const READ_BUFFER = 64 * 1024;

/** One session's input, whichever form it came in. */
export class InputPort {
  #reader?: ReadableStreamDefaultReader<Uint8Array>;
  #source?: ByteSource;
  #buffer?: Uint8Array;

  /** @param input A stream (its reader is taken) or a source. */
  constructor(input: ReadableStream<Uint8Array> | ByteSource) {
    // Tested by shape: naming the ReadableStream global loads the runtime's streams (milliseconds
    // before go's first reply) even when the input is a plain reader.
    if ("getReader" in input) {
      this.#reader = input.getReader();
    } else {
      this.#source = input;
      this.#buffer = new Uint8Array(READ_BUFFER);
    }
  }

  /** Whether {@linkcode InputPort.nextSync} can be used. */
  get canBlock(): boolean {
    return this.#source?.readSync !== undefined;
  }

  /**
   * The next bytes, or `null` at the end. A source's bytes live in the reused buffer: consume
   * them before the next call.
   */
  async next(): Promise<Uint8Array | null> {
    if (this.#reader) {
      const { value, done } = await this.#reader.read();
      return done ? null : value;
    }
    const n = await this.#source!.read(this.#buffer!);
    return n === null ? null : this.#buffer!.subarray(0, n);
  }

  /** Like {@linkcode InputPort.next}, as one blocking call. */
  nextSync(): Uint8Array | null {
    const n = this.#source!.readSync!(this.#buffer!);
    return n === null ? null : this.#buffer!.subarray(0, n);
  }

  /**
   * Stops reading at the end of a session: a stream is cancelled; a source is left as it is (its
   * owner closes it, after the replies have had time to arrive).
   */
  async cancel(): Promise<void> {
    if (this.#reader) await this.#reader.cancel().catch(() => {});
  }

  /** Ends a read in flight because a deadline passed: a stream is cancelled, a source told. */
  async abort(): Promise<void> {
    if (this.#reader) await this.#reader.cancel().catch(() => {});
    else this.#source!.cancel?.();
  }

  /** Releases a stream's reader. */
  release(): void {
    this.#reader?.releaseLock();
  }
}
