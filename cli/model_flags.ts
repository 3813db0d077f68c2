/**
 * The model flags that `deno task embed` and `deno task serve` share (--weights, --model, --preset, --size,
 * --resize, --vit-heads, --vit-blocks, --kernels, --precision, --tune): their help text, their checks, and the integer
 * flag parser both commands use for every numeric flag.
 * @module
 */
import { type Precision, PRECISIONS } from "../engine/precision.ts";
import { PROCEDURAL_MODELS } from "../models/registry.ts";

/** The presets `--preset` takes. */
export const PRESET_NAMES: readonly string[] = ["derm", "bit", "imagenet"];

/** The modes `--tune` takes. */
export const TUNE_MODES = ["auto", "always", "off"] as const;

/** A `--tune` mode. */
export type TuneMode = typeof TUNE_MODES[number];

/** The model flags' lines of `--help`, as both commands print them. */
export const MODEL_FLAGS_HELP =
  `  --weights WEIGHTS   safetensors file or http(s) URL: Derm Foundation (Derm names) or timm BiT, a
                      torchvision ResNet (Gröger et al.'s SimCLR / BYOL); the family comes from the tensor
                      names. Or procedural:ARCH[:SEED] for generated test weights (ARCH: ${
    Object.keys(PROCEDURAL_MODELS).join(", ")
  }).
                      Procedural embeddings carry no meaning.
  --model ID          instead of --weights: a Hugging Face model id (google/derm-foundation,
                      timm/resnetv2_101x3_bit.goog_in21k), downloaded and converted once into the cache
                      (deno task fetch-model; HF_TOKEN for gated models, DERM_WEBGPU_CACHE for the cache)
  --preset P          derm|bit for BiT (default: from the file's metadata or tensor names; derm for procedural
                      weights): derm x/255, -inf max-pool padding; bit x/127.5-1, zero padding. imagenet for
                      ResNet and ViT (their only one): Pillow's bilinear resize to R x R, centre crop S x S,
                      ImageNet mean and std
  --size N            model input size S (default 448 for derm, 224 for bit and imagenet)
  --resize R          imagenet: the side Pillow resizes to before the S x S crop (default round(S * 8 / 7))
  --vit-heads H       ViT: attention heads (default: the checkpoint's args or our metadata, else D / 64)
  --vit-blocks N      ViT: embed the class token of the last N blocks through the final norm,
                      concatenated (default 4, Gröger et al.'s protocol; 1 = the usual class token)
  --kernels NAME,...  force these kernel variants wherever they apply (e.g. conv2d_direct); see
                      deno task bench --list-kernels
  --precision P       f32 (default) or f16: store weights and activations as f16 (half the weights' GPU
                      memory; f32 arithmetic, norm statistics and softmax; see the README's Precision for
                      the error per fixture case). Needs an adapter with shader-f16 (lavapipe through
                      DENO_WEBGPU_BACKEND=vulkan has it, llvmpipe through GL has not): without it the run
                      fails (exit 1), never falls back
  --tune auto|always|off  choose kernel variants by timing them on this adapter, once per shape, and keep
                      the choices in the cache directory (tuning.json): auto (default) on GPUs, not on the
                      CPU rasterisers (llvmpipe, lavapipe, SwiftShader) whose defaults are the best measured`;

/**
 * An integer flag's value.
 *
 * @param name The flag without its dashes, for the message.
 * @param value The text given, or undefined when the flag is absent.
 * @param min Smallest accepted value.
 * @param max Largest accepted value (default Number.MAX_SAFE_INTEGER).
 * @returns The integer, or undefined when absent.
 * @throws {RangeError} For text that is not an integer in [min, max].
 * @example
 * ```ts
 * integerFlag("port", "8080", 0, 65535); // 8080
 * ```
 */
export function integerFlag(
  name: string,
  value: string | undefined,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
    throw new RangeError(`--${name} must be an integer from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

/** The model flags' values, as `node:util` parseArgs gives them (every one a string flag). */
export interface ModelFlagValues {
  readonly weights?: string;
  readonly model?: string;
  readonly preset?: string;
  readonly size?: string;
  readonly resize?: string;
  readonly "vit-heads"?: string;
  readonly "vit-blocks"?: string;
  readonly kernels?: string;
  readonly precision?: string;
  readonly tune?: string;
}

/** The model flags, checked. */
export interface ModelFlags {
  /** `--weights` ("" when `--model` is given). */
  readonly weights: string;
  /** `--model`: a Hugging Face model id. */
  readonly model?: string;
  readonly preset?: string;
  readonly size?: number;
  readonly resize?: number;
  readonly vitHeads?: number;
  readonly vitBlocks?: number;
  readonly kernels?: string[];
  readonly precision?: Precision;
  readonly tune?: TuneMode;
}

/**
 * Checks the model flags.
 *
 * @param values What parseArgs gave for them.
 * @returns The checked flags.
 * @throws {RangeError} Saying which flag is wrong and what it expects.
 */
export function modelFlags(values: ModelFlagValues): ModelFlags {
  if (!values.weights === !values.model) {
    throw new RangeError("exactly one of --weights and --model is required");
  }
  if (values.preset !== undefined && !PRESET_NAMES.includes(values.preset)) {
    throw new RangeError(`--preset must be one of ${PRESET_NAMES.join(", ")}, got "${values.preset}"`);
  }
  if (values.precision !== undefined && !(PRECISIONS as readonly string[]).includes(values.precision)) {
    throw new RangeError(`--precision must be one of ${PRECISIONS.join(", ")}, got "${values.precision}"`);
  }
  if (values.tune !== undefined && !(TUNE_MODES as readonly string[]).includes(values.tune)) {
    throw new RangeError(`--tune must be auto, always or off, got "${values.tune}"`);
  }
  return {
    weights: values.weights ?? "",
    model: values.model,
    preset: values.preset,
    size: integerFlag("size", values.size, 32, 4096),
    resize: integerFlag("resize", values.resize, 32, 16384),
    vitHeads: integerFlag("vit-heads", values["vit-heads"], 1, 1024),
    vitBlocks: integerFlag("vit-blocks", values["vit-blocks"], 1, 1024),
    kernels: values.kernels?.split(",").map((k) => k.trim()).filter((k) => k !== ""),
    precision: values.precision as Precision | undefined,
    tune: values.tune as TuneMode | undefined,
  };
}
