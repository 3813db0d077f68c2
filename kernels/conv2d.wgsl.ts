/**
 * WGSL sources of the conv2d variants (see `conv2d.ts` for the wrapper that launches them), each generated
 * for a storage flavour (`kernels/_precision.ts`): x, w, bias and y are f32 or f16 in storage, every
 * product and sum f32.
 *
 * This module is browser compatible.
 * @module
 */
import { FLAVOURS, storageNote, type StorageTypes, wgslEnable, wgslStorage } from "./_precision.ts";

/** Uniform struct shared by every variant; `conv2dUniforms` in `conv2d.ts` packs it field by field. */
const uniformStruct = /* wgsl */ `
struct Uniforms {
  n: u32, h: u32, w: u32, cin: u32,
  cout: u32, kh: u32, kw: u32, stride: u32,
  pad: u32, oh: u32, ow: u32, accumulate: u32,
  m: u32, units: u32, cout_tiles: u32, has_bias: u32,
  relu: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}
`;

/**
 * One output per invocation: the baseline every faster variant is checked against.
 *
 * @param name Variant name for the header.
 * @param t Storage types: x (input), w and bias (weights), y (output, read too when accumulating).
 * @returns The WGSL source.
 */
export function conv2dDirectSource(name: string, t: StorageTypes): string {
  const X = wgslStorage(t.input), W = wgslStorage(t.weights), Y = wgslStorage(t.output);
  return /* wgsl */ `
// ${name}: y[n,oy,ox,co] = act(sum_{ky,kx,ci} x[n, oy*S-P+ky, ox*S-P+kx, ci] * w[ky,kx,ci,co]
//   (+ bias[co] if has_bias) (+ y if accumulate)), act = ReLU if relu else identity
// x: ${X.scalar} NHWC [N,H,W,Cin] · w: ${W.scalar} HWIO [KH,KW,Cin,Cout] · bias: ${W.scalar} [Cout] · y: ${Y.scalar} NHWC [N,OH,OW,Cout];
//   zero padding P
// bindings: 0 x r · 1 w r · 2 bias r · 3 y rw · 4 uniforms {n,h,w,cin,cout,kh,kw,stride,pad,oh,ow,accumulate,
//   m,units,cout_tiles,has_bias,relu,_pad0,_pad1,_pad2: u32}
// overrides: WG (workgroup size), CK (Cin chunk summed apart) · dispatch: ceil(N*OH*OW*Cout / WG) workgroups
//   folded over x,y; linear id = wid.y * nwg.x + wid.x; one output per invocation, tail guarded
// numerics: f32${storageNote(t.input, t.weights, t.output)}; each (ky,kx,chunk of CK input channels) is
//   summed into a partial that is then added to the total, which keeps the error growth of K = KH*KW*Cin
//   terms far below one sequential chain
${wgslEnable(t.input, t.weights, t.output)}${uniformStruct}
override WG: u32 = 64u;
override CK: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<${X.scalar}>;
@group(0) @binding(1) var<storage, read> w: array<${W.scalar}>;
@group(0) @binding(2) var<storage, read> bias: array<${W.scalar}>;
@group(0) @binding(3) var<storage, read_write> y: array<${Y.scalar}>;
@group(0) @binding(4) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.y * nwg.x + wid.x) * WG + lid;
  if (idx >= u.units) { return; }
  let co = idx % u.cout;
  let p = idx / u.cout;
  let ox = p % u.ow;
  let t = p / u.ow;
  let oy = t % u.oh;
  let b = t / u.oh;
  var total = 0.0;
  for (var ky = 0u; ky < u.kh; ky++) {
    let iy = i32(oy * u.stride + ky) - i32(u.pad);
    if (iy < 0 || iy >= i32(u.h)) { continue; }
    for (var kx = 0u; kx < u.kw; kx++) {
      let ix = i32(ox * u.stride + kx) - i32(u.pad);
      if (ix < 0 || ix >= i32(u.w)) { continue; }
      let xb = ((b * u.h + u32(iy)) * u.w + u32(ix)) * u.cin;
      let wb = (ky * u.kw + kx) * u.cin * u.cout + co;
      for (var c0 = 0u; c0 < u.cin; c0 += CK) {
        let c1 = min(c0 + CK, u.cin);
        var part = 0.0;
        for (var ci = c0; ci < c1; ci++) {
          part = fma(${X.load("x[xb + ci]")}, ${W.load("w[wb + ci * u.cout]")}, part);
        }
        total += part;
      }
    }
  }
  if (u.has_bias != 0u) { total += ${W.load("bias[co]")}; }
  if (u.accumulate != 0u) { total += ${Y.load("y[idx]")}; }
  if (u.relu != 0u) { total = max(total, 0.0); }
  y[idx] = ${Y.store("total")};
}
`;
}

/** The f32 baseline's source. */
export const conv2dDirectWgsl: string = conv2dDirectSource("conv2d_direct", FLAVOURS.f32);

