/**
 * torchvision's ResNet (v1.5, Bottleneck blocks, BatchNorm), as Gröger et al. release it (SimCLR, BYOL):
 * its tensor names, architecture inferred from them (any `layers` and `width_per_group`), the weight
 * transform (each BatchNorm folded into its convolution's weights and a bias, in float64, at load), the
 * graph and the `imagenet` preprocessing.
 *
 * Activations f32 NHWC. Bottleneck (block b of layer s, input X, stride st on block 0's 3x3 conv):
 *   R = bn(downsample 1x1/st (X))        block 0 only; later blocks use R = X
 *   A = relu(bn1(conv1 1x1 (X)));  B = relu(bn2(conv2 3x3/st (A)));  R = relu(R + bn3(conv3 1x1 (B)))
 * Stem: relu(bn1(conv1 7x7/2 pad 3)), max-pool 3x3/2 pad 1 (-inf padding). Embedding: the mean of layer4
 * over H and W (2048 floats for ResNet-50). `fc.*` is the classifier head: ignored.
 * BatchNorm in inference form: (x - running_mean) / sqrt(running_var + 1e-5) * weight + bias.
 *
 * Names: torchvision's (`conv1.weight`, `bn1.*`, `layer{1..4}.{b}.{conv1,bn1,conv2,bn2,conv3,bn3}.*`,
 * `layer{s}.0.downsample.{0,1}.*`), or SimCLR's `nn.Sequential(*children()[:-1])` indices (`model.0` = conv1,
 * `model.1` = bn1, `model.4` .. `model.7` = layer1 .. layer4), after the checkpoint's own prefixes are gone.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { type Graph, GraphBuilder } from "../engine/graph.ts";
import type { ModelDefinition, WeightRecipe, WeightsInventory } from "../engine/model.ts";
import type { TensorEntry, TensorSource } from "../engine/tensor_source.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { decodeToFloat32 } from "../weights/dtypes.ts";
import { proceduralSource, type ProceduralTensor } from "../weights/procedural.ts";
import { groegerValueRule, IMAGENET_PRESET, imagenetPreprocessing } from "./imagenet.ts";

/** A torchvision ResNet with Bottleneck blocks. */
export interface ResnetArchitecture {
  /** Blocks per layer (ResNet-50: [3, 4, 6, 3]). */
  readonly layers: readonly number[];
  /** `width_per_group`: inner width of layer1's blocks (64 for ResNet-50; inner widths scale by 2 per layer). */
  readonly widthPerGroup: number;
  /** Output channels of the stem conv (64 in torchvision). */
  readonly stemChannels: number;
}

/** ResNet-50. */
export const RESNET50: ResnetArchitecture = { layers: [3, 4, 6, 3], widthPerGroup: 64, stemChannels: 64 };

/** BatchNorm eps of torchvision's ResNet. */
export const BATCH_NORM_EPS = 1e-5;
/** Bottleneck expansion: a block's output channels over its planes. */
const EXPANSION = 4;
/** Channels of the model input tensor: RGB plus a zero channel, so the stem reads vec4. */
const INPUT_CHANNELS = 4;

/** Planes (64, 128, 256, 512), inner width and output channels of layer s, and its stride. */
export function resnetLayer(arch: ResnetArchitecture, s: number) {
  const planes = 64 * 2 ** s;
  return {
    width: planes * arch.widthPerGroup / 64,
    out: planes * EXPANSION,
    stride: s === 0 ? 1 : 2,
  };
}

/** A convolution followed by a BatchNorm: the conv's name prefix and the BN's, e.g. `layer1.0.conv1`, `layer1.0.bn1`. */
interface ConvBn {
  readonly conv: string;
  readonly bn: string;
  /** OIHW shape of the conv weight. */
  readonly shape: readonly [number, number, number, number];
}

/** Every conv + BN pair of `arch`, in torchvision's order. */
function convBnPairs(arch: ResnetArchitecture): ConvBn[] {
  const pairs: ConvBn[] = [{ conv: "conv1", bn: "bn1", shape: [arch.stemChannels, 3, 7, 7] }];
  let inChannels = arch.stemChannels;
  arch.layers.forEach((blocks, s) => {
    const { width, out } = resnetLayer(arch, s);
    for (let b = 0; b < blocks; b++) {
      const p = `layer${s + 1}.${b}`;
      const cin = b === 0 ? inChannels : out;
      pairs.push(
        { conv: `${p}.conv1`, bn: `${p}.bn1`, shape: [width, cin, 1, 1] },
        { conv: `${p}.conv2`, bn: `${p}.bn2`, shape: [width, width, 3, 3] },
        { conv: `${p}.conv3`, bn: `${p}.bn3`, shape: [out, width, 1, 1] },
      );
      if (b === 0) {
        pairs.push({ conv: `${p}.downsample.0`, bn: `${p}.downsample.1`, shape: [out, cin, 1, 1] });
      }
    }
    inChannels = out;
  });
  return pairs;
}

