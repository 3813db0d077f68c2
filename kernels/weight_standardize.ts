/**
 * weight_standardize: standardises one convolution kernel at load time, on the GPU.
 *
 * Per output channel o, `w'[y,x,i,o] = (w[o,i,y,x] - mean[o]) / sqrt(var[o] + eps)`, with mean and biased
 * variance over the KH*KW*Cin fan-in. Input: the tensor's raw bytes (F32, F16 or BF16; OIHW as timm stores
 * it or HWIO as Derm Foundation stores it). Output: f32 HWIO [KH, KW, CinPadded, Cout] with the input
 * channels Cin..CinPadded-1 written as exact zeros (the stem's Cin 3 is padded to 4 for vec4 reads); or,
 * `weight_standardize_f16`, the same computed in f32 and stored as f16 rounded to nearest even.
 *
 * ```
 * bindings: 0 raw r (u32 words) · 1 w rw (f32 HWIO) · 2 uniforms {cout,cin,kh,kw,cinPadded,dtype,layout: u32; eps: f32}
 * overrides: TO, TJ · dispatch: ceil(Cout / TO) workgroups of TO channels x TJ fan-in lanes, folded
 * numerics: f32, two passes (mean, then mean of squared deviations), tree reductions
 * ```
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
import { type Dtype, storageBytes } from "../engine/precision.ts";
import { weightStandardizeWgsl } from "./weight_standardize.wgsl.ts";
import { flavourName } from "./_precision.ts";

/** Output channels per workgroup: the WGSL override `TO` (consecutive, so HWIO reads share cache lines). */
export const WEIGHT_STANDARDIZE_CHANNELS = 16;

/** Fan-in lanes per output channel: the WGSL override `TJ` (a power of two, for the tree reduction). */
export const WEIGHT_STANDARDIZE_LANES = 16;

/** Storage dtypes the kernel decodes (F16 is IEEE half; BF16 is the top half of an f32). */
export type WeightDtype = "F32" | "F16" | "BF16";

/** Layouts of the stored kernel: OIHW [Cout,Cin,KH,KW] (timm) or HWIO [KH,KW,Cin,Cout] (Derm Foundation). */
export type WeightLayout = "OIHW" | "HWIO";

/** Shape of one standardisation. */
export interface WeightStandardizeShape {
  /** Output channels (Cout). */
  readonly cout: number;
  /** Input channels (Cin) of the stored tensor. */
  readonly cin: number;
  /** Kernel height (KH). */
  readonly kh: number;
  /** Kernel width (KW). */
  readonly kw: number;
  /** Input channels of the output, at least `cin`; the extra ones are zeros. */
  readonly cinPadded: number;
  /** Storage dtype of the raw bytes. */
  readonly dtype: WeightDtype;
  /** Layout of the raw tensor. */
  readonly layout: WeightLayout;
  /** Added to the variance before the square root (derm 1e-10, bit 1e-8). */
  readonly eps: number;
}

/** Codes of the `dtype` uniform, matching the WGSL constants. */
export const WEIGHT_DTYPE_CODES: Readonly<Record<WeightDtype, number>> = { F32: 0, F16: 1, BF16: 2 };

/** Codes of the `layout` uniform, matching the WGSL constants. */
export const WEIGHT_LAYOUT_CODES: Readonly<Record<WeightLayout, number>> = { OIHW: 0, HWIO: 1 };

const BYTES_PER_ELEMENT: Readonly<Record<WeightDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

function spec(dtype: Dtype): KernelSpec {
  const name = flavourName("weight_standardize", dtype);
  return {
    name,
    wgsl: weightStandardizeWgsl(name, dtype),
    bindings: [
      { name: "raw", type: "read-only-storage" },
      { name: "w", type: "storage" },
    ],
    overrides: { TO: WEIGHT_STANDARDIZE_CHANNELS, TJ: WEIGHT_STANDARDIZE_LANES },
  };
}

/** The kernel by the resident dtype (one workgroup per 16 output channels); both take the same launch. */
export const WEIGHT_STANDARDIZE_SPECS: Readonly<Record<Dtype, KernelSpec>> = {
  f32: spec("f32"),
  f16: spec("f16"),
};

