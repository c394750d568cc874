/**
 * `serve --plugin`: accepts connections from `connect` processes on 127.0.0.1:PORT or on a Unix
 * socket, and runs one protocol session per connection over one shared cache.
 *
 * Sessions are independent: a client that sends garbage or vanishes ends only its own session.
 * A session's `close` request is answered without closing the shared cache; background work
 * (uploads) is flushed once, when the server shuts down.
 *
 * @module
 */

import { type ByteSink, type ByteSource, type CacheHandler, serve } from "../protocol/mod.ts";
import { type Logger, SILENT } from "../log/mod.ts";
import type { Metrics } from "../metrics/mod.ts";
import { ByteBudget } from "../util/byte_budget.ts";
import { errorMessage, writeAll } from "../util/mod.ts";

/** Options for {@linkcode PluginListener.listen}. */
export interface PluginListenerOptions {
  /** The shared cache. Its `close` is never called by a session. */
  handler: CacheHandler;
  /** Requests handled at once per session. @default {navigator.hardwareConcurrency} */
  maxRequests?: number;
  /** Registry for protocol counters, `sessions` (gauge), `sessions_total`, `session_errors`. @default none */
  metrics?: Metrics;
  /** Lifecycle and error lines. @default {SILENT} */
  log?: Logger;
  /** Per-request trace lines, prefixed with the session number. @default none */
  trace?: (line: string) => void;
  /**
   * Bytes of put bodies all sessions together may hold in memory, counted from a body's first
   * byte until its put settles or its session ends (the memory is then freed at once); a session
   * whose next body does not fit stops reading until it does. One body larger than this is read
   * alone, once nothing else is held. The handler must keep no reference to a put body once its
   * `put()` has settled.
   * @default {536870912} (512 MiB)
   */
  maxBodyBytes?: number;
  /** Session deadlines (see `ServeOptions`); a session ended by one is logged and counted. */
  deadlines?: SessionDeadlines;
  /** Told when each session starts and ends, and may wrap the cache it sees. @default none */
  sessions?: SessionObserver;
}

/** Watches sessions (see `session_log.ts`): told when one starts, it returns that session's watch. */
export interface SessionObserver {
  /**
   * A session starts.
   *
   * @param id The session's number in this listener.
   * @returns What sees the session's requests and its end.
   */
  begin(id: number): SessionWatch;
}

/** One session as a {@linkcode SessionObserver} sees it. */
export interface SessionWatch {
  /**
   * The cache this session uses: the shared one, wrapped.
   *
   * @param handler The shared cache (sessions never call its `close`).
   * @returns What the session calls instead.
   */
  wrap(handler: CacheHandler): CacheHandler;
  /**
   * The session ended.
   *
   * @param how `close`, `end of input`, or `error`.
   */
  end(how: "close" | "end of input" | "error"): void;
}

/** How long a session may stall, idle, or leave replies unread before the server ends it. */
export interface SessionDeadlines {
  /** Input stopped inside a request. @default {60000} */
  stallTimeoutMs?: number;
  /**
   * No request at all. go can sit silent through a long test run; ending the session then is safe,
   * because `connect` answers the rest locally.
   * @default {1800000} (30 minutes)
   */
  idleTimeoutMs?: number;
  /** A reply write the client does not take. @default {30000} */
  writeTimeoutMs?: number;
}

interface Session {
  conn: Deno.Conn;
  done: Promise<void>;
}

/** A listening plugin server. Dispose it (or call {@linkcode PluginListener.drain}) to stop. */
export class PluginListener implements AsyncDisposable {
  /** `127.0.0.1:PORT` or the socket path. */
  readonly address: string;
  #listener: Deno.Listener;
  #socketPath?: string;
  #handler: CacheHandler;
  #options: PluginListenerOptions;
  #log: Logger;
  #sessions = new Map<number, Session>();
  #nextId = 0;
  #closed = false;
  #accepting: Promise<void>;
  #bodyBudget: ByteBudget;

  private constructor(listener: Deno.Listener, options: PluginListenerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#log = options.log ?? SILENT;
    this.#handler = options.handler;
    const addr = listener.addr;
    if (addr.transport === "unix") {
      this.address = addr.path;
      this.#socketPath = addr.path;
    } else {
      this.address = `${(addr as Deno.NetAddr).hostname}:${(addr as Deno.NetAddr).port}`;
    }
    this.#bodyBudget = new ByteBudget(options.maxBodyBytes ?? 512 << 20);
    this.#options.metrics?.set("sessions", 0);
    this.#accepting = this.#acceptLoop();
  }

