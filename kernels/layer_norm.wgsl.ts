/**
 * WGSL of layer_norm; `layer_norm.ts` is the wrapper that launches it.
 *
 * This module is browser compatible.
 * @module
 */

/** One workgroup per row: two-level sums (strided per thread, then a tree) for the mean and the variance. */
export const LAYER_NORM_WGSL = /* wgsl */ `
// layer_norm: for each row r of x (a token), over its D features:
//   mean = sum(x[r,:]) / D, var = sum((x[r,:] - mean)^2) / D (biased; two passes, never E[x^2] - E[x]^2)
//   y[r,i] = (x[r,i] - mean) * (1 / sqrt(var + eps)) * gamma[i] + beta[i]
// x, y: f32 [R,D] (R = N*T rows) · gamma, beta: f32 [D]
// bindings: 0 x r · 1 gamma r · 2 beta r · 3 y rw · 4 uniforms {rows,d: u32; eps: f32}
// overrides: WG (workgroup size, a power of two) · dispatch: R workgroups folded over x,y; row = wid.y *
//   nwg.x + wid.x, workgroups past R return (a workgroup-uniform test, so the barriers stay valid)
// numerics: f32; each thread sums features lid, lid + WG, ... (at most ceil(D / WG) terms), then a tree over
//   the WG partials in workgroup memory; the deviations are summed only after the mean is known

override WG: u32 = 64u;

struct Uniforms {
  rows: u32,
  d: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> u: Uniforms;

var<workgroup> partial: array<f32, WG>;

// Sum of v over the workgroup; call from workgroup-uniform control flow.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier(); // partial is reused by the next call
  return total;
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= u.rows) {
    return; // workgroup-uniform
  }
  let base = row * u.d;
  var s = 0.0;
  for (var i = lid; i < u.d; i += WG) {
    s += x[base + i];
  }
  let mean = workgroup_sum(lid, s) / f32(u.d);
  var m2 = 0.0;
  for (var i = lid; i < u.d; i += WG) {
    let dev = x[base + i] - mean;
    m2 = fma(dev, dev, m2);
  }
  let rstd = 1.0 / sqrt(workgroup_sum(lid, m2) / f32(u.d) + u.eps);
  for (var i = lid; i < u.d; i += WG) {
    y[base + i] = fma((x[base + i] - mean) * rstd, gamma[i], beta[i]);
  }
}
`;
