/**
 * Which go command a session serves, for the status page. The protocol does not say (go sends
 * gets and puts, never its subcommand), so it is read from the process table: the session's
 * client is a `connect` process of this program whose target is the server's plugin address,
 * and that process's parent is the go command (`go build ./...` → `go build`). Sessions are
 * accepted in the order their clients connected, so a new session is matched with the oldest
 * (lowest pid) such client not matched yet. The table comes from one `ps -eo pid=,ppid=,args=`
 * per session (Deno reads `/proc` only with `--allow-all`, so `ps` it is, allowed by
 * `--allow-run=go,ps`); without `ps`, or when it cannot tell, the command is `go`.
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
    if (this.#unavailable || Deno.build.os === "windows") return UNKNOWN_COMMAND;
    let table: Map<number, { ppid: number; args: string[] }>;
    try {
      table = await processTable();
    } catch {
      this.#unavailable = true; // no ps here, or not allowed to run it: stop asking
      return UNKNOWN_COMMAND;
    }
    let oldest: number | undefined;
    for (const [pid, { args }] of table) {
      if (this.#claimed.has(pid) || !this.#isClient(args)) continue;
      if (oldest === undefined || pid < oldest) oldest = pid;
    }
    if (oldest === undefined) return UNKNOWN_COMMAND;
    this.#claimed.set(oldest, session);
    return commandOf(table.get(table.get(oldest)!.ppid)?.args);
  }

  #unavailable = false;

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

/** Every process: pid → parent and arguments (split on spaces, as `ps` prints them). */
async function processTable(): Promise<Map<number, { ppid: number; args: string[] }>> {
  const output = await new Deno.Command("ps", {
    args: ["-eo", "pid=,ppid=,args="],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    signal: AbortSignal.timeout(5_000),
  }).output();
  if (!output.success) throw new Error(`ps exited with status ${output.code}`);
  const table = new Map<number, { ppid: number; args: string[] }>();
  for (const line of new TextDecoder().decode(output.stdout).split("\n")) {
    const match = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (match) {
      table.set(Number(match[1]), { ppid: Number(match[2]), args: match[3]!.split(/\s+/) });
    }
  }
  return table;
}
