/**
 * Web Worker of `deno task embed`: runs {@linkcode decodeJob} (read, SHA-256, decode, EXIF orientation)
 * off the main thread so that decoding overlaps GPU work. Messages are {@linkcode DecodeRequest} in,
 * {@linkcode DecodeReply} out; the pixels are transferred, not copied.
 * @module
 */
import { decodeJob, type DecodeReply, type DecodeRequest } from "./decode_job.ts";

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<DecodeRequest>) => void) | null;
  postMessage(message: DecodeReply, transfer: Transferable[]): void;
};

scope.onmessage = async (e) => {
  const reply = await decodeJob(e.data);
  scope.postMessage(reply, reply.image ? [reply.image.rgba.buffer] : []);
};
