/**
 * Storage precision of a plan: every activation and resident weight in f32 (the default), or in IEEE
 * binary16 (`f16`, on adapters with `shader-f16`), with f32 arithmetic in every kernel either way.
 *
 * In an f16 plan the model input stays f32 (written by the input stage: rounding it to f16 only adds
 * error) and so does the embedding (the graph's last kernel reads f16 and writes f32), and so do the
 * activations a model keeps f32 (`keepF32AtF16` in `engine/model.ts`: BiT's stem and first stage); every
 * other activation, and every resident weight but those of the nodes reading f32 activations
 * ({@linkcode f32Weights}), is f16, which halves the weights' GPU memory. GroupNorm statistics
 * and other scratch tensors are declared by their kernels in f32.
 *
 * The CPU conversions here round to nearest, ties to even (IEEE 754's default, what `Math.f16round` does),
 * with subnormals kept; they need no `Float16Array`.
 *
 * This module is browser compatible.
 * @module
 */
import { numel } from "./kernel.ts";
import type { Graph } from "./graph.ts";

/** How a tensor is stored: f32, or f16 (two bytes, widened to f32 by the kernels that read it). */
export type Dtype = "f32" | "f16";

/** A plan's storage precision: that of its activations and resident weights. */
export type Precision = Dtype;

/** The precisions, default first. */
export const PRECISIONS: readonly Precision[] = ["f32", "f16"];

/** The feature an adapter must grant for f16 storage in shaders. */
export const SHADER_F16 = "shader-f16";

/** The largest finite f16: a value of greater magnitude does not fit. */
export const F16_MAX = 65504;

/** Bytes per element of a dtype. */
export function dtypeBytes(dtype: Dtype): number {
  return dtype === "f16" ? 2 : 4;
}

/**
 * Bytes of a buffer holding `elements` values of `dtype`, rounded up to a multiple of 4 (WebGPU's
 * storage-binding and copy granularity), so an odd count of f16 values gets two bytes of padding.
 *
 * @example
 * ```ts
 * storageBytes(3, "f16"); // 8
 * storageBytes(3, "f32"); // 12
 * ```
 */
export function storageBytes(elements: number, dtype: Dtype): number {
  return Math.ceil((elements * dtypeBytes(dtype)) / 4) * 4;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The f16 bits of `value` rounded to float32 first and then to f16, to nearest with ties to even;
 * magnitudes from 65520 up give infinity, NaN gives a quiet NaN of the same sign.
 *
 * @example
 * ```ts
 * float32ToFloat16Bits(1); // 0x3c00
 * float32ToFloat16Bits(65520); // 0x7c00 (infinity)
 * ```
 */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a >= 0x7f800000) return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 : 0);
  if (a >= 0x477ff000) return sign | 0x7c00; // 65520 and up round to infinity
  if (a >= 0x38800000) {
    // Normal f16: rebias the exponent, then round the 13 dropped mantissa bits to nearest even.
    const r = a - 0x38000000;
    return sign | ((r + 0x0fff + ((r >>> 13) & 1)) >>> 13);
  }
  // Subnormal f16 (below 2^-14): the value in units of 2^-24, rounded half to even. Exact in float64.
  f32[0] = value;
  const units = Math.abs(f32[0]) * 2 ** 24;
  let k = Math.floor(units);
  const rest = units - k;
  if (rest > 0.5 || (rest === 0.5 && (k & 1) === 1)) k++;
  return sign | k;
}

/**
 * The value of f16 bits, as a number (exact).
 *
 * @example
 * ```ts
 * float16BitsToFloat32(0x3c00); // 1
 * ```
 */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/**
 * Rounds float32 values to f16 (to nearest, ties to even), for upload.
 *
 * @param values The values.
 * @returns The f16 bits in a buffer of {@linkcode storageBytes}(n, "f16") bytes, and the index of the first
 *   value whose magnitude is over {@linkcode F16_MAX} (or NaN), -1 when every value fits.
 */
export function toFloat16(values: Float32Array): { bits: Uint16Array<ArrayBuffer>; overflow: number } {
  const bits = new Uint16Array(storageBytes(values.length, "f16") / 2);
  let overflow = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (overflow < 0 && !(Math.abs(v) <= F16_MAX)) overflow = i;
    bits[i] = float32ToFloat16Bits(v);
  }
  return { bits, overflow };
}

