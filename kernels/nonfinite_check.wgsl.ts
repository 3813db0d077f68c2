/**
 * WGSL of {@linkcode nonfiniteCheckSpec}. This module is browser compatible.
 * @module
 */

/** Flags each image holding a NaN or an infinity. */
export const NONFINITE_CHECK_WGSL = /* wgsl */ `
// nonfinite_check: flags[n] = 1 when any x[n*per_image .. (n+1)*per_image) is NaN or +-Inf (else untouched)
// x: f32 [N*per_image], read as raw bits (WGSL has no isnan; all-ones exponent = NaN or Inf) · flags: u32 [N],
//   zeroed by the caller
// bindings: 0 x r · 1 flags rw · 2 uniforms {n,per_image: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*per_image / WG) workgroups folded over x and y, one thread
//   per element; tail guarded
// numerics: exact (bit test)

override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  per_image: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> u: Uniforms;

const EXPONENT = 0x7f800000u;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= u.n * u.per_image) {
    return;
  }
  if ((x[i] & EXPONENT) == EXPONENT) {
    atomicStore(&flags[i / u.per_image], 1u);
  }
}
`;
