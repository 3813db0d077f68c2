/**
 * BiT ResNetV2 (Derm Foundation is BiT-M R101x3) on the engine: its presets, its graph as a flat list of
 * nodes readable top to bottom like the forward pass it describes, and its weight transform (every
 * convolution kernel standardised on the GPU into HWIO f32 at load).
 *
 * Every activation is f32 NHWC [N, H, W, C]. Graph weight names are timm's (`stages.2.blocks.7.conv2.weight`)
 * whatever the file's naming (`models/bit_names.ts` maps Derm Foundation's).
 *
 * Pre-activation bottleneck (unit b of stage s, input X with Cin channels, stride st on block 0):
 *   P = relu(GN1(X))
 *   R = conv_proj 1x1/st (P)            block 0 only; later blocks use R = X, the residual stream
 *   A = conv1 1x1 (P);  B = conv2 3x3/st (relu(GN2(A)));  R += conv3 1x1 (relu(GN3(B)))
 * Stem: conv 7x7/2 pad 3, then max-pool 3x3/2 pad 1 (-inf padding for `derm`, zero for `bit`).
 * Head: relu(GN(R)) then the mean over H and W: the embedding.
 *
 * This module is browser compatible.
 * @module
 */
import { type Graph, GraphBuilder } from "../engine/graph.ts";
import type { ModelDefinition, WeightRecipe, WeightsInventory } from "../engine/model.ts";
import type { Preprocessing } from "../engine/preprocessing.ts";
import type { TensorSource } from "../engine/tensor_source.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { WEIGHT_STANDARDIZE_SPECS, weightStandardizeLaunch } from "../kernels/weight_standardize.ts";
import { decodeToFloat32, GPU_FLOAT_DTYPES } from "../weights/dtypes.ts";
import { type BitArchitecture, bitTensorShapes } from "./bit_arch.ts";
import { adaptBitWeights, type BitNaming, presetFromMetadata } from "./bit_names.ts";

/** The two numeric presets of testdata/FIXTURES_README.md. */
export type BitPreset = "derm" | "bit";

/** Numbers that differ between the presets. */
export interface PresetNumerics {
  /** Pixel scaling: x * scale + offset, the same for R, G and B. */
  readonly pixelScale: number;
  /** Pixel scaling offset. */
  readonly pixelOffset: number;
  /** Padding value of the stem max-pool. */
  readonly stemPoolPadding: "-inf" | "zero";
  /** eps of weight standardisation. */
  readonly weightStandardizationEps: number;
  /** Default model input size. */
  readonly defaultSize: number;
}

/** The presets' numerics: `derm` = Google's Derm Foundation graph, `bit` = timm / big_transfer. */
export const PRESETS: Readonly<Record<BitPreset, PresetNumerics>> = {
  // Derm Foundation's graph multiplies by float32(1/255) before resizing.
  derm: {
    pixelScale: Math.fround(1 / 255),
    pixelOffset: 0,
    stemPoolPadding: "-inf",
    weightStandardizationEps: 1e-10,
    defaultSize: 448,
  },
  bit: {
    pixelScale: 1 / 127.5,
    pixelOffset: -1,
    stemPoolPadding: "zero",
    weightStandardizationEps: 1e-8,
    defaultSize: 224,
  },
};

/** GroupNorm groups in every BiT model. */
export const GROUP_NORM_GROUPS = 32;
/** GroupNorm eps (biased variance, added before the square root). */
export const GROUP_NORM_EPS = 1e-5;
/** Channels of the model input tensor: RGB plus a zero channel, so the stem reads vec4. */
export const INPUT_CHANNELS = 4;

/**
 * The preprocessing of a preset at input size S: TF's bilinear resize straight to S x S, each tap scaled
 * first (Derm Foundation's order).
 */
export function bitPreprocessing(preset: BitPreset, size: number): Preprocessing {
  const { pixelScale: s, pixelOffset: o } = PRESETS[preset];
  return { resize: "bilinear", size, scale: [s, s, s], offset: [o, o, o] };
}

/**
 * Builds the graph of a BiT model for `size` x `size` inputs and `batch` images.
 *
 * @param arch Units and widths (from the weights).
 * @param options Preset, input size and batch.
 * @returns The graph; checkpoints `stem`, `stage1`..`stage4`, `final_norm`.
 */