/** Output pixels per invocation of `conv2d_tiled`. */
export const TILED_PIXELS = 8;
/** vec4 column groups per invocation of `conv2d_tiled` (8 output channels). */
export const TILED_COLUMNS4 = 2;
/** Output pixels per invocation of `conv2d_pixel_lanes` (a workgroup owns WG times as many). */
export const PIXEL_LANES_PIXELS = 8;
/** vec4 column groups per invocation of `conv2d_pixel_lanes` (16 output channels). */
export const PIXEL_LANES_COLUMNS4 = 4;

/**
 * Writes a register-tiled conv2d: each invocation owns `tm` output pixels x `tn4` vec4 groups of output
 * channels, accumulated in named `vec4f` variables.
 *
 * Why templating (STYLE.md allows it where an override cannot express the code): the register tile must be
 * one named variable per accumulator. WGSL function-scope arrays need const sizes, and when the driver does
 * not unroll the loops over them (llvmpipe did not reliably) they live in per-lane scratch memory, which ran
 * at half the speed. The tile sizes are TS constants exported above, read by the wrapper's dispatch maths;
 * the workgroup size and the chunk length stay WGSL overrides.
 *
 * @param name Variant name for the header.
 * @param tm Output pixels per invocation.
 * @param tn4 vec4 groups of output channels per invocation.
 * @param lanes What neighbouring lanes differ in.
 * @param types Storage types: x (input), w and bias (weights), y (output, read too when accumulating).
 * @returns The WGSL source.
 */
