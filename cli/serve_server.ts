/**
 * The HTTP server of `deno task serve`, as a library: {@linkcode startServer} listens at once, loads the
 * model meanwhile (health answers 503 until it is loaded, then 200), and answers Derm Foundation's Vertex
 * AI predict requests (`serve_schema.ts`) from one process:
 *
 * request → body (size limit: 413, `serve_body.ts`) → JSON (400) → instances (count limit: 413) → per
 * instance: base64 or Cloud Storage (`serve_gcs.ts`) → decode on worker threads (pixel limit) →
 * micro-batches shared by every request (`serve_batcher.ts`) → embedding (+ classifier scores,
 * `serve_scores.ts`) → `predictions` in order. A bad instance gets its own `{"error": ...}`; the others are unaffected. A request not answered
 * within the timeout gets a 504 (its images still queued are dropped). Routes: POST predict, GET/HEAD
 * health, else 404; another method 405. {@linkcode RunningServer.shutdown} stops accepting work (predict
 * and health answer 503), finishes the requests in flight (a body still arriving included), closes the
 * listener, then frees the model.
 *
 * Over ~400 lines as one file on purpose: the handlers are closures over one server's state (model, batcher,
 * counters, state); what stands alone is in `serve_schema.ts`, `serve_body.ts`, `serve_gcs.ts`,
 * `serve_batcher.ts` and `serve_scores.ts`.
 * @module
 */
import type { Embedder } from "../engine/embedder.ts";
import type { Classifier } from "../models/classifier.ts";
import { DecodePool } from "./decode_pool.ts";
import { embedChunk } from "./embed_chunk.ts";
import { readRequestBody } from "./serve_body.ts";
import { type BatcherStats, BatchFailure, MicroBatcher } from "./serve_batcher.ts";
import { DEFAULT_GCS_ENDPOINT, DEFAULT_MAX_GCS_BYTES, fetchGcsObject } from "./serve_gcs.ts";
import {
  errorJson,
  type Instance,
  instanceName,
  parsePredictRequest,
  type Prediction,
  predictResponseJson,
  RequestError,
} from "./serve_schema.ts";
import { checkClassifier, embeddingScores, servedIdentity } from "./serve_scores.ts";

/** What the server needs of an embedder (`createEmbedder` gives one). */
export type ServingModel = Pick<
  Embedder,
  | "embed"
  | "maxBatch"
  | "inFlight"
  | "embeddingSize"
  | "facts"
  | "preprocessing"
  | "describe"
  | "dispose"
  | "gpu"
>;

/** Defaults of {@linkcode ServeOptions}, shared with the command line's `--help`. */
export const SERVE_DEFAULTS = {
  /** Vertex AI's `AIP_HTTP_PORT` default. */
  port: 8080,
  predictRoute: "/predict",
  healthRoute: "/health",
  /** Longest an image waits for others to share its GPU batch. */
  maxWaitMs: 5,
  maxBodyBytes: 32 * 1024 * 1024,
  maxInstances: 64,
  /**
   * 40 megapixels (160 MB of RGBA once decoded) per image: above any dermatology photograph, and low enough
   * that a few concurrent requests cannot exhaust memory with decompression bombs.
   */
  maxPixels: 40_000_000,
  timeoutMs: 60_000,
  gcsEndpoint: DEFAULT_GCS_ENDPOINT,
  maxGcsBytes: DEFAULT_MAX_GCS_BYTES,
} as const;

