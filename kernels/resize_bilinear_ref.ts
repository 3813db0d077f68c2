/**
 * Float64 reference of `resize_bilinear`: the specification the GPU kernel is tested against.
 *
 * scaled = p * scale[c] + offset[c], then bilinear resize to S x S with half-pixel centres:
 * in = (o + 0.5) * H / S - 0.5; taps floor(in) and ceil(in) clamped to [0, H-1]; weight in - floor(in).
 * (= TF `ResizeBilinear(half_pixel_centers=True)` = PyTorch `interpolate(bilinear, align_corners=False,
 * antialias=False)`: where TF and PyTorch clamp differently, both taps are the same pixel.)
 *
 * This module is browser compatible.
 * @module
 */
import type { ResizeBilinearShape } from "./resize_bilinear.ts";

/**
 * Resizes one image.
 *
 * @param pixels u32 [H, W] RGBA8, R in the low byte (as `packPixels` makes them).
 * @param shape Source size, output size S and scaling (`n` and `batch` are not used: one image out).
 * @returns f64 NHWC [1, S, S, 4] with channel 3 = 0.
 */
export function resizeBilinearRef(
  pixels: Uint32Array,
  shape: Pick<ResizeBilinearShape, "srcWidth" | "srcHeight" | "size" | "scale" | "offset">,
): Float64Array {
  const { srcWidth: W, srcHeight: H, size: S } = shape;
  const sample = (y: number, x: number, c: number) =>
    ((pixels[y * W + x] >>> (8 * c)) & 0xff) * shape.scale[c] + shape.offset[c];
  const taps = (o: number, len: number) => {
    const pos = (o + 0.5) * len / S - 0.5;
    const fl = Math.floor(pos);
    return { lo: Math.max(fl, 0), hi: Math.min(Math.ceil(pos), len - 1), lerp: pos - fl };
  };
  const out = new Float64Array(S * S * 4); // [1, S, S, 4]
  for (let oy = 0; oy < S; oy++) {
    const ty = taps(oy, H);
    for (let ox = 0; ox < S; ox++) {
      const tx = taps(ox, W);
      for (let c = 0; c < 3; c++) {
        const top = sample(ty.lo, tx.lo, c) + (sample(ty.lo, tx.hi, c) - sample(ty.lo, tx.lo, c)) * tx.lerp;
        const bottom = sample(ty.hi, tx.lo, c) +
          (sample(ty.hi, tx.hi, c) - sample(ty.hi, tx.lo, c)) * tx.lerp;
        out[(oy * S + ox) * 4 + c] = top + (bottom - top) * ty.lerp;
      }
    }
  }
  return out;
}
