/**
 * The HTTP side's front door (private to `http.ts`). `Deno.serve` has no header or idle timeout
 * and no connection cap: a client that opens connections and sends nothing, or half a header,
 * keeps each open for ever. So the public address is a plain TCP listener that bounds every
 * connection and copies its bytes to `Deno.serve` on a private Unix socket:
 *
 * - at most `maxConnections` at once; more are closed as soon as they are accepted;
 * - a request's header must be complete within `headerTimeoutMs` of its first byte (the first
 *   request's, of the connection being accepted);
 * - between requests, a connection with no bytes either way for `idleTimeoutMs` is closed (a
 *   request waiting for its response's first byte is never cut: the handlers bound their own
 *   work);
 * - a header over {@linkcode MAX_HEADER_BYTES} closes the connection.
 *
 * Only the request side is parsed, just enough to find where each header ends (`Content-Length`
 * bodies are skipped; a chunked body, an upgrade or `CONNECT` turns the connection into a plain
 * copy bounded by the idle timeout alone).
 *
 * @module
 */

import { type Logger, SILENT } from "../log/mod.ts";
import { errorMessage, writeAll } from "../util/mod.ts";

/** Longest request header accepted, in bytes. */
export const MAX_HEADER_BYTES = 64 * 1024;

/** Limits of {@linkcode HttpGuard}. */
export interface HttpGuardOptions {
  /** Connections open at once; more are closed at once. @default {256} */
  maxConnections?: number;
  /** Time from a request's first byte (or the accept) to the end of its header. @default {10000} */
  headerTimeoutMs?: number;
  /** Time without a byte either way between requests. @default {60000} */
  idleTimeoutMs?: number;
  /** Warnings (once per kind of refusal) and errors. @default {SILENT} */
  log?: Logger;
}

/** How one connection stands. */
interface Guarded {
  client: Deno.Conn;
  backend?: Deno.Conn;
  /** When the header being read started; 0 between requests. */
  headerSince: number;
  /** The last byte either way. */
  activeAt: number;
  /** A request was forwarded and its response has not started. */
  awaiting: boolean;
  /** Header or body tracking has given up: a plain copy. */
  plain: boolean;
  closed: boolean;
}

/** Counts of connections the guard closed, by reason. */
export interface GuardCounts {
  refused: number;
  headerTimeouts: number;
  idleTimeouts: number;
  oversized: number;
}

/** A bounded TCP front for an HTTP server on a Unix socket (or a loopback port). */
export class HttpGuard {
  /** The address listened on. */
  readonly addr: Deno.NetAddr;
  /** Connections closed by the limits. */
  readonly counts: GuardCounts = { refused: 0, headerTimeouts: 0, idleTimeouts: 0, oversized: 0 };
  #listener: Deno.TcpListener;
  #connectBackend: () => Promise<Deno.Conn>;
  #open = new Set<Guarded>();
  #done = new Set<Promise<void>>();
  #max: number;
  #headerMs: number;
  #idleMs: number;
  #log: Logger;
  #timer: ReturnType<typeof setInterval>;
  #accepting: Promise<void>;
  #closed = false;

  /**
   * Listens on `hostname:port` and forwards every connection to the backend.
   *
   * @param listen Where to listen.
   * @param connectBackend Opens a connection to the HTTP server behind.
   * @param options Limits and logging.
   */
  constructor(
    listen: { hostname: string; port: number },
    connectBackend: () => Promise<Deno.Conn>,
    options: HttpGuardOptions = {},
  ) {
    this.#listener = Deno.listen(listen);
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.#connectBackend = connectBackend;
    this.#max = options.maxConnections ?? 256;
    this.#headerMs = options.headerTimeoutMs ?? 10_000;
    this.#idleMs = options.idleTimeoutMs ?? 60_000;
    this.#log = options.log ?? SILENT;
    const tick = Math.max(10, Math.min(250, this.#headerMs / 4, this.#idleMs / 4));
    this.#timer = setInterval(() => this.#check(), tick);
    Deno.unrefTimer(this.#timer);
    this.#accepting = this.#accept();
  }

  /** Connections open now. */
  get connections(): number {
    return this.#open.size;
  }

  /** Stops accepting; open connections go on until their backend side ends them. */
  stop(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
    }
    return this.#accepting;
  }

  /** Stops accepting, closes every connection and waits for their copies to end. */
  async close(): Promise<void> {
    await this.stop();
    clearInterval(this.#timer);
    for (const guarded of this.#open) this.#end(guarded);
    await Promise.all(this.#done);
  }

  /** Waits for the open connections to end by themselves (after `stop`). */
  async settled(): Promise<void> {
    await Promise.all(this.#done);
    clearInterval(this.#timer);
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        this.#log.warn(`Cannot accept an HTTP connection: ${errorMessage(error)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (this.#open.size >= this.#max) {
        if (this.counts.refused++ === 0) {
          this.#log.warn(
            `HTTP: ${this.#max} connections open, closing new ones until some end`,
          );
        }
        closeQuietly(client);
        continue;
      }
      const now = performance.now();
      const guarded: Guarded = {
        client,
        headerSince: now,
        activeAt: now,
        awaiting: false,
        plain: false,
        closed: false,
      };
      this.#open.add(guarded);
      const done = this.#serve(guarded).finally(() => {
        this.#open.delete(guarded);
        this.#done.delete(done);
      });
      this.#done.add(done);
    }
  }

  async #serve(guarded: Guarded): Promise<void> {
    try {
      guarded.backend = await this.#connectBackend();
    } catch (error) {
      this.#log.warn(`HTTP: cannot reach the server behind the guard: ${errorMessage(error)}`);
      this.#end(guarded);
      return;
    }
    if (guarded.closed) {
      closeQuietly(guarded.backend);
      return;
    }
    await Promise.allSettled([this.#requests(guarded), this.#responses(guarded)]);
    this.#end(guarded);
  }

  /** Client to backend, watching where each request header starts and ends. */
  async #requests(guarded: Guarded): Promise<void> {
    const { client, backend } = guarded;
    const parser = new RequestHeads();
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await client.read(buffer);
        if (n === null) break;
        const chunk = buffer.subarray(0, n);
        guarded.activeAt = performance.now();
        if (!guarded.plain) {
          const seen = parser.push(chunk);
          if (seen.oversized) {
            this.counts.oversized++;
            break;
          }
          if (seen.completed > 0) guarded.awaiting = true;
          if (seen.plain) guarded.plain = true;
          if (parser.inHeader) {
            if (guarded.headerSince === 0) guarded.headerSince = guarded.activeAt;
          } else {
            guarded.headerSince = 0;
          }
        }
        await writeAll(backend!, chunk);
      }
    } catch {
      // either side went away
    }
    // The client is done sending: the answer to its last request may still be on its way (the
    // idle timeout ends the connection after it); otherwise nothing more will happen here.
    if (guarded.plain || parser.inHeader || !guarded.awaiting) this.#end(guarded);
  }

