/**
 * WGSL sources of the linear (fully connected) variants; `linear.ts` is the wrapper that launches them.
 * Each is generated for a storage flavour (`kernels/_precision.ts`): x and res (inputs), w and b (weights),
 * y (output) f32 or f16, every product, sum and GELU f32.
 *
 * This module is browser compatible.
 * @module
 */
import { ERF_WGSL } from "./erf.wgsl.ts";
import { FLAVOURS, storageNote, type StorageTypes, wgslEnable, wgslStorage } from "./_precision.ts";

/** Uniform struct shared by every variant; `linearUniforms` in `linear.ts` packs it field by field. */
const uniformStruct = /* wgsl */ `
struct Uniforms {
  m: u32, din: u32, dout: u32, units: u32,
  col_tiles: u32, bias: u32, gelu: u32, accumulate: u32,
}
`;

const bindingsWgsl = (width: 1 | 4, t: StorageTypes) => {
  const [X, W, Y] = [t.input, t.weights, t.output].map(wgslStorage);
  const type = (s: typeof X) => (width === 1 ? s.scalar : s.vec4);
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<${type(X)}>;
@group(0) @binding(1) var<storage, read> w: array<${type(W)}>;
@group(0) @binding(2) var<storage, read> b: array<${type(W)}>;
@group(0) @binding(3) var<storage, read> res: array<${type(X)}>;
@group(0) @binding(4) var<storage, read_write> y: array<${type(Y)}>;
@group(0) @binding(5) var<uniform> u: Uniforms;
`;
};

/**
 * One output per invocation: the baseline every faster variant is checked against; any Din and Dout.
 *
 * @param name Variant name for the header.
 * @param t Storage types.
 * @returns The WGSL source.
 */
export function linearDirectSource(name: string, t: StorageTypes): string {
  const [X, W, Y] = [t.input, t.weights, t.output].map(wgslStorage);
  return /* wgsl */ `
// ${name}: y[r,o] = act(sum_i x[r,i] * w[i,o] + b[o]) (+ res[r,o] if accumulate), act = identity or GELU
//   (GELU and accumulate are not combined)
// x: ${X.scalar} [M,Din] (M = N*T rows) · w: ${W.scalar} [Din,Dout] (Dout contiguous) · b: ${W.scalar} [Dout] ·
//   res: ${X.scalar} [M,Dout] · y: ${Y.scalar} [M,Dout]
// bindings: 0 x r · 1 w r · 2 b r (read only when bias != 0) · 3 res r (read only when accumulate) ·
//   4 y rw · 5 uniforms {m,din,dout,units,col_tiles,bias,gelu,accumulate: u32}
// overrides: WG (workgroup size), CK (Din chunk summed apart) · dispatch: ceil(M*Dout / WG) workgroups folded
//   over x,y; linear id = (wid.y * nwg.x + wid.x) * WG + lid, one output per invocation, tail guarded
// numerics: f32 fma${storageNote(t.input, t.weights, t.output)}; each chunk of CK terms is summed into
//   a partial that is then added to the total; GELU exact (erf, see erf.wgsl.ts)
${wgslEnable(t.input, t.weights, t.output)}${uniformStruct}
override WG: u32 = 64u;
override CK: u32 = 64u;
${bindingsWgsl(1, t)}
${ERF_WGSL}
@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.y * nwg.x + wid.x) * WG + lid;
  if (idx >= u.units) { return; }
  let o = idx % u.dout;
  let r = idx / u.dout;
  var total = 0.0;
  for (var i0 = 0u; i0 < u.din; i0 += CK) {
    let i1 = min(i0 + CK, u.din);
    var part = 0.0;
    for (var i = i0; i < i1; i++) {
      part = fma(${X.load("x[r * u.din + i]")}, ${W.load("w[i * u.dout + o]")}, part);
    }
    total += part;
  }
  if (u.bias != 0u) { total += ${W.load("b[o]")}; }
  if (u.gelu != 0u) { total = gelu_erf(total); }
  if (u.accumulate != 0u) { total += ${X.load("res[idx]")}; }
  y[idx] = ${Y.store("total")};
}
`;
}

/** The f32 baseline's source. */
export const linearDirectWgsl: string = linearDirectSource("linear_direct", FLAVOURS.f32);

const GELU4_WGSL = /* wgsl */ `${ERF_WGSL}
fn gelu4(v: vec4f) -> vec4f {
  return vec4f(gelu_erf(v.x), gelu_erf(v.y), gelu_erf(v.z), gelu_erf(v.w));
}
`;

/** Rows per invocation of `linear_tiled`. */
export const LINEAR_TILED_ROWS = 8;
/** vec4 column groups per invocation of `linear_tiled` (8 output features). */
export const LINEAR_TILED_COLUMNS4 = 2;
/** Rows per invocation of `linear_big_tile`. */
export const LINEAR_BIG_TILE_ROWS = 16;
/** vec4 column groups per invocation of `linear_big_tile` (32 output features). */
export const LINEAR_BIG_TILE_COLUMNS4 = 8;

/**
 * Writes a register-tiled linear: each invocation owns `tm` rows x `tn4` vec4 groups of output features,
 * accumulated in named `vec4f` variables; lanes along the output features.
 *
 * Why templating (STYLE.md allows it where an override cannot express the code): as in `conv2d.wgsl.ts`,
 * the register tile must be one named variable per accumulator, since llvmpipe keeps function-scope arrays
 * in scratch memory when it does not unroll the loops over them. The tile sizes are TS constants, read by
 * the wrapper's dispatch maths; the workgroup size and the chunk length stay WGSL overrides.
 *
 * @param name Variant name for the header.
 * @param tm Rows per invocation.
 * @param tn4 vec4 column groups per invocation.
 * @param types Storage types (default f32).
 * @param gelu Whether the kernel has the GELU epilogue (default true); without it the wrapper refuses GELU.
 * @returns The WGSL source.
 */
export function linearTiledWgsl(
  name: string,
  tm: number,
  tn4: number,
  types: StorageTypes = FLAVOURS.f32,
  gelu = true,
): string {
  const [X, W, Y] = [types.input, types.weights, types.output].map(wgslStorage);
  const J = [...Array(tm).keys()];
  const T = [...Array(tn4).keys()];
  const comp = ["x", "y", "z", "w"];
  const L: string[] = [];
  const p = (line: string) => L.push(line);
  p(`// ${name}: y[r,o] = act(sum_i x[r,i] * w[i,o] + b[o]) (+ res[r,o] if accumulate), act = identity or GELU
