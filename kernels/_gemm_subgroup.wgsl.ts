/**
 * WGSL generator of the subgroup GEMM variants of conv2d and linear (`conv2d_subgroup*`,
 * `linear_subgroup*`): B through workgroup memory, A through subgroup shuffles. Not a kernel.
 *
 * ```
 * workgroup: 256 invocations = 8 logical rows x 32 lanes; tile 8*TM rows x 128 columns, K step 32
 * lane (lrow, lane): rows tile_m*8*TM + lrow*TM + j (j < TM) x one vec4 column tile_n*32 + lane,
 *   TM vec4f accumulators
 * B: the K step's 32 x 128 floats in workgroup memory (loaded as coalesced vec4 rows, prefetched into
 *   registers one step ahead); each lane reads its own vec4 column of each row
 * A: no workgroup memory. Lanes come in groups of G consecutive subgroup lanes; lane g of a group loads
 *   A[row j][k0 + c*G + g] (c < 32/G), and every lane of the group takes element k0 + c*G + i from lane i
 *   by subgroupShuffle: 32/G scalar loads per row and K step instead of 32
 * ```
 *
 * Assumptions: the subgroup has at least G lanes (the spec's `minSubgroupSize`: the lowering refuses the
 * variant unless the adapter's `subgroupMinSize` is at least G, and forcing it there is an error), and a
 * 1-D workgroup's subgroups are runs of consecutive `local_invocation_index` aligned to the subgroup size
 * (so a group of G lanes is G consecutive invocations of one logical row). WGSL does not promise the
 * second; Vulkan, Metal and D3D12 do it. Both are checked at run time: where either fails, the workgroup
 * recomputes its outputs by a plain loop over K from global memory (slow, but the right sum, never NaN).
 * The override `NO_SHUFFLE` (tests) takes that path everywhere.
 *
 * No `enable subgroups;`: Deno 2.9's naga (wgpu 29) rejects the directive ("not yet implemented") and
 * accepts the builtins when the device has the `subgroups` feature; the WGSL standard (and Chromium) want
 * it. `enableDirective` writes it for such a compiler.
 *
 * Templating for the same reasons as `_gemm_block.wgsl.ts`: the K step is unrolled, shuffle lanes are
 * literals offset from one base, and no `/` or `%` runs in the hot loop.
 *
 * This module is browser compatible.
 * @module
 */
import {
  type ElementType,
  enableLine,
  epilogueStore,
  geluPass,
  geluWgsl,
  GEMM_ACCURACY_CHUNK,
  gemmBindings,
  gemmBindingsComment,
  type GemmOp,
  gemmUniformStruct,
  toF32,
} from "./_gemm_block.wgsl.ts";

/** Invocations per workgroup of the subgroup kernels. */
export const SUBGROUP_GEMM_THREADS = 256;
/** Lanes along N of a logical row: the workgroup tile is this many vec4 columns wide. */
export const SUBGROUP_GEMM_LANES = 32;
/** K per step. */
export const SUBGROUP_GEMM_BK = 32;

/** Options of {@linkcode subgroupGemmWgsl}. */
export interface SubgroupGemmOptions {
  /** Variant name (header). */
  readonly name: string;
  /** The op. */
  readonly op: GemmOp;
  /** Lanes sharing A values by shuffles (a power of two from 4 to 32). */
  readonly group: number;
  /** Rows per lane. */
  readonly tm: number;
  /** Storage element type (default f32). */
  readonly elem?: ElementType;
  /** Write `enable subgroups;` (default false: naga in Deno 2.9 refuses it). */
  readonly enableDirective?: boolean;
}

/**
 * Writes a subgroup GEMM kernel (see the module doc). conv2d needs Cin % 32 == 0, so that a K step never
 * crosses a (ky, kx) and its gather state is workgroup-uniform; linear takes any Din % 4 == 0 (K tail by
 * bounds). Split-K is supported as in `blockGemmWgsl` (z = split).
 */
