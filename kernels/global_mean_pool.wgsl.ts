/**
 * WGSL of {@linkcode globalMeanPoolSpec}, generated per storage flavour (`kernels/_precision.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import { FLAVOURS, storageNote, type StorageTypes, wgslEnable, wgslStorage } from "./_precision.ts";

/**
 * Mean over H*W per (image, channel).
 *
 * @param name Variant name for the header.
 * @param t Storage types of x (input) and y (output).
 */
export function globalMeanPoolWgsl(name: string, t: StorageTypes): string {
  const X = wgslStorage(t.input), Y = wgslStorage(t.output);
  return /* wgsl */ `
// ${name}: y[n,c] = sum over p < H*W of x[n,p,c] / (H*W)
// x: ${X.scalar} NHWC [N,H*W,C] · y: ${Y.scalar} [N,C]
// bindings: 0 x r · 1 y rw · 2 uniforms {n,hw,c: u32}
// overrides: CH (channels per workgroup), RL (pixel lanes per channel, a power of two); workgroup CH x RL
//   · dispatch: N*ceil(C/CH) workgroups folded over x and y; lane (cx, ry) sums pixels ry, ry+RL, ... of
//   channel cx (consecutive lanes on consecutive channels), then a tree over the RL lanes
// numerics: f32${storageNote(t.input, t.output)}; each lane sums blocks of BLOCK pixels into a block
//   sum before adding it to its total, then a tree over lanes: error grows like BLOCK + H*W/(RL*BLOCK) +
//   log2(RL) roundings, not H*W
${wgslEnable(t.input, t.output)}
override CH: u32 = 32u;
override RL: u32 = 8u;
const BLOCK = 16u;

struct Uniforms {
  n: u32,
  hw: u32,
  c: u32,
}

@group(0) @binding(0) var<storage, read> x: array<${X.scalar}>;
@group(0) @binding(1) var<storage, read_write> y: array<${Y.scalar}>;
@group(0) @binding(2) var<uniform> u: Uniforms;

var<workgroup> partial: array<f32, CH * RL>;

@compute @workgroup_size(CH, RL)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
) {
  let tiles = (u.c + CH - 1u) / CH;
  let wg = wid.y * nwg.x + wid.x; // n * tiles + tile
  if (wg >= u.n * tiles) {
    return; // workgroup-uniform
  }
  let img = wg / tiles;
  let ch = (wg % tiles) * CH + lid.x;
  var total = 0.0;
  if (ch < u.c) {
    let base = img * u.hw * u.c + ch;
    for (var p0 = lid.y; p0 < u.hw; p0 += RL * BLOCK) {
      var block = 0.0;
      for (var p = p0; p < min(p0 + RL * BLOCK, u.hw); p += RL) {
        block += ${X.load("x[base + p * u.c]")};
      }
      total += block;
    }
  }
  partial[lid.y * CH + lid.x] = total;
  workgroupBarrier();
  for (var s = RL / 2u; s > 0u; s >>= 1u) {
    if (lid.y < s) {
      partial[lid.y * CH + lid.x] += partial[(lid.y + s) * CH + lid.x];
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && ch < u.c) {
    y[img * u.c + ch] = ${Y.store("partial[lid.x] / f32(u.hw)")};
  }
}
`;
}

/** The f32 flavour's source. */
export const GLOBAL_MEAN_POOL_WGSL: string = globalMeanPoolWgsl("global_mean_pool", FLAVOURS.f32);