//   (GELU and accumulate are not combined)
// x: ${X.scalar} [M,Din] (M = N*T rows), Din % 4 == 0 · w: ${W.scalar} [Din,Dout] (Dout contiguous), Dout % 4 == 0 ·
//   b: ${W.scalar} [Dout] · res: ${X.scalar} [M,Dout] · y: ${Y.scalar} [M,Dout]
// bindings: 0 x r · 1 w r · 2 b r (read only when bias != 0) · 3 res r (read only when accumulate) ·
//   4 y rw · 5 uniforms {m,din,dout,units,col_tiles,bias,gelu,accumulate: u32}
// overrides: WG (workgroup size), CK (Din chunk summed apart) · register tile: TM = ${tm} rows x ${
    4 * tn4
  } features
//   (${tn4} vec4 along Dout) per invocation, unrolled by the generator in linear.wgsl.ts
// dispatch (col_tiles = ceil(Dout / ${
    4 * tn4
  })): units = ceil(M / TM) * col_tiles invocations, ceil(units / WG)
//   workgroups folded over x,y; unit = (wid.y * nwg.x + wid.x) * WG + lid, tail returns; feature block =
//   unit % col_tiles, rows (unit / col_tiles) * TM + j: neighbouring lanes share rows, differ in features
// loads: x as vec4 along Din, w and b as vec4 along Dout; row and column tails clamped, stores guarded
// numerics: f32 fma${storageNote(X.dtype, W.dtype, Y.dtype)}; each chunk of CK terms of Din is summed
//   into a partial that is then added to the total; epilogue: + b, then + res (accumulate)${
    gelu
      ? " or GELU exact\n//   (erf, see erf.wgsl.ts), in f32 before the one store"
      : ";\n//   no GELU in this variant (the wrapper refuses it)"
  }
