/**
 * WGSL of layer_norm; `layer_norm.ts` is the wrapper that launches it. Generated per storage flavour
 * (`kernels/_precision.ts`); the statistics are f32 in every flavour.
 *
 * This module is browser compatible.
 * @module
 */
import { FLAVOURS, storageNote, type StorageTypes, wgslEnable, wgslStorage } from "./_precision.ts";

/**
 * One workgroup per row: two-level sums (strided per thread, then a tree) for the mean and the variance.
 *
 * @param name Variant name for the header.
 * @param t Storage types: x (input), gamma and beta (weights), y (output).
 */
export function layerNormWgsl(name: string, t: StorageTypes): string {
  const X = wgslStorage(t.input), W = wgslStorage(t.weights), Y = wgslStorage(t.output);
  return /* wgsl */ `
// ${name}: for each row r of x (a token), over its D features:
//   mean = sum(x[r,:]) / D, var = sum((x[r,:] - mean)^2) / D (biased; two passes, never E[x^2] - E[x]^2)
//   y[r,i] = (x[r,i] - mean) * (1 / sqrt(var + eps)) * gamma[i] + beta[i]
// x: ${X.scalar}, y: ${Y.scalar} [R,D] (R = N*T rows) · gamma, beta: ${W.scalar} [D]
// bindings: 0 x r · 1 gamma r · 2 beta r · 3 y rw · 4 uniforms {rows,d: u32; eps: f32}
// overrides: WG (workgroup size, a power of two) · dispatch: R workgroups folded over x,y; row = wid.y *
//   nwg.x + wid.x, workgroups past R return (a workgroup-uniform test, so the barriers stay valid)
// numerics: f32${storageNote(t.input, t.weights, t.output)}; each thread sums features lid, lid + WG, ...
//   (at most ceil(D / WG) terms), then a tree over the WG partials in workgroup memory; the deviations are
//   summed only after the mean is known
${wgslEnable(t.input, t.weights, t.output)}
override WG: u32 = 64u;

struct Uniforms {
  rows: u32,
  d: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<${X.scalar}>;
@group(0) @binding(1) var<storage, read> gamma: array<${W.scalar}>;
@group(0) @binding(2) var<storage, read> beta: array<${W.scalar}>;
@group(0) @binding(3) var<storage, read_write> y: array<${Y.scalar}>;
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
    s += ${X.load("x[base + i]")};
  }
  let mean = workgroup_sum(lid, s) / f32(u.d);
  var m2 = 0.0;
  for (var i = lid; i < u.d; i += WG) {
    let dev = ${X.load("x[base + i]")} - mean;
    m2 = fma(dev, dev, m2);
  }
  let rstd = 1.0 / sqrt(workgroup_sum(lid, m2) / f32(u.d) + u.eps);
  for (var i = lid; i < u.d; i += WG) {
    y[base + i] = ${
    Y.store(`fma((${X.load("x[base + i]")} - mean) * rstd, ${W.load("gamma[i]")}, ${W.load("beta[i]")})`)
  };
  }
}
`;
}

/** The f32 flavour's source. */
export const LAYER_NORM_WGSL: string = layerNormWgsl("layer_norm", FLAVOURS.f32);