const BN_PARTS = ["weight", "bias", "running_mean", "running_var"] as const;

/** Every tensor of `arch` in torchvision names and shapes (num_batches_tracked included), in order. */
export function resnetTensorShapes(arch: ResnetArchitecture): { name: string; shape: number[] }[] {
  return convBnPairs(arch).flatMap(({ conv, bn, shape }) => {
    const c = shape[0];
    return [
      { name: `${conv}.weight`, shape: [...shape] },
      ...BN_PARTS.map((part) => ({ name: `${bn}.${part}`, shape: [c] })),
      { name: `${bn}.num_batches_tracked`, shape: [] },
    ];
  });
}

const SIMCLR_INDICES: Readonly<Record<string, string>> = {
  "0": "conv1",
  "1": "bn1",
  "4": "layer1",
  "5": "layer2",
  "6": "layer3",
  "7": "layer4",
};

/** torchvision's name of a stored tensor (SimCLR's Sequential indices mapped), or undefined. */
export function resnetCanonicalName(stored: string): string | undefined {
  const m = /^model\.(\d+)\.(.+)$/.exec(stored);
  if (m) return Object.hasOwn(SIMCLR_INDICES, m[1]) ? `${SIMCLR_INDICES[m[1]]}.${m[2]}` : undefined;
  return stored;
}

/** Whether a listing holds a torchvision ResNet (its stem conv and a Bottleneck's BatchNorm). */
export function isResnet(tensors: ReadonlyMap<string, TensorEntry>): boolean {
  const names = new Set([...tensors.keys()].map((n) => resnetCanonicalName(n)));
  return names.has("conv1.weight") && names.has("bn1.running_var") && names.has("layer1.0.conv1.weight");
}

/** Stage and block indices above this are refused, so a hostile name cannot make a huge architecture. */
const MAX_INDEX = 1024;

/** The canonical tensors of a listing, the architecture they describe, and the names ignored. */
export function adaptResnetWeights(
  listing: { file: string; tensors: ReadonlyMap<string, TensorEntry> },
): { architecture: ResnetArchitecture; tensors: Map<string, TensorEntry>; ignored: string[] } {
  const file = listing.file;
  const fail = (tensor: string, message: string) =>
    new WeightsError(file, tensor, `Cannot load "${tensor}" from "${file}": ${message}`);
  const byName = new Map<string, TensorEntry>();
  for (const [stored, entry] of listing.tensors) {
    const name = resnetCanonicalName(stored);
    if (name !== undefined) byName.set(name, entry);
  }
  const need = (name: string) => {
    const e = byName.get(name);
    if (!e) throw fail(name, "missing from the file");
    return e;
  };
  const stem = need("conv1.weight");
  if (stem.shape.length !== 4) throw fail(stem.name, `expected a 4-D kernel, got [${stem.shape}]`);
  const layers: number[] = [];
  for (const name of byName.keys()) {
    const m = /^layer(\d+)\.(\d+)\./.exec(name);
    if (!m) continue;
    const s = Number(m[1]) - 1, b = Number(m[2]);
    if (s < 0 || s > 3 || b > MAX_INDEX) throw fail(name, "unexpected tensor for a torchvision ResNet");
    while (layers.length <= s) layers.push(0);
    layers[s] = Math.max(layers[s], b + 1);
  }
  if (layers.length !== 4 || layers.some((n) => n < 1)) {
    throw fail("layer1.0.conv1.weight", `expected 4 layers of Bottleneck blocks, found blocks [${layers}]`);
  }
  const width = need("layer1.0.conv1.weight").shape[0];
  const architecture: ResnetArchitecture = { layers, widthPerGroup: width, stemChannels: stem.shape[0] };
  const tensors = new Map<string, TensorEntry>();
  for (const { name, shape } of resnetTensorShapes(architecture)) {
    if (name.endsWith(".num_batches_tracked")) continue;
    const e = need(name);
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
      throw fail(e.name, `expected [${shape}], got [${e.shape}]`);
    }
    tensors.set(name, e);
  }
  const ignored = [...listing.tensors.values()].map((e) => e.name).filter((n) => {
    const c = resnetCanonicalName(n);
    return c === undefined || !tensors.has(c);
  });
  for (const n of ignored) {
    const c = resnetCanonicalName(n) ?? n;
    if (!c.startsWith("fc.") && !c.endsWith(".num_batches_tracked")) {
      throw fail(n, "unexpected tensor for a torchvision ResNet");
    }
  }
  return { architecture, tensors, ignored };
}

