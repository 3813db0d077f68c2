/**
 * The model registry: which family a set of tensors belongs to (BiT / Derm Foundation, torchvision ResNet,
 * ViT), the procedural models by name (`procedural:r101x3`, `procedural:resnet50`...), opening weights from
 * wherever they are, and {@linkcode createEmbedder}, the one entry point of the library, the command line
 * and the bench.
 *
 * This module is browser compatible (a path loads the Deno file loaders on demand).
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { createEmbedderRuntime, type Embedder, type RuntimeOptions } from "../engine/embedder.ts";
import type { ModelDefinition, WeightsInventory } from "../engine/model.ts";
import type { TensorSource } from "../engine/tensor_source.ts";
import { KERNELS, RUNTIME_KERNELS } from "../kernels/registry.ts";
import { safetensorsFromBytes, safetensorsFromStream, safetensorsFromUrl } from "../weights/safetensors.ts";
import {
  checkpointSource,
  looksLikePytorch,
  type PytorchCheckpoint,
  pytorchFromBytes,
} from "../weights/pytorch.ts";
import { BIT_R101X3, BIT_R50X1, type BitArchitecture, bitArchitecture } from "./bit_arch.ts";
import { bitInventory, bitModel } from "./bit.ts";
import { bitProceduralSource } from "./bit_names.ts";
import { isResnet, RESNET50, resnetInventory, resnetModel, resnetProceduralSource } from "./resnet.ts";
import {
  isVit,
  VIT_B16,
  VIT_S16,
  VIT_T16,
  type VitArchitecture,
  vitInventory,
  vitModel,
  vitProceduralSource,
} from "./vit.ts";

/** Options a family reads when it defines a model from weights. */
export interface FamilyOptions {
  /** Preset (`derm`, `bit` for BiT; `imagenet` for ResNet and ViT); default from the file or family. */
  readonly preset?: string;
  /** Pillow resize side R before the crop (`imagenet` preset; default round(S * 8 / 7)). */
  readonly resize?: number;
  /** ViT: attention heads (default from the checkpoint's args, else D / 64). */
  readonly vitHeads?: number;
  /** ViT: class tokens of the last N blocks concatenated (default 4). */
  readonly vitBlocks?: number;
}

/** A model family: how to recognise its tensors and define a model from them. */
export interface ModelFamily {
  /** The family's name (`bit`, `resnet`, `vit`). */
  readonly name: string;
  /** What it is, for messages and `--help`. */
  readonly description: string;
  /** Whether these tensors are this family's. */
  detect(source: TensorSource): boolean;
  /** The model definition for these weights. */
  define(source: TensorSource, options: FamilyOptions): ModelDefinition;
  /** What the weights hold (header only): for `inspect` and `convert`. */
  inventory(source: TensorSource, options: FamilyOptions): WeightsInventory;
}

const DERM_STEM = "params.feature_extractor.root_block.conv_root.kernel";

/** The families, in detection order. */
export const FAMILIES: readonly ModelFamily[] = [
  {
    name: "bit",
    description: "BiT ResNetV2 (Derm Foundation = BiT-M R101x3): timm or Derm Foundation names",
    detect: (s) => s.tensors.has("stem.conv.weight") || s.tensors.has(DERM_STEM),
    define: (s, o) => bitModel(s, o),
    inventory: (s) => bitInventory(s),
  },
  {
    name: "resnet",
    description: "torchvision ResNet (Gröger et al.'s SimCLR and BYOL ResNet-50)",
    detect: (s) => isResnet(s.tensors),
    define: (s, o) => resnetModel(s, o),
    inventory: (s) => resnetInventory(s),
  },
  {
    name: "vit",
    description: "timm VisionTransformer (Gröger et al.'s DINO, iBOT and MAE ViT-T/16, ViT-S/16)",
    detect: (s) => isVit(s.tensors),
    define: (s, o) => vitModel(s, o),
    inventory: (s, o) => vitInventory(s, o),
  },
];

/**
 * The family of a set of tensors.
 *
 * @throws {WeightsError} When no family recognises the names, saying what each looks for.
 */
export function detectFamily(source: TensorSource): ModelFamily {
  const family = FAMILIES.find((f) => f.detect(source));
  if (!family) {
    const some = [...source.tensors.keys()].slice(0, 3).map((n) => `"${n}"`).join(", ");
    throw new WeightsError(
      source.file,
      "",
      `Cannot load weights from "${source.file}": unrecognised tensor names (${some}...): expected ` +
        FAMILIES.map((f) => f.description).join("; or "),
    );
  }
  return family;
}

/** A procedural model: a family's generated weights of a real architecture. */
export interface ProceduralModel {
  /** The family. */
  readonly family: string;
  /** What it is. */
  readonly description: string;
  /** The source of its weights for a seed. */
  source(seed: string): TensorSource;
}

/** Seed of procedural weights when none is given. */
export const DEFAULT_PROCEDURAL_SEED = "derm-webgpu/demo";

