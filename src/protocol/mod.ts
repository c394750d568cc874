/**
 * The GOCACHEPROG protocol, Go 1.21 to 1.26: wire shapes, framing, a session server that runs
 * over any pair of byte streams, and the relay a byte bridge to such a server follows.
 *
 * Start reading at `server.ts` ({@linkcode serve} and the {@linkcode CacheHandler} it calls), then
 * `wire.ts` and `framing.ts`. Only `wire.ts` knows Go's field names; `framing.ts` and `relay.ts`
 * split the request stream with the same private line splitter (`_lines.ts`).
 *
 * Imports: `util/` only; it knows nothing of storage (the cache implements its handler).
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
export * from "./frame_stream.ts";
export * from "./server.ts";
export * from "./relay.ts";
export type { ByteSink, ByteSource } from "./io.ts";
