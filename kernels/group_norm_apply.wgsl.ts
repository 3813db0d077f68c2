/**
 * WGSL of the group_norm_apply variants, each generated for a storage flavour (`kernels/_precision.ts`):
 * x (input), gamma and beta (weights), y (output) f32 or f16; the statistics f32 always.
 *
 * This module is browser compatible.
 * @module
 */
import { FLAVOURS, storageNote, type StorageTypes, wgslEnable, wgslStorage } from "./_precision.ts";

/**
 * vec4 variant: one thread per 4 consecutive channels and PIX consecutive pixels, C % 4 == 0.
 *
 * @param name Variant name for the header.
 * @param t Storage types.
 */
export function groupNormApplyVec4Wgsl(name: string, t: StorageTypes): string {
  const X = wgslStorage(t.input), W = wgslStorage(t.weights), Y = wgslStorage(t.output);
  return /* wgsl */ `
// ${name}: y = (x - mean[n,g]) * rstd[n,g] * gamma[c] + beta[c], then ReLU when relu != 0
// x: ${X.scalar}, y: ${Y.scalar} NHWC [N,H*W,C], C % 4 == 0, C % G == 0 · stats: f32 [N,G,2] (mean, rstd) ·
//   gamma, beta: ${W.scalar} [C]
// bindings: 0 x r · 1 stats r · 2 gamma r · 3 beta r · 4 y rw · 5 uniforms {n,hw,c,groups,relu: u32}
// overrides: WG (workgroup size), PIX (pixels per thread) · dispatch: ceil(N*ceil(H*W/PIX)*C/4 / WG)
//   workgroups folded over x and y, tail guarded; thread t = ((n*ceil(HW/PIX) + chunk)*C/4 + q) loads the
//   statistics, gamma and beta of channels 4q..4q+3 once, then walks PIX pixels (consecutive threads on
//   consecutive vec4s); a vec4 may span groups (C/G of 1 or 2), so each component looks its group up
// numerics: f32${storageNote(t.input, t.weights, t.output)}, (x - mean) * (rstd * gamma) + beta
${wgslEnable(t.input, t.weights, t.output)}
override WG: u32 = 256u;
override PIX: u32 = 16u;

struct Uniforms {
  n: u32,
  hw: u32,
  c: u32,
  groups: u32,
  relu: u32,
}

@group(0) @binding(0) var<storage, read> x: array<${X.vec4}>;
@group(0) @binding(1) var<storage, read> stats: array<vec2f>;
@group(0) @binding(2) var<storage, read> gamma: array<${W.vec4}>;
@group(0) @binding(3) var<storage, read> beta: array<${W.vec4}>;
@group(0) @binding(4) var<storage, read_write> y: array<${Y.vec4}>;
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
  let scale = vec4f(s0.y, s1.y, s2.y, s3.y) * ${W.load("gamma[q]", 4)};
  let shift = ${W.load("beta[q]", 4)};
  let end = min(p0 + PIX, u.hw);
  for (var i = (img * u.hw + p0) * c4 + q; i < (img * u.hw + end) * c4; i += c4) {
    var v = (${X.load("x[i]", 4)} - mean) * scale + shift;
    if (u.relu != 0u) {
      v = max(v, vec4f(0.0));
    }
    y[i] = ${Y.store("v", 4)};
  }
}
`;
}

/** The f32 vec4 variant's source. */
export const GROUP_NORM_APPLY_VEC4_WGSL: string = groupNormApplyVec4Wgsl(
  "group_norm_apply_vec4",
  FLAVOURS.f32,
);

/**
 * Scalar variant: one thread per element, any C.
 *
 * @param name Variant name for the header.
 * @param t Storage types.
 */
export function groupNormApplyScalarWgsl(name: string, t: StorageTypes): string {
  const X = wgslStorage(t.input), W = wgslStorage(t.weights), Y = wgslStorage(t.output);
  return /* wgsl */ `
// ${name}: y = (x - mean[n,g]) * rstd[n,g] * gamma[c] + beta[c], then ReLU when relu != 0
// x: ${X.scalar}, y: ${Y.scalar} NHWC [N,H*W,C], C % G == 0 · stats: f32 [N,G,2] (mean, rstd) ·
//   gamma, beta: ${W.scalar} [C]
// bindings: 0 x r · 1 stats r · 2 gamma r · 3 beta r · 4 y rw · 5 uniforms {n,hw,c,groups,relu: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*H*W*C / WG) workgroups folded over x and y, tail guarded
// numerics: f32${storageNote(t.input, t.weights, t.output)}, (x - mean) * (rstd * gamma) + beta
${wgslEnable(t.input, t.weights, t.output)}
override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  hw: u32,
  c: u32,
  groups: u32,
  relu: u32,
}

@group(0) @binding(0) var<storage, read> x: array<${X.scalar}>;
@group(0) @binding(1) var<storage, read> stats: array<vec2f>;
@group(0) @binding(2) var<storage, read> gamma: array<${W.scalar}>;
@group(0) @binding(3) var<storage, read> beta: array<${W.scalar}>;
@group(0) @binding(4) var<storage, read_write> y: array<${Y.scalar}>;
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
  var v = (${X.load("x[i]")} - s.x) * (s.y * ${W.load("gamma[ch]")}) + ${W.load("beta[ch]")};
  if (u.relu != 0u) {
    v = max(v, 0.0);
  }
  y[i] = ${Y.store("v")};
}
`;
}

/** The f32 scalar variant's source. */
export const GROUP_NORM_APPLY_SCALAR_WGSL: string = groupNormApplyScalarWgsl(
  "group_norm_apply_scalar",
  FLAVOURS.f32,
);
