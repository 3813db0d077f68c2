/**
 * The command line of `deno task serve`: its help text, and the options from the flags and the
 * environment (Vertex AI's `AIP_HTTP_PORT`, `AIP_PREDICT_ROUTE`, `AIP_HEALTH_ROUTE`; `DERM_WEIGHTS`,
 * `DERM_CLASSIFIER` for container images; `STORAGE_EMULATOR_HOST`). A flag wins over its variable.
 * @module
 */
import { parseArgs } from "node:util";
import { integerFlag, MODEL_FLAGS_HELP, type ModelFlags, modelFlags } from "./model_flags.ts";
import { SERVE_DEFAULTS } from "./serve_server.ts";

/** The `--help` text. */
export const HELP = `deno task serve: Derm Foundation's Vertex AI prediction API over WebGPU, from one process

Usage:
  deno task serve --weights WEIGHTS [options]

POST {"instances": [{"input_bytes": "<base64 PNG or JPEG>"} | {"gcs_uri": "gs://BUCKET/OBJECT",
"bearer_token": "<token>"}]} to the predict route; the answer is {"predictions": [{"embedding": [...]} |
{"error": {"description": "..."}}]}, one per instance, in order. A bad instance (bad base64, not an image,
too many pixels, an object that cannot be read, a non-finite embedding) gets its own error; the others are
answered. With --classifier each embedding also has "scores": {"<class>": probability} (the first head;
a classifier of several heads adds "scores_by_head": {"<label>": {"<class>": probability}}).
Instances of concurrent requests share GPU batches. The health route answers 503 while the model loads,
200 once it is ready. SIGTERM or SIGINT: new requests get 503, those in flight are answered, exit 0.

Model (as deno task embed):
${MODEL_FLAGS_HELP}
  --model-name NAME   the model's name in the classifier's identity check (default: the --weights or
                      --model value as given, which is what deno task embed wrote into the embeddings)
  --classifier FILE   classifier.json of deno task probe --out: refused at startup when it was trained on
                      another model's embeddings (architecture, preset, size, embedding size, name)

Server:
  --port N            port (default: AIP_HTTP_PORT, else ${SERVE_DEFAULTS.port})
  --host H            address to listen on (default 0.0.0.0, every interface, as containers need)
  --predict-route R   (default: AIP_PREDICT_ROUTE, else ${SERVE_DEFAULTS.predictRoute})
  --health-route R    (default: AIP_HEALTH_ROUTE, else ${SERVE_DEFAULTS.healthRoute})
  --max-batch N       most images per GPU batch (default: the most that fits the device's limits, at most 16)
  --in-flight N       GPU batches computing at once, each with its own plan (default 2, 1 to 8): batch
                      k + 1 is uploaded and computed while batch k is read back
  --max-wait-ms N     longest an image waits for others to fill its batch (default ${SERVE_DEFAULTS.maxWaitMs})
  --workers N         decode threads (default: CPU cores - 1, at least 1, at most 4; 0 decodes on the
                      server's thread)
  --exif-orientation  rotate/flip JPEGs as their EXIF Orientation says (default: ignored, as Derm
                      Foundation ignores it)
  --gcs-endpoint URL  Cloud Storage JSON API endpoint for gcs_uri (default: STORAGE_EMULATOR_HOST, else
                      ${SERVE_DEFAULTS.gcsEndpoint})

Limits:
  --max-body-bytes N  largest request body (default ${SERVE_DEFAULTS.maxBodyBytes}); larger: HTTP 413
  --max-instances N   most instances per request (default ${SERVE_DEFAULTS.maxInstances}); more: HTTP 413
  --max-pixels N      largest image, width x height from its header (default ${SERVE_DEFAULTS.maxPixels});
                      larger: that instance's error
  --max-gcs-bytes N   largest Cloud Storage object (default ${SERVE_DEFAULTS.maxGcsBytes}); larger: that
                      instance's error
  --timeout-ms N      answer HTTP 504 to a request not answered in N ms (default ${SERVE_DEFAULTS.timeoutMs})

Output:
  --quiet             print only errors
  --verbose           one line per request, and stack traces
  --help              show this help

Environment: AIP_HTTP_PORT, AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE (Vertex AI sets them), DERM_WEIGHTS
(--weights when neither --weights nor --model is given), DERM_CLASSIFIER (--classifier when not given),
STORAGE_EMULATOR_HOST, DENO_WEBGPU_BACKEND (gl or vulkan: the software adapter's API), HF_TOKEN and
DERM_WEBGPU_CACHE (--model).
Errors: HTTP 400 malformed JSON or no "instances" array, 404 another route, 405 another method, 413 body or
instance count over the limits, 503 while loading or stopping, 504 timeout, each with {"error":
{"description": "..."}}. Exit codes: 0 stopped by a signal, 1 the model or classifier could not be used,
2 bad command line, 3 no WebGPU.`;

