/**
 * Float64 reference of group_norm_apply. This module is browser compatible.
 * @module
 */
import type { GroupNormApplyShape } from "./group_norm_apply.ts";

/**
 * `y = (x - mean[n,g]) * rstd[n,g] * gamma[c] + beta[c]`, then ReLU when `shape.relu`.
 *
 * @param x NHWC [N, H*W, C].
 * @param stats [N, G, 2]: (mean, rstd).
 * @param gamma [C].
 * @param beta [C].
 * @param shape Activation shape, groups and ReLU flag.
 * @returns NHWC [N, H*W, C].
 * @example
 * ```ts
 * groupNormApplyRef(new Float64Array([1, 3]), new Float64Array([2, 1]), new Float64Array([2]),
 *   new Float64Array([0.5]), { n: 1, hw: 2, c: 1, groups: 1, relu: true }); // [0, 2.5]
 * ```
 */
export function groupNormApplyRef(
  x: Float64Array,
  stats: Float64Array,
  gamma: Float64Array,
  beta: Float64Array,
  shape: GroupNormApplyShape,
): Float64Array {
  const { n, hw, c, groups, relu } = shape;
  const cpg = c / groups;
  const y = new Float64Array(n * hw * c);
  for (let img = 0; img < n; img++) {
    for (let p = 0; p < hw; p++) {
      for (let ch = 0; ch < c; ch++) {
        const i = (img * hw + p) * c + ch;
        const s = (img * groups + Math.floor(ch / cpg)) * 2; // stats[img, g]
        const v = (x[i] - stats[s]) * stats[s + 1] * gamma[ch] + beta[ch];
        y[i] = relu ? Math.max(v, 0) : v;
      }
    }
  }
  return y;
}
