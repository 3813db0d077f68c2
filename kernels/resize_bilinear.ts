/**
 * Model-input preprocessing on the GPU: decoded RGBA8 pixels of one image, scaled per preset and resized
 * to S x S with bilinear interpolation (half-pixel centres, no antialias, aspect ratio not kept), written
 * into image slot `n` of an NHWC batch. The wrapper describes the kernel and validates a shape into a
 * launch; it never allocates, submits or reads back.
 *
 * ```
 * resize_bilinear: x[n,oy,ox,c] = bilinear(p * scale + offset) at (in_y, in_x) for c < 3; x[n,oy,ox,3] = 0
 *   in_y = (oy + 0.5) * H/S - 0.5, taps floor/ceil clamped to [0, H-1], lerp from the unclamped coordinate
 * pixels: u32 [H,W] RGBA8 (R in the low byte, byte 3 ignored) · x: f32 NHWC [N,S,S,4] (channel 3 = 0)
 * bindings: 0 pixels r · 1 x rw · 2 uniforms {src_w,src_h,size,n: u32; scale,offset,ratio_y,ratio_x: f32}
 * overrides: WG (workgroup size) · dispatch: ceil(S*S / WG) folded over x,y; one output pixel per invocation
 * numerics: f32 in TF's order (scale each tap, lerp along x, then along y); ratio = f32(H) / f32(S)
 * ```
 *
 * Why scale before resizing: Derm Foundation's graph multiplies by float32(1/255) and then runs
 * `ResizeBilinear`, so doing the same in float32 reproduces its rounding. Channel 3 is written as 0 because
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

/** Pixel scalings: `derm` = x * float32(1/255) (range [0,1]), `bit` = x * (1/127.5) - 1 (range [-1,1]). */
export type PreprocessPreset = "derm" | "bit";

/** scale and offset of each preset, as float32 uniforms: scaled = pixel * scale + offset. */
export const PRESET_SCALING: Readonly<Record<PreprocessPreset, { scale: number; offset: number }>> = {
  // 0.003921568859368563 = float32(1/255), the constant of Derm Foundation's graph.
  derm: { scale: Math.fround(1 / 255), offset: 0 },
  bit: { scale: Math.fround(1 / 127.5), offset: -1 },
};

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

/** One resize: source size, output size, slot in the batch, batch size, preset. */
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
  /** Pixel scaling. */
  readonly preset: PreprocessPreset;
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
 * `{src_w, src_h, size, n: u32; scale, offset, ratio_y, ratio_x: f32}` (32 bytes).
 */
export function resizeBilinearUniforms(shape: ResizeBilinearShape): Uint8Array<ArrayBuffer> {
  const { scale, offset } = PRESET_SCALING[shape.preset];
  return packUniforms([
    ["src_w", "u32", shape.srcWidth],
    ["src_h", "u32", shape.srcHeight],
    ["size", "u32", shape.size],
    ["n", "u32", shape.n],
    ["scale", "f32", scale],
    ["offset", "f32", offset],
    // float32(H) / float32(S) rounded once, as TF's CalculateResizeScale (WGSL division may be 2.5 ulp off).
    ["ratio_y", "f32", Math.fround(shape.srcHeight / shape.size)],
    ["ratio_x", "f32", Math.fround(shape.srcWidth / shape.size)],
  ]);
}

/**
 * Validates a resize and returns its dispatch and uniforms.
 *
 * @param shape Source size, output size S, slot n, batch N and preset.
 * @param limits Device limits (default the WebGPU defaults).
 * @returns Workgroups, uniform bytes, the output shape [N,S,S,4] and the pixel words W*H.
 * @throws {RangeError} When a size is not a positive integer, n >= N, or the dispatch does not fit.
 * @throws {TypeError} When the preset is unknown.
 * @example
 * ```ts
 * const launch = resizeBilinearLaunch({ srcWidth: 250, srcHeight: 250, size: 448, n: 0, batch: 1, preset: "derm" });
 * // launch.outputShape = [1, 448, 448, 4]; launch.workgroups = [3136, 1, 1]
 * ```
 */
export function resizeBilinearLaunch(
  shape: ResizeBilinearShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): ResizeBilinearLaunch {
  if (!Object.hasOwn(PRESET_SCALING, shape.preset)) {
    throw new TypeError(
      `Cannot launch "resize_bilinear": expected preset "derm" or "bit", got "${shape.preset}"`,
    );
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

/** Whether this host stores a u32's low byte first (every WebGPU host seen; checked, not assumed). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * The `pixels` binding of {@linkcode resizeBilinear} from decoded RGBA8 bytes: one u32 per pixel, R in the
 * low byte (byte 3 is ignored by the kernel). A view without copying when the bytes are 4-aligned on a
 * little-endian host.
 *
 * @param image Width, height and RGBA8 bytes [H, W, 4] (e.g. a `DecodedImage`).
 * @returns u32 [H, W].
 * @throws {TypeError} When `rgba` is shorter than width * height * 4.
 * @example
 * ```ts
 * const words = packPixels({ width: 1, height: 1, rgba: new Uint8Array([1, 2, 3, 255]) });
 * // words[0] === 0xff030201
 * ```
 */
export function packPixels(
  image: { width: number; height: number; rgba: Uint8Array },
): Uint32Array<ArrayBuffer> {
  const n = image.width * image.height;
  const b = image.rgba;
  if (b.length < n * 4) {
    throw new TypeError(
      `Cannot pack pixels: expected ${n * 4} RGBA bytes for ${image.width}x${image.height}, got ${b.length}`,
    );
  }
  if (LITTLE_ENDIAN && b.byteOffset % 4 === 0 && b.buffer instanceof ArrayBuffer) {
    return new Uint32Array(b.buffer, b.byteOffset, n);
  }
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = (b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) | (b[4 * i + 3] << 24)) >>> 0;
  }
  return out;
}
