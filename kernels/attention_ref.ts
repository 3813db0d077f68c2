/**
 * Float64 reference of the fused multi-head self-attention. This module is browser compatible.
 * @module
 */
import type { AttentionShape } from "./attention.ts";

/**
 * Scaled dot-product attention per image and head, softmax over keys with the maximum subtracted.
 *
 * @param qkv [N, T, 3D]: q = columns [0, D), k = [D, 2D), v = [2D, 3D); head h = columns h*hd..(h+1)*hd.
 * @param shape Images, tokens, heads and head dimension (D = heads * hd).
 * @returns out [N, T, D], heads concatenated.
 * @example
 * ```ts
 * // one token: the softmax is 1, so out = v
 * attentionRef(new Float64Array([1, 2, 3]), { n: 1, tokens: 1, heads: 1, headDim: 1 }); // [3]
 * ```
 */
export function attentionRef(qkv: Float64Array, shape: AttentionShape): Float64Array {
  const { n, tokens: t, heads, headDim: hd } = shape;
  const d = heads * hd;
  const out = new Float64Array(n * t * d);
  const scale = 1 / Math.sqrt(hd);
  const p = new Float64Array(t);
  for (let img = 0; img < n; img++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < t; i++) {
        const q = (img * t + i) * 3 * d + h * hd; // q[img, i, head h]
        let max = -Infinity;
        for (let j = 0; j < t; j++) {
          const k = (img * t + j) * 3 * d + d + h * hd; // k[img, j, head h]
          let s = 0;
          for (let c = 0; c < hd; c++) s += qkv[q + c] * qkv[k + c];
          p[j] = s * scale;
          max = Math.max(max, p[j]);
        }
        let sum = 0;
        for (let j = 0; j < t; j++) {
          p[j] = Math.exp(p[j] - max);
          sum += p[j];
        }
        for (let c = 0; c < hd; c++) {
          let acc = 0;
          for (let j = 0; j < t; j++) acc += p[j] * qkv[(img * t + j) * 3 * d + 2 * d + h * hd + c]; // v
          out[(img * t + i) * d + h * hd + c] = acc / sum;
        }
      }
    }
  }
  return out;
}
