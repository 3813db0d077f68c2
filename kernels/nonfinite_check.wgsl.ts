/**
 * WGSL of {@linkcode nonfiniteCheckSpec}, for f32 or f16 values (`kernels/_precision.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import type { Dtype } from "../engine/precision.ts";

/**
 * Flags each image holding a NaN or an infinity. Both flavours read raw bits as u32 words (WGSL has no
 * isnan, and the bit test needs no `shader-f16`): an f32 is one word, an f16 half of one, low half first.
 *
 * @param name Variant name for the header.
 * @param dtype How x's values are stored.
 */
export function nonfiniteCheckWgsl(name: string, dtype: Dtype): string {
  const half = dtype === "f16";
  return /* wgsl */ `
// ${name}: flags[n] = 1 when any x[n*per_image .. (n+1)*per_image) is NaN or +-Inf (else untouched)
// x: ${dtype} [N*per_image], read as raw bits${
    half ? ", two f16 per u32 word (element i in the low half when i is even)" : ""
  }; all-ones exponent = NaN or Inf ·
//   flags: u32 [N], zeroed by the caller
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

const EXPONENT = ${half ? "0x7c00u" : "0x7f800000u"};

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
  let bits = ${half ? "x[i >> 1u] >> ((i & 1u) * 16u)" : "x[i]"};
  if ((bits & EXPONENT) == EXPONENT) {
    atomicStore(&flags[i / u.per_image], 1u);
  }
}
`;
}

/** The f32 flavour's source. */
export const NONFINITE_CHECK_WGSL: string = nonfiniteCheckWgsl("nonfinite_check", "f32");