  /**
   * Starts listening.
   *
   * @param target A port (listened on 127.0.0.1 only; 0 picks a free one) or a Unix socket path
   *   (created readable and writable by this user only; a stale socket file left by a dead
   *   server is replaced).
   * @param options The shared cache, limits, metrics and logging.
   * @returns The listener, already accepting.
   * @throws {Deno.errors.AddrInUse} When the port or socket is taken by a live server.
   */
  static async listen(target: string, options: PluginListenerOptions): Promise<PluginListener> {
    if (/^\d+$/.test(target)) {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(target) });
      return new PluginListener(listener, options);
    }
    return new PluginListener(await listenUnix(target), options);
  }

  /** Sessions running now. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Stops accepting new connections; running sessions continue. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
  }

  /**
   * Stops accepting, waits up to `graceMs` for running sessions to end, then closes the
   * connections of those still running (their `connect` processes carry on locally).
   *
   * @param graceMs How long sessions may run on. @default {10000}
   * @returns How many sessions were cut off.
   */
  async drain(graceMs = 10_000): Promise<number> {
    this.close();
    await this.#accepting;
    const all = () => Promise.all([...this.#sessions.values()].map((s) => s.done));
    if (this.#sessions.size > 0 && graceMs > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        all(),
        new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs)),
      ]);
      clearTimeout(timer);
    }
    const cut = this.#sessions.size;
    for (const session of this.#sessions.values()) closeQuietly(session.conn);
    await all();
    if (this.#socketPath) await Deno.remove(this.#socketPath).catch(() => {});
    return cut;
  }

  /** Same as `drain(0)`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.drain(0);
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        // Out of file descriptors and the like: back off instead of spinning.
        this.#log.warn(`Cannot accept a connection on ${this.address}: ${errorMessage(error)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      this.#start(conn);
    }
  }

  #start(conn: Deno.Conn): void {
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    const id = ++this.#nextId;
    const { metrics } = this.#options;
    const trace = this.#options.trace;
    const session: Session = { conn, done: Promise.resolve() };
    this.#sessions.set(id, session);
    metrics?.add("sessions_total");
    metrics?.set("sessions", this.#sessions.size);
    this.#log.info(`session ${id} started`);
    const watch = this.#options.sessions?.begin(id);
    const handler = watch ? watch.wrap(this.#handler) : this.#handler;
    let how: "close" | "end of input" | "error" = "error";
    session.done = (async () => {
      try {
        const deadlines = this.#options.deadlines;
        const result = await serve(sourceOf(conn), sinkOf(conn), handler, {
          maxRequests: this.#options.maxRequests,
          // Sessions share the cache: one go command ending must not flush the server.
          closeHandler: false,
          metrics,
          trace: trace && ((line) => trace(`S:${id} ${line}`)),
          bodyBudget: this.#bodyBudget,
          stallTimeoutMs: deadlines?.stallTimeoutMs ?? 60_000,
          idleTimeoutMs: deadlines?.idleTimeoutMs ?? 1_800_000,
          writeTimeoutMs: deadlines?.writeTimeoutMs ?? 30_000,
        });
        how = result.closed ? "close" : "end of input";
        this.#log.info(`session ${id} ended (${how})`);
      } catch (error) {
        metrics?.add("session_errors");
        this.#log.warn(`session ${id} ended: ${errorMessage(error)}`);
      } finally {
        watch?.end(how);
        await linger(conn);
        this.#sessions.delete(id);
        metrics?.set("sessions", this.#sessions.size);
      }
    })();
  }
}

/**
 * The connection's input, read into the session's reused buffer. A deadline that passes closes
 * the connection (the session is over); a session's normal end leaves it open for
 * {@linkcode linger}, since replies may still be on their way.
 */
function sourceOf(conn: Deno.Conn): ByteSource {
  return { read: (buffer) => conn.read(buffer), cancel: () => closeQuietly(conn) };
}

/** Replies written straight to the connection; giving up on them closes it. */
function sinkOf(conn: Deno.Conn): ByteSink {
  return { write: (bytes) => writeAll(conn, bytes), abort: () => closeQuietly(conn) };
}

/** How long a finished session waits for its client to hang up. */
const LINGER_MS = 5_000;

/**
 * Ends a connection without destroying replies in flight: closing a socket with unread input
 * (a trailing newline after `close`, or garbage) sends a reset, and the peer may drop replies it
 * has not read yet. So send end-of-stream, read until the client hangs up (bounded), then close.
 */
async function linger(conn: Deno.Conn): Promise<void> {
  const timer = setTimeout(() => closeQuietly(conn), LINGER_MS);
  try {
    await conn.closeWrite();
    const scratch = new Uint8Array(4096);
    while (await conn.read(scratch) !== null) {
      // discard
    }
  } catch {
    // reset, or closed by the timer or by drain()
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

async function listenUnix(path: string): Promise<Deno.Listener> {
  try {
    return await listenPrivate(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists || error instanceof Deno.errors.AddrInUse)) {
      throw error;
    }
  }
  // Something is there: replace it only when it is a socket nobody answers on.
  if (!(await Deno.lstat(path)).isSocket) {
    throw new Deno.errors.AddrInUse(`Cannot listen on ${JSON.stringify(path)}: not a socket`);
  }
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
  } catch {
    await Deno.remove(path);
    return await listenPrivate(path);
  }
  throw new Deno.errors.AddrInUse(`Cannot listen on ${JSON.stringify(path)}: a server is running`);
}

/**
 * Listens on a Unix socket that only this user can connect to: whoever can connect can write
 * cache entries. The socket is made in a private directory, set to mode 0600 and then linked
 * to `path`, so it never exists there with the umask's mode, not even for an instant.
 */
async function listenPrivate(path: string): Promise<Deno.Listener> {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  const stage = await Deno.makeTempDir({ dir, prefix: ".gcp-socket-" }); // mode 0700
  const staged = `${stage}/s`;
  try {
    const listener = Deno.listen({ transport: "unix", path: staged });
    try {
      await Deno.chmod(staged, 0o600);
      await Deno.link(staged, path);
    } catch (error) {
      listener.close();
      throw error;
    }
    return new AddressedListener(listener, path);
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
}

/** A Unix listener that reports the public socket path, not the staging one it was bound at. */
class AddressedListener implements Deno.Listener {
  #inner: Deno.Listener;
  readonly addr: Deno.Addr;

  constructor(inner: Deno.Listener, path: string) {
    this.#inner = inner;
    this.addr = { transport: "unix", path };
  }

  accept(): Promise<Deno.Conn> {
    return this.#inner.accept();
  }

  close(): void {
    this.#inner.close();
  }

  ref(): void {
    this.#inner.ref();
  }

  unref(): void {
    this.#inner.unref();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Deno.Conn> {
    return this.#inner[Symbol.asyncIterator]();
  }

  [Symbol.dispose](): void {
    this.#inner[Symbol.dispose]();
  }
}
