/**
 * Safetensors writing, for tests and the converter: tensors in the order given, the header padded with
 * spaces so the data section starts 8-byte aligned (as the format recommends).
 *
 * This module is browser compatible.
 * @module
 */
import { DTYPE_BYTES, type SafetensorsDtype } from "./safetensors.ts";

/** One tensor to write. */
export interface TensorToWrite {
  /** Name in the file (not "__metadata__"). */
  name: string;
  /** Stored element type. */
  dtype: SafetensorsDtype;
  /** Dimensions, outermost first. */
  shape: readonly number[];
  /**
   * Raw little-endian bytes in `dtype`, or float32 values that are converted to `dtype` (round to nearest
   * even for F16 and BF16; F64 is exact; integer types need raw bytes).
   */
  data: Uint8Array | Float32Array;
}

/**
 * Converts a number to IEEE binary16 bits, rounding to nearest even (overflow gives infinity, NaN stays NaN).
 *
 * @param value The number (normally a float32).
 * @returns The 16 bits.
 */
export function numberToFloat16Bits(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the full significand, round to nearest even.
    if (e < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - e;
    let half = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    if (rest > midpoint || (rest === midpoint && (half & 1))) half++;
    return sign | half;
  }
  let bits = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (bits & 1))) bits++;
  return sign | bits;
}

function toBytes(tensor: TensorToWrite, count: number): Uint8Array {
  const { data, dtype, name } = tensor;
  const size = count * DTYPE_BYTES[dtype];
  if (data instanceof Uint8Array) {
    if (data.length !== size) {
      throw new TypeError(
        `Cannot write "${name}": expected ${size} bytes for ${dtype} [${tensor.shape}], got ${data.length}`,
      );
    }
    return data;
  }
  if (!(data instanceof Float32Array)) {
    throw new TypeError(`Cannot write "${name}": data must be a Uint8Array or Float32Array`);
  }
  if (data.length !== count) {
    throw new TypeError(
      `Cannot write "${name}": expected ${count} values for [${tensor.shape}], got ${data.length}`,
    );
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64") {
    throw new TypeError(
      `Cannot write "${name}": float32 values cannot be written as ${dtype}, pass raw bytes`,
    );
  }
  if (dtype === "F64") {
    for (let i = 0; i < count; i++) view.setFloat64(8 * i, data[i], true);
  } else if (dtype === "F32") {
    for (let i = 0; i < count; i++) view.setFloat32(4 * i, data[i], true);
  } else if (dtype === "F16") {
    for (let i = 0; i < count; i++) view.setUint16(2 * i, numberToFloat16Bits(data[i]), true);
  } else {
    const bits = new Uint32Array(data.buffer, data.byteOffset, count);
    for (let i = 0; i < count; i++) {
      const x = bits[i];
      const isNaN = (x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0;
      // Round to nearest even on the low 16 bits; keep NaN a (quiet) NaN.
      const rounded = isNaN ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
      view.setUint16(2 * i, rounded & 0xffff, true);
    }
  }
  return out;
}

/**
 * Encodes tensors and metadata as a safetensors file.
 *
 * @param tensors Written in this order, back to back.
 * @param metadata The `__metadata__` map (omitted when empty or absent).
 * @returns The complete file.
 * @throws {TypeError} for a duplicate or reserved name, an unsupported dtype, a bad shape, or data whose
 * length does not match the shape.
 *
 * @example
 * ```ts
 * const bytes = encodeSafetensors([{ name: "norm.weight", dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }]);
 * ```
 */
export function encodeSafetensors(
  tensors: readonly TensorToWrite[],
  metadata?: Readonly<Record<string, string>>,
): Uint8Array<ArrayBuffer> {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") throw new TypeError(`Cannot write metadata "${key}": expected a string`);
    }
    header.__metadata__ = { ...metadata };
  }
  const parts: Uint8Array[] = [];
  let offset = 0;
  const seen = new Set<string>();
  for (const tensor of tensors) {
    const { name, dtype, shape } = tensor;
    if (name === "" || name === "__metadata__" || seen.has(name)) {
      throw new TypeError(`Cannot write "${name}": the name is empty, reserved or repeated`);
    }
    seen.add(name);
    if (!(dtype in DTYPE_BYTES)) throw new TypeError(`Cannot write "${name}": unsupported dtype "${dtype}"`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new TypeError(
        `Cannot write "${name}": expected shape as non-negative integers, got ${JSON.stringify(shape)}`,
      );
    }
    const bytes = toBytes(tensor, shape.reduce((a, b) => a * b, 1));
    Object.defineProperty(header, name, {
      value: { dtype, shape: [...shape], data_offsets: [offset, offset + bytes.length] },
      enumerable: true,
    });
    parts.push(bytes);
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLength, true);
  view.setUint32(4, 0, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let at = 8 + headerLength;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
