/**
 * A scripted protocol client over in-memory streams: feed request bytes to `serve()` and collect
 * its replies as parsed JSON values.
 *
 * @module
 */

import {
  type CacheHandler,
  type CacheHit,
  type GetAnswer,
  serve,
  type ServeOptions,
} from "../../src/protocol/mod.ts";

/** Whether a handler's get answered with a hit at once (a value, no promise). */
export function isHitNow(answer: GetAnswer): boolean {
  return answer !== undefined && !(answer instanceof Promise);
}

/** A reply as go would decode it. */
export type Reply = Record<string, unknown> & { ID: number };

/** What {@linkcode runSession} returns. */
export interface SessionOutcome {
  replies: Reply[];
  /** The raw bytes written, for checks on framing. */
  text: string;
  closed?: boolean;
  error?: Error;
}

/**
 * Runs one session over `input`, split into chunks of `chunkSize` bytes (all at once when 0).
 */
export async function runSession(
  input: Uint8Array | string,
  handler: CacheHandler,
  options: ServeOptions & { chunkSize?: number } = {},
): Promise<SessionOutcome> {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  const size = options.chunkSize || bytes.length || 1;
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
  const out: Uint8Array[] = [];
  const writable = new WritableStream<Uint8Array>({ write: (chunk) => void out.push(chunk) });
  let closed: boolean | undefined;
  let error: Error | undefined;
  try {
    closed = (await serve(ReadableStream.from(chunks), writable, handler, options)).closed;
  } catch (e) {
    error = e as Error;
  }
  const text = new TextDecoder().decode(await new Blob(out as BlobPart[]).arrayBuffer());
  const replies = text.split("\n").filter((line) => line !== "").map((line) =>
    JSON.parse(line) as Reply
  );
  return { replies, text, closed, error };
}

/** Encodes a put the way go does: header, empty line, then the base64 body line when non-empty. */
export function putFrame(id: number, actionId: string, body: Uint8Array, outputId: string): string {
  const header: Record<string, unknown> = {
    ID: id,
    Command: "put",
    ActionID: b64(actionId),
    OutputID: b64(outputId),
  };
  if (body.length > 0) header.BodySize = body.length;
  return JSON.stringify(header) + "\n\n" + (body.length > 0 ? `"${body.toBase64()}"\n` : "");
}

/** Encodes a get. */
export function getFrame(id: number, actionId: string): string {
  return JSON.stringify({ ID: id, Command: "get", ActionID: b64(actionId) }) + "\n\n";
}

/** Encodes a close. */
export function closeFrame(id: number): string {
  return JSON.stringify({ ID: id, Command: "close" }) + "\n\n";
}

export { sha256Hex } from "./bytes.ts";

/** A deterministic 64-hex-digit id from a small number. */
export function hexId(n: number): string {
  return n.toString(16).padStart(64, "0");
}

function b64(hex: string): string {
  return Uint8Array.fromHex(hex).toBase64();
}

/** A handler that stores in memory, with optional per-call delays to force out-of-order replies. */
export class MemoryHandler implements CacheHandler {
  entries = new Map<string, { outputId: string; body: Uint8Array }>();
  delays = new Map<string, number>();
  closed = 0;

  async get(actionId: string): Promise<CacheHit | undefined> {
    await delay(this.delays.get(actionId) ?? 0);
    const entry = this.entries.get(actionId);
    if (!entry) return undefined;
    return {
      outputId: entry.outputId,
      size: entry.body.length,
      diskPath: `/mem/${entry.outputId}`,
      time: new Date(0),
    };
  }

  async put(object: { actionId: string; outputId: string; body: Uint8Array }): Promise<string> {
    await delay(this.delays.get(object.actionId) ?? 0);
    // A copy, as a cache that keeps bodies must make: a server may free a body once put settles.
    this.entries.set(object.actionId, { outputId: object.outputId, body: object.body.slice() });
    return `/mem/${object.outputId}`;
  }

  close(): Promise<void> {
    this.closed++;
    return Promise.resolve();
  }
}

function delay(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
