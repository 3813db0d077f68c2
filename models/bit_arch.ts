/**
 * BiT ResNetV2 architectures (pre-activation bottlenecks, GroupNorm, weight-standardised convs) as data,
 * and the list of their tensors in timm names and shapes.
 *
 * This module is browser compatible.
 * @module
 */

/** One stage of bottleneck units. */
export interface BitStage {
  /** Number of units (blocks). */
  readonly units: number;
  /** Output channels of every unit. */
  readonly channels: number;
  /** Bottleneck width (conv1 out, conv2, conv3 in): `channels / 4` in BiT. */
  readonly midChannels: number;
  /** Stride of the first unit's 3x3 conv (and its 1x1 projection): 1 for stage 0, 2 after. */
  readonly stride: number;
}

/** A BiT ResNetV2 feature extractor: a 7x7/2 stem conv (3 -> stemChannels), max-pool, stages, final norm. */
export interface BitArchitecture {
  /** Output channels of the stem conv. */
  readonly stemChannels: number;
  /** The stages, input to output. */
  readonly stages: readonly BitStage[];
}

/** A tensor of a BiT model: timm name, timm shape (OIHW for convs, [C] for norms). */
export interface BitTensorShape {
  /** timm name, e.g. `stages.2.blocks.0.conv2.weight`. */
  readonly name: string;
  /** timm shape. */
  readonly shape: number[];
}

function positiveInteger(x: unknown): boolean {
  return typeof x === "number" && Number.isSafeInteger(x) && x > 0;
}

/**
 * Builds a BiT architecture.
 *
 * @param layers Units per stage (R101: [3, 4, 23, 3]).
 * @param channels Output channels per stage, each a multiple of 4 (width 3: [768, 1536, 3072, 6144]).
 * @param stemChannels Stem conv output channels (64 times the width multiplier).
 * @returns The architecture (stride 1 for stage 0, 2 after; mid = channels / 4).
 * @throws {TypeError} when the lists differ in length, are empty, or hold non-positive or non-integer values,
 * or a channel count is not a multiple of 4.
 *
 * @example
 * ```ts
 * const r50x1 = bitArchitecture([3, 4, 6, 3], [256, 512, 1024, 2048], 64);
 * ```
 */
export function bitArchitecture(
  layers: readonly number[],
  channels: readonly number[],
  stemChannels: number,
): BitArchitecture {
  if (layers.length === 0 || layers.length !== channels.length) {
    throw new TypeError(
      `Cannot build a BiT architecture: expected as many stages in layers as in channels, got ${layers.length} and ${channels.length}`,
    );
  }
  if (!layers.every(positiveInteger) || !channels.every(positiveInteger) || !positiveInteger(stemChannels)) {
    throw new TypeError(
      `Cannot build a BiT architecture: expected positive integers, got layers [${layers}], channels [${channels}], stem ${stemChannels}`,
    );
  }
  if (!channels.every((c) => c % 4 === 0)) {
    throw new TypeError(
      `Cannot build a BiT architecture: expected channels that are multiples of 4, got [${channels}]`,
    );
  }
  return {
    stemChannels,
    stages: layers.map((units, s) => ({
      units,
      channels: channels[s],
      midChannels: channels[s] / 4,
      stride: s === 0 ? 1 : 2,
    })),
  };
}

/** BiT-M R101x3, the Derm Foundation backbone: 304 tensors, 381,789,888 parameters. */
export const BIT_R101X3: BitArchitecture = bitArchitecture([3, 4, 23, 3], [768, 1536, 3072, 6144], 192);

/** BiT R50x1: 25.5 M parameters (feature extractor). */
export const BIT_R50X1: BitArchitecture = bitArchitecture([3, 4, 6, 3], [256, 512, 1024, 2048], 64);

/**
 * Lists every tensor of `arch` in timm names and shapes, in canonical order: `stem.conv.weight`; per stage
 * and block `downsample.conv.weight` (block 0), `norm1.{weight,bias}`, `conv1.weight`, `norm2.*`,
 * `conv2.weight`, `norm3.*`, `conv3.weight`; then `norm.weight`, `norm.bias`.
 *
 * @param arch The architecture.
 * @returns Names and shapes (convs OIHW, norms [C]).
 *
 * @example
 * ```ts
 * bitTensorShapes(BIT_R101X3).length; // 304
 * ```
 */
export function bitTensorShapes(arch: BitArchitecture): BitTensorShape[] {
  const out: BitTensorShape[] = [{ name: "stem.conv.weight", shape: [arch.stemChannels, 3, 7, 7] }];
  let inChannels = arch.stemChannels;
  arch.stages.forEach((stage, s) => {
    const { channels, midChannels: mid } = stage;
    for (let b = 0; b < stage.units; b++) {
      const p = `stages.${s}.blocks.${b}.`;
      const cin = b === 0 ? inChannels : channels;
      if (b === 0) out.push({ name: `${p}downsample.conv.weight`, shape: [channels, cin, 1, 1] });
      out.push(
        { name: `${p}norm1.weight`, shape: [cin] },
        { name: `${p}norm1.bias`, shape: [cin] },
        { name: `${p}conv1.weight`, shape: [mid, cin, 1, 1] },
        { name: `${p}norm2.weight`, shape: [mid] },
        { name: `${p}norm2.bias`, shape: [mid] },
        { name: `${p}conv2.weight`, shape: [mid, mid, 3, 3] },
        { name: `${p}norm3.weight`, shape: [mid] },
        { name: `${p}norm3.bias`, shape: [mid] },
        { name: `${p}conv3.weight`, shape: [channels, mid, 1, 1] },
      );
    }
    inChannels = channels;
  });
  out.push({ name: "norm.weight", shape: [inChannels] }, { name: "norm.bias", shape: [inChannels] });
  return out;
}

/**
 * Total parameters of `arch` (sum of its tensor sizes).
 *
 * @param arch The architecture.
 * @returns The count (R101x3: 381,789,888).
 */
export function bitParameterCount(arch: BitArchitecture): number {
  return bitTensorShapes(arch).reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
}
