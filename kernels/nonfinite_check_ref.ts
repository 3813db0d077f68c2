/**
 * Reference of nonfinite_check. This module is browser compatible.
 * @module
 */
import type { NonfiniteCheckShape } from "./nonfinite_check.ts";

/**
 * 1 for each image holding a NaN or an infinity, else 0.
 *
 * @param x [N * perImage].
 * @param shape Images and elements per image.
 * @returns [N] flags.
 * @example
 * ```ts
 * nonfiniteCheckRef(new Float64Array([1, NaN, 2, 3]), { n: 2, perImage: 2 }); // [1, 0]
 * ```
 */
export function nonfiniteCheckRef(x: Float64Array, shape: NonfiniteCheckShape): Float64Array {
  const flags = new Float64Array(shape.n);
  for (let img = 0; img < shape.n; img++) {
    for (let i = 0; i < shape.perImage; i++) {
      if (!Number.isFinite(x[img * shape.perImage + i])) flags[img] = 1;
    }
  }
  return flags;
}
