/**
 * WGSL sources of the fused multi-head self-attention; `attention.ts` is the wrapper that launches them.
 *
 * What was chosen, and what it costs (llvmpipe and lavapipe, Mesa 22.3; ViT-S: T = 197, 6 heads of 64,
 * 59.6 MFLOP per image; CPU time of the dispatch / 2 cores):
 * - One fused pass, no [heads, T, T] scores in memory: each invocation streams over the keys with an online
 *   softmax and keeps its queries' hd-float accumulators in named vec4 registers (generated per head dim).
 * - Several queries per invocation, so that each loaded key and value serves all of them. On these
 *   adapters every storage-buffer load is a loop over the SIMD lanes, so the load count sets the speed:
 *   1 query 0.56 GFLOP/s (107 ms), 2: 1.07, 4: 2.0, 8: 3.7 (16 ms), 16: 5.8 (10 ms). The first compile on
 *   the GL path grows with the tile (1 query 1.8 s, 8: 4.4 s, 16: 24 s, then Mesa's disk cache), so
 *   `attention_query_tiled` takes 8. Keys in blocks of 4 (one max and rescale per block) gained 5 % at
 *   8 queries but tripled that compile; one key per step it is.
 * - Not workgroup-memory tiles of K and V: on these adapters a workgroup-memory load costs what a
 *   storage load does (13.2 vs 13.4 ns per lane and vec4, measured), so staging saves nothing; only reuse
 *   in registers does.
 * - `attention_streaming` (1 query per invocation, 32 live vec4 for hd 64) is the variant for GPUs with
 *   real register files, where 8 queries (256 live vec4) would spill.
 *
 * Each is generated for a storage flavour (`kernels/_precision.ts`): qkv and y f32 or f16; scores, the
 * softmax and the accumulators f32 in every flavour.
 *
 * This module is browser compatible.
 * @module
 */
import { FLAVOURS, storageNote, type StorageTypes, wgslEnable, wgslStorage } from "./_precision.ts";

/** Head dimensions a shader is generated for (the register tile needs a const size). */
export const ATTENTION_HEAD_DIMS: readonly number[] = [16, 32, 64];

/** Queries per invocation of `attention_query_tiled_hd*`. */
export const ATTENTION_TILED_QUERIES = 8;
/** Queries per invocation of `attention_streaming_hd*`. */
export const ATTENTION_STREAMING_QUERIES = 1;
/** Keys per online-softmax step of both (one max and one rescale per key). */
export const ATTENTION_KEYS_PER_STEP = 1;

/**
 * Writes the attention kernel for head dimension `hd`: each invocation owns `bq` queries of one (image,
 * head) and streams over the keys in blocks of `bk`, with an online softmax and the hd-float output
 * accumulator of each query in named `vec4f` registers.
 *
 * Why templating (STYLE.md allows it where an override cannot express the code): the accumulators and the
 * scaled queries must be one named variable per vec4 (function-scope arrays need const sizes, and llvmpipe
 * keeps them in scratch memory when it does not unroll their loops), so the head dimension and the tiles
 * shape the code itself. The workgroup size stays a WGSL override.
 *
 * @param name Variant name for the header.
 * @param hd Head dimension, a multiple of 4.
 * @param bq Queries per invocation.
 * @param bk Keys per block (one max, one rescale per block).
 * @param types Storage types of qkv (input) and y (output); default f32.
 * @returns The WGSL source.
 */
