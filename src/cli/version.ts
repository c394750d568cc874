/**
 * The program's version, in a file of its own so that `serve` (which reports it on its status
 * page and in `/debug/vars`) does not load the help text to learn it.
 *
 * @module
 */

/** The program's version, printed by `version` and reported by `serve --http`. */
export const VERSION = "0.1.0";