function vitProcedural(description: string, arch: VitArchitecture): ProceduralModel {
  return { family: "vit", description, source: (seed) => vitProceduralSource(arch, seed) };
}

function bitProcedural(description: string, arch: BitArchitecture): ProceduralModel {
  // Timm names with the derm preset recorded: Derm Foundation's numerics over the BiT formula.
  return {
    family: "bit",
    description,
    source: (seed) => bitProceduralSource(arch, seed, { preset: "derm" }),
  };
}

/** Procedural models by name, for `procedural:NAME[:SEED]`. */
export const PROCEDURAL_MODELS: Readonly<Record<string, ProceduralModel>> = {
  "r50x1": bitProcedural("BiT R50x1", BIT_R50X1),
  "r101x3": bitProcedural("BiT-M R101x3, Derm Foundation's shape", BIT_R101X3),
  "r152x4": bitProcedural("BiT R152x4", bitArchitecture([3, 8, 36, 3], [1024, 2048, 4096, 8192], 256)),
  "tiny-bit": bitProcedural(
    "the fixtures' tiny BiT",
    bitArchitecture([1, 1, 1, 1], [128, 256, 512, 1024], 32),
  ),
  "tiny-derm": bitProcedural(
    "the fixtures' tiny Derm",
    bitArchitecture([2, 1, 1, 1], [128, 256, 512, 1024], 64),
  ),
  "resnet50": {
    family: "resnet",
    description: "torchvision ResNet-50 (Gröger et al.'s SimCLR / BYOL)",
    source: (seed) => resnetProceduralSource(RESNET50, seed),
  },
  "tiny-resnet": {
    family: "resnet",
    description: "the fixtures' tiny ResNet (layers 1/1/1/1, width_per_group 16)",
    source: (seed) =>
      resnetProceduralSource({ layers: [1, 1, 1, 1], widthPerGroup: 16, stemChannels: 64 }, seed),
  },
  "vit-t16": vitProcedural("ViT-T/16 at 224 (Gröger et al.'s DINO / iBOT / MAE)", VIT_T16),
  "vit-s16": vitProcedural("ViT-S/16 at 224", VIT_S16),
  "vit-b16": vitProcedural("ViT-B/16 at 224", VIT_B16),
  "tiny-vit": vitProcedural("the fixtures' tiny ViT (dim 48, depth 3, 3 heads, 64 x 64)", {
    dim: 48,
    depth: 3,
    heads: 3,
    patch: 16,
    grid: 4,
    mlp: 192,
  }),
};

/**
 * The source of `procedural:NAME[:SEED]` weights.
 *
 * @throws {TypeError} For an unknown name, listing the known ones.
 */
export function proceduralWeights(name: string, seed = DEFAULT_PROCEDURAL_SEED): TensorSource {
  const model = Object.hasOwn(PROCEDURAL_MODELS, name) ? PROCEDURAL_MODELS[name] : undefined;
  if (!model) {
    throw new TypeError(
      `Cannot make procedural weights "${name}": unknown architecture "${name}", expected one of ${
        Object.keys(PROCEDURAL_MODELS).join(", ")
      }`,
    );
  }
  return model.source(seed);
}

/** Procedurally generated weights (testdata/FIXTURES_README.md): real work, meaningless embeddings. */
export interface ProceduralWeights {
  /** A name of {@linkcode PROCEDURAL_MODELS}. */
  readonly procedural: string;
  /** The seed string (default {@linkcode DEFAULT_PROCEDURAL_SEED}). */
  readonly seed?: string;
}

/**
 * Where weights come from: the bytes of a safetensors file or a PyTorch checkpoint (`.pth`, zip or legacy
 * format), a stream of safetensors bytes, a URL, a path (Deno only), a `procedural:NAME[:SEED]` string, an
 * opened {@linkcode TensorSource}, or a procedural spec.
 */
export type WeightsInput =
  | Uint8Array
  | ReadableStream<Uint8Array>
  | URL
  | string
  | TensorSource
  | ProceduralWeights;

// Not literals, so that bundlers and the browser type-check leave the Deno file loaders out of the graph.
const DENO_SAFETENSORS_LOADER = "../weights/safetensors_deno.ts";
const DENO_PYTORCH_LOADER = "../weights/pytorch_deno.ts";

/** File names of PyTorch checkpoints (`torch.save`): read as such, anything else as safetensors. */
export const PYTORCH_EXTENSIONS = [".pth", ".pt", ".ckpt", ".bin", ".pth.tar"];

