/**
 * Derm Foundation's Vertex AI prediction schema, as `deno task serve` reads and answers it:
 *
 * ```json
 * {"instances": [{"input_bytes": "<base64 PNG or JPEG>"},
 *                {"gcs_uri": "gs://bucket/object.png", "bearer_token": "<OAuth access token>"}]}
 * ```
 *
 * answered, in the same order, by
 *
 * ```json
 * {"predictions": [{"embedding": [0.12, ...]}, {"error": {"description": "Cannot decode ..."}}]}
 * ```
 *
 * A body that is not JSON, not an object with a non-empty `instances` array, or has more instances than
 * allowed fails the whole request ({@linkcode RequestError}: 400, or 413 for too many). A bad instance (not
 * an object, neither or both of `input_bytes` and `gcs_uri`, a key the schema lacks, bad base64, a
 * malformed `gcs_uri`) only gets its own error. `extensions` (Derm Foundation's free-form field) is
 * accepted and ignored, and so is a top-level `parameters` (Vertex AI's). Embeddings are written as the
 * exact decimal value of each float32 (JSON.stringify of the widened double), so a reader that rounds back
 * to float32 gets the bits back.
 * @module
 */

/** A failure of the whole request: the HTTP status and a description for `{"error": {...}}`. */
export class RequestError extends Error {
  /** HTTP status (400, 404, 405, 413, 500, 503, 504). */
  readonly status: number;
  /** Creates the error. */
  constructor(status: number, message: string) {
    super(message);
    this.name = "RequestError";
    this.status = status;
  }
}

/** One instance of a request, read. */
export type Instance =
  /** Image bytes from `input_bytes`. */
  | { readonly kind: "bytes"; readonly bytes: Uint8Array<ArrayBuffer> }
  /** An object in Cloud Storage, to fetch with the token (none: an anonymous read). */
  | {
    readonly kind: "gcs";
    readonly uri: string;
    readonly bucket: string;
    readonly object: string;
    readonly token?: string;
  }
  /** What is wrong with it: its prediction is this error. */
  | { readonly kind: "invalid"; readonly description: string };

/** One entry of `predictions`. */
export type Prediction =
  | {
    readonly embedding: ArrayLike<number>;
    /** The classifier's first head: class → probability. */
    readonly scores?: Readonly<Record<string, number>>;
    /** With more than one head: label → class → probability, every head. */
    readonly scores_by_head?: Readonly<Record<string, Readonly<Record<string, number>>>>;
  }
  | { readonly error: { readonly description: string } };

/** The keys an instance may have. */
export const INSTANCE_KEYS: readonly string[] = ["input_bytes", "gcs_uri", "bearer_token", "extensions"];

/** The name of instance `i` in messages. */
export function instanceName(i: number): string {
  return `instances[${i}]`;
}

/**
 * Reads a `gs://BUCKET/OBJECT` URI.
 *
 * @param uri The URI.
 * @returns Bucket and object name (the object may contain slashes).
 * @throws {TypeError} For anything else.
 * @example
 * ```ts
 * parseGcsUri("gs://derm/isic/ISIC_0000101.jpg"); // { bucket: "derm", object: "isic/ISIC_0000101.jpg" }
 * ```
 */
export function parseGcsUri(uri: string): { bucket: string; object: string } {
  const m = /^gs:\/\/([^/]+)\/(.+)$/.exec(uri);
  // Bucket names: 3 to 222 characters of lowercase letters, digits, "-", "_" and ".".
  if (!m || !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(m[1])) {
    throw new TypeError(`Cannot read "${uri}": expected gs://BUCKET/OBJECT, got ${JSON.stringify(uri)}`);
  }
  return { bucket: m[1], object: m[2] };
}

/**
 * Reads a predict request's body.
 *
 * @param text The body.
 * @param options `maxInstances`: more is a 413.
 * @returns One {@linkcode Instance} per entry of `instances`, in order.
 * @throws {RequestError} 400 for malformed JSON or a body without a non-empty `instances` array, 413 for
 *   too many instances.
 */
export function parsePredictRequest(text: string, options: { maxInstances: number }): Instance[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new RequestError(400, `Cannot parse the request body: expected JSON, got ${(e as Error).message}`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new RequestError(
      400,
      `Cannot read the request: expected an object with "instances", got ${describe(body)}`,
    );
  }
  const instances = (body as Record<string, unknown>).instances;
  if (!Array.isArray(instances)) {
    throw new RequestError(
      400,
      `Cannot read the request: expected "instances" to be an array, got ${describe(instances)}`,
    );
  }
  if (instances.length === 0) {
    throw new RequestError(400, `Cannot read the request: expected at least 1 instance, got 0`);
  }
  if (instances.length > options.maxInstances) {
    throw new RequestError(
      413,
      `Cannot accept ${instances.length} instances: expected at most ${options.maxInstances} per request`,
    );
  }
  return instances.map((v, i) => parseInstance(v, i));
}

/** One instance: its bytes or object, or what is wrong with it. */
export function parseInstance(value: unknown, i: number): Instance {
  const name = instanceName(i);
  const invalid = (what: string): Instance => ({
    kind: "invalid",
    description: `Cannot read "${name}": ${what}`,
  });
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return invalid(`expected an object with "input_bytes" or "gcs_uri", got ${describe(value)}`);
  }
  const o = value as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !INSTANCE_KEYS.includes(k));
  if (unknown.length > 0) {
    return invalid(`expected only the keys ${INSTANCE_KEYS.join(", ")}, got "${unknown[0]}"`);
  }
  const hasBytes = "input_bytes" in o;
  const hasGcs = "gcs_uri" in o;
  if (hasBytes && hasGcs) return invalid(`expected one of "input_bytes" and "gcs_uri", got both`);
  if (!hasBytes && !hasGcs) return invalid(`expected "input_bytes" or "gcs_uri", got neither`);
  if (o.bearer_token !== undefined && typeof o.bearer_token !== "string") {
    return invalid(`expected "bearer_token" to be a string, got ${describe(o.bearer_token)}`);
  }
  if (hasBytes) {
    if (typeof o.input_bytes !== "string") {
      return invalid(`expected "input_bytes" to be a base64 string, got ${describe(o.input_bytes)}`);
    }
    try {
      return { kind: "bytes", bytes: Uint8Array.fromBase64(o.input_bytes) };
    } catch (e) {
      return {
        kind: "invalid",
        description: `Cannot decode "${name}": expected base64 in "input_bytes", got ${(e as Error).message}`,
      };
    }
  }
  if (typeof o.gcs_uri !== "string") {
    return invalid(`expected "gcs_uri" to be a string gs://BUCKET/OBJECT, got ${describe(o.gcs_uri)}`);
  }
  let where: { bucket: string; object: string };
  try {
    where = parseGcsUri(o.gcs_uri);
  } catch {
    return invalid(`expected "gcs_uri" as gs://BUCKET/OBJECT, got ${describe(o.gcs_uri)}`);
  }
  return { kind: "gcs", uri: o.gcs_uri, ...where, token: o.bearer_token as string | undefined };
}

/**
 * The response body for `predictions`.
 *
 * @param predictions One per instance, in order.
 * @returns `{"predictions": [...]}` as JSON text.
 */
export function predictResponseJson(predictions: readonly Prediction[]): string {
  return JSON.stringify({
    predictions: predictions.map((p) =>
      "embedding" in p ? { ...p, embedding: Array.from(p.embedding) } : { error: p.error }
    ),
  });
}

/** The body of a failed request: `{"error": {"description": ...}}`. */
export function errorJson(description: string): string {
  return JSON.stringify({ error: { description } });
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
