/**
 * derm-webgpu: embeddings of dermatology foundation models (Google's Derm Foundation, a BiT-M R101x3, and
 * the ResNet-50s and vision transformers of Gröger et al.) computed by our own WGSL compute shaders on
 * WebGPU, in Deno, a browser or an edge worker.
 *
 * @example
 * ```ts
 * import { createEmbedder } from "./mod.ts";
 *
 * const embedder = await createEmbedder("derm_foundation.safetensors");
 * const [embedding] = await embedder.embed([await Deno.readFile("lesion.png")]);
 * console.log(embedding.length); // 6144
 * embedder.dispose();
 * ```
 *
 * This module is browser compatible.
 * @module
 */
export {
  createBitEmbedder,
  createEmbedder,
  DEFAULT_PROCEDURAL_SEED,
  defineModel,
  detectFamily,
  type EmbedderOptions,
  FAMILIES,
  type FamilyOptions,
  type ModelFamily,
  openWeights,
  PROCEDURAL_MODELS,
  type ProceduralModel,
  type ProceduralWeights,
  type WeightsInput,
} from "./models/registry.ts";
export { type Embedder, type ImageInput, type RuntimeOptions } from "./engine/embedder.ts";
export type { ModelDefinition, ModelFacts } from "./engine/model.ts";
export type { Preprocessing } from "./engine/preprocessing.ts";
export { type BitPreset, PRESETS } from "./models/bit.ts";
export { BIT_R101X3, BIT_R50X1, type BitArchitecture, bitArchitecture } from "./models/bit_arch.ts";
export { RESNET50, type ResnetArchitecture } from "./models/resnet.ts";
export { acquireGpu, type AcquireGpuOptions, type Gpu } from "./engine/device.ts";
export { type DecodedImage, decodeImage } from "./engine/image_decode.ts";
export type { TensorSource } from "./engine/tensor_source.ts";
export { safetensorsFromBytes, safetensorsFromStream, safetensorsFromUrl } from "./weights/safetensors.ts";
export {
  DeviceLostError,
  GpuError,
  ImageError,
  NonFiniteError,
  WebGpuUnavailableError,
  WeightsError,
} from "./engine/errors.ts";
