/**
 * Layout conversions between our tensors (NHWC activations, HWIO kernels) and the peers' (ONNX Runtime's
 * NCHW and OIHW), on the CPU.
 * @module
 */

/** NHWC → NCHW. */
export function nhwcToNchw(
  x: Float32Array,
  n: number,
  h: number,
  w: number,
  c: number,
): Float32Array<ArrayBuffer> {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < h * w; p++) {
      for (let ch = 0; ch < c; ch++) out[(b * c + ch) * h * w + p] = x[(b * h * w + p) * c + ch];
    }
  }
  return out;
}

/** NCHW → NHWC. */
export function nchwToNhwc(
  x: Float32Array,
  n: number,
  h: number,
  w: number,
  c: number,
): Float32Array<ArrayBuffer> {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < h * w; p++) {
      for (let ch = 0; ch < c; ch++) out[(b * h * w + p) * c + ch] = x[(b * c + ch) * h * w + p];
    }
  }
  return out;
}

/** HWIO [KH, KW, I, O] → OIHW [O, I, KH, KW]. */
export function hwioToOihw(
  w: Float32Array,
  kh: number,
  kw: number,
  cin: number,
  cout: number,
): Float32Array<ArrayBuffer> {
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      for (let i = 0; i < cin; i++) {
        for (let o = 0; o < cout; o++) {
          out[((o * cin + i) * kh + y) * kw + x] = w[((y * kw + x) * cin + i) * cout + o];
        }
      }
    }
  }
  return out;
}

/** A graph tensor's data in a peer's layout: rank 4 NHWC → NCHW, other ranks unchanged. */
export function toNchw(x: Float32Array, shape: readonly number[]): Float32Array<ArrayBuffer> {
  if (shape.length !== 4) return Float32Array.from(x);
  const [n, h, w, c] = shape;
  return nhwcToNchw(x, n, h, w, c);
}

/** A peer's output back in our layout: rank 4 NCHW → NHWC (`shape` is ours, NHWC), others unchanged. */
export function fromNchw(x: Float32Array, shape: readonly number[]): Float32Array<ArrayBuffer> {
  if (shape.length !== 4) return Float32Array.from(x);
  const [n, h, w, c] = shape;
  return nchwToNhwc(x, n, h, w, c);
}

/** A graph shape in the peer's layout: [N, H, W, C] → [N, C, H, W]; other ranks unchanged. */
export function nchwDims(shape: readonly number[]): number[] {
  if (shape.length !== 4) return [...shape];
  const [n, h, w, c] = shape;
  return [n, c, h, w];
}
