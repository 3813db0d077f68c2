/**
 * Float64 references of group_norm_stats and of its first step. This module is browser compatible.
 * @module
 */
import { GROUP_NORM_DEFAULT_ROWS, type GroupNormStatsShape } from "./group_norm_stats.ts";

/**
 * GroupNorm statistics: for each image n and group g, over the H*W*(C/G) elements of channels
 * [g*C/G, (g+1)*C/G), mean and `1 / sqrt(var + eps)` with the biased variance, two passes in float64.
 *
 * @param x f32 values of NHWC [N, H*W, C].
 * @param shape Activation shape, groups and eps.
 * @returns [N, G, 2]: (mean, rstd) per group.
 * @example
 * ```ts
 * groupNormStatsRef(new Float64Array([1, 3]), { n: 1, hw: 2, c: 1, groups: 1, eps: 0 }); // [2, 1]
 * ```
 */
export function groupNormStatsRef(x: Float64Array, shape: GroupNormStatsShape): Float64Array {
  const { n, hw, c, groups, eps } = shape;
  const cpg = c / groups;
  const out = new Float64Array(n * groups * 2);
  for (let img = 0; img < n; img++) {
    for (let g = 0; g < groups; g++) {
      let sum = 0;
      for (let p = 0; p < hw; p++) for (let k = 0; k < cpg; k++) sum += x[(img * hw + p) * c + g * cpg + k];
      const mean = sum / (hw * cpg);
      let ss = 0;
      for (let p = 0; p < hw; p++) {
        for (let k = 0; k < cpg; k++) ss += (x[(img * hw + p) * c + g * cpg + k] - mean) ** 2;
      }
      out[(img * groups + g) * 2] = mean;
      out[(img * groups + g) * 2 + 1] = 1 / Math.sqrt(ss / (hw * cpg) + eps);
    }
  }
  return out;
}

/**
 * Step 1 of group_norm_stats: for each image, chunk k of `rows` pixels and channel, the mean and M2
 * (sum of squared deviations from that mean) over the chunk's pixels.
 *
 * @param x f32 values of NHWC [N, H*W, C].
 * @param shape Activation shape (`rows` default {@linkcode GROUP_NORM_DEFAULT_ROWS}).
 * @returns [N, ceil(HW / rows), C, 2]: (mean, M2).
 */
export function groupNormPartialsRef(x: Float64Array, shape: GroupNormStatsShape): Float64Array {
  const { n, hw, c } = shape;
  const rows = shape.rows ?? GROUP_NORM_DEFAULT_ROWS;
  const chunks = Math.ceil(hw / rows);
  const out = new Float64Array(n * chunks * c * 2);
  for (let img = 0; img < n; img++) {
    for (let k = 0; k < chunks; k++) {
      const p1 = Math.min(hw, (k + 1) * rows);
      for (let ch = 0; ch < c; ch++) {
        let sum = 0;
        for (let p = k * rows; p < p1; p++) sum += x[(img * hw + p) * c + ch];
        const mean = sum / (p1 - k * rows);
        let m2 = 0;
        for (let p = k * rows; p < p1; p++) m2 += (x[(img * hw + p) * c + ch] - mean) ** 2;
        out[((img * chunks + k) * c + ch) * 2] = mean;
        out[((img * chunks + k) * c + ch) * 2 + 1] = m2;
      }
    }
  }
  return out;
}