  /** Backend to client, as it comes. */
  async #responses(guarded: Guarded): Promise<void> {
    const { client, backend } = guarded;
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await backend!.read(buffer);
        if (n === null) break;
        guarded.activeAt = performance.now();
        guarded.awaiting = false;
        await writeAll(client, buffer.subarray(0, n));
        guarded.activeAt = performance.now();
      }
    } catch {
      // either side went away
    }
    this.#end(guarded);
  }

  #check(): void {
    const now = performance.now();
    for (const guarded of this.#open) {
      if (guarded.headerSince > 0 && !guarded.plain && now - guarded.headerSince > this.#headerMs) {
        this.counts.headerTimeouts++;
        this.#end(guarded);
      } else if (!guarded.awaiting && now - guarded.activeAt > this.#idleMs) {
        this.counts.idleTimeouts++;
        this.#end(guarded);
      }
    }
  }

  #end(guarded: Guarded): void {
    if (guarded.closed) return;
    guarded.closed = true;
    closeQuietly(guarded.client);
    if (guarded.backend) closeQuietly(guarded.backend);
  }
}

const LF = 0x0a;
const CR = 0x0d;
const decoder = new TextDecoder("latin1");

/**
 * Finds the ends of request headers in a client's byte stream, and skips `Content-Length`
 * bodies between them.
 */
class RequestHeads {
  /** Whether a header is being read (some of its bytes arrived, not its end). */
  inHeader = false;
  #head: Uint8Array[] = [];
  #headBytes = 0;
  #lineLength = 0;
  #body = 0;

  /** Consumes a chunk: how many headers ended in it, and whether to stop tracking. */
  push(chunk: Uint8Array): { completed: number; plain: boolean; oversized: boolean } {
    let completed = 0;
    let start = 0;
    let position = 0;
    while (position < chunk.length) {
      if (this.#body > 0) {
        const skip = Math.min(this.#body, chunk.length - position);
        this.#body -= skip;
        position += skip;
        start = position;
        continue;
      }
      const byte = chunk[position++]!;
      if (!this.inHeader) {
        // Empty lines before a request line are allowed (RFC 9112, 2.2).
        if (byte === CR || byte === LF) {
          start = position;
          continue;
        }
        this.inHeader = true;
        this.#lineLength = 0;
      }
      if (byte === LF) {
        if (this.#lineLength === 0) {
          this.#head.push(chunk.subarray(start, position));
          const head = this.#take();
          start = position;
          completed++;
          this.inHeader = false;
          const framing = bodyOf(head);
          if (framing === "plain") return { completed, plain: true, oversized: false };
          this.#body = framing;
        }
        this.#lineLength = 0;
      } else if (byte !== CR) {
        this.#lineLength++;
      }
    }
    if (this.inHeader) {
      const rest = chunk.subarray(start);
      this.#head.push(rest.slice());
      this.#headBytes += rest.length;
      if (this.#headBytes > MAX_HEADER_BYTES) return { completed, plain: false, oversized: true };
    }
    return { completed, plain: false, oversized: false };
  }

  #take(): string {
    const text = this.#head.map((part) => decoder.decode(part)).join("");
    this.#head = [];
    this.#headBytes = 0;
    return text;
  }
}

/** The body length a request header announces, or "plain" for framing the guard does not follow. */
function bodyOf(head: string): number | "plain" {
  const lines = head.split(/\r?\n/);
  if (/^CONNECT /i.test(lines[0] ?? "")) return "plain";
  let length = 0;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "transfer-encoding" || name === "upgrade") return "plain";
    if (name === "content-length") {
      const n = Number(value);
      if (!Number.isSafeInteger(n) || n < 0) return "plain"; // the server refuses it
      length = n;
    }
  }
  return length;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
