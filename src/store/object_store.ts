/**
 * The narrow interface the remote tier, the module proxy and the caching proxy need from a
 * bucket, the error its calls reject with ({@linkcode StoreError}, whose kind the circuit breaker
 * reads), and an in-memory implementation for unit tests. The adapters (`s3/` and its siblings)
 * implement it; nothing needs to import one for the error type.
 *
 * @module
 */

/**
 * Why a remote call failed, so the tiered cache can tell a misconfiguration (stop for the
 * session) from an unreachable endpoint (pause) and from a one-off failure (count it).
 */
export type StoreErrorKind = "config" | "unreachable" | "timeout" | "other";

/** A failed store call, with its {@linkcode StoreErrorKind}. */
export class StoreError extends Error {
  override name = "StoreError";
  /** What kind of failure this is. */
  readonly kind: StoreErrorKind;

  /**
   * @param message One line: what failed and why.
   * @param kind The failure's kind.
   * @param options The underlying error as `cause`.
   */
  constructor(message: string, kind: StoreErrorKind, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** An object read from a store. */
export interface StoredObject {
  /** Size in bytes, from the store's metadata. */
  size: number;
  /** The bytes; read it to the end or cancel it. */
  body: ReadableStream<Uint8Array>;
}

/** Per-call options: every remote call has a deadline. */
export interface StoreCallOptions {
  signal?: AbortSignal;
}

/**
 * A flat key/value store of immutable-ish objects (an S3 bucket under a prefix). Failures reject,
 * with a {@linkcode StoreError} where the store can tell their kind.
 */
export interface ObjectStore {
  /** Reads an object; `undefined` when it does not exist. Other failures reject. */
  get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined>;
  /** Whether an object exists. */
  has(key: string, options?: StoreCallOptions): Promise<boolean>;
  /** Writes an object of known size. */
  put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void>;
}

/** An {@linkcode ObjectStore} in memory, for tests. */
export class MemoryObjectStore implements ObjectStore {
  /** The objects, by key; tests may read and change it. */
  readonly objects: Map<string, Uint8Array> = new Map();

  /** Reads an object. */
  get(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined> {
    options?.signal?.throwIfAborted();
    const bytes = this.objects.get(key);
    if (!bytes) return Promise.resolve(undefined);
    return Promise.resolve({ size: bytes.length, body: ReadableStream.from([bytes.slice()]) });
  }

  /** Whether an object exists. */
  has(key: string, options?: StoreCallOptions): Promise<boolean> {
    options?.signal?.throwIfAborted();
    return Promise.resolve(this.objects.has(key));
  }

  /** Writes an object. */
  async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    options: StoreCallOptions & { size: number },
  ): Promise<void> {
    options.signal?.throwIfAborted();
    const bytes = body instanceof Uint8Array ? body.slice() : await new Response(body).bytes();
    if (bytes.length !== options.size) {
      throw new RangeError(
        `Cannot put ${JSON.stringify(key)}: got ${bytes.length} bytes, expected ${options.size}`,
      );
    }
    this.objects.set(key, bytes);
  }
}
