/**
 * Reading a `gcs_uri` instance of `deno task serve`: one GET of the Cloud Storage JSON API's media
 * download, `{endpoint}/storage/v1/b/{bucket}/o/{object, percent-encoded}?alt=media`, with
 * `Authorization: Bearer <token>` when the instance has a `bearer_token` (else an anonymous read, for
 * public objects). The endpoint is https://storage.googleapis.com unless `--gcs-endpoint` (or
 * `STORAGE_EMULATOR_HOST`, as Google's client libraries read it) names another, e.g. a local emulator.
 * Errors name the `gs://` URI and the HTTP status, never the token.
 * @module
 */

/** Cloud Storage's endpoint. */
export const DEFAULT_GCS_ENDPOINT = "https://storage.googleapis.com";

/** The largest object fetched by default (32 MiB): beyond any dermatology photograph. */
export const DEFAULT_MAX_GCS_BYTES = 32 * 1024 * 1024;

/** Where an object is and how to fetch it. */
export interface GcsObject {
  /** `gs://bucket/object`, for messages. */
  readonly uri: string;
  readonly bucket: string;
  /** The object name (may contain slashes). */
  readonly object: string;
  /** An OAuth 2 access token (none: anonymous). */
  readonly token?: string;
}

/** Options of {@linkcode fetchGcsObject}. */
export interface GcsOptions {
  /** Endpoint, without a trailing slash (default {@linkcode DEFAULT_GCS_ENDPOINT}). */
  readonly endpoint?: string;
  /** Refuse objects larger than this (default {@linkcode DEFAULT_MAX_GCS_BYTES}). */
  readonly maxBytes?: number;
  /** Aborts the download (the request's deadline). */
  readonly signal?: AbortSignal;
  /** What asked for the object, for messages (`instances[3]`): `Cannot read "instances[3]" from "gs://..."`. */
  readonly label?: string;
}

/**
 * The media download URL of an object.
 *
 * @example
 * ```ts
 * gcsMediaUrl("https://storage.googleapis.com", "b", "a/b c.png");
 * // "https://storage.googleapis.com/storage/v1/b/b/o/a%2Fb%20c.png?alt=media"
 * ```
 */
export function gcsMediaUrl(endpoint: string, bucket: string, object: string): string {
  return `${endpoint.replace(/\/+$/, "")}/storage/v1/b/${encodeURIComponent(bucket)}/o/${
    encodeURIComponent(object)
  }?alt=media`;
}

/**
 * Downloads an object's bytes.
 *
 * @param target The object and token.
 * @param options Endpoint, size limit, abort signal.
 * @returns The bytes.
 * @throws {Error} `Cannot read "gs://b/o": ...` for an unreachable endpoint, a status other than 200 (404:
 *   no such object; 401/403: the token is missing, expired or lacks storage.objects.get), or an object
 *   over the limit; the signal's reason when aborted.
 */
export async function fetchGcsObject(
  target: GcsObject,
  options: GcsOptions = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const endpoint = options.endpoint ?? DEFAULT_GCS_ENDPOINT;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_GCS_BYTES;
  const url = gcsMediaUrl(endpoint, target.bucket, target.object);
  const fail = (what: string): never => {
    throw new Error(`Cannot read ${options.label ? `"${options.label}" from ` : ""}"${target.uri}": ${what}`);
  };
  let response: Response;
  try {
    response = await fetch(url, {
      headers: target.token ? { authorization: `Bearer ${target.token}` } : {},
      signal: options.signal,
    });
  } catch (e) {
    if (options.signal?.aborted) throw options.signal.reason;
    return fail(`cannot reach ${endpoint} (${(e as Error).message})`);
  }
  if (response.status !== 200) {
    const detail = await errorDetail(response);
    const why = response.status === 404
      ? "no such object"
      : response.status === 401 || response.status === 403
      ? target.token ? "access denied with this bearer_token" : "access denied without a bearer_token"
      : "unexpected status";
    return fail(`expected HTTP 200, got ${response.status} (${why}${detail ? `: ${detail}` : ""})`);
  }
  const length = Number(response.headers.get("content-length") ?? NaN);
  if (length > maxBytes) {
    await response.body?.cancel();
    return fail(`expected at most ${maxBytes} bytes, got ${length}`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
      total += chunk.length;
      if (total > maxBytes) break; // leaving the loop cancels the download
      chunks.push(chunk);
    }
  } catch (e) {
    if (options.signal?.aborted) throw options.signal.reason;
    return fail(`download interrupted (${(e as Error).message})`);
  }
  if (total > maxBytes) fail(`expected at most ${maxBytes} bytes, got more`);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

/** Cloud Storage's JSON error message (`{"error": {"message": ...}}`), shortened, or "". */
async function errorDetail(response: Response): Promise<string> {
  let text: string;
  try {
    text = await response.text();
  } catch {
    return "";
  }
  let message = text;
  try {
    const m = JSON.parse(text)?.error?.message;
    if (typeof m === "string") message = m;
  } catch {
    // Not JSON: the text itself.
  }
  message = message.replace(/\s+/g, " ").trim();
  return message.length > 160 ? `${message.slice(0, 157)}...` : message;
}
