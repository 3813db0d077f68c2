/**
 * The messages between a page and the embedding worker (`web/worker.ts`), and errors as plain objects:
 * `postMessage` clones an `Error` without its class or fields, so they travel as {@linkcode SerializedError}
 * and are rebuilt on the other side with the classes of `engine/errors.ts`.
 *
 * Every request carries an `id`; every reply to it carries the same `id`. A request ends with exactly one
 * `ready` (load), `done` (embed), `disposed` (dispose) or `error` reply.
 *
 * This module is browser compatible.
 * @module
 */
import {
  DeviceLostError,
  GpuError,
  ImageError,
  NonFiniteError,
  WebGpuUnavailableError,
  WeightsError,
} from "../engine/errors.ts";
import type { ModelFacts } from "../engine/model.ts";

/** Options of a load, as `createEmbedder` takes them (`models/registry.ts`). */
export interface LoadOptions {
  /** Numeric preset (`derm`, `bit`, `imagenet`); default from the weights. */
  readonly preset?: string;
  /** Model input size S; default the model's. */
  readonly size?: number;
  /** Pillow resize side before the crop (`imagenet` preset). */
  readonly resize?: number;
  /** Most images per GPU submission. */
  readonly maxBatch?: number;
  /** Kernel variants to force by name (e.g. `conv2d_direct`, which CPU adapters compile fastest). */
  readonly kernels?: readonly string[];
  /** Keep downloaded weights in the Cache API (default true). */
  readonly cache?: boolean;
}

/**
 * Weights for a load: a URL (http(s), `blob:`) or `procedural:NAME[:SEED]`, or a file the person chose
 * (`File` or any named Blob).
 */
export type WeightsSpec = string | { readonly blob: Blob; readonly name: string };

/** Loads a model (replacing any loaded one). */
export interface LoadRequest {
  readonly type: "load";
  readonly id: number;
  readonly weights: WeightsSpec;
  readonly options: LoadOptions;
}

/** An image to embed: encoded bytes and a name for messages. */
export interface ImageItem {
  readonly name: string;
  readonly bytes: ArrayBuffer;
}

/** Embeds images with the loaded model. */
export interface EmbedRequest {
  readonly type: "embed";
  readonly id: number;
  readonly images: readonly ImageItem[];
}

/** Frees the model and the device. */
export interface DisposeRequest {
  readonly type: "dispose";
  readonly id: number;
}

/** A request to the worker. */
export type WorkerRequest = LoadRequest | EmbedRequest | DisposeRequest;

/** Where loaded weights came from. */
export type WeightsOrigin = "network" | "cache" | "file" | "procedural";

/** What a loaded model is. */
export interface ReadyInfo {
  /** Model facts (family, architecture, preset, size, embedding size). */
  readonly facts: ModelFacts;
  /** `Embedder.describe()`. */
  readonly description: string;
  /** The adapter's description. */
  readonly adapter: string;
  /** Most images per GPU submission. */
  readonly maxBatch: number;
  /** Where the weights came from. */
  readonly origin: WeightsOrigin;
  /** Why downloaded weights were not cached, when they were not. */
  readonly notCached?: string;
  /** Milliseconds from the request to ready. */
  readonly loadMs: number;
}

/** A loading phase: downloading (or reading a chosen file), or uploading tensors to the GPU. */
export type LoadPhase = "download" | "upload";

/** A reply from the worker. */
export type WorkerReply =
  | { readonly type: "progress"; readonly id: number; readonly phase: LoadPhase; done: number; total: number }
  | { readonly type: "ready"; readonly id: number; readonly info: ReadyInfo }
  | { readonly type: "image"; readonly id: number; readonly index: number; readonly state: ImageState }
  | { readonly type: "row"; readonly id: number; readonly index: number; readonly embedding: Float32Array }
  | {
    readonly type: "image-error";
    readonly id: number;
    readonly index: number;
    readonly error: SerializedError;
  }
  | { readonly type: "done"; readonly id: number; readonly ms: number; readonly images: number }
  | { readonly type: "disposed"; readonly id: number }
  | { readonly type: "error"; readonly id: number; readonly error: SerializedError };

/** Where an image is: decoded on the CPU, or submitted to the GPU in a batch. */
export type ImageState = "decoded" | "embedding";

/** An error as a plain, cloneable object. */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  /** `WeightsError.file`, `ImageError.file`. */
  readonly file?: string;
  /** `WeightsError.tensor`. */
  readonly tensor?: string;
  /** `GpuError.layer`, `NonFiniteError.layer`. */
  readonly layer?: string;
  /** `DeviceLostError.reason`. */
  readonly reason?: string;
  /** `NonFiniteError.image`. */
  readonly image?: number;
}

/**
 * An error as a plain object, keeping the fields of the classes of `engine/errors.ts`.
 *
 * @param error What was thrown.
 * @returns Its cloneable copy.
 */
export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: "Error", message: String(error) };
  const e = error as Error & Partial<Record<"file" | "tensor" | "layer" | "reason", string>> & {
    image?: number;
  };
  const out: Record<string, string | number> = { name: e.name, message: e.message };
  for (const k of ["file", "tensor", "layer", "reason"] as const) {
    if (typeof e[k] === "string") out[k] = e[k]!;
  }
  if (typeof e.image === "number") out.image = e.image;
  return out as unknown as SerializedError;
}

/**
 * Rebuilds an error of the right class from its plain copy.
 *
 * @param s The copy.
 * @returns An `Error` (a `WeightsError`, `ImageError`... where the name says so).
 */
export function deserializeError(s: SerializedError): Error {
  switch (s.name) {
    case "WebGpuUnavailableError":
      return new WebGpuUnavailableError(s.message);
    case "DeviceLostError":
      return new DeviceLostError(s.reason ?? "unknown", s.message);
    case "GpuError":
      return new GpuError(s.layer ?? "", s.message);
    case "WeightsError":
      return new WeightsError(s.file ?? "", s.tensor ?? "", s.message);
    case "ImageError":
      return new ImageError(s.file ?? "", s.message);
    case "NonFiniteError":
      return new NonFiniteError(s.image ?? -1, s.layer ?? "", s.message);
    case "TypeError":
      return new TypeError(s.message);
    case "RangeError":
      return new RangeError(s.message);
    case "SyntaxError":
      return new SyntaxError(s.message);
    default: {
      const e = new Error(s.message);
      e.name = s.name;
      return e;
    }
  }
}
