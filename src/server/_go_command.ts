/**
 * Which go command a session serves, for the status page. The protocol does not say (go sends
 * gets and puts, never its subcommand), so on Linux it is read from `/proc`: the session's
 * client is a `connect` process of this program whose target is the server's plugin address,
 * and that process's parent is the go command (`go build ./...` → `go build`). Sessions are
 * accepted in the order their clients connected, so a new session is matched with the oldest
 * such client not matched yet. Elsewhere, or when `/proc` cannot tell, it is `go`.
 *
 * @module
 */

/** What to call a go command that cannot be identified. */
export const UNKNOWN_COMMAND = "go";

/** Matches sessions with the go commands behind their `connect` clients. */
export class GoCommands {
  readonly #target: string;
  readonly #claimed = new Map<number, number>();
  #queue: Promise<unknown> = Promise.resolve();

  /** @param target The plugin address `connect` is given: a port, `host:port` or a socket path. */
  constructor(target: string) {
    this.#target = target;
  }

  /**
   * Identifies the go command of a session that has just begun.
   *
   * @param session The session's number (released with {@linkcode GoCommands.release}).
   * @returns `go build`, `go test`, … or {@linkcode UNKNOWN_COMMAND}.
   */
  identify(session: number): Promise<string> {
    // One at a time: two sessions beginning together must not claim the same client.
    const next = this.#queue.then(() => this.#identify(session));
    this.#queue = next.catch(() => {});
    return next.catch(() => UNKNOWN_COMMAND);
  }

  /** A session ended: its client may be matched no more. */
  release(session: number): void {
    for (const [pid, owner] of this.#claimed) {
      if (owner === session) this.#claimed.delete(pid);
    }
  }

  async #identify(session: number): Promise<string> {
    if (Deno.build.os !== "linux") return UNKNOWN_COMMAND;
    let oldest: { pid: number; start: number; ppid: number } | undefined;
    for await (const entry of Deno.readDir("/proc")) {
      const pid = Number(entry.name);
      if (!Number.isInteger(pid) || this.#claimed.has(pid)) continue;
      const argv = await readArgs(pid);
      if (!argv || !this.#isClient(argv)) continue;
      const stat = await readStat(pid);
      if (stat && (!oldest || stat.start < oldest.start)) oldest = { pid, ...stat };
    }
    if (!oldest) return UNKNOWN_COMMAND;
    this.#claimed.set(oldest.pid, session);
    return commandOf(await readArgs(oldest.ppid));
  }

  /** Whether a command line is `… connect <this server's target>` of this program. */
  #isClient(argv: string[]): boolean {
    const at = argv.indexOf("connect");
    if (at < 1 || at + 1 >= argv.length) return false;
    const program = argv.slice(0, at).join(" ");
    if (!/main\.ts|go-cache-plugin/.test(program)) return false;
    const target = argv[at + 1]!;
    const mine = this.#target;
    if (target === mine) return true;
    const port = /(?:^|:)(\d+)$/;
    const a = port.exec(target)?.[1];
    return a !== undefined && a === port.exec(mine)?.[1];
  }
}

/**
 * The go subcommand of a command line: `go build` for `go build -o x ./...`, `go test` for
 * `/usr/local/go/bin/go -C dir test ./...`.
 *
 * @param argv The parent's arguments, or `undefined` when unknown.
 * @returns The command, or {@linkcode UNKNOWN_COMMAND}.
 */
export function commandOf(argv: string[] | undefined): string {
  if (!argv || argv.length === 0) return UNKNOWN_COMMAND;
  const base = argv[0]!.replace(/^.*[\\/]/, "");
  if (base !== "go" && base !== "go.exe") return UNKNOWN_COMMAND;
  let i = 1;
  while (i < argv.length && argv[i]!.startsWith("-")) i += argv[i] === "-C" ? 2 : 1;
  const sub = argv[i];
  return sub && /^[a-z]+$/.test(sub) ? `go ${sub}` : UNKNOWN_COMMAND;
}

async function readArgs(pid: number): Promise<string[] | undefined> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return text.split("\0").filter((a, i, all) => a !== "" || i < all.length - 1);
  } catch {
    return undefined;
  }
}

async function readStat(pid: number): Promise<{ start: number; ppid: number } | undefined> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The name in parentheses may hold spaces: the fields after it are plain.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // After the name: state(3) ppid(4) … starttime(22).
    return { ppid: Number(fields[1]), start: Number(fields[19]) };
  } catch {
    return undefined;
  }
}