/** Options of {@linkcode startServer}. */
export interface ServeOptions {
  /** Loads the model; called once, after the server listens. */
  readonly load: () => Promise<ServingModel>;
  /** The model's name in the classifier's identity check (the `--weights` or `--model` value). */
  readonly modelName: string;
  /** A classifier to score every embedding with, and its file name for messages. */
  readonly classifier?: { readonly classifier: Classifier; readonly name: string };
  /** Address (default 127.0.0.1; the command line's default is 0.0.0.0). */
  readonly hostname?: string;
  /** Port (default 8080; 0 picks a free one). */
  readonly port?: number;
  /** Predict route (default /predict). */
  readonly predictRoute?: string;
  /** Health route (default /health). */
  readonly healthRoute?: string;
  /** Most images per GPU batch (default and at most: the model's `maxBatch`). */
  readonly maxBatch?: number;
  /** Longest an image waits for others to share its batch, ms (default 5). */
  readonly maxWaitMs?: number;
  /** Largest request body, bytes (default 32 MiB); larger: 413. */
  readonly maxBodyBytes?: number;
  /** Most instances per request (default 64); more: 413. */
  readonly maxInstances?: number;
  /** Largest image, width x height (default 40,000,000); larger: that instance's error. */
  readonly maxPixels?: number;
  /** A request not answered within this many ms gets a 504 (default 60,000). */
  readonly timeoutMs?: number;
  /** Cloud Storage endpoint for `gcs_uri` (default https://storage.googleapis.com). */
  readonly gcsEndpoint?: string;
  /** Largest Cloud Storage object, bytes (default 32 MiB). */
  readonly maxGcsBytes?: number;
  /** Decode threads (default 1; 0 decodes on the server's thread). */
  readonly workers?: number;
  /** Rotate/flip JPEGs as their EXIF Orientation says (default false, as Derm Foundation). */
  readonly exifOrientation?: boolean;
  /** Dispose the model at shutdown (default true). */
  readonly disposeModel?: boolean;
  /** One line per request (method, route, status, instances, ms). */
  readonly log?: (line: string) => void;
}

/** What the server is doing. */
export type ServerState = "loading" | "ready" | "failed" | "stopping" | "stopped";

/** Counters, for logs and the bench. */
export interface ServerStats {
  /** Requests answered, by status. */
  readonly statuses: Record<number, number>;
  /** Instances read from predict requests. */
  readonly instances: number;
  /** Instances answered with an error. */
  readonly instanceErrors: number;
  /** Predict requests being handled now. */
  readonly inFlight: number;
  /** The micro-batcher's (undefined before the model is loaded). */
  readonly batches?: BatcherStats;
}

/** A server started by {@linkcode startServer}. */
export interface RunningServer {
  /** `http://host:port`. */
  readonly url: string;
  /** The port listened on. */
  readonly port: number;
  /** Resolves with the model once it is loaded (and the classifier accepted); rejects if loading failed. */
  readonly ready: Promise<ServingModel>;
  /** Resolves when the server has stopped and freed everything. */
  readonly finished: Promise<void>;
  /** Now. */
  state(): ServerState;
  /** Counters. */
  stats(): ServerStats;
  /**
   * Stops accepting work (new predict requests get 503), finishes the requests in flight, closes the
   * listener, frees the model and the decode threads.
   */
  shutdown(): Promise<void>;
}

const JSON_HEADERS = { "content-type": "application/json" };

function json(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { ...JSON_HEADERS, ...headers } });
}

