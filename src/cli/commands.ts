/**
 * The subcommands, in one list that `main.ts` and the flag parser share. It imports nothing, so
 * `main.ts` can read it before the handshake that go waits for (the flag parser pulls in
 * `node:util`, which costs tens of milliseconds).
 *
 * @module
 */

/** What to run: `direct` when no subcommand is named. */
export type Command = "direct" | "serve" | "connect" | "stats" | "clean" | "help" | "version";

/** The subcommands a first positional argument may name. */
export const SUBCOMMANDS: readonly Command[] = Object.freeze([
  "serve",
  "connect",
  "stats",
  "clean",
  "help",
  "version",
]);

/** Flag names (without dashes) that ask for `help`, as Go's flag package reads them. */
export const HELP_FLAGS: readonly string[] = Object.freeze(["h", "help"]);

/** Flag names (without dashes) that ask for `version`. */
export const VERSION_FLAGS: readonly string[] = Object.freeze(["version"]);

/**
 * Every argument that means the process is not serving go directly: a subcommand, or a help or
 * version flag in either dash spelling. Without one of them `main.ts` writes the handshake at
 * once (unless stdin is a terminal: a person, not go).
 */
export const NOT_DIRECT: ReadonlySet<string> = new Set([
  ...SUBCOMMANDS,
  ...[...HELP_FLAGS, ...VERSION_FLAGS].flatMap((name) => [`-${name}`, `--${name}`]),
]);
