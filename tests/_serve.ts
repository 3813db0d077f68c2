/**
 * Helpers of the `deno task serve` tests: a GPU that must be there (these tests never skip), the CC0
 * JPEGs of `testdata/isic-cc0/` as request instances, a predict client, and a fake Cloud Storage JSON API
 * on 127.0.0.1 that checks bearer tokens.
 * @module
 */
import type { Gpu } from "../engine/device.ts";
import { testGpu } from "./_gpu.ts";
import { testdataPath } from "./_testdata.ts";

/** The test process's device; throws (never skips) when there is no adapter. */
export async function serveGpu(): Promise<Gpu> {
  const gpu = await testGpu();
  if (typeof gpu === "string") {
    throw new Error(`No WebGPU adapter (the serve tests need one; DENO_WEBGPU_BACKEND=gl|vulkan): ${gpu}`);
  }
  return gpu;
}

/** The first `n` JPEGs of testdata/isic-cc0 (sorted by name), each 250 x 250. */
export function isicJpegs(n: number): { name: string; bytes: Uint8Array<ArrayBuffer> }[] {
  const dir = testdataPath("isic-cc0");
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((f) => f.endsWith(".jpg")).sort();
  if (names.length < n) throw new Error(`testdata/isic-cc0 has ${names.length} JPEGs, the test needs ${n}`);
  return names.slice(0, n).map((name) => ({ name, bytes: Deno.readFileSync(`${dir}/${name}`) }));
}

/** An `input_bytes` instance. */
export function bytesInstance(bytes: Uint8Array): { input_bytes: string } {
  return { input_bytes: bytes.toBase64() };
}

/** A predict response, read. */
export interface PredictReply {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** POSTs `body` (an object, sent as JSON, or text/bytes as they are) to `url`. */
export async function post(url: string, body: unknown, init: RequestInit = {}): Promise<PredictReply> {
  const payload = typeof body === "string" || body instanceof Uint8Array || body instanceof ReadableStream
    ? body as BodyInit
    : JSON.stringify(body);
  const r = await fetch(url, { method: "POST", body: payload, ...init });
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Kept as text: the test says what it expected.
  }
  return { status: r.status, headers: r.headers, body: parsed };
}

/** Largest |a - b| over max |b| (0 for equal arrays). */
export function maxRelativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/** A fake Cloud Storage JSON API: media downloads of `objects` ("bucket/object" → bytes). */
export interface FakeGcs {
  /** `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** Every request: path (decoded bucket and object), query and Authorization header. */
  readonly requests: { bucket: string; object: string; alt: string | null; authorization: string | null }[];
  close(): Promise<void>;
}

/**
 * Serves `objects` as Cloud Storage does: `GET /storage/v1/b/{bucket}/o/{object}?alt=media`; a request
 * without `Authorization: Bearer {token}` gets 401 (none) or 403 (another), an unknown object 404, with
 * Cloud Storage's JSON error body. Objects under `public/` need no token; those under `chunked/` are sent
 * without a Content-Length, in two chunks.
 */
export async function fakeGcs(objects: Map<string, Uint8Array>, token: string): Promise<FakeGcs> {
  const requests: FakeGcs["requests"] = [];
  const error = (code: number, message: string) =>
    new Response(JSON.stringify({ error: { code, message, errors: [{ message, reason: "x" }] } }), {
      status: code,
      headers: { "content-type": "application/json" },
    });
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: (a) => resolve(a as Deno.NetAddr) },
    (req) => {
      const url = new URL(req.url);
      const m = /^\/storage\/v1\/b\/([^/]+)\/o\/([^/]+)$/.exec(url.pathname);
      if (!m) return error(404, `Not Found: ${url.pathname}`);
      const bucket = decodeURIComponent(m[1]);
      const object = decodeURIComponent(m[2]);
      const authorization = req.headers.get("authorization");
      requests.push({ bucket, object, alt: url.searchParams.get("alt"), authorization });
      if (url.searchParams.get("alt") !== "media") return error(400, "expected alt=media");
      if (!object.startsWith("public/")) {
        if (authorization === null) {
          return error(
            401,
            "Anonymous caller does not have storage.objects.get access",
          );
        }
        if (authorization !== `Bearer ${token}`) {
          return error(
            403,
            "Caller does not have storage.objects.get access",
          );
        }
      }
      const bytes = objects.get(`${bucket}/${object}`);
      if (!bytes) return error(404, `No such object: ${bucket}/${object}`);
      const body = object.startsWith("chunked/")
        ? ReadableStream.from([bytes.slice(0, bytes.length >> 1), bytes.slice(bytes.length >> 1)])
        : bytes as Uint8Array<ArrayBuffer>;
      return new Response(body, { headers: { "content-type": "image/jpeg" } });
    },
  );
  const addr = await promise;
  return { endpoint: `http://127.0.0.1:${addr.port}`, requests, close: () => server.shutdown() };
}
