/**
 * The `--weights` argument: a safetensors file, an http(s) URL of one, or `procedural:ARCH[:SEED]`
 * (`models/registry.ts` lists the architectures of every family).
 * @module
 */
import type { TensorSource } from "../engine/tensor_source.ts";
import { openSafetensorsFile } from "../weights/safetensors_deno.ts";
import { safetensorsFromUrl } from "../weights/safetensors.ts";
import { proceduralWeights } from "../models/registry.ts";

/**
 * Opens a `--weights` value.
 *
 * @param value `model.safetensors`, `https://host/model.safetensors` or `procedural:r101x3[:seed]`.
 * @returns The source to load (the caller closes it, or the embedder does once loaded).
 * @throws {TypeError} For an unknown procedural architecture.
 * @throws {WeightsError} For a file that cannot be read, naming it.
 */
export async function openWeightsArgument(value: string): Promise<TensorSource> {
  if (value.startsWith("procedural:")) {
    const [, arch, ...seed] = value.split(":");
    return proceduralWeights(arch, seed.length > 0 ? seed.join(":") : undefined);
  }
  if (/^https?:\/\//.test(value)) return await safetensorsFromUrl(value);
  return await openSafetensorsFile(value);
}
