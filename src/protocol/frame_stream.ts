/**
 * The frame parser as a `TransformStream`, for callers that want a stream pipeline. Its own file:
 * a class extending `TransformStream` at the top level of a module loads the runtime's streams
 * implementation as soon as the module is, which the session server does not need.
 *
 * @module
 */

import { type Frame, type FrameDecoderOptions, FrameParser } from "./framing.ts";

/**
 * {@linkcode FrameParser} as a `TransformStream`.
 *
 * @example
 * ```ts
 * import { FrameDecoderStream } from "./frame_stream.ts";
 * const bytes = new TextEncoder().encode('{"ID":1,"Command":"close"}\n\n');
 * const frames = await Array.fromAsync(ReadableStream.from([bytes]).pipeThrough(new FrameDecoderStream()));
 * if (frames[0]?.request.command !== "close") throw new Error("unexpected frame");
 * ```
 */
export class FrameDecoderStream extends TransformStream<Uint8Array, Frame> {
  /** Creates a decoder. */
  constructor(options: FrameDecoderOptions = {}) {
    const parser = new FrameParser(options);
    super({
      transform(chunk, controller) {
        for (const frame of parser.push(chunk)) controller.enqueue(frame);
        if (parser.error) throw parser.error;
      },
      flush(controller) {
        for (const frame of parser.end()) controller.enqueue(frame);
      },
    });
  }
}
