/**
 * The body of a `deno task serve` predict request, read with a size limit: a declared Content-Length over
 * the limit is refused before reading, and a body without one (chunked) is counted while it arrives and
 * refused as soon as it passes the limit, so that no request makes the server hold more than the limit.
 * @module
 */
import { RequestError } from "./serve_schema.ts";

/** Options of {@linkcode readRequestBody}. */
export interface BodyOptions {
  /** Largest body accepted, bytes. */
  readonly maxBytes: number;
  /** Cancels the read (the request's deadline). */
  readonly signal?: AbortSignal;
}

/**
 * Reads a request body as UTF-8 text.
 *
 * @param request The request.
 * @param options The limit and an abort signal.
 * @returns The text.
 * @throws {RequestError} 413 for a body over the limit, 400 for one that is not UTF-8.
 * @example
 * ```ts
 * await readRequestBody(new Request("http://x/", { method: "POST", body: "{}" }), { maxBytes: 10 }); // "{}"
 * ```
 */
export async function readRequestBody(request: Request, options: BodyOptions): Promise<string> {
  const max = options.maxBytes;
  const signal = options.signal;
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > max) {
    throw new RequestError(413, `Cannot accept a request body of ${declared} bytes: expected at most ${max}`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (request.body) {
    const reader = request.body.getReader();
    const cancel = () => reader.cancel().catch(() => {});
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.length;
        if (total > max) {
          await cancel();
          throw new RequestError(413, `Cannot accept a request body of more than ${max} bytes`);
        }
        chunks.push(value);
      }
    } finally {
      signal?.removeEventListener("abort", cancel);
    }
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new RequestError(400, "Cannot read the request body: expected UTF-8 JSON, got invalid UTF-8");
  }
}
