/**
 * Model-input preprocessing on the GPU: decoded RGBA8 pixels of one image, scaled per channel and resized
 * to S x S with bilinear interpolation (half-pixel centres, no antialias, aspect ratio not kept), written
 * into image slot `n` of an NHWC batch. The wrapper describes the kernel and validates a shape into a
 * launch; it never allocates, submits or reads back.
 *
 * ```
 * resize_bilinear: x[n,oy,ox,c] = bilinear(p * scale[c] + offset[c]) at (in_y, in_x) for c < 3; x[n,oy,ox,3] = 0
 *   in_y = (oy + 0.5) * H/S - 0.5, taps floor/ceil clamped to [0, H-1], lerp from the unclamped coordinate
 * pixels: u32 [H,W] RGBA8 (R in the low byte, byte 3 ignored) · x: f32 NHWC [N,S,S,4] (channel 3 = 0)
 * bindings: 0 pixels r · 1 x rw · 2 uniforms {src_w,src_h,size,n: u32; ratio_y,ratio_x,scale_r,scale_g,
 *   scale_b,offset_r,offset_g,offset_b: f32}
 * overrides: WG (workgroup size) · dispatch: ceil(S*S / WG) folded over x,y; one output pixel per invocation
 * numerics: f32 in TF's order (scale each tap, lerp along x, then along y); ratio = f32(H) / f32(S)
 * ```
 *
 * Why scale before resizing: Derm Foundation's graph multiplies by float32(1/255) and then runs
 * `ResizeBilinear`, so doing the same in float32 reproduces its rounding. The scaling is data (the model's
 * preprocessing); the kernel knows no preset. An image already resized on the CPU (Pillow's resample) goes
 * through with H = W = S, where the interpolation is the identity. Channel 3 is written as 0 because
 * the stem convolution reads vec4 pixels and its 4th input channel's weights are zero.
 *
 * Several images of different source sizes go into one batch buffer by one launch each, with `n` = 0..N-1.
 *
 * This module is browser compatible.
 * @module
 */
import {
  DEFAULT_LAUNCH_LIMITS,
  foldWorkgroups,
  type KernelLaunch,
  type KernelSpec,
  type LaunchLimits,
  packUniforms,
} from "../engine/kernel.ts";
import { resizeBilinearWgsl } from "./resize_bilinear.wgsl.ts";

/** Per-channel pixel scaling, R, G, B: scaled = pixel * scale[c] + offset[c] (the model's preprocessing). */
export type ChannelScaling = readonly [number, number, number];

/** Workgroup size (invocations). */
export const RESIZE_BILINEAR_WORKGROUP_SIZE = 64;

/** Output channels per pixel: R, G, B and a zero 4th channel for vec4 reads. */
export const RESIZE_BILINEAR_CHANNELS = 4;

/** The kernel variant: one output pixel per invocation. */
export const resizeBilinear: KernelSpec = {
  name: "resize_bilinear",
  wgsl: resizeBilinearWgsl,
  bindings: [
    { name: "pixels", type: "read-only-storage" },
    { name: "x", type: "storage" },
  ],
  overrides: { WG: RESIZE_BILINEAR_WORKGROUP_SIZE },
};

/** One resize: source size, output size, slot in the batch, batch size, per-channel scaling. */
export interface ResizeBilinearShape {
  /** Source width W (pixels). */
  readonly srcWidth: number;
  /** Source height H (pixels). */
  readonly srcHeight: number;
  /** Output side S (the model input is S x S). */
  readonly size: number;
  /** Image slot n in the batch, 0 <= n < batch. */
  readonly n: number;
  /** Batch size N of the output buffer. */
  readonly batch: number;
  /** Scale of R, G, B: scaled = pixel * scale + offset. */
  readonly scale: ChannelScaling;
  /** Offset of R, G, B. */
  readonly offset: ChannelScaling;
}

/** A launch of {@linkcode resizeBilinear}, with the buffer sizes it needs. */
export interface ResizeBilinearLaunch extends KernelLaunch {
  /** Shape of the whole output buffer `x`: NHWC [N, S, S, 4] f32. */
  readonly outputShape: readonly [number, number, number, number];
  /** u32 words the `pixels` binding must hold at least: W * H. */
  readonly pixelWords: number;
}

