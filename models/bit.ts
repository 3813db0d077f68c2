/**
 * BiT ResNetV2 (Derm Foundation is BiT-M R101x3) as data: a flat list of nodes, readable top to bottom
 * like the forward pass it describes. No GPU calls here; `models/bit_plan.ts` compiles it.
 *
 * Every activation is f32 NHWC [N, H, W, C]. Weight names are timm's (`stages.2.blocks.7.conv2.weight`),
 * whatever the file's naming; convolution weights are standardised HWIO on the GPU.
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
import type { BitArchitecture } from "./bit_arch.ts";

/** The two numeric presets of testdata/FIXTURES_README.md. */
export type BitPreset = "derm" | "bit";

/** Numbers that differ between the presets. */
export interface PresetNumerics {
  /** Pixel scaling: x * scale + offset. */
  readonly pixelScale: number;
  /** Pixel scaling offset. */
  readonly pixelOffset: number;
  /** Padding value of the stem max-pool. */
  readonly stemPoolPadding: "-inf" | "zero";
  /** eps of weight standardisation. */
  readonly weightStandardizationEps: number;
}

/** The presets' numerics: `derm` = Google's Derm Foundation graph, `bit` = timm / big_transfer. */
export const PRESETS: Readonly<Record<BitPreset, PresetNumerics>> = {
  // Derm Foundation's graph multiplies by float32(1/255) before resizing.
  derm: {
    pixelScale: Math.fround(1 / 255),
    pixelOffset: 0,
    stemPoolPadding: "-inf",
    weightStandardizationEps: 1e-10,
  },
  bit: { pixelScale: 1 / 127.5, pixelOffset: -1, stemPoolPadding: "zero", weightStandardizationEps: 1e-8 },
};

/** GroupNorm groups and eps in every BiT model. */
export const GROUP_NORM_GROUPS = 32;
/** GroupNorm eps (biased variance, added before the square root). */
export const GROUP_NORM_EPS = 1e-5;
/** Channels of the model input tensor: RGB plus a zero channel, so the stem reads vec4. */
export const INPUT_CHANNELS = 4;

/** A convolution over NHWC activations with a standardised HWIO weight. */
export interface ConvNode {
  readonly op: "conv2d";
  readonly name: string;
  readonly input: string;
  readonly output: string;
  readonly weight: string;
  readonly kernel: number;
  readonly stride: number;
  readonly pad: number;
  /** Add into `output` (the residual stream) instead of overwriting it. */
  readonly accumulate: boolean;
}

/** GroupNorm with affine parameters, optionally followed by ReLU. */
export interface GroupNormNode {
  readonly op: "group_norm";
  readonly name: string;
  readonly input: string;
  readonly output: string;
  readonly gamma: string;
  readonly beta: string;
  readonly relu: boolean;
}

/** The stem max-pool. */
export interface MaxPoolNode {
  readonly op: "max_pool";
  readonly name: string;
  readonly input: string;
  readonly output: string;
  readonly kernel: number;
  readonly stride: number;
  readonly pad: number;
  readonly padValue: "-inf" | "zero";
}

/** Mean over H and W. */
export interface MeanPoolNode {
  readonly op: "global_mean_pool";
  readonly name: string;
  readonly input: string;
  readonly output: string;
}

/** One node of the graph. */
export type BitNode = ConvNode | GroupNormNode | MaxPoolNode | MeanPoolNode;

/** The whole network for one input size and batch. */
export interface BitGraph {
  /** Shapes of all activations: NHWC, or [N, C] for the embedding. */
  readonly tensors: ReadonlyMap<string, readonly number[]>;
  /** Nodes in execution order. */
  readonly nodes: readonly BitNode[];
  /** The model input, f32 NHWC [N, S, S, 4]. */
  readonly input: string;
  /** The embedding, f32 [N, C]. */
  readonly output: string;
  /** Tensors the fixtures hold references for: stem, stage1..stage4, final_norm. */
  readonly checkpoints: Readonly<Record<string, string>>;
}

function convOut(size: number, kernel: number, stride: number, pad: number): number {
  return Math.floor((size + 2 * pad - kernel) / stride) + 1;
}

/**
 * Builds the graph of a BiT model for `size` x `size` inputs and `batch` images.
 *
 * @param arch Units and widths (from the weights).
 * @param options Preset, input size and batch.
 * @returns Nodes and tensor shapes.
 */
