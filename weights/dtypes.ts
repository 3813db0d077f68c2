/**
 * Decoding the element types the weight readers know (safetensors, PyTorch checkpoints, .npz, SavedModel)
 * from raw little-endian bytes to float32 on the CPU. The one table of their names and sizes is
 * `engine/tensor_source.ts` (the engine's contract with every format), re-exported here.
 *
 * Float types (`F32`, `F16`, `BF16`) are what GPU weight transforms read raw; `F64` and the integer types
 * are decoded on the CPU (a float64 checkpoint, BatchNorm's `num_batches_tracked`).
 *
 * This module is browser compatible.
 * @module
 */

export { type Dtype, DTYPE_BYTES, isDtype } from "../engine/tensor_source.ts";
import { type Dtype, DTYPE_BYTES } from "../engine/tensor_source.ts";

/** The float types GPU weight kernels decode themselves (`kernels/weight_standardize.ts`). */
export const GPU_FLOAT_DTYPES: ReadonlySet<Dtype> = new Set(["F32", "F16", "BF16"]);

/** What {@linkcode decodeToFloat32} needs of a tensor: its name (for messages), dtype and shape. */
export interface TypedTensor {
  /** Name for messages. */
  readonly name: string;
  /** Element type. */
  readonly dtype: Dtype;
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Converts IEEE binary16 bits to a number (exact). */
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

/**
 * Decodes a tensor's raw little-endian bytes to float32 on the CPU (F64 and integers rounded to nearest).
 *
 * @param entry The tensor (dtype and shape).
 * @param bytes Its raw bytes (any alignment).
 * @returns A new array of the values in row-major order.
 * @throws {TypeError} when the byte count does not match the entry.
 *
 * @example
 * ```ts
 * for await (const { entry, bytes } of source.stream(new Set(["norm.weight"]))) decodeToFloat32(entry, bytes);
 * ```
 */
export function decodeToFloat32(entry: TypedTensor, bytes: Uint8Array): Float32Array<ArrayBuffer> {
  const size = DTYPE_BYTES[entry.dtype];
  if (size === undefined) {
    throw new TypeError(`Cannot decode "${entry.name}": unsupported dtype "${entry.dtype}"`);
  }
  const count = entry.shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== count * size) {
    throw new TypeError(`Cannot decode "${entry.name}": expected ${count * size} bytes, got ${bytes.length}`);
  }
  const out = new Float32Array(count);
  if (entry.dtype === "F32" && HOST_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const read: (i: number) => number = {
    F64: (i: number) => view.getFloat64(8 * i, true),
    F32: (i: number) => view.getFloat32(4 * i, true),
    F16: (i: number) => float16BitsToNumber(view.getUint16(2 * i, true)),
    BF16: (i: number) => new Float32Array(new Uint32Array([view.getUint16(2 * i, true) << 16]).buffer)[0],
    I64: (i: number) => Number(view.getBigInt64(8 * i, true)),
    I32: (i: number) => view.getInt32(4 * i, true),
    I16: (i: number) => view.getInt16(2 * i, true),
    I8: (i: number) => view.getInt8(i),
    U8: (i: number) => view.getUint8(i),
    BOOL: (i: number) => (view.getUint8(i) !== 0 ? 1 : 0),
  }[entry.dtype];
  if (entry.dtype === "BF16") {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  } else {
    for (let i = 0; i < count; i++) out[i] = read(i);
  }
  return out;
}
