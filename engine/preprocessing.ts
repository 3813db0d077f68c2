/**
 * Preprocessing as data: how decoded pixels become the model input, described by each model family and
 * carried out by the input stage (`engine/input_stage.ts`). Kernels know no preset names; they read the
 * sizes, scales and offsets given here.
 *
 * Two resize kinds:
 * - `bilinear`: TensorFlow's `ResizeBilinear(half_pixel_centers=True)` straight to S x S (aspect ratio
 *   not kept, no antialias), on the GPU, each tap scaled before interpolating (Derm Foundation's order).
 * - `pillow-bilinear`: Pillow's `Image.resize((R, R), BILINEAR)` (antialiasing convolution resample in
 *   8-bit fixed point), exact to the byte, on the CPU (`engine/pillow_resize.ts`), then a centre crop to
 *   S x S; the scaling is applied after, on the GPU.
 *
 * This module is browser compatible.
 * @module
 */

/** A scale or offset for R, G and B. */
export type ChannelTriple = readonly [number, number, number];

/** How images become the model input of side S. */
export interface Preprocessing {
  /** The resize kind (see the module doc). */
  readonly resize: "bilinear" | "pillow-bilinear";
  /** The model input side S. */
  readonly size: number;
  /** `pillow-bilinear` only: the side R the image is resized to before the centre crop to S. */
  readonly resizeTo?: number;
  /** Per-channel scale: input = pixel * scale + offset (pixel in 0..255). */
  readonly scale: ChannelTriple;
  /** Per-channel offset. */
  readonly offset: ChannelTriple;
}

/** ImageNet's mean and standard deviation, as torchvision's `Normalize` uses them. */
export const IMAGENET_MEAN: ChannelTriple = [0.485, 0.456, 0.406];
/** ImageNet's per-channel standard deviation. */
export const IMAGENET_STD: ChannelTriple = [0.229, 0.224, 0.225];

/**
 * The scale and offset of `(pixel / 255 - mean) / std`: pixel * 1 / (255 std) - mean / std.
 *
 * @param mean Per-channel mean of [0, 1] pixels.
 * @param std Per-channel standard deviation.
 * @returns Scale and offset.
 */
export function normalizeScaling(
  mean: ChannelTriple,
  std: ChannelTriple,
): { scale: ChannelTriple; offset: ChannelTriple } {
  return {
    scale: [1 / (255 * std[0]), 1 / (255 * std[1]), 1 / (255 * std[2])],
    offset: [-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]],
  };
}

/** Checks a preprocessing description, throwing a RangeError naming what is wrong. */
export function checkPreprocessing(p: Preprocessing): void {
  if (!Number.isInteger(p.size) || p.size < 1 || p.size > 16384) {
    throw new RangeError(`Cannot preprocess: expected an input size from 1 to 16384, got ${p.size}`);
  }
  if (p.resize === "pillow-bilinear") {
    const r = p.resizeTo;
    if (r === undefined || !Number.isInteger(r) || r < p.size || r > 16384) {
      throw new RangeError(
        `Cannot preprocess: expected a resize side from ${p.size} (the crop) up, got ${r}`,
      );
    }
  } else if (p.resize !== "bilinear") {
    throw new RangeError(`Cannot preprocess: unknown resize "${p.resize}"`);
  }
  for (const v of [...p.scale, ...p.offset]) {
    if (!Number.isFinite(v)) {
      throw new RangeError(`Cannot preprocess: scale and offset must be finite, got ${v}`);
    }
  }
}
