/**
 * Float64 reference of weight_standardize. This module is browser compatible.
 * @module
 */
import type { WeightStandardizeShape } from "./weight_standardize.ts";

/**
 * Standardises a convolution kernel per output channel: `(w - mean) / sqrt(var + eps)`, mean and biased
 * variance over the KH*KW*Cin fan-in, two passes in float64.
 *
 * @param w The kernel's values in `shape.layout`: OIHW [Cout,Cin,KH,KW] or HWIO [KH,KW,Cin,Cout]
 *   (already decoded from `shape.dtype`, which is not read here).
 * @param shape Dimensions, layout, `cinPadded` and `eps`.
 * @returns Float64 HWIO [KH,KW,CinPadded,Cout], input channels >= Cin set to 0.
 * @example
 * ```ts
 * weightStandardizeRef(new Float64Array([1, 3]), {
 *   cout: 1, cin: 2, kh: 1, kw: 1, cinPadded: 2, dtype: "F32", layout: "OIHW", eps: 0,
 * }); // Float64Array [-1, 1]
 * ```
 */
export function weightStandardizeRef(w: Float64Array, shape: WeightStandardizeShape): Float64Array {
  const { cout, cin, kh, kw, cinPadded, layout, eps } = shape;
  const at = (o: number, i: number, y: number, x: number) =>
    layout === "HWIO" ? w[((y * kw + x) * cin + i) * cout + o] : w[((o * cin + i) * kh + y) * kw + x];
  const fanIn = kh * kw * cin;
  const out = new Float64Array(kh * kw * cinPadded * cout); // HWIO [KH,KW,CinPadded,Cout], zeros
  for (let o = 0; o < cout; o++) {
    let sum = 0;
    for (let y = 0; y < kh; y++) {
      for (let x = 0; x < kw; x++) for (let i = 0; i < cin; i++) sum += at(o, i, y, x);
    }
    const mean = sum / fanIn;
    let ss = 0;
    for (let y = 0; y < kh; y++) {
      for (let x = 0; x < kw; x++) for (let i = 0; i < cin; i++) ss += (at(o, i, y, x) - mean) ** 2;
    }
    const denom = Math.sqrt(ss / fanIn + eps);
    for (let y = 0; y < kh; y++) {
      for (let x = 0; x < kw; x++) {
        for (let i = 0; i < cin; i++) {
          out[((y * kw + x) * cinPadded + i) * cout + o] = (at(o, i, y, x) - mean) / denom;
        }
      }
    }
  }
  return out;
}
