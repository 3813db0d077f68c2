/**
 * WGSL of the two steps of group_norm_stats: per-chunk partials, then the per-group merge. The partials step
 * is generated per storage dtype of x (`kernels/_precision.ts`); partials and statistics are f32 always.
 *
 * This module is browser compatible.
 * @module
 */
import type { Dtype } from "../engine/precision.ts";
import { storageNote, wgslEnable, wgslStorage } from "./_precision.ts";

/**
 * Step 1: mean and M2 of each channel over a chunk of `rows` consecutive pixels.
 *
 * @param name Variant name for the header.
 * @param dtype Storage dtype of x.
 */
export function groupNormPartialsWgsl(name: string, dtype: Dtype): string {
  const X = wgslStorage(dtype);
  return /* wgsl */ `
// ${name}: for each (n, chunk k, channel c), over pixels p in [k*rows, min((k+1)*rows, HW)):
//   mean = sum(x) / count, m2 = sum((x - mean)^2)
// x: ${X.scalar} NHWC [N,H*W,C] · partials: f32 [N,chunks,C,2] (mean, m2); chunks = ceil(HW / rows)
// bindings: 0 x r · 1 partials rw · 2 uniforms {n,hw,c,rows,chunks: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*chunks*C / WG) workgroups folded over x and y, one
//   thread per (n, k, c), consecutive threads on consecutive channels; tail guarded
// numerics: f32${storageNote(dtype)}, two passes over the chunk (the second re-reads from cache)
${wgslEnable(dtype)}
override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  hw: u32,
  c: u32,
  rows: u32,
  chunks: u32,
}

@group(0) @binding(0) var<storage, read> x: array<${X.scalar}>;
@group(0) @binding(1) var<storage, read_write> partials: array<vec2f>;
@group(0) @binding(2) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = (wid.y * nwg.x + wid.x) * WG + lid;
  if (t >= u.n * u.chunks * u.c) {
    return;
  }
  let ch = t % u.c;
  let nk = t / u.c; // n * chunks + k
  let k = nk % u.chunks;
  let img = nk / u.chunks;
  let p0 = k * u.rows;
  let count = min(u.rows, u.hw - p0);
  let base = (img * u.hw + p0) * u.c + ch;
  var s = 0.0;
  for (var p = 0u; p < count; p++) {
    s += ${X.load("x[base + p * u.c]")};
  }
  let mean = s / f32(count);
  var m2 = 0.0;
  for (var p = 0u; p < count; p++) {
    let d = ${X.load("x[base + p * u.c]")} - mean;
    m2 += d * d;
  }
  partials[t] = vec2f(mean, m2);
}
`;
}

/** Step 1 for f32 x. */
export const GROUP_NORM_PARTIALS_WGSL: string = groupNormPartialsWgsl("group_norm_partials", "f32");

/** Step 2: merges the partials of each (n, g) into mean and 1/sqrt(var + eps). */
export const GROUP_NORM_STATS_WGSL = /* wgsl */ `
// group_norm_stats: for each (n, g), over the items (chunk k, channel c in [g*C/G, (g+1)*C/G)) of partials:
//   mean = sum(count_k * mean_k) / (HW*C/G)
//   var  = sum(m2_k + count_k * (mean_k - mean)^2) / (HW*C/G)   (exact merge of the chunks, biased)
//   stats[n,g] = (mean, 1 / sqrt(var + eps))
// partials: f32 [N,chunks,C,2] (mean, m2) from group_norm_partials · stats: f32 [N,G,2]
// bindings: 0 partials r · 1 stats rw · 2 uniforms {n,hw,c,groups,rows,chunks: u32; eps: f32}
// overrides: WG (workgroup size, a power of two) · dispatch: N*G workgroups folded over x and y
// numerics: f32; two passes (mean, then squared deviations of the chunk means), strided per-thread sums
//   then tree reductions in workgroup memory

override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  hw: u32,
  c: u32,
  groups: u32,
  rows: u32,
  chunks: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> partials: array<vec2f>;
@group(0) @binding(1) var<storage, read_write> stats: array<vec2f>;
@group(0) @binding(2) var<uniform> u: Uniforms;

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
  let ng = wid.y * nwg.x + wid.x; // n * groups + g
  if (ng >= u.n * u.groups) {
    return; // workgroup-uniform
  }
  let cpg = u.c / u.groups;
  let g = ng % u.groups;
  let img = ng / u.groups;
  let items = u.chunks * cpg;
  let first = img * u.chunks * u.c + g * cpg; // partials index of (img, chunk 0, channel g*cpg)
  var s = 0.0;
  for (var j = lid; j < items; j += WG) {
    let k = j / cpg;
    let count = f32(min(u.rows, u.hw - k * u.rows));
    s += count * partials[first + k * u.c + j % cpg].x;
  }
  let total = f32(u.hw * cpg);
  let mean = workgroup_sum(lid, s) / total;
  var m2 = 0.0;
  for (var j = lid; j < items; j += WG) {
    let k = j / cpg;
    let count = f32(min(u.rows, u.hw - k * u.rows));
    let part = partials[first + k * u.c + j % cpg];
    let d = part.x - mean;
    m2 += part.y + count * d * d;
  }
  let variance = workgroup_sum(lid, m2) / total;
  if (lid == 0u) {
    stats[ng] = vec2f(mean, 1.0 / sqrt(variance + u.eps));
  }
}
`;