export function registerTileWgsl(
  name: string,
  tm: number,
  tn4: number,
  lanes: "channels" | "pixels",
  types: StorageTypes = FLAVOURS.f32,
): string {
  const X = wgslStorage(types.input), W = wgslStorage(types.weights), Y = wgslStorage(types.output);
  const J = [...Array(tm).keys()];
  const T = [...Array(tn4).keys()];
  const comp = ["x", "y", "z", "w"];
  const L: string[] = [];
  const p = (line: string) => L.push(line);
  const mapping = lanes === "channels"
    ? `unit = (wid.y * nwg.x + wid.x) * WG + lid, tail returns; channel block = unit % cout_tiles,
//   pixels (unit / cout_tiles) * TM + j: neighbouring lanes share pixels and differ in channels`
    : `g = wid.y * nwg.x + wid.x is one workgroup's unit; channel block = g % cout_tiles (the same for
//   every lane, so weight addresses are workgroup-uniform); lane l owns pixels (g / cout_tiles) * WG * TM + j * WG + l`;
  const units = lanes === "channels"
    ? "ceil(M / TM) * cout_tiles invocations, ceil(units / WG) workgroups"
    : "ceil(M / (WG * TM)) * cout_tiles workgroups";
  p(`// ${name}: y[n,oy,ox,co] = act(sum_{ky,kx,ci} x[n, oy*S-P+ky, ox*S-P+kx, ci] * w[ky,kx,ci,co]
//   (+ bias[co] if has_bias) (+ y if accumulate)), act = ReLU if relu else identity
// x: ${X.scalar} NHWC [N,H,W,Cin], Cin % 4 == 0 · w: ${W.scalar} HWIO [KH,KW,Cin,Cout], Cout % 4 == 0 · bias: ${W.scalar} [Cout] ·
//   y: ${Y.scalar} NHWC [N,OH,OW,Cout]
// bindings: 0 x r · 1 w r · 2 bias r · 3 y rw · 4 uniforms {n,h,w,cin,cout,kh,kw,stride,pad,oh,ow,accumulate,
//   m,units,cout_tiles,has_bias,relu,_pad0,_pad1,_pad2: u32}
// overrides: WG (workgroup size), CK (Cin chunk summed apart) · register tile: TM = ${tm} pixels (flattened
//   n,oy,ox) x ${
    4 * tn4
  } channels (${tn4} vec4 along Cout) per invocation, unrolled by the generator in conv2d.wgsl.ts
// dispatch (M = N*OH*OW, cout_tiles = ceil(Cout / ${4 * tn4})): ${units}, folded over x,y;
//   ${mapping}
// loads: x as vec4 along Cin (zero outside the input), w as vec4 along Cout; tails clamped, stores guarded
// numerics: f32 fma${storageNote(X.dtype, W.dtype, Y.dtype)}; each (ky,kx,chunk of CK input channels) is
//   summed into a partial that is then added to the total, which keeps the error growth of K = KH*KW*Cin
//   terms far below one sequential chain
${wgslEnable(X.dtype, W.dtype, Y.dtype)}${uniformStruct}
override WG: u32 = 64u;
override CK: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<${X.vec4}>;
@group(0) @binding(1) var<storage, read> w: array<${W.vec4}>;
@group(0) @binding(2) var<storage, read> bias: array<${W.vec4}>;
@group(0) @binding(3) var<storage, read_write> y: array<${Y.vec4}>;
@group(0) @binding(4) var<uniform> u: Uniforms;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let cout4 = u.cout / 4u;
  let cin4 = u.cin / 4u;
  let ck4 = max(CK / 4u, 1u);`);
  if (lanes === "channels") {
    p(`  let unit = (wid.y * nwg.x + wid.x) * WG + lid;
  if (unit >= u.units) { return; }
  let co4 = (unit % u.cout_tiles) * ${tn4}u;
  let mb = (unit / u.cout_tiles) * ${tm}u;`);
    for (const j of J) p(`  let m${j} = mb + ${j}u;`);
  } else {
    p(`  let g = wid.y * nwg.x + wid.x;
  if (g >= u.units) { return; }
  let co4 = (g % u.cout_tiles) * ${tn4}u;
  let mb = (g / u.cout_tiles) * WG * ${tm}u + lid;`);
    for (const j of J) p(`  let m${j} = mb + ${j}u * WG;`);
  }
  p(`  // output pixel -> top-left input corner of its window (may be negative: padding) and image index`);
  for (const j of J) {
    p(`  let q${j} = min(m${j}, u.m - 1u);
  let ox${j} = i32((q${j} % u.ow) * u.stride) - i32(u.pad);
  let oy${j} = i32(((q${j} / u.ow) % u.oh) * u.stride) - i32(u.pad);
  let nb${j} = q${j} / u.ow / u.oh;`);
  }
  for (const t of T) p(`  let col${t} = min(co4 + ${t}u, cout4 - 1u);`);
  for (const j of J) for (const t of T) p(`  var tot${j}_${t} = vec4f(0.0);`);
  p(`  for (var ky = 0u; ky < u.kh; ky++) {
    for (var kx = 0u; kx < u.kw; kx++) {`);
  for (const j of J) {
    p(`      let iy${j} = oy${j} + i32(ky);
      let ix${j} = ox${j} + i32(kx);
      let ok${j} = iy${j} >= 0 && iy${j} < i32(u.h) && ix${j} >= 0 && ix${j} < i32(u.w);
      let xo${j} = select(0u, ((nb${j} * u.h + u32(iy${j})) * u.w + u32(ix${j})) * cin4, ok${j});`);
  }
  p(`      let wt = (ky * u.kw + kx) * u.cin; // row of w[ky, kx, 0, :]
      for (var c0 = 0u; c0 < cin4; c0 += ck4) {
        let c1 = min(c0 + ck4, cin4);`);
  for (const j of J) for (const t of T) p(`        var a${j}_${t} = vec4f(0.0);`);
  p(`        for (var c = c0; c < c1; c++) {`);
  for (const j of J) p(`          let x${j} = select(vec4f(0.0), ${X.load(`x[xo${j} + c]`, 4)}, ok${j});`);
  p(`          let wr = (wt + c * 4u) * cout4; // w[ky, kx, 4c, :] in vec4`);
  for (let r = 0; r < 4; r++) {
    for (const t of T) {
      p(`          let w${r}_${t} = ${W.load(`w[wr + ${r === 0 ? "" : `${r}u * cout4 + `}col${t}]`, 4)};`);
    }
  }
  for (let r = 0; r < 4; r++) {
    for (const j of J) {
      for (const t of T) p(`          a${j}_${t} = fma(vec4f(x${j}.${comp[r]}), w${r}_${t}, a${j}_${t});`);
    }
  }
  p(`        }`);
  for (const j of J) for (const t of T) p(`        tot${j}_${t} += a${j}_${t};`);
  p(`      }
    }
  }`);
  for (const j of J) {
    p(`  if (m${j} < u.m) {`);
    for (const t of T) {
      p(`    if (co4 + ${t}u < cout4) {
      let yo = m${j} * cout4 + co4 + ${t}u;
      var r = tot${j}_${t};
      if (u.has_bias != 0u) { r += ${W.load(`bias[co4 + ${t}u]`, 4)}; }
      if (u.accumulate != 0u) { r += ${Y.load("y[yo]", 4)}; }
      if (u.relu != 0u) { r = max(r, vec4f(0.0)); }
      y[yo] = ${Y.store("r", 4)};
    }`);
    }
    p(`  }`);
  }
  p(`}`);
  return L.join("\n") + "\n";
}

/**
 * Register tile, lanes along channels: each invocation owns 8 consecutive output pixels x 8 output channels,
 * loading x as vec4 along Cin and w as vec4 along Cout.
 */
export const conv2dTiledWgsl: string = registerTileWgsl(
  "conv2d_tiled",
  TILED_PIXELS,
  TILED_COLUMNS4,
  "channels",
);

/**
 * Register tile, lanes along pixels: every invocation of a workgroup shares one block of 16 output channels
 * (workgroup-uniform weight addresses) and owns 8 pixels strided by WG.
 */
export const conv2dPixelLanesWgsl: string = registerTileWgsl(
  "conv2d_pixel_lanes",
  PIXEL_LANES_PIXELS,
  PIXEL_LANES_COLUMNS4,
  "pixels",
);