export function bitGraph(
  arch: BitArchitecture,
  options: { preset: BitPreset; size: number; batch: number },
): Graph {
  const { size, batch } = options;
  if (!Number.isInteger(size) || size < 32) {
    throw new RangeError(`Cannot build BiT graph: expected size >= 32, got ${size}`);
  }
  if (!Number.isInteger(batch) || batch < 1) {
    throw new RangeError(`Cannot build BiT graph: expected batch >= 1, got ${batch}`);
  }
  const g = new GraphBuilder(LOWERINGS);
  const conv = (name: string, x: string, weight: string, cout: number, kernel: number, stride: number) =>
    g.node("conv2d", name, {
      inputs: [x],
      weights: { weight },
      attrs: { cout, kernel, stride, pad: Math.floor(kernel / 2) },
    });
  const norm = (name: string, x: string, param: string) =>
    g.node("group_norm", name, {
      inputs: [x],
      weights: { gamma: `${param}.weight`, beta: `${param}.bias` },
      attrs: { groups: GROUP_NORM_GROUPS, eps: GROUP_NORM_EPS, relu: true },
    });

  const input = g.input("input", [batch, size, size, INPUT_CHANNELS]);
  // The stem's fourth input channel is zero padding: its FLOPs count the three real ones.
  const stemConv = g.node("conv2d", "stem.conv", {
    inputs: [input],
    weights: { weight: "stem.conv.weight" },
    attrs: { cout: arch.stemChannels, kernel: 7, stride: 2, pad: 3, flopsCin: 3 },
  });
  const stem = g.node("max_pool", "stem.pool", {
    inputs: [stemConv],
    output: "stem",
    attrs: { kernel: 3, stride: 2, pad: 1, padValue: PRESETS[options.preset].stemPoolPadding },
  });
  g.checkpoint("stem", stem);

  let x = stem;
  arch.stages.forEach((stage, s) => {
    const residual = `stage${s + 1}.residual`;
    for (let b = 0; b < stage.units; b++) {
      const unit = `stage${s + 1}.unit${String(b + 1).padStart(2, "0")}`;
      const timm = `stages.${s}.blocks.${b}`;
      const stride = b === 0 ? stage.stride : 1;
      const preact = g.node("group_norm", `${unit}.gn1`, {
        inputs: [x],
        output: `${unit}.preact`,
        weights: { gamma: `${timm}.norm1.weight`, beta: `${timm}.norm1.bias` },
        attrs: { groups: GROUP_NORM_GROUPS, eps: GROUP_NORM_EPS, relu: true },
      });
      if (b === 0) {
        g.node("conv2d", `${unit}.conv_proj`, {
          inputs: [preact],
          output: residual,
          weights: { weight: `${timm}.downsample.conv.weight` },
          attrs: { cout: stage.channels, kernel: 1, stride },
        });
      }
      const a = conv(`${unit}.conv1`, preact, `${timm}.conv1.weight`, stage.midChannels, 1, 1);
      const a2 = norm(`${unit}.gn2`, a, `${timm}.norm2`);
      const bb = conv(`${unit}.conv2`, a2, `${timm}.conv2.weight`, stage.midChannels, 3, stride);
      const b2 = norm(`${unit}.gn3`, bb, `${timm}.norm3`);
      g.node("conv2d", `${unit}.conv3`, {
        inputs: [b2],
        output: residual,
        inPlace: true,
        weights: { weight: `${timm}.conv3.weight` },
        attrs: { cout: stage.channels, kernel: 1 },
      });
      x = residual;
    }
    g.checkpoint(`stage${s + 1}`, residual);
  });
  const finalNorm = norm("final_norm", x, "norm");
  g.checkpoint("final_norm", finalNorm);
  const embedding = g.node("global_mean_pool", "pool", { inputs: [finalNorm], output: "embedding" });
  return g.build(embedding);
}

/**
 * The recipes that make BiT's resident tensors: each convolution kernel standardised on the GPU into HWIO
 * (the stem's input channels padded to 4 with zeros), each GroupNorm vector decoded to f32; at precision
 * f16 the uploader runs the kernel's f16 flavour and rounds the vectors.
 */
export function bitWeightRecipes(
  source: TensorSource,
  preset: BitPreset,
): { recipes: WeightRecipe[]; architecture: BitArchitecture; naming: BitNaming } {
  const adapted = adaptBitWeights(source);
  const eps = PRESETS[preset].weightStandardizationEps;
  const recipes: WeightRecipe[] = [];
  for (const [timm, t] of adapted.tensors) {
    const stored = t.source.name;
    if (t.layout === "vector") {
      recipes.push({
        sources: [stored],
        outputs: [timm],
        transform: { kind: "cpu", run: ([chunk]) => [decodeToFloat32(chunk.entry, chunk.bytes)] },
      });
      continue;
    }
    const [cout, cin, kh, kw] = t.shape; // timm OIHW
    const layout = t.layout;
    const cinPadded = timm === "stem.conv.weight" ? Math.max(INPUT_CHANNELS, cin) : cin;
    recipes.push({
      sources: [stored],
      outputs: [timm],
      transform: {
        kind: "gpu",
        specs: WEIGHT_STANDARDIZE_SPECS,
        outputElements: kh * kw * cinPadded * cout,
        input({ entry, bytes }) {
          // F64 or integer kernels are decoded to float32 here: the kernel reads F32, F16 and BF16.
          const native = GPU_FLOAT_DTYPES.has(entry.dtype);
          const dtype = native ? entry.dtype as "F32" | "F16" | "BF16" : "F32";
          return {
            bytes: native ? bytes : new Uint8Array(decodeToFloat32(entry, bytes).buffer),
            launch: weightStandardizeLaunch({ cout, cin, kh, kw, cinPadded, dtype, layout, eps }),
          };
        },
      },
    });
  }
  return { recipes, architecture: adapted.architecture, naming: adapted.naming };
}

