/**
 * derm-webgpu: Derm Foundation (BiT-M R101x3) and BiT embeddings computed by our own WGSL compute
 * shaders on WebGPU, in Deno, a browser or an edge worker.
 *
 * @example
 * ```ts
 * import { createBitEmbedder } from "./mod.ts";
 *
 * const embedder = await createBitEmbedder("derm_foundation.safetensors", { preset: "derm" });
 * const [embedding] = await embedder.embed([await Deno.readFile("lesion.png")]);
 * console.log(embedding.length); // 6144
 * embedder.dispose();
 * ```
 *
 * This module is browser compatible.
 * @module
 */
export {
  type BitEmbedder,
  type BitEmbedderOptions,
  createBitEmbedder,
  type ImageInput,
  type ProceduralWeights,
  type WeightsInput,
} from "./models/bit_embedder.ts";
export { type BitPreset, PRESETS } from "./models/bit.ts";
export { BIT_R101X3, BIT_R50X1, type BitArchitecture, bitArchitecture } from "./models/bit_arch.ts";
export { acquireGpu, type AcquireGpuOptions, type Gpu } from "./engine/device.ts";
export { type DecodedImage, decodeImage } from "./engine/image_decode.ts";
export {
  safetensorsFromBytes,
  safetensorsFromStream,
  safetensorsFromUrl,
  type TensorSource,
} from "./weights/safetensors.ts";
export {
  DeviceLostError,
  GpuError,
  ImageError,
  NonFiniteError,
  WebGpuUnavailableError,
  WeightsError,
} from "./engine/errors.ts";