export function bitGraph(
  arch: BitArchitecture,
  options: { preset: BitPreset; size: number; batch: number },
): BitGraph {
  const { size, batch: n } = options;
  if (!Number.isInteger(size) || size < 32) {
    throw new RangeError(`Cannot build BiT graph: expected size >= 32, got ${size}`);
  }
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`Cannot build BiT graph: expected batch >= 1, got ${n}`);
  }
  const tensors = new Map<string, number[]>();
  const nodes: BitNode[] = [];
  const shape = (name: string) => tensors.get(name)!;
  const declare = (name: string, h: number, w: number, c: number) => {
    tensors.set(name, [n, h, w, c]);
    return name;
  };
  const conv = (
    name: string,
    input: string,
    output: string,
    weight: string,
    cout: number,
    kernel: number,
    stride: number,
    accumulate = false,
  ) => {
    const [, h, w] = shape(input);
    const pad = Math.floor(kernel / 2);
    if (!accumulate) declare(output, convOut(h, kernel, stride, pad), convOut(w, kernel, stride, pad), cout);
    nodes.push({ op: "conv2d", name, input, output, weight, kernel, stride, pad, accumulate });
    return output;
  };
  const norm = (name: string, input: string, output: string, param: string) => {
    const [, h, w, c] = shape(input);
    declare(output, h, w, c);
    nodes.push({
      op: "group_norm",
      name,
      input,
      output,
      gamma: `${param}.weight`,
      beta: `${param}.bias`,
      relu: true,
    });
    return output;
  };

  const input = declare("input", size, size, INPUT_CHANNELS);
  conv("stem.conv", input, "stem.conv", "stem.conv.weight", arch.stemChannels, 7, 2);
  const [, ch, cw, cc] = shape("stem.conv");
  const stem = declare("stem", convOut(ch, 3, 2, 1), convOut(cw, 3, 2, 1), cc);
  nodes.push({
    op: "max_pool",
    name: "stem.pool",
    input: "stem.conv",
    output: stem,
    kernel: 3,
    stride: 2,
    pad: 1,
    padValue: PRESETS[options.preset].stemPoolPadding,
  });

  let x = stem;
  const checkpoints: Record<string, string> = { stem };
  arch.stages.forEach((stage, s) => {
    const residual = `stage${s + 1}.residual`;
    for (let b = 0; b < stage.units; b++) {
      const unit = `stage${s + 1}.unit${String(b + 1).padStart(2, "0")}`;
      const timm = `stages.${s}.blocks.${b}`;
      const stride = b === 0 ? stage.stride : 1;
      const preact = norm(`${unit}.gn1`, x, `${unit}.preact`, `${timm}.norm1`);
      if (b === 0) {
        conv(
          `${unit}.conv_proj`,
          preact,
          residual,
          `${timm}.downsample.conv.weight`,
          stage.channels,
          1,
          stride,
        );
      }
      const a = conv(
        `${unit}.conv1`,
        preact,
        `${unit}.conv1`,
        `${timm}.conv1.weight`,
        stage.midChannels,
        1,
        1,
      );
      const a2 = norm(`${unit}.gn2`, a, `${unit}.gn2`, `${timm}.norm2`);
      const bb = conv(
        `${unit}.conv2`,
        a2,
        `${unit}.conv2`,
        `${timm}.conv2.weight`,
        stage.midChannels,
        3,
        stride,
      );
      const b2 = norm(`${unit}.gn3`, bb, `${unit}.gn3`, `${timm}.norm3`);
      conv(`${unit}.conv3`, b2, residual, `${timm}.conv3.weight`, stage.channels, 1, 1, true);
      x = residual;
    }
    checkpoints[`stage${s + 1}`] = residual;
  });
  const finalNorm = norm("final_norm", x, "final_norm", "norm");
  checkpoints.final_norm = finalNorm;
  const [, , , c] = shape(finalNorm);
  tensors.set("embedding", [n, c]);
  nodes.push({ op: "global_mean_pool", name: "pool", input: finalNorm, output: "embedding" });
  return { tensors, nodes, input, output: "embedding", checkpoints };
}

/** Multiply-accumulates of one image through the graph's convolutions (for GFLOP/s figures). */
export function bitMacsPerImage(graph: BitGraph): number {
  let macs = 0;
  for (const node of graph.nodes) {
    if (node.op !== "conv2d") continue;
    const [, oh, ow, cout] = graph.tensors.get(node.output)!;
    // The stem's fourth input channel is zero padding: count the three real ones.
    const cin = node.input === graph.input ? 3 : graph.tensors.get(node.input)![3];
    macs += oh * ow * cout * node.kernel * node.kernel * cin;
  }
  return macs;
}