/** One-line summary of an architecture, as output files record it. */
export function bitArchitectureSummary(arch: BitArchitecture): string {
  return `BiT units ${arch.stages.map((s) => s.units).join("/")} widths ${
    arch.stages.map((s) => s.channels).join("/")
  } stem ${arch.stemChannels}`;
}

/** Options a BiT model reads. */
export interface BitModelOptions {
  /** Overrides the preset found in the metadata or naming. */
  readonly preset?: string;
}

/**
 * The BiT model for opened weights: architecture and naming from the tensor names, preset from the
 * options, else the file's metadata, else the naming.
 *
 * @throws {WeightsError} For unrecognised names or a missing or misshapen tensor.
 * @throws {TypeError} For a preset that is not `derm` or `bit`.
 */
export function bitModel(source: TensorSource, options: BitModelOptions = {}): ModelDefinition {
  const naming = adaptBitWeights(source).naming;
  const asked = options.preset;
  if (asked !== undefined && asked !== "derm" && asked !== "bit") {
    throw new TypeError(`Cannot use preset "${asked}" with a BiT model: expected "derm" or "bit"`);
  }
  const preset: BitPreset = asked ?? presetFromMetadata(source.metadata, naming);
  const { recipes, architecture } = bitWeightRecipes(source, preset);
  const parameters = bitTensorShapes(architecture).reduce(
    (a, t) => a + t.shape.reduce((x, y) => x * y, 1),
    0,
  );
  return {
    family: "bit",
    preset,
    defaultSize: PRESETS[preset].defaultSize,
    embeddingSize: architecture.stages[architecture.stages.length - 1].channels,
    parameters,
    architecture: bitArchitectureSummary(architecture),
    weights: recipes,
    keepF32AtF16: bitKeepsF32AtF16,
    checkSize(size) {
      if (!Number.isInteger(size) || size < 32 || size > 4096) {
        throw new RangeError(`Cannot run a BiT model at size ${size}: expected an integer from 32 to 4096`);
      }
    },
    preprocessing: (size) => bitPreprocessing(preset, size),
    graph: (size, batch) => bitGraph(architecture, { preset, size, batch }),
  };
}

/**
 * The activations an f16 plan of BiT keeps in f32: the stem's and the first stage's (so the weights of the
 * nodes reading them stay f32 too: `f32Weights` in `engine/precision.ts`). Measured by
 * `bench/f16_sensitivity.ts` on r50x1-bit-224 (max|e - ref| / max|ref|): everything f16 but the stem's
 * weights 1.31e-2, over the 1e-2 an f16 plan must meet; with the stem and the first stage f32, 3.65e-3. The
 * network's sensitivity to a perturbation grows with the layers it passes through, so the first layers
 * are where f32 pays; they hold 0.5% of R101x3's parameters (though its largest activations).
 */
export function bitKeepsF32AtF16(tensor: string): boolean {
  return tensor === "stem" || tensor.startsWith("stem.") || tensor.startsWith("stage1.");
}

/** `R{depth}x{width}` when the channels are BiT's 256·w, 512·w, 1024·w, 2048·w and the stem 64·w. */
function bitArchitectureName(arch: BitArchitecture): string {
  const depth = 3 * arch.stages.reduce((a, s) => a + s.units, 0) + 2;
  const width = arch.stemChannels / 64;
  const standard = Number.isInteger(width) && arch.stages.length === 4 &&
    arch.stages.every((s, i) => s.channels === 256 * width * 2 ** i);
  return standard ? `R${depth}x${width}` : "custom";
}

/** What a BiT file holds: architecture, naming, preset, the tensors read and the head it ignores. */
export function bitInventory(source: TensorSource): WeightsInventory {
  const adapted = adaptBitWeights(source);
  const arch = adapted.architecture;
  const depth = 3 * arch.stages.reduce((a, s) => a + s.units, 0) + 2;
  const fromMetadata = source.metadata.preset === "derm" || source.metadata.preset === "bit";
  const name = bitArchitectureName(arch);
  return {
    family: "bit",
    architecture: {
      name,
      summary: bitArchitectureSummary(arch),
      depth,
      width: arch.stemChannels / 64,
      stemChannels: arch.stemChannels,
      stages: arch.stages.map((s) => ({ ...s })),
    },
    naming: adapted.naming,
    preset: presetFromMetadata(source.metadata, adapted.naming),
    presetFrom: fromMetadata ? "metadata" : "naming",
    embeddingSize: arch.stages[arch.stages.length - 1].channels,
    tensors: new Map([...adapted.tensors.values()].map((t) => [t.source.name, t.source])),
    ignored: adapted.ignored.map((n) => ({ name: n, reason: "classifier head" })),
    lines: [
      `BiT ResNetV2 ${name} (depth ${depth}, width ${
        arch.stemChannels / 64
      }): stem 7x7/2 conv -> ${arch.stemChannels}`,
      ...arch.stages.map((s, i) =>
        `  stage ${i + 1}     ${String(s.units).padStart(2)} units, ${s.channels} channels ` +
        `(bottleneck ${s.midChannels}, stride ${s.stride})`
      ),
    ],
  };
}
