/**
 * WGSL of vit_tokens; `vit_tokens.ts` is the wrapper that launches it.
 *
 * This module is browser compatible.
 * @module
 */

/** One thread per output element. */
export const VIT_TOKENS_WGSL = /* wgsl */ `
// vit_tokens: y[n,0,:] = cls[:] + pos[0,:]; y[n,1+p,:] = patches[n,p,:] + pos[1+p,:] (p = gy*gw + gx)
// patches: f32 NHWC [N,gh,gw,D] (the patch-embedding conv's output) · cls: f32 [D] · pos: f32 [T,D] ·
//   y: f32 [N,T,D], T = 1 + gh*gw
// bindings: 0 patches r · 1 cls r · 2 pos r · 3 y rw · 4 uniforms {n,tokens,d,total: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*T*D / WG) workgroups folded over x,y; one thread per
//   element of y, consecutive threads on consecutive features; tail guarded
// numerics: one f32 add per element

override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  tokens: u32,
  d: u32,
  total: u32,
}

@group(0) @binding(0) var<storage, read> patches: array<f32>;
@group(0) @binding(1) var<storage, read> cls: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.y * nwg.x + wid.x) * WG + lid;
  if (idx >= u.total) {
    return;
  }
  let i = idx % u.d;
  let nt = idx / u.d;
  let t = nt % u.tokens;
  let img = nt / u.tokens;
  var v: f32;
  if (t == 0u) {
    v = cls[i];
  } else {
    v = patches[(img * (u.tokens - 1u) + t - 1u) * u.d + i];
  }
  y[idx] = v + pos[t * u.d + i];
}
`;
