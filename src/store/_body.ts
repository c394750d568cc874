/**
 * Request bodies every adapter sends the same way: a PUT payload that can be retried when small
 * ({@linkcode putPayload}), and {@linkcode SizedBody}, which `fetch` sends with a Content-Length
 * while it reads it.
 *
 * @module
 */

/** Stream bodies up to this size are read into memory first, so that they can be sent again. */
const RETRIABLE_STREAM = 4 << 20;

/** A PUT body ready for {@linkcode sendSigned}, and the release of what it holds. */
export interface PutPayload {
  /** Bytes (retried once on a network failure), or a stream of exactly `size` bytes. */
  body: Uint8Array | ReadableStream<Uint8Array>;
  /** Frees a buffer read from a stream at once, once the request has settled. */
  release(): void;
}

/**
 * The body to send for a PUT of `size` bytes: bytes as they are; a stream of up to 4 MiB read
 * into one buffer first, so that a dropped keep-alive connection can be retried; a bigger stream
 * as it is, sent as it is read, never buffered whole.
 *
 * @param body The bytes, or a stream of exactly `size` bytes.
 * @param size The body's size.
 * @returns What to pass as a request body, and its release.
 * @throws {RangeError} When a small stream holds more or fewer than `size` bytes.
 */
export async function putPayload(
  body: Uint8Array | ReadableStream<Uint8Array>,
  size: number,
): Promise<PutPayload> {
  if (body instanceof Uint8Array || size > RETRIABLE_STREAM) return { body, release() {} };
  const bytes = await readExactly(body, size);
  // Ours alone: freed now rather than when a full garbage collection finds it (a cold build
  // uploads thousands, and buffers that lived that long wait for one).
  return { body: bytes, release: () => void bytes.buffer.transfer(0) };
}

/** Reads a stream that must hold exactly `size` bytes. */
async function readExactly(
  stream: ReadableStream<Uint8Array>,
  size: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = new Uint8Array(size);
  let at = 0;
  for await (const chunk of stream) {
    if (at + chunk.length > size) throw new RangeError(`got more than ${size} bytes`);
    bytes.set(chunk, at);
    at += chunk.length;
  }
  if (at !== size) throw new RangeError(`got ${at} bytes, expected ${size}`);
  return bytes;
}

/**
 * A request body of known size that `fetch` sends with that Content-Length while it reads it.
 *
 * Why a `Blob`: `fetch` copies a `Uint8Array` body twice (a JS copy, then one into the runtime)
 * and sends a `ReadableStream` body chunked, which S3 rejects (411). For a `Blob` it reads
 * `stream()` and sends `size` as Content-Length; overriding both streams our bytes or our
 * stream without a copy. This relies on how Deno's `fetch` treats a Blob (`extractBody`), which
 * `tests/store/s3/signed_fetch_test.ts` checks on the pinned runtime.
 *
 * A source stream must hold exactly `size` bytes; otherwise the request fails and `failure`
 * holds a {@linkcode RangeError}. A `Uint8Array` is sent from its own memory: do not change it
 * while the request runs.
 */
export class SizedBody extends Blob {
  readonly #source: Uint8Array | ReadableStream<Uint8Array>;
  readonly #size: number;

  /**
   * @param source The bytes, or a stream that must hold exactly `size` bytes.
   * @param size The Content-Length.
   */
  constructor(source: Uint8Array | ReadableStream<Uint8Array>, size: number) {
    super();
    if (source instanceof Uint8Array && source.length !== size) {
      throw new RangeError(`got ${source.length} bytes, expected ${size}`);
    }
    this.#source = source;
    this.#size = size;
  }

  /** The Content-Length. */
  override get size(): number {
    return this.#size;
  }

  /** The bytes as a stream, checked against `size`. */
  override stream(): ReadableStream<Uint8Array<ArrayBuffer>> {
    const source = this.#source;
    const size = this.#size;
    if (source instanceof Uint8Array) {
      return new ReadableStream<Uint8Array<ArrayBuffer>>({
        start(controller) {
          controller.enqueue(source as Uint8Array<ArrayBuffer>);
          controller.close();
        },
      });
    }
    const reader = source.getReader();
    let sent = 0;
    const fail = (error: unknown) => {
      this.failure ??= error;
      void reader.cancel().catch(() => {});
      throw error;
    };
    return new ReadableStream<Uint8Array<ArrayBuffer>>({
      async pull(controller) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          return fail(error);
        }
        if (chunk.done) {
          if (sent !== size) fail(new RangeError(`got ${sent} bytes, expected ${size}`));
          controller.close();
          return;
        }
        sent += chunk.value.length;
        if (sent > size) fail(new RangeError(`got more than ${size} bytes`));
        if (sent === size) {
          // The request is complete with this chunk: first make sure the source ends here.
          let next: ReadableStreamReadResult<Uint8Array>;
          try {
            next = await reader.read();
          } catch (error) {
            return fail(error);
          }
          if (!next.done) fail(new RangeError(`got more than ${size} bytes`));
          controller.enqueue(chunk.value as Uint8Array<ArrayBuffer>);
          controller.close();
          return;
        }
        controller.enqueue(chunk.value as Uint8Array<ArrayBuffer>);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Why reading the source failed (a file gone short, a wrong size): `fetch` reports it only as
   * a failed request.
   */
  failure: unknown;
}

/**
 * What `fetch` sends for a PUT body of `size` bytes: an empty body as bytes (`fetch` sends those
 * with their length), anything else as a {@linkcode SizedBody}.
 */
export function requestBody(body: Uint8Array | ReadableStream<Uint8Array>, size: number): BodyInit {
  if (size === 0) {
    if (body instanceof ReadableStream) void body.cancel().catch(() => {});
    else if (body.length !== 0) throw new RangeError(`got ${body.length} bytes, expected 0`);
    return new Uint8Array(0);
  }
  return new SizedBody(body, size);
}