export function attentionWgsl(
  name: string,
  hd: number,
  bq: number,
  bk: number,
  types: StorageTypes = FLAVOURS.f32,
): string {
  const X = wgslStorage(types.input), Y = wgslStorage(types.output);
  if (hd % 4 !== 0) throw new RangeError(`Cannot generate ${name}: expected hd % 4 == 0, got ${hd}`);
  const C = [...Array(hd / 4).keys()];
  const I = [...Array(bq).keys()];
  const K = [...Array(bk).keys()];
  const L: string[] = [];
  const p = (line: string) => L.push(line);
  const sum = (terms: string[]) => terms.join(" + ");
  p(`// ${name}: multi-head self-attention, one fused pass (no [heads, T, T] scores in memory):
//   y[n,t,h*HD + c] = sum_j softmax_j(q[n,t,h] . k[n,j,h] / sqrt(HD)) * v[n,j,h*HD + c]
// qkv: ${X.scalar} [N,T,3D], q = columns [0,D), k = [D,2D), v = [2D,3D), head h = columns h*HD..(h+1)*HD of each;
//   D = heads * HD, HD = ${hd} · y: ${Y.scalar} [N,T,D], heads concatenated
// bindings: 0 qkv r · 1 y rw · 2 uniforms {n,t,d,heads,qblocks,units: u32; scale_log2e: f32; _pad0: u32}
// overrides: WG (workgroup size) · tile: BQ = ${bq} queries of one (n, head) per invocation, keys streamed
//   in blocks of BK = ${bk}; unrolled by the generator in attention.wgsl.ts
// dispatch (qblocks = ceil(T / BQ)): units = N * heads * qblocks invocations, ceil(units / WG) workgroups
//   folded over x,y; unit = (wid.y * nwg.x + wid.x) * WG + lid, tail returns; query block = unit % qblocks,
//   so neighbouring lanes read the same keys and values
// numerics: f32${storageNote(X.dtype, Y.dtype)}; q is scaled by scale * log2(e) once, scores are exp2'd
//   against the running maximum (online softmax: per block, m' = max(m, block max), acc and l rescaled by
//   exp2(m - m')); masked keys (the tail of the last block) score -3e38, never inf; y = acc / l
${wgslEnable(X.dtype, Y.dtype)}struct Uniforms {
  n: u32, t: u32, d: u32, heads: u32,
  qblocks: u32, units: u32, scale_log2e: f32, _pad0: u32,
}

override WG: u32 = 64u;

const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> qkv: array<${X.vec4}>;
@group(0) @binding(1) var<storage, read_write> y: array<${Y.vec4}>;
@group(0) @binding(2) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let unit = (wid.y * nwg.x + wid.x) * WG + lid;
  if (unit >= u.units) { return; }
  let qb = unit % u.qblocks;
  let nh = unit / u.qblocks;
  let h = nh % u.heads;
  let img = nh / u.heads;
  let d4 = u.d / 4u;
  let row = 3u * d4; // vec4 per token row of qkv
  let hb = h * ${hd / 4}u; // the head's first vec4 within q, k or v
  let first = img * u.t; // token index of (img, 0)
  let kb = first * row + d4 + hb;
  let vb = first * row + 2u * d4 + hb;
  let sc = vec4f(u.scale_log2e);`);
  for (const i of I) {
    p(`  let t${i} = qb * ${bq}u + ${i}u;
  let qo${i} = (first + min(t${i}, u.t - 1u)) * row + hb;`);
    for (const c of C) p(`  let q${i}_${c} = ${X.load(`qkv[qo${i} + ${c}u]`, 4)} * sc;`);
    for (const c of C) p(`  var acc${i}_${c} = vec4f(0.0);`);
    p(`  var m${i} = NEG;
  var l${i} = 0.0;`);
  }
  p(`  for (var j0 = 0u; j0 < u.t; j0 += ${bk}u) {`);
  for (const k of K) {
    p(`    let ok${k} = j0 + ${k}u < u.t;
    let ko${k} = min(j0 + ${k}u, u.t - 1u) * row;`);
    for (const c of C) p(`    let k${k}_${c} = ${X.load(`qkv[kb + ko${k} + ${c}u]`, 4)};`);
    for (const i of I) {
      p(`    let s${i}_${k} = select(NEG, ${sum(C.map((c) => `dot(q${i}_${c}, k${k}_${c})`))}, ok${k});`);
    }
  }
  for (const i of I) {
    const mx = K.map((k) => `s${i}_${k}`).reduce((a, b) => `max(${a}, ${b})`);
    p(`    let mn${i} = max(m${i}, ${mx});
    let corr${i} = exp2(m${i} - mn${i});
    m${i} = mn${i};`);
    for (const k of K) p(`    let p${i}_${k} = exp2(s${i}_${k} - mn${i});`);
    p(`    l${i} = fma(l${i}, corr${i}, ${sum(K.map((k) => `p${i}_${k}`))});`);
    for (const c of C) p(`    acc${i}_${c} *= corr${i};`);
  }
  for (const k of K) {
    for (const c of C) p(`    let v${k}_${c} = ${X.load(`qkv[vb + ko${k} + ${c}u]`, 4)};`);
    for (const i of I) {
      for (const c of C) p(`    acc${i}_${c} = fma(vec4f(p${i}_${k}), v${k}_${c}, acc${i}_${c});`);
    }
  }
  p(`  }`);
  for (const i of I) {
    p(`  if (t${i} < u.t) {
    let oo = (first + t${i}) * d4 + hb;
    let inv${i} = vec4f(l${i});`);
    for (const c of C) p(`    y[oo + ${c}u] = ${Y.store(`acc${i}_${c} / inv${i}`, 4)};`);
    p(`  }`);
  }
  p(`}`);
  return L.join("\n") + "\n";
}