function checkDim(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 1 || v > max) {
    throw new RangeError(`Cannot launch "resize_bilinear": expected ${name} in 1..${max}, got ${v}`);
  }
}

/**
 * Packs the uniforms of `resize_bilinear` in the order of its WGSL struct:
 * `{src_w, src_h, size, n: u32; ratio_y, ratio_x, scale_r, scale_g, scale_b, offset_r, offset_g, offset_b: f32}`
 * (48 bytes).
 */
export function resizeBilinearUniforms(shape: ResizeBilinearShape): Uint8Array<ArrayBuffer> {
  const [sr, sg, sb] = shape.scale;
  const [or, og, ob] = shape.offset;
  return packUniforms([
    ["src_w", "u32", shape.srcWidth],
    ["src_h", "u32", shape.srcHeight],
    ["size", "u32", shape.size],
    ["n", "u32", shape.n],
    // float32(H) / float32(S) rounded once, as TF's CalculateResizeScale (WGSL division may be 2.5 ulp off).
    ["ratio_y", "f32", Math.fround(shape.srcHeight / shape.size)],
    ["ratio_x", "f32", Math.fround(shape.srcWidth / shape.size)],
    ["scale_r", "f32", sr],
    ["scale_g", "f32", sg],
    ["scale_b", "f32", sb],
    ["offset_r", "f32", or],
    ["offset_g", "f32", og],
    ["offset_b", "f32", ob],
  ]);
}

/**
 * Validates a resize and returns its dispatch and uniforms.
 *
 * @param shape Source size, output size S, slot n, batch N and per-channel scaling.
 * @param limits Device limits (default the WebGPU defaults).
 * @returns Workgroups, uniform bytes, the output shape [N,S,S,4] and the pixel words W*H.
 * @throws {RangeError} When a size is not a positive integer, n >= N, or the dispatch does not fit.
 * @throws {TypeError} When a scale or offset is not three finite numbers.
 * @example
 * ```ts
 * const scale = [1 / 255, 1 / 255, 1 / 255] as const, offset = [0, 0, 0] as const;
 * const launch = resizeBilinearLaunch({ srcWidth: 250, srcHeight: 250, size: 448, n: 0, batch: 1, scale, offset });
 * // launch.outputShape = [1, 448, 448, 4]; launch.workgroups = [3136, 1, 1]
 * ```
 */
export function resizeBilinearLaunch(
  shape: ResizeBilinearShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): ResizeBilinearLaunch {
  for (const key of ["scale", "offset"] as const) {
    const v = shape[key];
    if (!Array.isArray(v) || v.length !== 3 || !v.every(Number.isFinite)) {
      throw new TypeError(`Cannot launch "resize_bilinear": expected ${key} as 3 finite numbers, got ${v}`);
    }
  }
  // 65535: indices (oy, ox, tap) stay far inside i32/u32 and H*W fits the u32 pixel index.
  checkDim("srcWidth", shape.srcWidth, 65535);
  checkDim("srcHeight", shape.srcHeight, 65535);
  checkDim("size", shape.size, 16384);
  checkDim("batch", shape.batch, 65535);
  if (!Number.isInteger(shape.n) || shape.n < 0 || shape.n >= shape.batch) {
    throw new RangeError(
      `Cannot launch "resize_bilinear": expected n in 0..${shape.batch - 1}, got ${shape.n}`,
    );
  }
  const s = shape.size;
  if (shape.batch * s * s * RESIZE_BILINEAR_CHANNELS > 0xffffffff) {
    throw new RangeError(
      `Cannot launch "resize_bilinear": batch ${shape.batch} x ${s}^2 x 4 overflows u32 indices`,
    );
  }
  const workgroups = foldWorkgroups(
    Math.ceil((s * s) / RESIZE_BILINEAR_WORKGROUP_SIZE),
    limits,
    "resize_bilinear",
  );
  return {
    workgroups,
    uniforms: resizeBilinearUniforms(shape),
    outputShape: [shape.batch, s, s, RESIZE_BILINEAR_CHANNELS],
    pixelWords: shape.srcWidth * shape.srcHeight,
  };
}

export { packPixels } from "../engine/image_decode.ts";
