/**
 * WGSL source of `resize_bilinear` (see `resize_bilinear.ts` for the wrapper that launches it).
 *
 * This module is browser compatible.
 * @module
 */

/** Decoded RGBA8 pixels -> scaled, resized model input slot n of an NHWC [N,S,S,4] batch. */
export const resizeBilinearWgsl = /* wgsl */ `
// resize_bilinear: x[n,oy,ox,c] = bilinear(p * scale[c] + offset[c]) at (in_y, in_x) for c < 3; x[n,oy,ox,3] = 0
//   in_y = (oy + 0.5) * ratio_y - 0.5 (half-pixel centres), taps floor/ceil clamped to [0, H-1],
//   lerp = in - floor(in) from the unclamped coordinate (TF ResizeBilinear, half_pixel_centers=True)
// pixels: u32 [H,W] RGBA8 (R in the low byte, byte 3 ignored) · x: f32 NHWC [N,S,S,4] (channel 3 = 0)
// bindings: 0 pixels r · 1 x rw · 2 uniforms {src_w,src_h,size,n: u32; ratio_y,ratio_x,scale_r,scale_g,
//   scale_b,offset_r,offset_g,offset_b: f32}
// overrides: WG (workgroup size) · dispatch: ceil(S*S / WG) workgroups folded over x,y; linear id =
//   wid.y * nwg.x + wid.x; one output pixel (vec4) per invocation, tail guarded
// numerics: f32 in TF's order: each tap scaled first (p * scale + offset), then top = tl + (tr - tl) * lx,
//   bottom = bl + (br - bl) * lx, out = top + (bottom - top) * ly; ratio = f32(H) / f32(S) from the host.
//   With H = W = S (pixels already resized, e.g. Pillow's resample on the CPU) every lerp is 0 and the
//   output is exactly p * scale + offset.
struct Uniforms {
  src_w: u32, src_h: u32, size: u32, n: u32,
  ratio_y: f32, ratio_x: f32, scale_r: f32, scale_g: f32,
  scale_b: f32, offset_r: f32, offset_g: f32, offset_b: f32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: Uniforms;

// Source coordinate along one axis: the two taps (clamped) and the weight of the second.
struct Taps { lo: u32, hi: u32, lerp: f32 }

fn taps(o: u32, ratio: f32, len: u32) -> Taps {
  let pos = (f32(o) + 0.5) * ratio - 0.5;
  let fl = floor(pos);
  let lo = u32(max(i32(fl), 0));
  let hi = u32(min(i32(ceil(pos)), i32(len) - 1));
  return Taps(lo, hi, pos - fl);
}

fn texel(y: u32, xx: u32) -> vec3<f32> {
  let p = pixels[y * u.src_w + xx];
  let rgb = vec3<f32>(f32(p & 0xffu), f32((p >> 8u) & 0xffu), f32((p >> 16u) & 0xffu));
  return rgb * vec3<f32>(u.scale_r, u.scale_g, u.scale_b) + vec3<f32>(u.offset_r, u.offset_g, u.offset_b);
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  let s = u.size;
  if (i >= s * s) { return; }
  let oy = i / s;
  let ox = i % s;
  let ty = taps(oy, u.ratio_y, u.src_h);
  let tx = taps(ox, u.ratio_x, u.src_w);
  let tl = texel(ty.lo, tx.lo);
  let tr = texel(ty.lo, tx.hi);
  let bl = texel(ty.hi, tx.lo);
  let br = texel(ty.hi, tx.hi);
  let top = tl + (tr - tl) * tx.lerp;
  let bottom = bl + (br - bl) * tx.lerp;
  let v = top + (bottom - top) * ty.lerp;
  x[u.n * s * s + i] = vec4<f32>(v, 0.0);
}
`;
