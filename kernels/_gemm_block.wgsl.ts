/**
 * WGSL generators shared by the block-tiled GEMM variants of conv2d (`conv2d_block.wgsl.ts`, implicit GEMM
 * over NHWC activations) and linear (`linear_block.wgsl.ts`, [M,Din] x [Din,Dout]): the uniform struct,
 * the bindings, the A-operand gather and the epilogue. Not a kernel.
 *
 * ```
 * GEMM: C[m,n] = sum_k A[m,k] B[k,n]; conv2d: m = (n,oy,ox), k = (ky,kx,ci), A[m,k] = x[n, oy*S-P+ky,
 *   ox*S-P+kx, ci] (zero outside the input), B = w HWIO viewed as [K, Cout]; linear: A = x [M,Din], B = w
 * block tile (one workgroup): BM x BN outputs, K stepped by BK; each invocation owns TM x TN outputs (TM/4
 *   groups of 4 rows strided by BM/TM*4... see blockGemmWgsl), as TM x TN/4 named vec4f accumulators
 * workgroup memory: As[2][BK][BM/4] vec4 (A transposed: the 4 rows an invocation reads are one vec4),
 *   Bs[2][BK][BN/4] vec4 (B as stored, N contiguous: HWIO/[Din,Dout] is already the layout the tile wants,
 *   loaded as coalesced vec4 rows of BN floats); double-buffered, one barrier per K step
 * ```
 *
 * Why templating (STYLE.md allows it where an override cannot express the code): the inner loop is
 * unrolled over BK, the register tile is one named variable per accumulator (WGSL function-scope arrays
 * indexed in a loop would stay in memory where a driver does not unroll), and every index in the hot loop
 * is a constant offset from a per-invocation base, so no integer `/` or `%` (which naga guards) and no
 * loop counter runs inside it. The tile sizes are TS constants the wrappers read for their dispatch maths;
 * the workgroup size is the override `WG`, which the wrapper sets from the same constant.
 *
 * Element type: `elem` ("f32", the default) is the storage type of every buffer; accumulation is always
 * f32 and workgroup memory holds f32. Another element type ("f16") only changes the declarations and the
 * conversions at loads and stores, so an f16 flavour can be generated from the same code (not enabled here;
 * split-K partials would then want an f32 scratch binding).
 *
 * This module is browser compatible.
 * @module
 */
import { ERF_WGSL } from "./erf.wgsl.ts";

/** Storage element type of a generated kernel. */
export type ElementType = "f32" | "f16";

/** The operand shapes a generated kernel reads: conv2d's gather or a linear's rows. */
export type GemmOp = "conv2d" | "linear";

/** A workgroup's tile: BM x BN outputs, K steps of BK, TM x TN outputs per invocation. */
export interface BlockTile {
  /** Rows (output pixels / tokens) per workgroup. */
  readonly bm: number;
  /** Columns (output channels / features) per workgroup. */
  readonly bn: number;
  /** K per step (one workgroup-memory tile). */
  readonly bk: number;
  /** Rows per invocation (a multiple of 4). */
  readonly tm: number;
  /** Columns per invocation (a multiple of 4). */
  readonly tn: number;
}

/** K terms summed into one partial before it joins the total (as the register-tiled kernels' CK). */
export const GEMM_ACCURACY_CHUNK = 64;

/** Invocations per workgroup of a tile. */
export function blockThreads(t: BlockTile): number {
  return (t.bm / t.tm) * (t.bn / t.tn);
}

function log2(v: number): number {
  const l = Math.log2(v);
  if (!Number.isInteger(l)) {
    throw new RangeError(`Cannot generate a block GEMM: expected a power of two, got ${v}`);
  }
  return l;
}

/** WGSL type of a vec4 of the element type. */
function vec4(elem: ElementType): string {
  return elem === "f32" ? "vec4f" : `vec4<${elem}>`;
}

/** Converts a loaded element vec4 to f32 (nothing to do for f32). */
export function toF32(elem: ElementType, e: string): string {
  return elem === "f32" ? e : `vec4f(${e})`;
}

