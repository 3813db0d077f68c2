/**
 * Float64 reference of max_pool. This module is browser compatible.
 * @module
 */
import { maxPoolOutput, type MaxPoolShape } from "./max_pool.ts";

/**
 * k x k max-pool, NHWC: taps outside the image are skipped (padValue "-inf") or count as 0 ("zero").
 *
 * @param x NHWC [N, H, W, C].
 * @param shape The pool's shape.
 * @returns NHWC [N, OH, OW, C].
 * @example
 * ```ts
 * // 1x2 image [-1, -2], 3x3 window, stride 2, pad 1: one output.
 * maxPoolRef(new Float64Array([-1, -2]), { n: 1, h: 1, w: 2, c: 1, k: 3, stride: 2, pad: 1, padValue: "-inf" });
 * // [-1]; with padValue "zero": [0]
 * ```
 */
export function maxPoolRef(x: Float64Array, shape: MaxPoolShape): Float64Array {
  const { n, h, w, c, k, stride, pad, padValue } = shape;
  const [oh, ow] = maxPoolOutput(shape);
  const y = new Float64Array(n * oh * ow * c);
  for (let img = 0; img < n; img++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let ch = 0; ch < c; ch++) {
          let m = -Infinity;
          for (let ky = 0; ky < k; ky++) {
            for (let kx = 0; kx < k; kx++) {
              const iy = oy * stride - pad + ky;
              const ix = ox * stride - pad + kx;
              const inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
              if (inside) m = Math.max(m, x[((img * h + iy) * w + ix) * c + ch]);
              else if (padValue === "zero") m = Math.max(m, 0);
            }
          }
          y[((img * oh + oy) * ow + ox) * c + ch] = m;
        }
      }
    }
  }
  return y;
}
