/**
 * A modelled network link for the benchmarks: a TCP relay on 127.0.0.1 in front of a target
 * (MinIO), with one bandwidth shared by all connections in each direction and a fixed delay each
 * way. This machine's kernel has no `netem` qdisc, and toxiproxy's bandwidth toxic limits each
 * connection rather than the link, so the relay is the benchmark's own.
 *
 * The model: each direction is one FIFO link. A chunk (at most {@linkcode CHUNK} bytes) read from a
 * connection leaves the link `size / rate` after the link is free (`departure`), and reaches the
 * other side `delayMs` later. A connection reads its next chunk only about when its previous one
 * has left (a read-ahead of {@linkcode READ_AHEAD_MS}, so timer granularity does not idle the
 * link), which is the back-pressure TCP gives a sender: concurrent connections share the link
 * about evenly, and one connection alone gets all of it. Bytes are counted per direction, so a
 * benchmark sees what each run put on the wire. {@linkcode selfCheck} measures one connection and
 * sixteen against the configured rate.
 *
 * @module
 */

/** Bytes forwarded as one unit. */
const CHUNK = 16 << 10;
/** How far ahead of its departure a connection may read its next chunk, in ms. */
const READ_AHEAD_MS = 8;

/** Options for {@linkcode startLink}. */
export interface LinkOptions {
  /** `host:port` to relay to. */
  target: string;
  /** Bandwidth of each direction, in Mbit/s (10^6 bits). */
  mbitPerSecond: number;
  /** Delay added each way, in ms. */
  delayMs: number;
}

/** One direction of the link: a FIFO serialised at `rate`. */
class Direction {
  /** Bytes per ms. */
  readonly #rate: number;
  #freeAt = 0;
  /** Bytes forwarded so far. */
  bytes = 0;

  constructor(mbitPerSecond: number) {
    this.#rate = mbitPerSecond * 1e6 / 8 / 1000;
  }

  /** Reserves the link for `size` bytes; returns when they will have left it (ms, `performance.now`). */
  reserve(size: number): number {
    const now = performance.now();
    this.#freeAt = Math.max(now, this.#freeAt) + size / this.#rate;
    this.bytes += size;
    return this.#freeAt;
  }
}

function sleepUntil(time: number): Promise<void> {
  const wait = time - performance.now();
  return wait <= 0 ? Promise.resolve() : new Promise((r) => setTimeout(r, wait));
}

/** A running link; close it with `await using`. */
export class Link {
  readonly #listener: Deno.Listener;
  readonly #options: LinkOptions;
  readonly #down: Direction;
  readonly #up: Direction;
  readonly #connections = new Set<Deno.Conn>();
  readonly #served: Promise<void>;

  constructor(listener: Deno.Listener, options: LinkOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#down = new Direction(options.mbitPerSecond);
    this.#up = new Direction(options.mbitPerSecond);
    this.#served = this.#serve();
  }

  /** `host:port` of the relay. */
  get address(): string {
    const { hostname, port } = this.#listener.addr as Deno.NetAddr;
    return `${hostname}:${port}`;
  }

  /** Bytes forwarded from the target to the clients (downloads) so far. */
  get bytesDown(): number {
    return this.#down.bytes;
  }

  /** Bytes forwarded from the clients to the target (uploads) so far. */
  get bytesUp(): number {
    return this.#up.bytes;
  }

  async #serve(): Promise<void> {
    try {
      for await (const client of this.#listener) void this.#relay(client);
    } catch {
      // closed
    }
  }

  async #relay(client: Deno.Conn): Promise<void> {
    this.#connections.add(client);
    let server: Deno.Conn | undefined;
    try {
      const [hostname, port] = this.#options.target.split(":") as [string, string];
      server = await Deno.connect({ hostname, port: Number(port) });
      this.#connections.add(server);
      await Promise.all([
        this.#pump(client, server, this.#up),
        this.#pump(server, client, this.#down),
      ]);
    } catch {
      // a reset on either side ends both
    } finally {
      for (const conn of [client, server]) {
        if (!conn) continue;
        this.#connections.delete(conn);
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
    }
  }