/** The f32 kernel: one workgroup per 16 output channels. */
export const weightStandardizeSpec: KernelSpec = WEIGHT_STANDARDIZE_SPECS.f32;

function fail(message: string, error: typeof TypeError = TypeError): never {
  throw new error(`Cannot launch weight_standardize: ${message}`);
}

function checkShape(shape: WeightStandardizeShape): void {
  for (const key of ["cout", "cin", "kh", "kw", "cinPadded"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) fail(`expected ${key} to be a positive integer, got ${v}`);
  }
  if (shape.cinPadded < shape.cin) {
    fail(`expected cinPadded >= cin, got cinPadded ${shape.cinPadded}, cin ${shape.cin}`);
  }
  if (!(shape.dtype in WEIGHT_DTYPE_CODES)) fail(`expected dtype F32, F16 or BF16, got "${shape.dtype}"`);
  if (!(shape.layout in WEIGHT_LAYOUT_CODES)) fail(`expected layout OIHW or HWIO, got "${shape.layout}"`);
  if (!Number.isFinite(shape.eps) || shape.eps < 0) {
    fail(`expected eps to be finite and >= 0, got ${shape.eps}`, RangeError);
  }
  const out = shape.kh * shape.kw * shape.cinPadded * shape.cout;
  if (out > 0xffffffff) fail(`expected at most 2^32 - 1 output elements, got ${out}`, RangeError);
}

/**
 * Buffer sizes of one standardisation.
 *
 * @param shape The tensor's shape, dtype and layout.
 * @param resident How the output is stored (default f32).
 * @returns `rawBytes`, the stored tensor's byte length (the `raw` buffer must be this rounded up to 4),
 *   and `wBytes`, the HWIO output's byte length (f16: padded to a multiple of 4).
 * @example
 * ```ts
 * weightStandardizeSizes({ cout: 192, cin: 3, kh: 7, kw: 7, cinPadded: 4, dtype: "F16", layout: "HWIO", eps: 1e-10 });
 * // { rawBytes: 56448, wBytes: 150528 }
 * ```
 */
export function weightStandardizeSizes(
  shape: WeightStandardizeShape,
  resident: Dtype = "f32",
): { rawBytes: number; wBytes: number } {
  checkShape(shape);
  const { cout, cin, kh, kw, cinPadded, dtype } = shape;
  return {
    rawBytes: cout * cin * kh * kw * BYTES_PER_ELEMENT[dtype],
    wBytes: storageBytes(kh * kw * cinPadded * cout, resident),
  };
}

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode weightStandardizeSpec}.
 *
 * @param shape The tensor's shape, dtype and layout.
 * @param limits The device's limits.
 * @returns Workgroups (one per TO output channels, folded) and the uniform bytes.
 * @throws {TypeError} When a dimension is not a positive integer, cinPadded < cin, or dtype/layout is unknown.
 * @throws {RangeError} When eps is negative or not finite.
 * @example
 * ```ts
 * const launch = weightStandardizeLaunch({
 *   cout: 768, cin: 192, kh: 1, kw: 1, cinPadded: 192, dtype: "F32", layout: "HWIO", eps: 1e-10,
 * });
 * // launch.workgroups: [48, 1, 1]
 * ```
 */
export function weightStandardizeLaunch(
  shape: WeightStandardizeShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  checkShape(shape);
  return {
    workgroups: foldWorkgroups(
      Math.ceil(shape.cout / WEIGHT_STANDARDIZE_CHANNELS),
      limits,
      "weight_standardize",
    ),
    uniforms: packUniforms([
      ["cout", "u32", shape.cout],
      ["cin", "u32", shape.cin],
      ["kh", "u32", shape.kh],
      ["kw", "u32", shape.kw],
      ["cinPadded", "u32", shape.cinPadded],
      ["dtype", "u32", WEIGHT_DTYPE_CODES[shape.dtype]],
      ["layout", "u32", WEIGHT_LAYOUT_CODES[shape.layout]],
      ["eps", "f32", shape.eps],
    ]),
  };
}