/** Whether a path or URL names a PyTorch checkpoint. */
export function isPytorchPath(path: string): boolean {
  const lower = path.toLowerCase().replace(/[?#].*$/, "");
  return PYTORCH_EXTENSIONS.some((e) => lower.endsWith(e));
}

async function openPath(path: string): Promise<TensorSource> {
  if (isPytorchPath(path)) {
    const loader: { openPytorchFile(path: string): Promise<PytorchCheckpoint> } = await import(
      DENO_PYTORCH_LOADER
    );
    return await checkpointSource(await loader.openPytorchFile(path));
  }
  const loader: { openSafetensorsFile(path: string): Promise<TensorSource> } = await import(
    DENO_SAFETENSORS_LOADER
  );
  return await loader.openSafetensorsFile(path);
}

/** A checkpoint at a URL: downloaded whole (checkpoints are the small models), then read. */
async function pytorchFromUrl(url: string): Promise<TensorSource> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (cause) {
    throw new WeightsError(url, "", `Cannot read "${url}": ${(cause as Error).message}`, { cause });
  }
  if (!response.ok) {
    throw new WeightsError(url, "", `Cannot read "${url}": HTTP ${response.status} ${response.statusText}`);
  }
  return await checkpointSource(await pytorchFromBytes(new Uint8Array(await response.arrayBuffer()), url));
}

/**
 * Opens weights.
 *
 * @param input Where they are.
 * @returns A source to stream them from (close it when done).
 * @throws {WeightsError} For a file that cannot be read, naming it.
 */
export async function openWeights(input: WeightsInput): Promise<TensorSource> {
  if (input instanceof Uint8Array) {
    return looksLikePytorch(input)
      ? await checkpointSource(await pytorchFromBytes(input))
      : safetensorsFromBytes(input);
  }
  if (input instanceof URL) {
    if (input.protocol === "file:") return await openPath(decodeURIComponent(input.pathname));
    return isPytorchPath(input.pathname) ? await pytorchFromUrl(input.href) : await safetensorsFromUrl(input);
  }
  if (typeof input === "string") {
    if (input.startsWith("procedural:")) {
      const [, name, ...seed] = input.split(":");
      return proceduralWeights(name, seed.length > 0 ? seed.join(":") : undefined);
    }
    if (/^https?:\/\//.test(input)) {
      return isPytorchPath(input) ? await pytorchFromUrl(input) : await safetensorsFromUrl(input);
    }
    return await openPath(input);
  }
  if (input instanceof ReadableStream) return await safetensorsFromStream(input, "<stream>");
  if ("procedural" in input) return proceduralWeights(input.procedural, input.seed);
  return input;
}

/** Options of {@linkcode createEmbedder}. */
export interface EmbedderOptions extends RuntimeOptions, FamilyOptions {
  /** The family, when the tensor names should not decide. */
  readonly family?: string;
}

/**
 * The model definition of opened weights: the family from `options.family` or the tensor names.
 *
 * @throws {WeightsError} For names no family knows, or a missing or misshapen tensor.
 * @throws {TypeError} For an unknown family or an option the family refuses.
 */
export function defineModel(source: TensorSource, options: EmbedderOptions = {}): ModelDefinition {
  let family: ModelFamily;
  if (options.family !== undefined) {
    const f = FAMILIES.find((x) => x.name === options.family);
    if (!f) {
      throw new TypeError(
        `Cannot use family "${options.family}": expected one of ${FAMILIES.map((x) => x.name).join(", ")}`,
      );
    }
    family = f;
  } else {
    family = detectFamily(source);
  }
  return family.define(source, options);
}

/**
 * Loads weights onto a GPU and returns an embedder, whatever the model: the family comes from the tensor
 * names (BiT / Derm Foundation, torchvision ResNet, ViT), the preprocessing from the family and preset.
 *
 * @param weights Where the weights come from.
 * @param options Family and preset options, input size, batch, device, kernels to force, `precision`
 *   (`f32` by default; `f16` stores weights and activations as f16, see `RuntimeOptions.precision`).
 * @returns The embedder; call `dispose()` when done.
 * @throws {WeightsError} For a file that cannot be read, unrecognised names, or a missing, misshapen or
 *   non-finite tensor, naming the file and tensor (at `f16`, also one beyond f16's range).
 * @throws {TypeError} For an unknown kernel variant, family or preset.
 * @throws {RangeError} For precision `f16` on an adapter without `shader-f16` (naming the adapter), or an
 *   unknown precision.
 * @example
 * ```ts
 * const embedder = await createEmbedder("derm_foundation.safetensors");
 * const [row] = await embedder.embed([await Deno.readFile("lesion.png")]);
 * embedder.dispose();
 * ```
 */
export async function createEmbedder(
  weights: WeightsInput,
  options: EmbedderOptions = {},
): Promise<Embedder> {
  for (const name of options.kernels ?? []) {
    if (!KERNELS.has(name)) {
      throw new TypeError(`Cannot force kernel "${name}": expected one of ${[...KERNELS.keys()].join(", ")}`);
    }
  }
  const source = await openWeights(weights);
  let model: ModelDefinition;
  try {
    model = defineModel(source, options);
  } catch (e) {
    await source.close();
    throw e;
  }
  return await createEmbedderRuntime(model, source, RUNTIME_KERNELS, options);
}

/**
 * {@linkcode createEmbedder} for BiT / Derm Foundation weights (kept for code written against the first
 * release): the same, with the family fixed to `bit`.
 */
export function createBitEmbedder(weights: WeightsInput, options: EmbedderOptions = {}): Promise<Embedder> {
  return createEmbedder(weights, { ...options, family: "bit" });
}