/** The options of `deno task serve`. */
export interface ServeArgs {
  readonly model: ModelFlags;
  readonly modelName: string;
  readonly classifier?: string;
  readonly port: number;
  readonly host: string;
  readonly predictRoute: string;
  readonly healthRoute: string;
  readonly maxBatch?: number;
  readonly inFlight?: number;
  readonly maxWaitMs: number;
  readonly workers: number;
  readonly exifOrientation: boolean;
  readonly gcsEndpoint: string;
  readonly maxBodyBytes: number;
  readonly maxInstances: number;
  readonly maxPixels: number;
  readonly maxGcsBytes: number;
  readonly timeoutMs: number;
  readonly quiet: boolean;
  readonly verbose: boolean;
}

/** The flags, for parseArgs (every one documented in {@linkcode HELP}; a test checks). */
export const SERVE_FLAGS = {
  weights: { type: "string" },
  model: { type: "string" },
  preset: { type: "string" },
  size: { type: "string" },
  resize: { type: "string" },
  "vit-heads": { type: "string" },
  "vit-blocks": { type: "string" },
  kernels: { type: "string" },
  precision: { type: "string" },
  tune: { type: "string" },
  "model-name": { type: "string" },
  classifier: { type: "string" },
  port: { type: "string" },
  host: { type: "string" },
  "predict-route": { type: "string" },
  "health-route": { type: "string" },
  "max-batch": { type: "string" },
  "in-flight": { type: "string" },
  "max-wait-ms": { type: "string" },
  workers: { type: "string" },
  "exif-orientation": { type: "boolean", default: false },
  "gcs-endpoint": { type: "string" },
  "max-body-bytes": { type: "string" },
  "max-instances": { type: "string" },
  "max-pixels": { type: "string" },
  "max-gcs-bytes": { type: "string" },
  "timeout-ms": { type: "string" },
  quiet: { type: "boolean", default: false },
  verbose: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

/** The environment variables read (besides the libraries' own). */
export const SERVE_ENV = [
  "AIP_HTTP_PORT",
  "AIP_PREDICT_ROUTE",
  "AIP_HEALTH_ROUTE",
  "DERM_WEIGHTS",
  "DERM_CLASSIFIER",
  "STORAGE_EMULATOR_HOST",
] as const;

/**
 * Parses the command line and the environment.
 *
 * @param args The arguments.
 * @param env Reads a variable (undefined when unset).
 * @returns The options, or "help".
 * @throws {RangeError} (or parseArgs' TypeError) for a bad flag or variable, saying which.
 */
export function parseServeArgs(
  args: string[],
  env: (name: string) => string | undefined,
): ServeArgs | "help" {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: SERVE_FLAGS });
  if (values.help) return "help";
  if (positionals.length > 0) {
    throw new RangeError(`expected no positional arguments, got "${positionals[0]}"`);
  }
  const fromEnv = (name: (typeof SERVE_ENV)[number]) => {
    const v = env(name);
    return v === undefined || v === "" ? undefined : v;
  };
  const weights = values.weights ?? (values.model === undefined ? fromEnv("DERM_WEIGHTS") : undefined);
  if (weights === undefined && values.model === undefined) {
    throw new RangeError("--weights (or DERM_WEIGHTS) or --model is required");
  }
  const model = modelFlags({ ...values, weights });
  const route = (source: string, value: string | undefined, fallback: string) => {
    if (value === undefined) return fallback;
    if (!value.startsWith("/")) {
      throw new RangeError(`${source} must be a path starting with /, got "${value}"`);
    }
    return value;
  };
  const envPort = fromEnv("AIP_HTTP_PORT");
  let port: number;
  if (values.port !== undefined) port = integerFlag("port", values.port, 0, 65535)!;
  else if (envPort !== undefined) {
    const n = Number(envPort);
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      throw new RangeError(`AIP_HTTP_PORT must be an integer from 1 to 65535, got "${envPort}"`);
    }
    port = n;
  } else port = SERVE_DEFAULTS.port;
  const predictRoute = values["predict-route"] !== undefined
    ? route("--predict-route", values["predict-route"], "")
    : route("AIP_PREDICT_ROUTE", fromEnv("AIP_PREDICT_ROUTE"), SERVE_DEFAULTS.predictRoute);
  const healthRoute = values["health-route"] !== undefined
    ? route("--health-route", values["health-route"], "")
    : route("AIP_HEALTH_ROUTE", fromEnv("AIP_HEALTH_ROUTE"), SERVE_DEFAULTS.healthRoute);
  if (predictRoute === healthRoute) {
    throw new RangeError(`the predict and health routes must differ, both are "${predictRoute}"`);
  }
  const emulator = fromEnv("STORAGE_EMULATOR_HOST");
  const gcsEndpoint = values["gcs-endpoint"] ??
    (emulator === undefined
      ? SERVE_DEFAULTS.gcsEndpoint
      : /^https?:\/\//.test(emulator)
      ? emulator
      : `http://${emulator}`);
  if (!/^https?:\/\/[^/]/.test(gcsEndpoint)) {
    throw new RangeError(`--gcs-endpoint must be an http(s) URL, got "${gcsEndpoint}"`);
  }
  const cores = navigator.hardwareConcurrency ?? 2;
  return {
    model,
    modelName: values["model-name"] ?? (model.model ?? model.weights),
    classifier: values.classifier ?? fromEnv("DERM_CLASSIFIER"),
    port,
    host: values.host ?? "0.0.0.0",
    predictRoute,
    healthRoute,
    maxBatch: integerFlag("max-batch", values["max-batch"], 1, 1024),
    inFlight: integerFlag("in-flight", values["in-flight"], 1, 8),
    maxWaitMs: integerFlag("max-wait-ms", values["max-wait-ms"], 0, 60_000) ?? SERVE_DEFAULTS.maxWaitMs,
    workers: integerFlag("workers", values.workers, 0, 64) ?? Math.min(4, Math.max(1, cores - 1)),
    exifOrientation: values["exif-orientation"],
    gcsEndpoint: gcsEndpoint.replace(/\/+$/, ""),
    maxBodyBytes: integerFlag("max-body-bytes", values["max-body-bytes"], 1) ?? SERVE_DEFAULTS.maxBodyBytes,
    maxInstances: integerFlag("max-instances", values["max-instances"], 1) ?? SERVE_DEFAULTS.maxInstances,
    maxPixels: integerFlag("max-pixels", values["max-pixels"], 1) ?? SERVE_DEFAULTS.maxPixels,
    maxGcsBytes: integerFlag("max-gcs-bytes", values["max-gcs-bytes"], 1) ?? SERVE_DEFAULTS.maxGcsBytes,
    timeoutMs: integerFlag("timeout-ms", values["timeout-ms"], 1) ?? SERVE_DEFAULTS.timeoutMs,
    quiet: values.quiet,
    verbose: values.verbose,
  };
}
