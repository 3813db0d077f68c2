/**
 * Float64 reference of the 2-D convolution: the specification the conv2d kernels are tested against.
 *
 * This module is browser compatible.
 * @module
 */
import type { Conv2dShape } from "./conv2d.ts";

/**
 * y = act(conv2d(x, w) (+ bias) (+ residual)), zero padding `pad` on all four sides, plain loops in float64;
 * act = ReLU when `shape.relu`.
 *
 * @param x Input, NHWC [N, H, W, Cin].
 * @param w Weights, HWIO [KH, KW, Cin, Cout].
 * @param shape The convolution; `accumulate` and `bias` are not read here: pass `residual` / `bias`.
 * @param residual Optional NHWC [N, OH, OW, Cout] added to the result (what `accumulate` does on the GPU).
 * @param bias Optional [Cout] added to every output pixel before the residual.
 * @returns y, NHWC [N, OH, OW, Cout] with OH = floor((H + 2*pad - KH) / stride) + 1 (same for OW).
 * @example
 * ```ts
 * const shape = { n: 1, h: 1, w: 1, cin: 1, cout: 1, kh: 1, kw: 1, stride: 1, pad: 0, accumulate: false };
 * conv2dRef(new Float64Array([2]), new Float64Array([3]), shape); // Float64Array [6]
 * ```
 */
export function conv2dRef(
  x: Float64Array,
  w: Float64Array,
  shape: Conv2dShape,
  residual?: Float64Array,
  bias?: Float64Array,
): Float64Array {
  const { n, h, w: wd, cin, cout, kh, kw, stride, pad } = shape;
  const oh = Math.floor((h + 2 * pad - kh) / stride) + 1;
  const ow = Math.floor((wd + 2 * pad - kw) / stride) + 1;
  if (x.length !== n * h * wd * cin) {
    throw new TypeError(`Cannot run conv2dRef: expected x of ${n * h * wd * cin} values, got ${x.length}`);
  }
  if (w.length !== kh * kw * cin * cout) {
    throw new TypeError(
      `Cannot run conv2dRef: expected w of ${kh * kw * cin * cout} values, got ${w.length}`,
    );
  }
  const y = new Float64Array(n * oh * ow * cout);
  if (residual !== undefined) {
    if (residual.length !== y.length) {
      throw new TypeError(
        `Cannot run conv2dRef: expected residual of ${y.length} values, got ${residual.length}`,
      );
    }
    y.set(residual);
  }
  const acc = new Float64Array(cout);
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        acc.fill(0);
        for (let ky = 0; ky < kh; ky++) {
          const iy = oy * stride - pad + ky; // input row read by this tap
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ix = ox * stride - pad + kx;
            if (ix < 0 || ix >= wd) continue;
            const xBase = ((b * h + iy) * wd + ix) * cin; // x[b, iy, ix, :]
            const wBase = (ky * kw + kx) * cin * cout; // w[ky, kx, :, :]
            for (let ci = 0; ci < cin; ci++) {
              const xv = x[xBase + ci];
              const wRow = wBase + ci * cout; // w[ky, kx, ci, :]
              for (let co = 0; co < cout; co++) acc[co] += xv * w[wRow + co];
            }
          }
        }
        const yBase = ((b * oh + oy) * ow + ox) * cout; // y[b, oy, ox, :]
        for (let co = 0; co < cout; co++) {
          const v = acc[co] + (bias ? bias[co] : 0) + y[yBase + co];
          y[yBase + co] = shape.relu ? Math.max(v, 0) : v;
        }
      }
    }
  }
  return y;
}