/** Converts an f32 vec4 to the element type for a store. */
export function fromF32(elem: ElementType, e: string): string {
  return elem === "f32" ? e : `${vec4(elem)}(${e})`;
}

/** `enable f16;` when the element type needs it (WGSL requires it first in the module). */
export function enableLine(elem: ElementType): string {
  return elem === "f16" ? "enable f16;\n" : "";
}

/**
 * The uniform struct of a GEMM variant. conv2d adds the convolution geometry before the GEMM fields;
 * both end with the same GEMM and epilogue fields, packed by `gemmUniformFields`.
 */
export function gemmUniformStruct(op: GemmOp): string {
  const conv = op === "conv2d"
    ? `  n: u32, h: u32, w: u32, cin: u32,
  kh: u32, kw: u32, stride: u32, pad: u32,
  oh: u32, ow: u32, _c0: u32, _c1: u32,
`
    : "";
  return `struct Uniforms {
${conv}  gm: u32, gn: u32, gk: u32, tiles_n: u32,
  tiles: u32, k_tiles: u32, splits: u32, tiles_per_split: u32,
  has_bias: u32, accumulate: u32, relu: u32, gelu: u32,
}
`;
}

/** Text of the `bindings` line of a header: the op's bindings and uniforms. */
export function gemmBindingsComment(op: GemmOp): string {
  return op === "conv2d"
    ? `// bindings: 0 x r · 1 w r · 2 bias r (read only when has_bias) · 3 y rw (the [S,M,Cout] partials when
//   splits > 1) · 4 uniforms {n,h,w,cin,kh,kw,stride,pad,oh,ow,_c0,_c1, gm,gn,gk,tiles_n,tiles,k_tiles,
//   splits,tiles_per_split,has_bias,accumulate,relu,gelu: u32}`
    : `// bindings: 0 x r · 1 w r · 2 b r (read only when has_bias) · 3 res r (read only when accumulate) ·
//   4 y rw (the [S,M,Dout] partials when splits > 1) · 5 uniforms {gm,gn,gk,tiles_n,tiles,k_tiles,splits,
//   tiles_per_split,has_bias,accumulate,relu,gelu: u32}`;
}

/**
 * Storage bindings in the op's layout (the same as the register-tiled variants of the op): conv2d
 * x, w, bias, y (the residual is y itself, read before it is overwritten); linear x, w, b, res, y.
 * `xScalar` declares x as scalars (the subgroup kernels read A one element per lane).
 */
export function gemmBindings(op: GemmOp, elem: ElementType, xScalar = false): string {
  const v = vec4(elem);
  const xt = xScalar ? elem : v;
  const lines = op === "conv2d"
    ? [
      `var<storage, read> x: array<${xt}>;`,
      `var<storage, read> w: array<${v}>;`,
      `var<storage, read> bias: array<${v}>;`,
      `var<storage, read_write> y: array<${v}>;`,
    ]
    : [
      `var<storage, read> x: array<${xt}>;`,
      `var<storage, read> w: array<${v}>;`,
      `var<storage, read> b: array<${v}>;`,
      `var<storage, read> res: array<${v}>;`,
      `var<storage, read_write> y: array<${v}>;`,
    ];
  lines.push("var<uniform> u: Uniforms;");
  return lines.map((l, i) => `@group(0) @binding(${i}) ${l}`).join("\n") + "\n";
}

/** The f32 GELU over a vec4 (linear only): `ERF_WGSL` and a wrapper. */
export function geluWgsl(op: GemmOp): string {
  if (op !== "linear") return "";
  return `${ERF_WGSL}
fn gelu4(v: vec4f) -> vec4f {
  return vec4f(gelu_erf(v.x), gelu_erf(v.y), gelu_erf(v.z), gelu_erf(v.w));
}
`;
}

