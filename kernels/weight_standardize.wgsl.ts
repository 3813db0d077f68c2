/**
 * WGSL of {@linkcode weightStandardizeSpec}, for an f32 or an f16 resident tensor.
 *
 * This module is browser compatible.
 * @module
 */
import type { Dtype } from "../engine/precision.ts";
import { F16_RNE_WGSL, wgslEnable } from "./_precision.ts";

/**
 * Standardises one convolution kernel per output channel and writes it as HWIO with Cin padded: f32, or
 * f16 rounded to nearest even from the same f32 value (`f16_rne`, since WGSL's own f32-to-f16 conversion may
 * round either way). Standardised values are at most sqrt(KH*KW*Cin) in magnitude, far inside f16's range.
 *
 * @param name Variant name for the header.
 * @param dtype How the resident tensor is stored.
 */
export function weightStandardizeWgsl(name: string, dtype: Dtype): string {
  const half = dtype === "f16";
  return /* wgsl */ `
// ${name}: w[y,x,i,o] = (raw[o,i,y,x] - mean[o]) / sqrt(var[o] + eps); i >= Cin written as 0
// raw: the tensor's bytes as u32 words, F32 | F16 | BF16, OIHW [Cout,Cin,KH,KW] or HWIO [KH,KW,Cin,Cout]
// w: ${dtype} HWIO [KH,KW,CinPadded,Cout], Cout contiguous
// bindings: 0 raw r · 1 w rw · 2 uniforms {cout,cin,kh,kw,cin_padded,dtype_code,layout_code: u32; eps: f32}
// overrides: TO (output channels per workgroup), TJ (fan-in lanes per channel, a power of two); workgroup
//   TO x TJ · dispatch: ceil(Cout/TO) workgroups folded over x and y (foldWorkgroups), the linear id
//   rebuilt from num_workgroups; consecutive invocations take consecutive output channels, so HWIO reads
//   and all writes share cache lines (one channel per workgroup read a line per element in HWIO)
// numerics: f32; two passes over the KH*KW*Cin fan-in (mean, then mean of squared deviations, biased),
//   each a blocked per-lane sum then a tree over the TJ lanes in workgroup memory;
//   w' = (w - mean) * (1/sqrt(var+eps))${half ? ", stored rounded to nearest even (f16_rne)" : ""}
${wgslEnable(dtype)}
override TO: u32 = 16u;
override TJ: u32 = 16u;
const BLOCK = 16u;

struct Uniforms {
  cout: u32,
  cin: u32,
  kh: u32,
  kw: u32,
  cin_padded: u32,
  dtype_code: u32,
  layout_code: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> raw: array<u32>;
@group(0) @binding(1) var<storage, read_write> w: array<${dtype}>;
@group(0) @binding(2) var<uniform> u: Uniforms;

const DTYPE_F32 = 0u;
const DTYPE_F16 = 1u;
const LAYOUT_HWIO = 1u;

var<workgroup> partial: array<f32, TO * TJ>;
${half ? F16_RNE_WGSL : ""}
// Element e of the tensor in its stored dtype; 16-bit elements pack two to a word, first in the low half.
fn load(e: u32) -> f32 {
  if (u.dtype_code == DTYPE_F32) {
    return bitcast<f32>(raw[e]);
  }
  let bits = (raw[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
  if (u.dtype_code == DTYPE_F16) {
    return unpack2x16float(bits).x;
  }
  return bitcast<f32>(bits << 16u); // BF16: the top half of an f32
}

// Stored index of fan-in element j of output channel o, with j = (y*KW + x)*Cin + i (HWIO order).
fn source_index(o: u32, j: u32) -> u32 {
  if (u.layout_code == LAYOUT_HWIO) {
    return j * u.cout + o;
  }
  let i = j % u.cin;
  let yx = j / u.cin;
  return (o * u.cin + i) * (u.kh * u.kw) + yx; // OIHW: ((o*Cin + i)*KH + y)*KW + x
}

// Sum over the TJ lanes of each output channel; call from workgroup-uniform control flow.
fn lane_sum(lid: vec3u, v: f32) -> f32 {
  partial[lid.y * TO + lid.x] = v;
  workgroupBarrier();
  for (var s = TJ / 2u; s > 0u; s >>= 1u) {
    if (lid.y < s) {
      partial[lid.y * TO + lid.x] += partial[(lid.y + s) * TO + lid.x];
    }
    workgroupBarrier();
  }
  let total = partial[lid.x];
  workgroupBarrier(); // partial is reused by the next call
  return total;
}

// Sum over this lane's fan-in elements j = lane, lane + TJ, ... of (value - shift)^power, in blocks of
// BLOCK terms so rounding grows with BLOCK + fan_in / (TJ * BLOCK), not fan_in / TJ.
fn lane_terms(o: u32, lane: u32, fan_in: u32, shift: f32, square: bool) -> f32 {
  var total = 0.0;
  for (var j0 = lane; j0 < fan_in; j0 += TJ * BLOCK) {
    var block = 0.0;
    for (var j = j0; j < min(j0 + TJ * BLOCK, fan_in); j += TJ) {
      let d = load(source_index(o, j)) - shift;
      block += select(d, d * d, square);
    }
    total += block;
  }
  return total;
}

@compute @workgroup_size(TO, TJ)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
) {
  let tile = wid.y * nwg.x + wid.x;
  if (tile * TO >= u.cout) {
    return; // workgroup-uniform
  }
  let o = tile * TO + lid.x;
  let live = o < u.cout; // the last tile may be partial; its idle lanes still join the barriers
  let fan_in = u.kh * u.kw * u.cin;
  var s = 0.0;
  if (live) {
    s = lane_terms(o, lid.y, fan_in, 0.0, false);
  }
  let mean = lane_sum(lid, s) / f32(fan_in);
  var ss = 0.0;
  if (live) {
    ss = lane_terms(o, lid.y, fan_in, mean, true);
  }
  let variance = lane_sum(lid, ss) / f32(fan_in);
  if (!live) {
    return;
  }
  let scale = 1.0 / sqrt(variance + u.eps);
  let padded = u.kh * u.kw * u.cin_padded;
  for (var jp = lid.y; jp < padded; jp += TJ) {
    let i = jp % u.cin_padded;
    var v = 0.0;
    if (i < u.cin) {
      v = (load(source_index(o, (jp / u.cin_padded) * u.cin + i)) - mean) * scale;
    }
    w[jp * u.cout + o] = ${half ? "f16_rne(v)" : "v"};
  }
}
`;
}

/** The f32 flavour's source. */
export const WEIGHT_STANDARDIZE_WGSL: string = weightStandardizeWgsl("weight_standardize", "f32");
