/**
 * The `--weights` argument: a safetensors path, an http(s) URL, or `procedural:ARCH[:SEED]`.
 * @module
 */
import type { WeightsInput } from "../models/bit_embedder.ts";
import { openSafetensorsFile } from "../weights/safetensors_deno.ts";
import { BIT_R101X3, BIT_R50X1, type BitArchitecture, bitArchitecture } from "../models/bit_arch.ts";

/** Architectures `procedural:ARCH` knows: the BiT sizes, and the fixtures' tiny test models. */
export const PROCEDURAL_ARCHITECTURES: Readonly<Record<string, BitArchitecture>> = {
  "r50x1": BIT_R50X1,
  "r101x3": BIT_R101X3,
  "r152x4": bitArchitecture([3, 8, 36, 3], [1024, 2048, 4096, 8192], 256),
  "tiny-bit": bitArchitecture([1, 1, 1, 1], [128, 256, 512, 1024], 32),
  "tiny-derm": bitArchitecture([2, 1, 1, 1], [128, 256, 512, 1024], 64),
};

/** Seed of procedural weights when the argument names none. */
export const DEFAULT_PROCEDURAL_SEED = "derm-webgpu/demo";

/**
 * Turns a `--weights` value into what the embedder loads.
 *
 * @param value `model.safetensors`, `https://host/model.safetensors` or `procedural:r101x3[:seed]`.
 * @throws {TypeError} For an unknown procedural architecture.
 */
export async function parseWeightsArgument(value: string): Promise<WeightsInput> {
  if (value.startsWith("procedural:")) {
    const [, arch, ...seedParts] = value.split(":");
    const architecture = PROCEDURAL_ARCHITECTURES[arch];
    if (!architecture) {
      throw new TypeError(
        `Cannot use --weights "${value}": unknown architecture "${arch}", expected one of ` +
          Object.keys(PROCEDURAL_ARCHITECTURES).join(", "),
      );
    }
    return {
      procedural: architecture,
      seed: seedParts.length > 0 ? seedParts.join(":") : DEFAULT_PROCEDURAL_SEED,
    };
  }
  if (/^https?:\/\//.test(value)) return new URL(value);
  return await openSafetensorsFile(value);
}