export function subgroupGemmWgsl(o: SubgroupGemmOptions): string {
  const elem = o.elem ?? "f32";
  const op = o.op;
  const G = o.group, TM = o.tm, BK = SUBGROUP_GEMM_BK, LN = SUBGROUP_GEMM_LANES;
  const ROWS = SUBGROUP_GEMM_THREADS / LN;
  const BM = ROWS * TM;
  const C = BK / G;
  const F = Math.max(1, GEMM_ACCURACY_CHUNK / BK);
  if (![4, 8, 16, 32].includes(G)) {
    throw new RangeError(`Cannot generate ${o.name}: expected a group of 4, 8, 16 or 32 lanes, got ${G}`);
  }
  if (!Number.isInteger(TM) || TM < 4 || TM % 4 !== 0) {
    throw new RangeError(`Cannot generate ${o.name}: expected rows per lane a multiple of 4, got ${TM}`);
  }
  const range = (n: number) => [...Array(n).keys()];
  const J = range(TM), CC = range(C);
  const L: string[] = [];
  const p = (s: string) => L.push(s);
  const what = op === "conv2d"
    ? `y[n,oy,ox,co] = act(sum_{ky,kx,ci} x[n, oy*S-P+ky, ox*S-P+kx, ci] * w[ky,kx,ci,co]
//   (+ bias[co] if has_bias) (+ y if accumulate)), act = ReLU if relu else identity
// x: ${elem} NHWC [N,H,W,Cin], Cin % 32 == 0 · w: ${elem} HWIO [KH,KW,Cin,Cout] = B [K, Cout], Cout % 4 == 0 ·
//   bias: ${elem} [Cout] · y: ${elem} NHWC [N,OH,OW,Cout]`
    : `y[r,o] = act(sum_i x[r,i] * w[i,o] + b[o]) (+ res[r,o] if accumulate), act = identity or GELU
// x: ${elem} [M,Din], Din % 4 == 0 · w: ${elem} [Din,Dout], Dout % 4 == 0 · b: ${elem} [Dout] · res, y: ${elem} [M,Dout]`;
  p(`${enableLine(elem)}${o.enableDirective ? "enable subgroups;\n" : ""}// ${o.name}: ${what}
${gemmBindingsComment(op)}
// overrides: WG = ${SUBGROUP_GEMM_THREADS} · tile (generated, see _gemm_subgroup.wgsl.ts): ${BM} x ${
    4 * LN
  } outputs per workgroup,
//   K step ${BK}; lane (lrow = lid >> 5, lane = lid & 31) owns rows lrow*${TM} + j, vec4 column lane
// dispatch: tiles = ceil(M/${BM}) * ceil(N/${4 * LN}) folded over x,y, z = splits (as the block kernels)
// A by subgroupShuffle within groups of ${G} lanes (needs the \`subgroups\` feature, subgroup size >= ${G});
//   B through workgroup memory (32 x 128 f32), prefetched one step ahead
// numerics: f32 fma; partials of ${GEMM_ACCURACY_CHUNK} terms added to the total; epilogue as the block kernels;
//   where the subgroup layout is not the assumed one (or NO_SHUFFLE != 0) a plain loop over K from global
//   memory recomputes the workgroup's sums
${gemmUniformStruct(op)}
override WG: u32 = ${SUBGROUP_GEMM_THREADS}u;
override NO_SHUFFLE: u32 = 0u;

${gemmBindings(op, elem, true)}
var<workgroup> Bs: array<vec4f, ${BK * LN}>;
var<workgroup> layout_bad: atomic<u32>;
${geluWgsl(op)}
@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sl: u32,
  @builtin(subgroup_size) sgs: u32,
) {
  let tile = wid.y * nwg.x + wid.x;
  if (tile >= u.tiles) { return; } // workgroup-uniform
  let split = wid.z;
  let tile_n = tile % u.tiles_n;
  let tile_m = tile / u.tiles_n;
  let n4 = u.gn >> 2u;
  let kt0 = split * u.tiles_per_split;
  let nt = min(u.tiles_per_split, u.k_tiles - kt0);
  let k_begin = kt0 * ${BK}u;
  let k_end = min(u.gk, k_begin + nt * ${BK}u);
  let lane = lid & ${LN - 1}u;
  let lrow = lid >> ${Math.log2(LN)}u;
  // my group of ${G} lanes: subgroup lanes [gbase, gbase + ${G}), me the gl-th
  let gl = sl & ${G - 1}u;
  let gbase = sl - gl;
  let first = subgroupShuffle(lid, gbase);
  if (sgs < ${G}u || gl != (lid & ${G - 1}u) || first != lid - gl) { atomicStore(&layout_bad, 1u); }
  let c4 = tile_n * ${LN}u + lane;
  let cok = c4 < n4;`);
  for (const j of J) {
    p(`  let am${j} = tile_m * ${BM}u + lrow * ${TM}u + ${j}u;
  let aok${j} = am${j} < u.gm;`);
    if (op === "conv2d") {
      p(`  let aq${j} = min(am${j}, u.gm - 1u);
  let aiy${j} = i32(((aq${j} / u.ow) % u.oh) * u.stride) - i32(u.pad);
  let aix${j} = i32((aq${j} % u.ow) * u.stride) - i32(u.pad);
  let aimg${j} = (aq${j} / u.ow / u.oh) * u.h;`);
    } else {
      p(`  let ao${j} = min(am${j}, u.gm - 1u) * u.gk + gl;`);
    }
    for (const c of CC) p(`  var a${j}_${c} = 0.0;`);
    p(`  var acc${j} = vec4f(0.0);\n  var tot${j} = vec4f(0.0);`);
  }
  if (op === "conv2d") {
    p(`  // the K step's (ky, kx, first channel): workgroup-uniform, since Cin % ${BK} == 0
  var ci0 = k_begin % u.cin;
  var kx = (k_begin / u.cin) % u.kw;
  var ky = (k_begin / u.cin) / u.kw;`);
  } else {
    p(`  var k0 = k_begin;`);
  }
  const SB = (BK * LN) / SUBGROUP_GEMM_THREADS;
  for (const s of range(SB)) {
    p(`  var bk${s} = k_begin + lrow + ${s * ROWS}u;
  var bo${s} = bk${s} * n4 + c4;
  var rb${s} = vec4f(0.0);`);
  }
  const loadB = (ind: string) =>
    range(SB).map((s) =>
      `${ind}{
${ind}  let ok = cok && bk${s} < k_end;
${ind}  rb${s} = select(vec4f(0.0), ${toF32(elem, `w[select(0u, bo${s}, ok)]`)}, ok);
${ind}  bk${s} += ${BK}u;
${ind}  bo${s} += ${BK}u * n4;
${ind}}`
    ).join("\n");
  const ld = (e: string) => (elem === "f32" ? e : `f32(${e})`);
  const loadA = (ind: string) => {
    const out: string[] = [];
    for (const j of J) {
      if (op === "conv2d") {
        out.push(`${ind}{
${ind}  let iy = aiy${j} + i32(ky);
${ind}  let ix = aix${j} + i32(kx);
${ind}  let ok = aok${j} && iy >= 0 && iy < i32(u.h) && ix >= 0 && ix < i32(u.w);
${ind}  let xo = ((aimg${j} + u32(iy)) * u.w + u32(ix)) * u.cin + ci0 + gl;`);
        for (const c of CC) {
          out.push(`${ind}  a${j}_${c} = select(0.0, ${ld(`x[select(0u, xo + ${c * G}u, ok)]`)}, ok);`);
        }
        out.push(`${ind}}`);
      } else {
        for (const c of CC) {
          out.push(`${ind}{
${ind}  let k = k0 + ${c * G}u + gl;
${ind}  let ok = aok${j} && k < k_end;
${ind}  a${j}_${c} = select(0.0, ${ld(`x[select(0u, ao${j} + k0 + ${c * G}u, ok)]`)}, ok);
${ind}}`);
        }
      }
    }
    if (op === "conv2d") {
      out.push(`${ind}ci0 += ${BK}u;
${ind}if (ci0 == u.cin) {
${ind}  ci0 = 0u;
${ind}  kx += 1u;
${ind}  if (kx == u.kw) { kx = 0u; ky += 1u; }
${ind}}`);
    } else {
      out.push(`${ind}k0 += ${BK}u;`);
    }
    return out.join("\n");
  };
  const multiply = (ind: string) => {
    const out: string[] = [];
    for (const c of CC) {
      for (let i = 0; i < G; i++) {
        out.push(`${ind}{`, `${ind}  let bq = Bs[${(c * G + i) * LN}u + lane];`);
        for (const j of J) {
          out.push(`${ind}  acc${j} = fma(vec4f(subgroupShuffle(a${j}_${c}, gbase + ${i}u)), bq, acc${j});`);
        }
        out.push(`${ind}}`);
      }
    }
    return out.join("\n");
  };
  const flush = (ind: string) =>
    J.map((j) => `${ind}tot${j} += acc${j};\n${ind}acc${j} = vec4f(0.0);`).join("\n");
  p(`${loadB("  ")}
  for (var t = 0u; t < nt; t++) {
    workgroupBarrier(); // the previous step's multiply is done with Bs`);
  for (const s of range(SB)) p(`    Bs[(lrow + ${s * ROWS}u) * ${LN}u + lane] = rb${s};`);
  p(`    workgroupBarrier();
    if (t + 1u < nt) {
${loadB("      ")}
    }
${loadA("    ")}
${multiply("    ")}
    if ((t & ${F - 1}u) == ${F - 1}u) {
${flush("      ")}
    }
  }
${flush("  ")}
  let bad = atomicLoad(&layout_bad) != 0u || NO_SHUFFLE != 0u;
  if (bad) {
    // the fallback: no shuffles, one K term at a time (not a hot path; runs only where the layout is wrong)
${J.map((j) => `    tot${j} = vec4f(0.0);`).join("\n")}
    for (var k = k_begin; k < k_end; k++) {
      let bq = select(vec4f(0.0), ${toF32(elem, "w[select(0u, k * n4 + c4, cok)]")}, cok);${
    op === "conv2d"
      ? `
      let ci = k % u.cin;
      let kx = (k / u.cin) % u.kw;
      let ky = (k / u.cin) / u.kw;`
      : ""
  }
${
    J.map((j) =>
      op === "conv2d"
        ? `      {
        let iy = aiy${j} + i32(ky);
        let ix = aix${j} + i32(kx);
        let ok = aok${j} && iy >= 0 && iy < i32(u.h) && ix >= 0 && ix < i32(u.w);
        let xo = ((aimg${j} + u32(iy)) * u.w + u32(ix)) * u.cin + ci;
        tot${j} = fma(vec4f(select(0.0, ${ld("x[select(0u, xo, ok)]")}, ok)), bq, tot${j});
      }`
        : `      tot${j} = fma(vec4f(select(0.0, ${
          ld(`x[select(0u, ao${j} - gl + k, aok${j})]`)
        }, aok${j})), bq, tot${j});`
    ).join("\n")
  }
    }
  }
  let partial = u.splits > 1u;
  let plane = split * u.gm * n4;`);
  for (const j of J) {
    p(`  if (aok${j} && cok) {
    let m = am${j};
${epilogueStore(op, elem, `tot${j}`, "    ")}  }`);
  }
  p(geluPass(
    op,
    elem,
    { p: TM / 4, q: 1 },
    `tile_m * ${BM}u + lrow * ${TM}u + 4u * p + i`,
    `tile_n * ${LN}u + lane + q`,
  ));
  p(`}`);
  return L.join("\n") + "\n";
}
