/**
 * Float64 reference of `splitk_reduce`: the specification its kernel is tested against.
 *
 * This module is browser compatible.
 * @module
 */
import { geluRef } from "./erf_ref.ts";
import type { SplitkReduceShape } from "./splitk_reduce.ts";

/**
 * y[m,n] = act(sum_s part[s,m,n] + bias[n]) (+ yIn[m,n]) (+ res[m,n]), then ReLU; plain loops in float64.
 *
 * @param part Partials, [S, M, N].
 * @param bias [N] (read when `shape.bias`).
 * @param res [M, N] (read when `shape.residual`).
 * @param yIn y before the step, [M, N] (read when `shape.accumulate`).
 * @param shape Sizes and epilogue.
 * @returns y, [M, N].
 * @example
 * ```ts
 * const shape = { rows: 1, cols: 1, splits: 2, bias: false, gelu: false, accumulate: false, residual: false, relu: false };
 * splitkReduceRef(new Float64Array([1, 2]), undefined, undefined, undefined, shape); // [3]
 * ```
 */
export function splitkReduceRef(
  part: Float64Array,
  bias: Float64Array | undefined,
  res: Float64Array | undefined,
  yIn: Float64Array | undefined,
  shape: SplitkReduceShape,
): Float64Array {
  const { rows, cols, splits } = shape;
  const plane = rows * cols;
  const y = new Float64Array(plane);
  for (let m = 0; m < rows; m++) {
    for (let n = 0; n < cols; n++) {
      const i = m * cols + n;
      let r = 0;
      for (let s = 0; s < splits; s++) r += part[s * plane + i]; // part[s, m, n]
      if (shape.bias) r += bias![n];
      if (shape.gelu) r = geluRef(r);
      if (shape.accumulate) r += yIn![i];
      if (shape.residual) r += res![i];
      if (shape.relu) r = Math.max(r, 0);
      y[i] = r;
    }
  }
  return y;
}
