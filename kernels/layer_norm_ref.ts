/**
 * Float64 reference of layer_norm. This module is browser compatible.
 * @module
 */
import type { LayerNormShape } from "./layer_norm.ts";

/**
 * LayerNorm over the last dimension: per row, mean, biased variance (two passes), normalise, scale, shift.
 *
 * @param x Input, [R, D] row-major.
 * @param gamma Scale [D].
 * @param beta Shift [D].
 * @param shape Rows, features and eps.
 * @returns y, [R, D].
 * @example
 * ```ts
 * // one row [1, 3]: mean 2, var 1, eps 0 -> [-1, 1]
 * layerNormRef(new Float64Array([1, 3]), new Float64Array([1, 1]), new Float64Array([0, 0]),
 *   { rows: 1, d: 2, eps: 0 });
 * ```
 */
export function layerNormRef(
  x: Float64Array,
  gamma: Float64Array,
  beta: Float64Array,
  shape: LayerNormShape,
): Float64Array {
  const { rows, d, eps } = shape;
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = 0; i < d; i++) sum += x[r * d + i];
    const mean = sum / d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += (x[r * d + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i] - mean) * rstd * gamma[i] + beta[i];
  }
  return y;
}
