/**
 * Float64 reference of global_mean_pool. This module is browser compatible.
 * @module
 */
import type { GlobalMeanPoolShape } from "./global_mean_pool.ts";

/**
 * Mean over the H*W pixels of each image and channel.
 *
 * @param x NHWC [N, H*W, C].
 * @param shape Activation shape.
 * @returns [N, C].
 * @example
 * ```ts
 * globalMeanPoolRef(new Float64Array([1, 10, 3, 20]), { n: 1, hw: 2, c: 2 }); // [2, 15]
 * ```
 */
export function globalMeanPoolRef(x: Float64Array, shape: GlobalMeanPoolShape): Float64Array {
  const { n, hw, c } = shape;
  const y = new Float64Array(n * c);
  for (let img = 0; img < n; img++) {
    for (let ch = 0; ch < c; ch++) {
      let sum = 0;
      for (let p = 0; p < hw; p++) sum += x[(img * hw + p) * c + ch];
      y[img * c + ch] = sum / hw;
    }
  }
  return y;
}
