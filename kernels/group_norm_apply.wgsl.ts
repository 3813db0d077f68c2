/**
 * WGSL of the group_norm_apply variants. This module is browser compatible.
 * @module
 */

/** vec4 variant: one thread per 4 consecutive channels and PIX consecutive pixels, C % 4 == 0. */
export const GROUP_NORM_APPLY_VEC4_WGSL = /* wgsl */ `
// group_norm_apply_vec4: y = (x - mean[n,g]) * rstd[n,g] * gamma[c] + beta[c], then ReLU when relu != 0
// x, y: f32 NHWC [N,H*W,C], C % 4 == 0, C % G == 0 · stats: f32 [N,G,2] (mean, rstd) · gamma, beta: f32 [C]
// bindings: 0 x r · 1 stats r · 2 gamma r · 3 beta r · 4 y rw · 5 uniforms {n,hw,c,groups,relu: u32}
// overrides: WG (workgroup size), PIX (pixels per thread) · dispatch: ceil(N*ceil(H*W/PIX)*C/4 / WG)
//   workgroups folded over x and y, tail guarded; thread t = ((n*ceil(HW/PIX) + chunk)*C/4 + q) loads the
//   statistics, gamma and beta of channels 4q..4q+3 once, then walks PIX pixels (consecutive threads on
//   consecutive vec4s); a vec4 may span groups (C/G of 1 or 2), so each component looks its group up
// numerics: f32, (x - mean) * (rstd * gamma) + beta

override WG: u32 = 256u;
override PIX: u32 = 16u;

struct Uniforms {
  n: u32,
  hw: u32,
  c: u32,
  groups: u32,
  relu: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4f>;
@group(0) @binding(1) var<storage, read> stats: array<vec2f>;
@group(0) @binding(2) var<storage, read> gamma: array<vec4f>;
@group(0) @binding(3) var<storage, read> beta: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4f>;
@group(0) @binding(5) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = (wid.y * nwg.x + wid.x) * WG + lid;
  let c4 = u.c / 4u;
  let chunks = (u.hw + PIX - 1u) / PIX;
  if (t >= u.n * chunks * c4) {
    return;
  }
  let q = t % c4;
  let nk = t / c4; // image * chunks + chunk
  let img = nk / chunks;
  let p0 = (nk % chunks) * PIX;
  let first = img * u.groups; // stats index of (image, group 0)
  let g = (vec4u(4u * q) + vec4u(0u, 1u, 2u, 3u)) / (u.c / u.groups);
  let s0 = stats[first + g.x];
  let s1 = stats[first + g.y];
  let s2 = stats[first + g.z];
  let s3 = stats[first + g.w];
  let mean = vec4f(s0.x, s1.x, s2.x, s3.x);
  let scale = vec4f(s0.y, s1.y, s2.y, s3.y) * gamma[q];
  let shift = beta[q];
  let end = min(p0 + PIX, u.hw);
  for (var i = (img * u.hw + p0) * c4 + q; i < (img * u.hw + end) * c4; i += c4) {
    var v = (x[i] - mean) * scale + shift;
    if (u.relu != 0u) {
      v = max(v, vec4f(0.0));
    }
    y[i] = v;
  }
}
`;

/** Scalar variant: one thread per element, any C. */
export const GROUP_NORM_APPLY_SCALAR_WGSL = /* wgsl */ `
// group_norm_apply_scalar: y = (x - mean[n,g]) * rstd[n,g] * gamma[c] + beta[c], then ReLU when relu != 0
// x, y: f32 NHWC [N,H*W,C], C % G == 0 · stats: f32 [N,G,2] (mean, rstd) · gamma, beta: f32 [C]
// bindings: 0 x r · 1 stats r · 2 gamma r · 3 beta r · 4 y rw · 5 uniforms {n,hw,c,groups,relu: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*H*W*C / WG) workgroups folded over x and y, tail guarded
// numerics: f32, (x - mean) * (rstd * gamma) + beta

override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  hw: u32,
  c: u32,
  groups: u32,
  relu: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<vec2f>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= u.n * u.hw * u.c) {
    return;
  }
  let ch = i % u.c;
  let s = stats[(i / (u.hw * u.c)) * u.groups + ch / (u.c / u.groups)];
  var v = (x[i] - s.x) * (s.y * gamma[ch]) + beta[ch];
  if (u.relu != 0u) {
    v = max(v, 0.0);
  }
  y[i] = v;
}
`;