/**
 * BatchNorm folded into the preceding convolution, in float64: w'[o] = w[o] * g[o] / sqrt(v[o] + eps),
 * b' = beta - mean * g / sqrt(v + eps); w' laid out HWIO [KH, KW, Cin (padded), Cout].
 *
 * @param w The conv weight, OIHW [Cout, Cin, KH, KW].
 * @param shape Its shape.
 * @param bn weight (gamma), bias (beta), running_mean, running_var, each [Cout].
 * @param cinPadded Input channels of the HWIO output (extra ones are zero).
 * @returns The folded HWIO weight and the bias.
 */
export function foldBatchNorm(
  w: Float32Array,
  shape: readonly number[],
  bn: { gamma: Float32Array; beta: Float32Array; mean: Float32Array; variance: Float32Array },
  cinPadded: number,
): { weight: Float32Array; bias: Float32Array } {
  const [cout, cin, kh, kw] = shape;
  const weight = new Float32Array(kh * kw * cinPadded * cout);
  const bias = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    const scale = bn.gamma[o] / Math.sqrt(bn.variance[o] + BATCH_NORM_EPS);
    bias[o] = bn.beta[o] - bn.mean[o] * scale;
    for (let i = 0; i < cin; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          weight[((y * kw + x) * cinPadded + i) * cout + o] = w[((o * cin + i) * kh + y) * kw + x] * scale;
        }
      }
    }
  }
  return { weight, bias };
}

/** The recipes: each conv + BatchNorm pair folded on the CPU into `<conv>.w` (HWIO) and `<conv>.b`. */
function resnetRecipes(arch: ResnetArchitecture, tensors: ReadonlyMap<string, TensorEntry>): WeightRecipe[] {
  return convBnPairs(arch).map(({ conv, bn, shape }) => {
    const stored = [`${conv}.weight`, ...BN_PARTS.map((p) => `${bn}.${p}`)].map((n) => tensors.get(n)!.name);
    const cinPadded = conv === "conv1" ? INPUT_CHANNELS : shape[1];
    return {
      sources: stored,
      outputs: [`${conv}.w`, `${conv}.b`],
      transform: {
        kind: "cpu",
        run(chunks) {
          const [w, gamma, beta, mean, variance] = chunks.map((c) => decodeToFloat32(c.entry, c.bytes));
          const folded = foldBatchNorm(w, shape, { gamma, beta, mean, variance }, cinPadded);
          return [folded.weight, folded.bias];
        },
      },
    };
  });
}

/**
 * The graph of a ResNet for `size` x `size` inputs and `batch` images.
 *
 * @returns The graph; checkpoints `stem` (after the max-pool) and `layer1`..`layer4`.
 */
export function resnetGraph(arch: ResnetArchitecture, options: { size: number; batch: number }): Graph {
  const { size, batch } = options;
  const g = new GraphBuilder(LOWERINGS);
  const conv = (
    name: string,
    x: string,
    prefix: string,
    cout: number,
    kernel: number,
    stride: number,
    extra: { output?: string; inPlace?: boolean; relu?: boolean; flopsCin?: number } = {},
  ) =>
    g.node("conv2d", name, {
      inputs: [x],
      output: extra.output,
      inPlace: extra.inPlace,
      weights: { weight: `${prefix}.w`, bias: `${prefix}.b` },
      attrs: {
        cout,
        kernel,
        stride,
        pad: Math.floor(kernel / 2),
        relu: extra.relu ?? false,
        ...(extra.flopsCin ? { flopsCin: extra.flopsCin } : {}),
      },
    });
  const input = g.input("input", [batch, size, size, INPUT_CHANNELS]);
  // The fourth input channel is zero padding: FLOPs count the three real ones.
  const stemConv = conv("stem.conv", input, "conv1", arch.stemChannels, 7, 2, { relu: true, flopsCin: 3 });
  let x = g.node("max_pool", "stem.pool", {
    inputs: [stemConv],
    output: "stem",
    attrs: { kernel: 3, stride: 2, pad: 1, padValue: "-inf" },
  });
  g.checkpoint("stem", x);
  arch.layers.forEach((blocks, s) => {
    const { width, out, stride: layerStride } = resnetLayer(arch, s);
    const residual = `layer${s + 1}.residual`;
    for (let b = 0; b < blocks; b++) {
      const p = `layer${s + 1}.${b}`;
      const stride = b === 0 ? layerStride : 1;
      if (b === 0) conv(`${p}.downsample`, x, `${p}.downsample.0`, out, 1, stride, { output: residual });
      const a = conv(`${p}.conv1`, x, `${p}.conv1`, width, 1, 1, { relu: true });
      const c = conv(`${p}.conv2`, a, `${p}.conv2`, width, 3, stride, { relu: true });
      conv(`${p}.conv3`, c, `${p}.conv3`, out, 1, 1, { output: residual, inPlace: true, relu: true });
      x = residual;
    }
    g.checkpoint(`layer${s + 1}`, x);
  });
  return g.build(g.node("global_mean_pool", "pool", { inputs: [x], output: "embedding" }));
}

