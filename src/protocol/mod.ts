/**
 * The GOCACHEPROG protocol, Go 1.21 to 1.26: wire shapes, framing and a session server that
 * runs over any pair of byte streams.
 *
 * @example
 * ```ts ignore
 * import { serve } from "./mod.ts";
 * await serve(Deno.stdin.readable, Deno.stdout.writable, myCache);
 * ```
 *
 * @module
 */

export * from "./wire.ts";
export * from "./framing.ts";
export * from "./server.ts";
export * from "./budget.ts";