  /** Forwards one direction of one connection through the shared link. */
  async #pump(from: Deno.Conn, to: Deno.Conn, link: Direction): Promise<void> {
    let chain = Promise.resolve();
    let failed: unknown;
    try {
      while (failed === undefined) {
        const buffer = new Uint8Array(CHUNK);
        const n = await from.read(buffer);
        if (n === null) break;
        const departure = link.reserve(n);
        const arrival = departure + this.#options.delayMs;
        const bytes = buffer.subarray(0, n);
        chain = chain.then(async () => {
          await sleepUntil(arrival);
          let at = 0;
          while (at < bytes.length) at += await to.write(bytes.subarray(at));
        }).catch((error) => {
          failed ??= error;
        });
        await sleepUntil(departure - READ_AHEAD_MS);
      }
    } finally {
      await chain;
    }
    if (failed !== undefined) throw failed;
    await to.closeWrite().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    for (const conn of this.#connections) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    await this.#served;
  }
}

/**
 * Starts a link relay on 127.0.0.1 (a free port).
 *
 * @param options Target, rate and delay.
 * @returns The link.
 */
export function startLink(options: LinkOptions): Link {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return new Link(listener, options);
}

/** What {@linkcode selfCheck} measured: Mbit/s seen by the clients together. */
export interface LinkCheck {
  one: number;
  sixteen: number;
  configured: number;
}

/**
 * Measures the link with one connection and with sixteen at once, each downloading from a
 * source on 127.0.0.1 (`totalBytes` in all, counted from the first byte to the last), and
 * returns the rates the clients saw together.
 *
 * @param mbitPerSecond The rate to configure.
 * @param delayMs The delay each way.
 * @param totalBytes Bytes downloaded per measurement. @default {16 MiB}
 * @returns Measured and configured rates, Mbit/s.
 */
export async function selfCheck(
  mbitPerSecond: number,
  delayMs: number,
  totalBytes = 16 << 20,
): Promise<LinkCheck> {
  const source = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const payload = new Uint8Array(1 << 20).fill(7);
  const serving = (async () => {
    for await (const conn of source) {
      void (async () => {
        try {
          const ask = new Uint8Array(16);
          const n = await conn.read(ask);
          let left = Number(new TextDecoder().decode(ask.subarray(0, n ?? 0)));
          while (left > 0) {
            const part = payload.subarray(0, Math.min(left, payload.length));
            left -= await conn.write(part);
          }
        } catch {
          // the client went away
        } finally {
          conn.close();
        }
      })();
    }
  })().catch(() => {});
  const { port } = source.addr as Deno.NetAddr;
  await using link = startLink({ target: `127.0.0.1:${port}`, mbitPerSecond, delayMs });
  const measure = async (connections: number): Promise<number> => {
    const each = Math.floor(totalBytes / connections);
    let first = Infinity;
    let last = 0;
    await Promise.all(Array.from({ length: connections }, async () => {
      const [hostname, p] = link.address.split(":") as [string, string];
      const conn = await Deno.connect({ hostname, port: Number(p) });
      try {
        await conn.write(new TextEncoder().encode(String(each)));
        const buffer = new Uint8Array(64 << 10);
        let got = 0;
        while (got < each) {
          const n = await conn.read(buffer);
          if (n === null) break;
          const now = performance.now();
          if (got === 0) first = Math.min(first, now);
          got += n;
          last = Math.max(last, now);
        }
        if (got !== each) throw new Error(`Cannot check the link: got ${got} of ${each} bytes`);
      } finally {
        conn.close();
      }
    }));
    return (each * connections * 8) / 1e6 / ((last - first) / 1000);
  };
  try {
    return { one: await measure(1), sixteen: await measure(16), configured: mbitPerSecond };
  } finally {
    source.close();
    await serving;
  }
}

if (import.meta.main) {
  const rate = Number(Deno.args[0] ?? 250);
  const delay = Number(Deno.args[1] ?? 10);
  const check = await selfCheck(rate, delay);
  // deno-lint-ignore no-console
  console.log(
    `link ${rate} Mbit/s, ${delay} ms each way: one connection ${check.one.toFixed(1)} Mbit/s, ` +
      `sixteen ${check.sixteen.toFixed(1)} Mbit/s`,
  );
}
