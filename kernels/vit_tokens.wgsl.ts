/**
 * WGSL of vit_tokens; `vit_tokens.ts` is the wrapper that launches it. Generated per storage flavour
 * (`kernels/_precision.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import { FLAVOURS, storageNote, type StorageTypes, wgslEnable, wgslStorage } from "./_precision.ts";

/**
 * One thread per output element.
 *
 * @param name Variant name for the header.
 * @param t Storage types: patches (input), cls and pos (weights), y (output).
 */
export function vitTokensWgsl(name: string, t: StorageTypes): string {
  const X = wgslStorage(t.input), W = wgslStorage(t.weights), Y = wgslStorage(t.output);
  return /* wgsl */ `
// ${name}: y[n,0,:] = cls[:] + pos[0,:]; y[n,1+p,:] = patches[n,p,:] + pos[1+p,:] (p = gy*gw + gx)
// patches: ${X.scalar} NHWC [N,gh,gw,D] (the patch-embedding conv's output) · cls: ${W.scalar} [D] ·
//   pos: ${W.scalar} [T,D] · y: ${Y.scalar} [N,T,D], T = 1 + gh*gw
// bindings: 0 patches r · 1 cls r · 2 pos r · 3 y rw · 4 uniforms {n,tokens,d,total: u32}
// overrides: WG (workgroup size) · dispatch: ceil(N*T*D / WG) workgroups folded over x,y; one thread per
//   element of y, consecutive threads on consecutive features; tail guarded
// numerics: one f32 add per element${storageNote(t.input, t.weights, t.output)}
${wgslEnable(t.input, t.weights, t.output)}
override WG: u32 = 256u;

struct Uniforms {
  n: u32,
  tokens: u32,
  d: u32,
  total: u32,
}

@group(0) @binding(0) var<storage, read> patches: array<${X.scalar}>;
@group(0) @binding(1) var<storage, read> cls: array<${W.scalar}>;
@group(0) @binding(2) var<storage, read> pos: array<${W.scalar}>;
@group(0) @binding(3) var<storage, read_write> y: array<${Y.scalar}>;
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
    v = ${W.load("cls[i]")};
  } else {
    v = ${X.load("patches[(img * (u.tokens - 1u) + t - 1u) * u.d + i]")};
  }
  y[idx] = ${Y.store(`v + ${W.load("pos[t * u.d + i]")}`)};
}
`;
}

/** The f32 flavour's source. */
export const VIT_TOKENS_WGSL: string = vitTokensWgsl("vit_tokens", FLAVOURS.f32);