/**
 * Starts the server: listening when this resolves, the model loading.
 *
 * @param options The model loader and the server's settings.
 * @returns The running server.
 * @throws {RangeError} For a setting out of range; Deno's error when the port is taken.
 * @example
 * ```ts
 * const server = await startServer({
 *   load: () => createEmbedder("procedural:tiny-derm", { size: 64 }),
 *   modelName: "procedural:tiny-derm",
 *   port: 0,
 * });
 * await server.ready;
 * // POST {"instances": [{"input_bytes": "..."}]} to `${server.url}/predict`
 * await server.shutdown();
 * ```
 */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const o = { ...SERVE_DEFAULTS, ...withoutUndefined(options) };
  for (const route of [o.predictRoute, o.healthRoute]) {
    if (!route.startsWith("/")) throw new RangeError(`Cannot serve route "${route}": expected a path from /`);
  }
  if (o.predictRoute === o.healthRoute) {
    throw new RangeError(`Cannot serve predict and health on one route: both are "${o.predictRoute}"`);
  }
  for (
    const [name, v] of Object.entries({
      maxBodyBytes: o.maxBodyBytes,
      maxInstances: o.maxInstances,
      maxPixels: o.maxPixels,
      timeoutMs: o.timeoutMs,
      maxGcsBytes: o.maxGcsBytes,
    })
  ) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`Cannot use ${name} ${v}: expected a positive integer`);
    }
  }

  let state: ServerState = "loading";
  let loadError: Error | undefined;
  let model: ServingModel | undefined;
  let batcher: MicroBatcher | undefined;
  const pool = new DecodePool(options.workers ?? 1);
  const statuses: Record<number, number> = {};
  let instancesSeen = 0;
  let instanceErrors = 0;
  let inFlight = 0;
  let drained: { promise: Promise<void>; resolve: () => void } | undefined;

  const answered = (response: Response, started: number, request: Request, note = ""): Response => {
    statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    options.log?.(
      `${request.method} ${new URL(request.url).pathname} ${response.status}${note} ${
        (performance.now() - started).toFixed(0)
      } ms`,
    );
    return response;
  };

  const health = (request: Request): Response => {
    const lost = model?.gpu.lostError();
    let status = 200;
    let body: Record<string, unknown>;
    if (state === "ready" && !lost) {
      body = { status: "ready", model: model!.describe(), adapter: model!.gpu.adapterInfo.description };
    } else {
      status = 503;
      body = state === "failed" || lost
        ? { status: "failed", error: (lost ?? loadError)?.message }
        : { status: state === "ready" ? "failed" : state };
    }
    return json(status, request.method === "HEAD" ? "" : JSON.stringify(body));
  };

  const predictInstance = async (inst: Instance, i: number, signal: AbortSignal): Promise<Prediction> => {
    const fail = (description: string): Prediction => {
      instanceErrors++;
      return { error: { description } };
    };
    if (inst.kind === "invalid") return fail(inst.description);
    let bytes: Uint8Array<ArrayBuffer>;
    if (inst.kind === "gcs") {
      try {
        bytes = await fetchGcsObject(inst, {
          endpoint: o.gcsEndpoint,
          maxBytes: o.maxGcsBytes,
          signal,
          label: instanceName(i),
        });
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        return fail((e as Error).message);
      }
    } else bytes = inst.bytes;
    const reply = await pool.decode({
      path: instanceName(i),
      bytes,
      maxPixels: o.maxPixels,
      exifOrientation: o.exifOrientation ?? false,
      preprocessing: model!.preprocessing,
    });
    if (signal.aborted) throw signal.reason;
    if (reply.error !== undefined) return fail(reply.error);
    const { width, height, rgba, preprocessed } = reply.image!;
    const format = bytes[0] === 0x89 ? "png" : "jpeg";
    let row: Float32Array;
    try {
      row = await batcher!.submit({ width, height, rgba, format, preprocessed }, signal);
    } catch (e) {
      if (e instanceof BatchFailure) throw e;
      if (signal.aborted) throw signal.reason;
      return fail(`Cannot embed "${instanceName(i)}": ${(e as Error).message}`);
    }
    if (!options.classifier) return { embedding: row };
    return { embedding: row, ...embeddingScores(options.classifier.classifier, row) };
  };

  const predict = async (request: Request): Promise<Response> => {
    if (state === "stopping" || state === "stopped") {
      return json(503, errorJson("Cannot predict: the server is stopping"));
    }
    if (state !== "ready") {
      return json(
        503,
        errorJson(
          state === "loading"
            ? "Cannot predict: the model is still loading"
            : `Cannot predict: the model failed to load (${loadError?.message})`,
        ),
      );
    }
    inFlight++;
    const deadline = new AbortController();
    let done = 0;
    let total = 0;
    const timer = setTimeout(() => {
      deadline.abort(
        new RequestError(
          504,
          `Cannot answer within ${o.timeoutMs} ms: ${done} of ${total || "?"} instances were done`,
        ),
      );
    }, o.timeoutMs);
    // Only the deadline: Deno aborts request.signal after every response too (its legacy behaviour), and a
    // client that goes away early is rare behind Vertex AI; its images are embedded and the answer dropped.
    const signal = deadline.signal;
    const work = (async () => {
      const text = await readRequestBody(request, { maxBytes: o.maxBodyBytes, signal });
      const instances = parsePredictRequest(text, { maxInstances: o.maxInstances });
      total = instances.length;
      instancesSeen += instances.length;
      const predictions = await Promise.all(instances.map(async (inst, i) => {
        const p = await predictInstance(inst, i, signal);
        done++;
        return p;
      }));
      return json(200, predictResponseJson(predictions));
    })();
    const gaveUp = new Promise<never>((_, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    work.catch(() => {});
    gaveUp.catch(() => {});
    try {
      return await Promise.race([work, gaveUp]);
    } catch (e) {
      if (e instanceof RequestError) return json(e.status, errorJson(e.message));
      return json(500, errorJson((e as Error)?.message ?? String(e)));
    } finally {
      clearTimeout(timer);
      inFlight--;
      if (inFlight === 0) drained?.resolve();
    }
  };

  const handler = async (request: Request): Promise<Response> => {
    const started = performance.now();
    const path = new URL(request.url).pathname;
    if (path === o.healthRoute) {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return answered(
          json(405, errorJson(`Cannot ${request.method} "${path}": expected GET or HEAD`), {
            allow: "GET, HEAD",
          }),
          started,
          request,
        );
      }
      return answered(health(request), started, request);
    }
    if (path === o.predictRoute) {
      if (request.method !== "POST") {
        return answered(
          json(405, errorJson(`Cannot ${request.method} "${path}": expected POST`), { allow: "POST" }),
          started,
          request,
        );
      }
      const before = instanceErrors;
      const seen = instancesSeen;
      const response = await predict(request);
      const n = instancesSeen - seen;
      return answered(
        response,
        started,
        request,
        n > 0 ? ` ${n} instance(s), ${instanceErrors - before} failed` : "",
      );
    }
    return answered(
      json(404, errorJson(`Cannot find "${path}": expected POST ${o.predictRoute} or GET ${o.healthRoute}`)),
      started,
      request,
    );
  };

  const { promise: listening, resolve: onListen } = Promise.withResolvers<Deno.NetAddr>();
  let http: Deno.HttpServer<Deno.NetAddr>;
  try {
    http = Deno.serve({
      hostname: o.hostname ?? "127.0.0.1",
      port: o.port,
      onListen: (addr) => onListen(addr as Deno.NetAddr),
      onError: (e) => json(500, errorJson(`Cannot answer: ${(e as Error)?.message ?? String(e)}`)),
    }, handler);
  } catch (e) {
    pool.close();
    throw e;
  }
  const addr = await listening;

  const ready = (async () => {
    const loaded = await options.load();
    model = loaded;
    try {
      if (options.classifier) {
        checkClassifier(
          options.classifier.classifier,
          options.classifier.name,
          servedIdentity(loaded.facts, options.modelName),
        );
      }
      const maxBatch = o.maxBatch ?? loaded.maxBatch;
      if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > loaded.maxBatch) {
        throw new RangeError(`Cannot batch ${maxBatch} images: expected 1 to the model's ${loaded.maxBatch}`);
      }
      // As many batches at once as the embedder has plans for: one computes while another is read back.
      batcher = new MicroBatcher((images) => embedChunk(loaded, images), {
        maxBatch,
        maxWaitMs: o.maxWaitMs,
        concurrency: loaded.inFlight,
      });
    } catch (e) {
      if (options.disposeModel !== false) loaded.dispose();
      model = undefined;
      throw e;
    }
    if (state === "loading") state = "ready";
    return loaded;
  })();
  ready.catch((e) => {
    loadError = e instanceof Error ? e : new Error(String(e));
    if (state === "loading") state = "failed";
  });

  const { promise: finished, resolve: stopped } = Promise.withResolvers<void>();
  let stopping: Promise<void> | undefined;
  const shutdown = () => {
    stopping ??= (async () => {
      state = "stopping";
      // New predict requests get 503 from now on; those in flight finish first, bodies included: Deno's
      // shutdown() makes a body still being received unreadable, so it waits until they are answered.
      if (inFlight > 0) {
        drained = Promise.withResolvers<void>();
        await drained.promise;
      }
      await http.shutdown();
      await batcher?.idle();
      const loaded = await ready.catch(() => undefined);
      if (loaded && options.disposeModel !== false) loaded.dispose();
      pool.close();
      state = "stopped";
      stopped();
    })();
    return stopping;
  };

  return {
    url: `http://${addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname}:${addr.port}`,
    port: addr.port,
    ready,
    finished,
    state: () => state,
    stats: () => ({
      statuses: { ...statuses },
      instances: instancesSeen,
      instanceErrors,
      inFlight,
      batches: batcher?.stats(),
    }),
    shutdown,
  };
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