/**
 * The epilogue of one output vec4 `v` at row `m`, vec4 column `c4` (both in range): partials to the split's
 * plane when splits > 1; else + bias, + residual (conv2d: y itself; linear: res), ReLU (conv2d). A linear's
 * GELU runs afterwards over the stored tile ({@linkcode geluPass}).
 */
export function epilogueStore(op: GemmOp, elem: ElementType, v: string, ind: string): string {
  const bias = op === "conv2d" ? "bias" : "b";
  const res = op === "conv2d" ? "y" : "res";
  const out = (e: string) => fromF32(elem, e);
  return `${ind}let o = m * n4 + c4;
${ind}if (partial) {
${ind}  y[plane + o] = ${out(v)};
${ind}} else {
${ind}  var r = ${v};
${ind}  if (u.has_bias != 0u) { r += ${toF32(elem, `${bias}[c4]`)}; }
${ind}  if (u.accumulate != 0u) { r += ${toF32(elem, `${res}[o]`)}; }
${ind}  if (u.relu != 0u) { r = max(r, vec4f(0.0)); }
${ind}  y[o] = ${out("r")};
${ind}}
`;
}

/**
 * A linear's GELU over the outputs an invocation stored (one copy of the erf code rather than one per
 * accumulator, which compiles for minutes on llvmpipe; the wrapper refuses GELU with a residual).
 * `rowOf(p, i)` and `colOf(q)` give an output's row and vec4 column from loop counters.
 */
export function geluPass(
  op: GemmOp,
  elem: ElementType,
  counts: { p: number; q: number },
  rowOf: string,
  colOf: string,
): string {
  if (op !== "linear") return "";
  return `  if (!partial && u.gelu != 0u) {
    // bounds from the uniforms, so that no compiler unrolls this loop back into per-accumulator copies
    let np = min(${counts.p}u, u.gelu * ${counts.p}u);
    for (var p = 0u; p < np; p++) {
      for (var i = 0u; i < 4u; i++) {
        let m = ${rowOf};
        if (m >= u.gm) { continue; }
        for (var q = 0u; q < ${counts.q}u; q++) {
          let c4 = ${colOf};
          if (c4 < n4) {
            let o = m * n4 + c4;
            y[o] = ${fromF32(elem, `gelu4(${toF32(elem, "y[o]")})`)};
          }
        }
      }
    }
  }
`;
}

/** Options of {@linkcode blockGemmWgsl}. */
export interface BlockGemmOptions {
  /** Variant name (header). */
  readonly name: string;
  /** The op whose bindings, gather and epilogue to generate. */
  readonly op: GemmOp;
  /** The tile. */
  readonly tile: BlockTile;
  /** Storage element type (default f32). */
  readonly elem?: ElementType;
}

/**
 * Writes a block-tiled GEMM kernel with workgroup-memory tiles, double-buffered: while the invocations
 * multiply the K step held in one buffer, each has the next step's A and B elements in registers (loaded
 * before the multiply, stored into the other buffer after it), so global latency hides behind the FMAs.
 *
 * Split-K: the dispatch's z index is the split; split s covers K steps [s*tiles_per_split, ...) and, when
 * `splits > 1`, writes its raw sums to plane s of y (the [S, M, N] scratch), leaving bias, residual and
 * activation to `splitk_reduce`. With one split it applies the epilogue itself.
 */
