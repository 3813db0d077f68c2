/**
 * Float64 reference of token_gather. This module is browser compatible.
 * @module
 */
import type { TokenGatherShape } from "./token_gather.ts";

/**
 * Copies x[n, token, :] into y[n, slot, :] for every image, leaving the other slots of y as they are.
 *
 * @param x [N, T, D].
 * @param y [N, slots, D], updated in place and returned.
 * @param shape Images, tokens, width, the token and the slot.
 * @returns y.
 * @example
 * ```ts
 * // N 1, T 2, D 1: token 1 into slot 0 of 2
 * tokenGatherRef(new Float64Array([7, 8]), new Float64Array([0, 9]),
 *   { n: 1, tokens: 2, d: 1, token: 1, slots: 2, slot: 0 }); // [8, 9]
 * ```
 */
export function tokenGatherRef(x: Float64Array, y: Float64Array, shape: TokenGatherShape): Float64Array {
  const { n, tokens, d, token, slots, slot } = shape;
  for (let img = 0; img < n; img++) {
    for (let i = 0; i < d; i++) y[(img * slots + slot) * d + i] = x[(img * tokens + token) * d + i];
  }
  return y;
}