${wgslEnable(X.dtype, W.dtype, Y.dtype)}${uniformStruct}
override WG: u32 = 64u;
override CK: u32 = 64u;
${bindingsWgsl(4, types)}
${gelu ? GELU4_WGSL : ""}
@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let dout4 = u.dout / 4u;
  let din4 = u.din / 4u;
  let ck4 = max(CK / 4u, 1u);
  let unit = (wid.y * nwg.x + wid.x) * WG + lid;
  if (unit >= u.units) { return; }
  let co4 = (unit % u.col_tiles) * ${tn4}u;
  let mb = (unit / u.col_tiles) * ${tm}u;`);
  for (const j of J) p(`  let m${j} = mb + ${j}u;`);
  for (const j of J) p(`  let xo${j} = min(m${j}, u.m - 1u) * din4;`);
  for (const t of T) p(`  let col${t} = min(co4 + ${t}u, dout4 - 1u);`);
  for (const j of J) for (const t of T) p(`  var tot${j}_${t} = vec4f(0.0);`);
  p(`  for (var c0 = 0u; c0 < din4; c0 += ck4) {
    let c1 = min(c0 + ck4, din4);`);
  for (const j of J) for (const t of T) p(`    var a${j}_${t} = vec4f(0.0);`);
  p(`    for (var c = c0; c < c1; c++) {`);
  for (const j of J) p(`      let x${j} = ${X.load(`x[xo${j} + c]`, 4)};`);
  p(`      let wr = c * 4u * dout4; // w[4c, :] in vec4`);
  for (let r = 0; r < 4; r++) {
    for (const t of T) {
      p(`      let w${r}_${t} = ${W.load(`w[wr + ${r === 0 ? "" : `${r}u * dout4 + `}col${t}]`, 4)};`);
    }
  }
  for (let r = 0; r < 4; r++) {
    for (const j of J) {
      for (const t of T) p(`      a${j}_${t} = fma(vec4f(x${j}.${comp[r]}), w${r}_${t}, a${j}_${t});`);
    }
  }
  p(`    }`);
  for (const j of J) for (const t of T) p(`    tot${j}_${t} += a${j}_${t};`);
  p(`  }`);
  for (const t of T) p(`  let b${t} = select(vec4f(0.0), ${W.load(`b[col${t}]`, 4)}, u.bias != 0u);`);
  // An f32 y holds the pre-activation exactly, so the GELU below re-reads it from y; an f16 y would round it
  // twice, so the f16 flavours keep the f32 tile in a private array for the GELU (touched once per output).
  // That array costs compile time with the tile's size (16 vec4: 0.3 s on lavapipe; 128: 10 to 15 s), so
  // the generator's caller leaves GELU out of the large f16 tiles.
  const staged = gelu && Y.dtype !== "f32";
  if (staged) p(`  var pre: array<vec4f, ${tm * tn4}>; // the f32 tile before its GELU`);
  for (const j of J) {
    p(`  if (m${j} < u.m) {`);
    for (const t of T) {
      p(`    if (co4 + ${t}u < dout4) {
      let yo = m${j} * dout4 + co4 + ${t}u;
      var r = tot${j}_${t} + b${t};
      if (u.accumulate != 0u) { r += ${X.load("res[yo]", 4)}; }
      ${
        staged
          ? `pre[${j * tn4 + t}u] = r;
      `
          : ""
      }y[yo] = ${Y.store("r", 4)};
    }`);
    }
    p(`  }`);
  }
  // The GELU runs over the tile just stored, in one loop: one copy of its code rather than one per
  // accumulator (unrolled 4 * TM * TN4 times it took minutes to compile on llvmpipe's GL path). The wrapper
  // refuses GELU with accumulate, which would need the residual kept apart.
  if (gelu) {
    p(`  if (u.gelu != 0u) {
    // bounds from the uniforms, so no compiler unrolls this loop back into per-accumulator copies
    let rows = min(${tm}u, u.m - mb);
    let cols = min(${tn4}u, dout4 - co4);
    for (var j = 0u; j < rows; j++) {
      for (var t = 0u; t < cols; t++) {
        let yo = (mb + j) * dout4 + co4 + t;
        y[yo] = ${staged ? Y.store(`gelu4(pre[j * ${tn4}u + t])`, 4) : "gelu4(y[yo])"};
      }
    }
  }`);
  }

  p(`}`);
  return L.join("\n") + "\n";
}

/** Register tile, lanes along output features: 8 rows x 8 features per invocation (f32). */
export const linearTiledWgslSource: string = linearTiledWgsl(
  "linear_tiled",
  LINEAR_TILED_ROWS,
  LINEAR_TILED_COLUMNS4,
);

/** Register tile of 16 rows x 32 features per invocation: 10.7 FMAs per loaded float, for CPU adapters. */
export const linearBigTileWgslSource: string = linearTiledWgsl(
  "linear_big_tile",
  LINEAR_BIG_TILE_ROWS,
  LINEAR_BIG_TILE_COLUMNS4,
);
