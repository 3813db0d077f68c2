/**
 * Float64 reference of vit_tokens. This module is browser compatible.
 * @module
 */
import type { VitTokensShape } from "./vit_tokens.ts";

/**
 * Tokens [CLS; patches] plus the position embedding.
 *
 * @param patches [N, gh*gw, D] (NHWC [N, gh, gw, D] read row-major).
 * @param cls [D].
 * @param pos [1 + gh*gw, D].
 * @param shape Images, patches per image, width.
 * @returns [N, 1 + gh*gw, D].
 * @example
 * ```ts
 * // N 1, one patch, D 1: [cls + pos0, patch + pos1]
 * vitTokensRef(new Float64Array([5]), new Float64Array([1]), new Float64Array([10, 20]),
 *   { n: 1, patches: 1, d: 1 }); // [11, 25]
 * ```
 */
export function vitTokensRef(
  patches: Float64Array,
  cls: Float64Array,
  pos: Float64Array,
  shape: VitTokensShape,
): Float64Array {
  const { n, patches: p, d } = shape;
  const t = p + 1;
  const y = new Float64Array(n * t * d);
  for (let img = 0; img < n; img++) {
    for (let i = 0; i < d; i++) y[img * t * d + i] = cls[i] + pos[i];
    for (let k = 0; k < p; k++) {
      for (let i = 0; i < d; i++) {
        y[(img * t + 1 + k) * d + i] = patches[(img * p + k) * d + i] + pos[(1 + k) * d + i];
      }
    }
  }
  return y;
}