/** One-line summary, as output files record it. */
export function resnetArchitectureSummary(arch: ResnetArchitecture): string {
  return `ResNet layers ${
    arch.layers.join("/")
  } width_per_group ${arch.widthPerGroup} stem ${arch.stemChannels}`;
}

/** Options a ResNet model reads. */
export interface ResnetModelOptions {
  /** The preset: only `imagenet`. */
  readonly preset?: string;
  /** The Pillow resize side R before the crop (default round(S * 8 / 7)). */
  readonly resize?: number;
}

/**
 * The ResNet model for opened weights.
 *
 * @throws {WeightsError} For a missing, misshapen or unexpected tensor.
 * @throws {TypeError} For a preset other than `imagenet`.
 */
export function resnetModel(source: TensorSource, options: ResnetModelOptions = {}): ModelDefinition {
  if (options.preset !== undefined && options.preset !== IMAGENET_PRESET) {
    throw new TypeError(`Cannot use preset "${options.preset}" with a ResNet: expected "${IMAGENET_PRESET}"`);
  }
  const { architecture, tensors } = adaptResnetWeights(source);
  const parameters = [...tensors.values()].reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
  return {
    family: "resnet",
    preset: IMAGENET_PRESET,
    defaultSize: 224,
    embeddingSize: resnetLayer(architecture, 3).out,
    parameters,
    architecture: resnetArchitectureSummary(architecture),
    weights: resnetRecipes(architecture, tensors),
    checkSize(size) {
      if (!Number.isInteger(size) || size < 32 || size > 4096) {
        throw new RangeError(`Cannot run a ResNet at size ${size}: expected an integer from 32 to 4096`);
      }
      imagenetPreprocessing(size, options.resize);
    },
    preprocessing: (size) => imagenetPreprocessing(size, options.resize),
    graph: (size, batch) => resnetGraph(architecture, { size, batch }),
  };
}

/**
 * Procedural weights of a ResNet (testdata/groeger/README.md's rule over torchvision names), as a
 * torchvision state dict saved to safetensors would hold them (`num_batches_tracked` int64 zeros included).
 */
export function resnetProceduralSource(arch: ResnetArchitecture, seed: string): TensorSource {
  const tensors: ProceduralTensor[] = resnetTensorShapes(arch).map(({ name, shape }) => ({
    name,
    shape,
    rule: groegerValueRule(name, shape),
  }));
  return proceduralSource(tensors, seed, { preset: IMAGENET_PRESET, family: "resnet" });
}

/** What a ResNet file holds: architecture, naming, the tensors read and what it ignores. */
export function resnetInventory(source: TensorSource): WeightsInventory {
  const { architecture: arch, tensors, ignored } = adaptResnetWeights(source);
  const depth = 3 * arch.layers.reduce((a, b) => a + b, 0) + 2;
  const name = arch.widthPerGroup === 64
    ? `ResNet-${depth}`
    : `ResNet-${depth} (width_per_group ${arch.widthPerGroup})`;
  const simclr = [...source.tensors.keys()].some((n) => n.startsWith("model.0."));
  return {
    family: "resnet",
    architecture: {
      name,
      summary: resnetArchitectureSummary(arch),
      depth,
      layers: [...arch.layers],
      widthPerGroup: arch.widthPerGroup,
      stemChannels: arch.stemChannels,
    },
    naming: simclr ? "simclr" : "torchvision",
    preset: IMAGENET_PRESET,
    presetFrom: "family",
    embeddingSize: resnetLayer(arch, 3).out,
    tensors,
    ignored: ignored.map((n) => ({
      name: n,
      reason: n.endsWith("num_batches_tracked") ? "training state" : "classifier head",
    })),
    lines: [
      `torchvision ${name}: stem 7x7/2 conv -> ${arch.stemChannels}, BatchNorm folded at load`,
      ...arch.layers.map((blocks, s) => {
        const l = resnetLayer(arch, s);
        return `  layer ${s + 1}     ${
          String(blocks).padStart(2)
        } blocks, ${l.out} channels (width ${l.width}, stride ${l.stride})`;
      }),
    ],
  };
}