export function blockGemmWgsl(o: BlockGemmOptions): string {
  const { bm, bn, bk, tm, tn } = o.tile;
  const elem = o.elem ?? "f32";
  const op = o.op;
  const T = blockThreads(o.tile);
  const TX = bn / tn, TY = bm / tm, TM4 = tm / 4, TN4 = tn / 4;
  const BM4 = bm / 4, BN4 = bn / 4, BK4 = bk / 4;
  const SA = (bm * bk) / 4 / T, SB = (bk * bn) / 4 / T;
  const ASZ = bk * BM4, BSZ = bk * BN4;
  const F = Math.max(1, GEMM_ACCURACY_CHUNK / bk);
  for (const v of [bm, bn, bk, tm, tn, T, F]) log2(v);
  if (tm % 4 !== 0 || tn % 4 !== 0 || bk % 4 !== 0 || !Number.isInteger(SA) || !Number.isInteger(SB)) {
    throw new RangeError(`Cannot generate ${o.name}: tile ${JSON.stringify(o.tile)} does not split evenly`);
  }
  const comp = ["x", "y", "z", "w"];
  const range = (n: number) => [...Array(n).keys()];
  const L: string[] = [];
  const p = (s: string) => L.push(s);
  const what = op === "conv2d"
    ? `y[n,oy,ox,co] = act(sum_{ky,kx,ci} x[n, oy*S-P+ky, ox*S-P+kx, ci] * w[ky,kx,ci,co]
//   (+ bias[co] if has_bias) (+ y if accumulate)), act = ReLU if relu else identity
// x: ${elem} NHWC [N,H,W,Cin], Cin % 4 == 0 · w: ${elem} HWIO [KH,KW,Cin,Cout] = B [K = KH*KW*Cin, Cout],
//   Cout % 4 == 0 · bias: ${elem} [Cout] · y: ${elem} NHWC [N,OH,OW,Cout] = C [M = N*OH*OW, Cout]`
    : `y[r,o] = act(sum_i x[r,i] * w[i,o] + b[o]) (+ res[r,o] if accumulate), act = identity or GELU
//   (GELU and accumulate not both)
// x: ${elem} [M,Din], Din % 4 == 0 · w: ${elem} [Din,Dout] (Dout contiguous), Dout % 4 == 0 · b: ${elem} [Dout] ·
//   res, y: ${elem} [M,Dout]`;
  p(`${enableLine(elem)}// ${o.name}: ${what}
${gemmBindingsComment(op)}
// overrides: WG = ${T} (workgroup size, set by the wrapper) · block tile (generated, see _gemm_block.wgsl.ts):
//   ${bm} x ${bn} outputs per workgroup, K step ${bk}, ${tm} x ${tn} per invocation (rows (ty + p*${TY})*4 + i,
//   vec4 columns tx + q*${TX}), workgroup memory 2 x (${bk}x${bm} + ${bk}x${bn}) f32
// dispatch: tiles = ceil(M/${bm}) * ceil(N/${bn}) folded over x,y (tile = wid.y * nwg.x + wid.x, column tile
//   fastest), z = splits; split s runs K steps [s*tiles_per_split, min(k_tiles, (s+1)*tiles_per_split))
// loads: A as vec4 along K (conv2d: Cin, zero outside the input and past K), B as vec4 along N; every
//   tail (M, N, K) by bounds, stores guarded
// numerics: f32 fma; each ${GEMM_ACCURACY_CHUNK} terms of K (${F} steps) are summed into a partial that is then added to
//   the total (accuracy over long K); epilogue: + bias, then ${
    op === "conv2d" ? "+ y (accumulate), then ReLU" : "+ res (accumulate) or GELU (erf) over the stored tile"
  }; with splits > 1 the raw sums go to y[split] and splitk_reduce applies the epilogue
${gemmUniformStruct(op)}
override WG: u32 = ${T}u;

${gemmBindings(op, elem)}
var<workgroup> As: array<vec4f, ${2 * ASZ}>;
var<workgroup> Bs: array<vec4f, ${2 * BSZ}>;
${geluWgsl(op)}
@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let tile = wid.y * nwg.x + wid.x;
  if (tile >= u.tiles) { return; } // workgroup-uniform: the barriers below stay in uniform control flow
  let split = wid.z;
  let tile_n = tile % u.tiles_n;
  let tile_m = tile / u.tiles_n;
  let n4 = u.gn >> 2u;
  let kt0 = split * u.tiles_per_split;
  let nt = min(u.tiles_per_split, u.k_tiles - kt0);
  let k_begin = kt0 * ${bk}u;
  let k_end = min(u.gk, k_begin + nt * ${bk}u);
  let tx = lid & ${TX - 1}u;
  let ty = lid >> ${log2(TX)}u;`);
  // A slots: which (row, k offset) of the tile each invocation loads, and the gather state.
  for (const s of range(SA)) {
    p(`  // A slot ${s}
  let ag${s} = lid + ${s * T}u;
  let ar${s} = ag${s} >> ${log2(BK4)}u;
  let akq${s} = (ag${s} & ${BK4 - 1}u) << 2u;
  let am${s} = tile_m * ${bm}u + ar${s};
  let aok${s} = am${s} < u.gm;
  let asi${s} = akq${s} * ${BM4}u + (ar${s} >> 2u);
  let asc${s} = ar${s} & 3u;
  var ak${s} = k_begin + akq${s};
  var ra${s} = vec4f(0.0);`);
    if (op === "conv2d") {
      p(`  let aq${s} = min(am${s}, u.gm - 1u);
  let aiy${s} = i32(((aq${s} / u.ow) % u.oh) * u.stride) - i32(u.pad);
  let aix${s} = i32((aq${s} % u.ow) * u.stride) - i32(u.pad);
  let aimg${s} = (aq${s} / u.ow / u.oh) * u.h;
  var aci${s} = ak${s} % u.cin;
  var akx${s} = (ak${s} / u.cin) % u.kw;
  var aky${s} = (ak${s} / u.cin) / u.kw;`);
    } else {
      p(`  var ao${s} = (min(am${s}, u.gm - 1u) * u.gk + ak${s}) >> 2u;`);
    }
  }
  for (const s of range(SB)) {
    p(`  // B slot ${s}
  let bg${s} = lid + ${s * T}u;
  let bsi${s} = bg${s};
  let bc${s} = tile_n * ${BN4}u + (bg${s} & ${BN4 - 1}u);
  let bok${s} = bc${s} < n4;
  var bk${s} = k_begin + (bg${s} >> ${log2(BN4)}u);
  var bo${s} = bk${s} * n4 + bc${s};
  var rb${s} = vec4f(0.0);`);
  }
  for (const pp of range(TM4)) {
    for (const i of range(4)) {
      for (const q of range(TN4)) {
        p(`  var c${pp}_${i}_${q} = vec4f(0.0);\n  var t${pp}_${i}_${q} = vec4f(0.0);`);
      }
    }
  }
  // After a K step, the gather's channel may have passed Cin up to BK/4 times (Cin >= 4): that many
  // unrolled wraps, no loop and no division.
  const wraps = (s: number, ind: string) =>
    range(BK4).map(() =>
      `${ind}if (aci${s} >= u.cin) {
${ind}  aci${s} -= u.cin;
${ind}  akx${s} += 1u;
${ind}  if (akx${s} == u.kw) { akx${s} = 0u; aky${s} += 1u; }
${ind}}`
    ).join("\n");
  const loads = (ind: string) => {
    const out: string[] = [];
    for (const s of range(SA)) {
      if (op === "conv2d") {
        out.push(`${ind}{
${ind}  let iy = aiy${s} + i32(aky${s});
${ind}  let ix = aix${s} + i32(akx${s});
${ind}  let ok = aok${s} && ak${s} < k_end && iy >= 0 && iy < i32(u.h) && ix >= 0 && ix < i32(u.w);
${ind}  let xi = (((aimg${s} + u32(iy)) * u.w + u32(ix)) * u.cin + aci${s}) >> 2u;
${ind}  ra${s} = select(vec4f(0.0), ${toF32(elem, `x[select(0u, xi, ok)]`)}, ok);
${ind}  ak${s} += ${bk}u;
${ind}  aci${s} += ${bk}u;
${wraps(s, `${ind}  `)}
${ind}}`);
      } else {
        out.push(`${ind}{
${ind}  let ok = aok${s} && ak${s} < k_end;
${ind}  ra${s} = select(vec4f(0.0), ${toF32(elem, `x[select(0u, ao${s}, ok)]`)}, ok);
${ind}  ak${s} += ${bk}u;
${ind}  ao${s} += ${BK4}u;
${ind}}`);
      }
    }
    for (const s of range(SB)) {
      out.push(`${ind}{
${ind}  let ok = bok${s} && bk${s} < k_end;
${ind}  rb${s} = select(vec4f(0.0), ${toF32(elem, `w[select(0u, bo${s}, ok)]`)}, ok);
${ind}  bk${s} += ${bk}u;
${ind}  bo${s} += ${bk}u * n4;
${ind}}`);
    }
    return out.join("\n");
  };
  const stores = (buf: string, ind: string) => {
    const out: string[] = [`${ind}let sa = (${buf}) * ${ASZ}u;`, `${ind}let sb = (${buf}) * ${BSZ}u;`];
    for (const s of range(SA)) {
      for (const i of range(4)) {
        out.push(`${ind}As[sa + asi${s} + ${i * BM4}u][asc${s}] = ra${s}.${comp[i]};`);
      }
    }
    for (const s of range(SB)) out.push(`${ind}Bs[sb + bsi${s}] = rb${s};`);
    return out.join("\n");
  };
  const multiply = (buf: string, ind: string) => {
    const out: string[] = [
      `${ind}let ab = (${buf}) * ${ASZ}u + ty;`,
      `${ind}let bb = (${buf}) * ${BSZ}u + tx;`,
    ];
    for (const kk of range(bk)) {
      out.push(`${ind}{`);
      for (const pp of range(TM4)) out.push(`${ind}  let a${pp} = As[ab + ${kk * BM4 + pp * TY}u];`);
      for (const q of range(TN4)) out.push(`${ind}  let b${q} = Bs[bb + ${kk * BN4 + q * TX}u];`);
      for (const pp of range(TM4)) {
        for (const i of range(4)) {
          for (const q of range(TN4)) {
            out.push(`${ind}  c${pp}_${i}_${q} = fma(vec4f(a${pp}.${comp[i]}), b${q}, c${pp}_${i}_${q});`);
          }
        }
      }
      out.push(`${ind}}`);
    }
    return out.join("\n");
  };
  const flush = (ind: string) => {
    const out: string[] = [];
    for (const pp of range(TM4)) {
      for (const i of range(4)) {
        for (const q of range(TN4)) {
          out.push(`${ind}t${pp}_${i}_${q} += c${pp}_${i}_${q};`, `${ind}c${pp}_${i}_${q} = vec4f(0.0);`);
        }
      }
    }
    return out.join("\n");
  };
  p(`  // K step 0 into buffer 0
${loads("  ")}
  {
${stores("0u", "    ")}
  }
  workgroupBarrier();
  for (var t = 0u; t < nt; t++) {
    let cur = t & 1u;
    let more = t + 1u < nt;
    if (more) {
${loads("      ")}
    }
    {
${multiply("cur", "      ")}
    }
    if (more) {
${stores("cur ^ 1u", "      ")}
    }
    if ((t & ${F - 1}u) == ${F - 1}u) {
${flush("      ")}
    }
    workgroupBarrier();
  }
${flush("  ")}
  let partial = u.splits > 1u;
  let plane = split * u.gm * n4;`);
  for (const pp of range(TM4)) {
    for (const i of range(4)) {
      p(`  {
    let m = tile_m * ${bm}u + (ty + ${pp * TY}u) * 4u + ${i}u;
    if (m < u.gm) {`);
      for (const q of range(TN4)) {
        p(`      {
        let c4 = tile_n * ${BN4}u + tx + ${q * TX}u;
        if (c4 < n4) {
${epilogueStore(op, elem, `t${pp}_${i}_${q}`, "          ")}        }
      }`);
      }
      p(`    }
  }`);
    }
  }
  p(geluPass(
    op,
    elem,
    { p: TM4, q: TN4 },
    `tile_m * ${bm}u + (ty + p * ${TY}u) * 4u + i`,
    `tile_n * ${BN4}u + tx + q * ${TX}u`,
  ));
  p(`}`);
  return L.join("\n") + "\n";
}
