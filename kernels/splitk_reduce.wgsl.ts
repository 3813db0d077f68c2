/**
 * WGSL of `splitk_reduce`, the second step of a split-K GEMM (see `splitk_reduce.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import { ERF_WGSL } from "./erf.wgsl.ts";

/** The reduction with the GEMM epilogue, one output vec4 per invocation. */
export const splitkReduceWgsl: string = /* wgsl */ `
// splitk_reduce: y[m,n] = act(sum_s part[s,m,n] + bias[n]) (+ y[m,n] if accumulate) (+ res[m,n] if residual),
//   then ReLU if relu; act = GELU (erf) if gelu else identity (the epilogues of conv2d and linear)
// part: f32 [S,M,N] · bias: f32 [N] · res: f32 [M,N] · y: f32 [M,N]; N % 4 == 0
// bindings: 0 part r · 1 bias r (read only when has_bias) · 2 res r (read only when residual) · 3 y rw (read
//   first when accumulate) · 4 uniforms {count4,n4,splits,plane4,has_bias,gelu,accumulate,residual,relu,
//   _pad0,_pad1,_pad2: u32}
// overrides: WG (workgroup size) · dispatch: ceil(M*N/4 / WG) workgroups folded over x,y; one vec4 per
//   invocation, tail guarded
// numerics: f32; the S partials summed in split order (each already a sum over K/S terms)
struct Uniforms {
  count4: u32, n4: u32, splits: u32, plane4: u32,
  has_bias: u32, gelu: u32, accumulate: u32, residual: u32,
  relu: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> part: array<vec4f>;
@group(0) @binding(1) var<storage, read> bias: array<vec4f>;
@group(0) @binding(2) var<storage, read> res: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4f>;
@group(0) @binding(4) var<uniform> u: Uniforms;
${ERF_WGSL}
@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= u.count4) { return; }
  var r = part[i];
  for (var s = 1u; s < u.splits; s++) { r += part[s * u.plane4 + i]; }
  if (u.has_bias != 0u) { r += bias[i % u.n4]; }
  if (u.gelu != 0u) { r = vec4f(gelu_erf(r.x), gelu_erf(r.y), gelu_erf(r.z), gelu_erf(r.w)); }
  if (u.accumulate != 0u) { r += y[i]; }
  if (u.residual != 0u) { r += res[i]; }
  if (u.relu != 0u) { r = max(r, vec4f(0.0)); }
  y[i] = r;
}
`;
