/**
 * What a model family gives the engine: a {@linkcode ModelDefinition} says, for weights already opened,
 * which resident tensors to build and how ({@linkcode WeightRecipe}), the graph for an input size and
 * batch, the preprocessing, and the embedding's size. The engine (`engine/embedder.ts`) does everything
 * else: upload, plans, batching, input stage, diagnosis, timings.
 *
 * This module is browser compatible.
 * @module
 */
import type { Graph } from "./graph.ts";
import type { KernelLaunch, KernelSpec } from "./kernel.ts";
import type { Dtype } from "./precision.ts";
import type { Preprocessing } from "./preprocessing.ts";
import type { TensorChunk, TensorEntry } from "./tensor_source.ts";

/**
 * A CPU transform: reads its source tensors' raw chunks (in `sources` order; decode them with
 * `weights/dtypes.ts`) and returns one float32 array per resident tensor it makes (in `outputs` order),
 * already in the layout the kernels read. BatchNorm folding, transposes, reshapes. In an f16 plan the
 * uploader rounds the results to f16 afterwards (the transform itself always runs in f32 or better).
 */
export interface CpuWeightTransform {
  readonly kind: "cpu";
  run(inputs: readonly TensorChunk[]): readonly Float32Array[];
}

/**
 * A GPU transform: one source's bytes, in a staging buffer, through a kernel into the resident tensor
 * (BiT's weight standardisation on the raw F32/F16/BF16 bytes).
 */
export interface GpuWeightTransform {
  readonly kind: "gpu";
  /**
   * The kernel for each resident dtype: binding 0 reads the staged bytes, binding 1 writes the resident
   * tensor (f32; or f16, computed in f32 and rounded to nearest even), then uniforms. Both flavours take
   * the same launch.
   */
  readonly specs: Readonly<Record<Dtype, KernelSpec>>;
  /** The bytes to stage for `chunk` (its raw bytes, or a CPU decoding of them) and the kernel's launch. */
  input(chunk: TensorChunk): { bytes: Uint8Array; launch: KernelLaunch };
  /** Elements of the resident tensor. */
  readonly outputElements: number;
}

/** How to build resident tensors from stored ones. */
export interface WeightRecipe {
  /** Stored tensor names read (the file's own names), all required. */
  readonly sources: readonly string[];
  /** Resident tensor names made (the graph's weight names). */
  readonly outputs: readonly string[];
  /** The transform (a GPU transform has exactly one source and one output). */
  readonly transform: CpuWeightTransform | GpuWeightTransform;
}

/** Facts every output file records about the model that made its embeddings. */
export interface ModelFacts {
  /** The family (`bit`, `resnet`, `vit`). */
  readonly family: string;
  /** A one-line architecture summary, e.g. `BiT units 3/4/23/3 widths 768/1536/3072/6144 stem 192`. */
  readonly architecture: string;
  /** The preprocessing preset (`derm`, `bit`, `imagenet`). */
  readonly preset: string;
  /** Model input size S. */
  readonly size: number;
  /** Floats per embedding. */
  readonly embeddingSize: number;
}

/** A model ready to be uploaded: made by a family from opened weights and options. */
export interface ModelDefinition {
  /** The family's name. */
  readonly family: string;
  /** The preset in use. */
  readonly preset: string;
  /** Input size S used when none is asked for. */
  readonly defaultSize: number;
  /** Floats per embedding. */
  readonly embeddingSize: number;
  /** Parameters the model uses (elements of the stored tensors read). */
  readonly parameters: number;
  /** One-line architecture summary (outputs and logs). */
  readonly architecture: string;
  /** Resident tensors and how to make them. */
  readonly weights: readonly WeightRecipe[];
  /**
   * The activations an f16 plan stores in f32 nonetheless, besides the input and the embedding: the first
   * layers of a network whose error they would otherwise set (BiT's stem and first stage). The weights of
   * every node reading an f32 activation stay f32 too (`f32Weights` in `engine/precision.ts`). Absent: every
   * other activation is f16.
   */
  readonly keepF32AtF16?: (tensor: string) => boolean;
  /** Checks an input size, throwing a RangeError that says what the model accepts. */
  checkSize(size: number): void;
  /** The preprocessing for input size S. */
  preprocessing(size: number): Preprocessing;
  /**
   * The network for input size S and a batch. With `checkpoints`, the graph also computes the tensors
   * references compare that the embedding itself does not need (a ViT's final norm over every token).
   */
  graph(size: number, batch: number, options?: { readonly checkpoints?: boolean }): Graph;
}

/** What a family finds in a set of tensors: for `deno task inspect` and `deno task convert`. */
export interface WeightsInventory {
  /** The family. */
  readonly family: string;
  /** Family-specific architecture facts; always a conventional `name` and the one-line `summary`. */
  readonly architecture:
    & { readonly name: string; readonly summary: string }
    & Readonly<Record<string, unknown>>;
  /** The tensor naming found (`timm`, `derm`, `torchvision`, `simclr`...). */
  readonly naming: string;
  /** The preset the model runs with, and where it comes from. */
  readonly preset: string;
  /** `metadata` (the file's `preset`), `naming` (Derm vs timm names) or `family` (its only preset). */
  readonly presetFrom: "metadata" | "naming" | "family";
  /** Floats per embedding. */
  readonly embeddingSize: number;
  /** The tensors the model reads, by the name a converted file gives them, with the stored entry. */
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  /** Stored tensors the model does not read, and why (classifier head, training state, decoder...). */
  readonly ignored: readonly { readonly name: string; readonly reason: string }[];
  /** Lines describing the architecture, for a terminal. */
  readonly lines: readonly string[];
}
