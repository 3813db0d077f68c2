/**
 * WGSL of token_gather; `token_gather.ts` is the wrapper that launches it. Generated per storage dtype
 * (`kernels/_precision.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import type { Dtype } from "../engine/precision.ts";
import { wgslEnable } from "./_precision.ts";

/**
 * One thread per copied element.
 *
 * @param name Variant name for the header.
 * @param dtype Storage dtype of x and y.
 */
export function tokenGatherWgsl(name: string, dtype: Dtype): string {
  return /* wgsl */ `
// ${name}: y[n,slot,:] = x[n,token,:] (the other slots of y are left as they are)
// x: ${dtype} [N,T,D] · y: ${dtype} [N,slots,D]
// bindings: 0 x r · 1 y rw · 2 uniforms {n,tokens,d,token,slots,slot: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*D / WG) workgroups folded over x,y; one thread per copied
//   element, consecutive threads on consecutive features; tail guarded
// numerics: a copy
${wgslEnable(dtype)}
override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  tokens: u32,
  d: u32,
  token: u32,
  slots: u32,
  slot: u32,
}

@group(0) @binding(0) var<storage, read> x: array<${dtype}>;
@group(0) @binding(1) var<storage, read_write> y: array<${dtype}>;
@group(0) @binding(2) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.y * nwg.x + wid.x) * WG + lid;
  if (idx >= u.n * u.d) {
    return;
  }
  let i = idx % u.d;
  let img = idx / u.d;
  y[(img * u.slots + u.slot) * u.d + i] = x[(img * u.tokens + u.token) * u.d + i];
}
`;
}

/** The f32 flavour's source. */
export const TOKEN_GATHER_WGSL: string = tokenGatherWgsl("token_gather", "f32");
