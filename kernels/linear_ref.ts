/**
 * Float64 reference of the linear layer: the specification the linear kernels are tested against.
 *
 * This module is browser compatible.
 * @module
 */
import type { LinearShape } from "./linear.ts";
import { geluRef } from "./erf_ref.ts";

/**
 * y = act(x w + b) (+ residual), plain loops in float64.
 *
 * @param x Input, [M, Din] row-major.
 * @param w Weights, [Din, Dout] row-major (Dout contiguous).
 * @param b Bias [Dout], or undefined for none (`shape.bias` is not read here).
 * @param shape Rows, features and activation; `accumulate` is not read here: pass `residual` to add one.
 * @param residual Optional [M, Dout] added after the activation (what `accumulate` does on the GPU).
 * @returns y, [M, Dout].
 * @example
 * ```ts
 * const shape = { rows: 1, din: 2, dout: 1, bias: true, activation: "none", accumulate: false } as const;
 * linearRef(new Float64Array([1, 2]), new Float64Array([3, 4]), new Float64Array([5]), shape); // [16]
 * ```
 */
export function linearRef(
  x: Float64Array,
  w: Float64Array,
  b: Float64Array | undefined,
  shape: LinearShape,
  residual?: Float64Array,
): Float64Array {
  const { rows, din, dout, activation } = shape;
  const y = new Float64Array(rows * dout);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < dout; o++) {
      let sum = b ? b[o] : 0;
      for (let i = 0; i < din; i++) sum += x[r * din + i] * w[i * dout + o]; // x[r, i] * w[i, o]
      if (activation === "gelu") sum = geluRef(sum);
      y[r * dout + o] = sum + (residual ? residual[r * dout + o] : 0);
    }
  }
  return y;
}
