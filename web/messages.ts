/**
 * What the page tells a person when something fails: a title, the engine's own message, and what to do.
 * Errors reach the page from the worker as plain objects (`web/protocol.ts`), so the kinds are told apart by
 * `name` and fields, and only for the limit errors by the limit's name in the message (the engine names the
 * limit it checked: `maxStorageBufferBindingSize`, `maxBufferSize`, ...).
 *
 * This module is browser compatible.
 * @module
 */

/** An error as the worker sends it (`web/protocol.ts`). */
export interface ErrorLike {
  readonly name: string;
  readonly message: string;
  /** The image or weights file, when the error names one. */
  readonly file?: string;
}

/** What kind of failure it was, for the page's styling and for tests. */
export type ProblemKind =
  | "no-webgpu"
  | "limits"
  | "gpu-memory"
  | "device-lost"
  | "not-image"
  | "weights"
  | "other";

/** A message for a person. */
export interface Explanation {
  /** The kind. */
  readonly kind: ProblemKind;
  /** One short line. */
  readonly title: string;
  /** The engine's message (what exactly failed). */
  readonly detail: string;
  /** What to do about it. */
  readonly hint: string;
}

/** The browsers known to offer WebGPU, and how to turn it on where it is off. */
export const WEBGPU_HINT =
  "Use a browser with WebGPU: Chrome or Edge 113 or later on Windows, macOS or ChromeOS " +
  "(Android: Chrome 121); Safari 26; Firefox 141 on Windows. On Linux, Chrome and Chromium may keep it " +
  "behind a flag: enable chrome://flags/#enable-unsafe-webgpu (or start with --enable-unsafe-webgpu, and " +
  "--enable-features=Vulkan for a GPU), then check chrome://gpu. The page must come from https:// or " +
  "localhost, as WebGPU exists only in secure contexts.";

const LIMIT_NAME = /\bmax[A-Z][A-Za-z]+\b/;

/**
 * Explains an error for the page.
 *
 * @param error The error (an `Error` or the worker's plain copy of one).
 * @param context What was being done: the weights and input size, for the hints.
 * @returns Title, detail and hint.
 * @example
 * ```ts
 * const { title, hint } = explainError({ name: "WebGpuUnavailableError", message: "..." });
 * ```
 */
export function explainError(
  error: ErrorLike,
  context: { weights?: string; size?: number } = {},
): Explanation {
  const detail = error.message;
  const model = context.weights ? `"${context.weights}"` : "this model";
  if (error.name === "WebGpuUnavailableError") {
    return { kind: "no-webgpu", title: "This browser gives the page no WebGPU", detail, hint: WEBGPU_HINT };
  }
  if (error.name === "ImageError") {
    const notImage = /unsupported format/.test(detail);
    return {
      kind: "not-image",
      title: notImage
        ? `${error.file ?? "This file"} is not a PNG or JPEG image`
        : `${error.file ?? "This image"} cannot be decoded`,
      detail,
      hint: notImage
        ? "Only PNG and JPEG files are read (by their first bytes, not their names); convert other formats first."
        : "The file is truncated, corrupt or too large; the other images are not affected.",
    };
  }
  if (/out of GPU memory|out of memory|OutOfMemory/i.test(detail)) {
    return {
      kind: "gpu-memory",
      title: "Out of GPU memory",
      detail,
      hint: `The GPU could not hold ${model} and its activations. Close other tabs that use the GPU, ` +
        "use a smaller &size=, or use a device with more GPU memory (Derm Foundation needs about 2 GB).",
    };
  }
  if (error.name === "DeviceLostError") {
    return {
      kind: "device-lost",
      title: "The GPU device was lost",
      detail,
      hint: "The browser or the driver reset the GPU (often after running out of memory, or a GPU driver " +
        "timeout on a long batch). Reload the page to start again; a smaller &size= needs less.",
    };
  }
  if (error.name === "RangeError" && LIMIT_NAME.test(detail)) {
    const limit = LIMIT_NAME.exec(detail)![0];
    return {
      kind: "limits",
      title: "This GPU adapter's limits are too small for the model",
      detail,
      hint:
        `${model}${context.size ? ` at size ${context.size}` : ""} needs more than the adapter's ${limit}. ` +
        (/^Cannot use batch/.test(detail) ? "Try a smaller &batch= or &size=" : "Try a smaller &size=") +
        ", or a browser and GPU that grant larger limits (chrome://gpu lists them).",
    };
  }
  if (error.name === "WeightsError") {
    return {
      kind: "weights",
      title: `Cannot load the weights${error.file ? ` from ${error.file}` : ""}`,
      detail,
      hint: "Check the ?weights= URL (a .safetensors file, or procedural:ARCH[:SEED]); a file made by " +
        "`deno task convert` always loads.",
    };
  }
  return { kind: "other", title: `${error.name || "Error"}`, detail, hint: "" };
}
