/**
 * The `--weights` argument: a safetensors file, a PyTorch checkpoint (`.pth`: DINO, iBOT, MAE, BYOL,
 * SimCLR or a plain state dict), an http(s) URL of either, or `procedural:ARCH[:SEED]`
 * (`models/registry.ts` lists the architectures of every family).
 * @module
 */
import type { TensorSource } from "../engine/tensor_source.ts";
import { openWeights } from "../models/registry.ts";

/**
 * Opens a `--weights` value.
 *
 * @param value `model.safetensors`, `dino.pth`, `https://host/model.safetensors` or `procedural:r101x3[:seed]`.
 * @returns The source to load (the caller closes it, or the embedder does once loaded).
 * @throws {TypeError} For an unknown procedural architecture.
 * @throws {WeightsError} For a file that cannot be read, naming it.
 */
export async function openWeightsArgument(value: string): Promise<TensorSource> {
  return await openWeights(value);
}
