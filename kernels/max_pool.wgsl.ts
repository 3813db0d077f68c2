/**
 * WGSL of {@linkcode maxPoolSpec}, generated per storage dtype (`kernels/_precision.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import type { Dtype } from "../engine/precision.ts";
import { wgslEnable, wgslStorage } from "./_precision.ts";

/**
 * k x k max-pool with stride and symmetric padding, padding value -inf or 0.
 *
 * @param name Variant name for the header.
 * @param dtype Storage dtype of x and y.
 */
export function maxPoolWgsl(name: string, dtype: Dtype): string {
  const X = wgslStorage(dtype);
  return /* wgsl */ `
// ${name}: y[n,oy,ox,c] = max over ky,kx < K of x[n, oy*S - P + ky, ox*S - P + kx, c], where a tap outside
//   the image is skipped (pad_zero 0: padding is -inf, PyTorch MaxPool2d) or counts as 0 (pad_zero 1:
//   zero-pad then VALID pool); OH = floor((H + 2P - K) / S) + 1, likewise OW
// x: ${X.scalar} NHWC [N,H,W,C] · y: ${X.scalar} NHWC [N,OH,OW,C]
// bindings: 0 x r · 1 y rw · 2 uniforms {n,h,w,c,k,stride,pad,oh,ow,pad_zero: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*OH*OW*C / WG) workgroups folded over x and y, one thread
//   per output element, consecutive threads on consecutive channels; tail guarded
// numerics: exact (max of ${X.scalar} values, compared in f32)
${wgslEnable(dtype)}
override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  h: u32,
  w: u32,
  c: u32,
  k: u32,
  stride: u32,
  pad: u32,
  oh: u32,
  ow: u32,
  pad_zero: u32,
}

@group(0) @binding(0) var<storage, read> x: array<${X.scalar}>;
@group(0) @binding(1) var<storage, read_write> y: array<${X.scalar}>;
@group(0) @binding(2) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= u.n * u.oh * u.ow * u.c) {
    return;
  }
  let ch = i % u.c;
  let pix = i / u.c; // (n*OH + oy)*OW + ox
  let ox = pix % u.ow;
  let oy = (pix / u.ow) % u.oh;
  let img = pix / (u.ow * u.oh);
  let y0 = i32(oy * u.stride) - i32(u.pad);
  let x0 = i32(ox * u.stride) - i32(u.pad);
  var m = 0.0;
  var seen = false; // with -inf padding, the max of the in-image taps only
  for (var ky = 0; ky < i32(u.k); ky++) {
    let iy = y0 + ky;
    for (var kx = 0; kx < i32(u.k); kx++) {
      let ix = x0 + kx;
      var v = 0.0;
      if (iy >= 0 && iy < i32(u.h) && ix >= 0 && ix < i32(u.w)) {
        v = ${X.load("x[((img * u.h + u32(iy)) * u.w + u32(ix)) * u.c + ch]")};
      } else if (u.pad_zero == 0u) {
        continue;
      }
      m = select(max(m, v), v, !seen);
      seen = true;
    }
  }
  y[i] = ${X.store("m")};
}
`;
}

/** The f32 flavour's source. */
export const MAX_POOL_WGSL: string = maxPoolWgsl("max_pool", "f32");