/**
 * Widens f16 bytes (little-endian, as a GPU buffer holds them) to float32, exactly.
 *
 * @param bytes The buffer's bytes; a trailing odd byte (padding) is ignored.
 * @param count Values to read (default all).
 */
export function widenFloat16(bytes: ArrayBuffer, count?: number): Float32Array {
  const halves = new Uint16Array(bytes, 0, count ?? Math.floor(bytes.byteLength / 2));
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = float16BitsToFloat32(halves[i]);
  return out;
}

/**
 * The storage dtype of every tensor of a graph at a precision: f32 throughout at `f32`; at `f16`, f16 for
 * every activation except the model input, the embedding and those `keepF32` names, which stay f32.
 *
 * @param graph The graph.
 * @param precision The plan's precision.
 * @param keepF32 Activations kept f32 at f16 (the model's `keepF32AtF16`).
 * @returns The dtype of each tensor by name.
 */
export function graphDtypes(
  graph: Graph,
  precision: Precision,
  keepF32?: (tensor: string) => boolean,
): Map<string, Dtype> {
  const dtypes = new Map<string, Dtype>();
  for (const name of graph.tensors.keys()) {
    const f32 = name === graph.input || name === graph.output || keepF32?.(name) === true;
    dtypes.set(name, f32 ? "f32" : precision);
  }
  return dtypes;
}

/**
 * The resident weights an f16 plan keeps in f32: those of the nodes reading an f32 activation (the model
 * input, or one the model keeps f32): the first convolution (a stem or a patch embedding) and the layers a
 * model keeps f32, so such a node runs the f32 or f32to16 flavour of its kernel.
 *
 * Why the first layer: a weight-standardised convolution (BiT's) has weights of mean zero per output
 * channel and the pixels under its window are alike, so its output is a small difference of large
 * products; rounding its weights to f16 shifts each channel's sum by a few ulps, a shift the input's mean
 * multiplies. On r50x1-bit-224, with every activation f32, f16 weights everywhere cost 1.62e-2 of relative
 * error, all but the stem's 6.3e-3 (`bench/f16_sensitivity.ts`).
 *
 * @param graph The network (any batch: the set does not depend on it).
 * @param dtypes Its tensors' dtypes ({@linkcode graphDtypes}).
 * @returns Graph weight names.
 */
export function f32Weights(graph: Graph, dtypes: ReadonlyMap<string, Dtype>): Set<string> {
  const names = new Set<string>();
  for (const node of graph.nodes) {
    const f32In = node.inputs.length > 0 && (dtypes.get(node.inputs[0]) ?? "f32") === "f32";
    if (f32In) { for (const name of Object.values(node.weights)) names.add(name); }
  }
  return names;
}

/**
 * The largest activation of one image of `graph` at `precision`, in bytes: what bounds the batch under
 * the storage-binding limit.
 */
export function largestActivationBytes(
  graph: Graph,
  precision: Precision,
  keepF32?: (tensor: string) => boolean,
): number {
  const dtypes = graphDtypes(graph, precision, keepF32);
  let largest = 0;
  for (const [name, shape] of graph.tensors) {
    largest = Math.max(largest, storageBytes(numel(shape), dtypes.get(name)!));
  }
  return largest;
}

/**
 * Checks that `precision` can run on a device with `features`.
 *
 * @throws {RangeError} For `f16` without `shader-f16`, naming the adapter; for an unknown precision.
 */
export function checkPrecision(
  precision: string,
  features: ReadonlySet<string>,
  adapter: string,
): asserts precision is Precision {
  if (!PRECISIONS.includes(precision as Precision)) {
    throw new RangeError(`Cannot use precision "${precision}": expected one of ${PRECISIONS.join(", ")}`);
  }
  if (precision === "f16" && !features.has(SHADER_F16)) {
    throw new RangeError(
      `Cannot use precision "f16" on adapter "${adapter}": expected the "${SHADER_F16}" feature, got ${
        [...features].sort().join(", ") || "no features"
      }`,
    );
  }
}
