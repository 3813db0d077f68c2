/**
 * The engine's contract with weight formats: a {@linkcode TensorSource} lists tensors (name, dtype,
 * shape, place in the file) and streams their raw bytes one tensor at a time. `weights/` implements it for
 * safetensors, PyTorch checkpoints, .npz, SavedModels and procedural weights; the engine only reads it.
 * The one table of element types ({@linkcode DTYPE_BYTES}) is here; `weights/dtypes.ts` decodes them.
 *
 * This module is browser compatible.
 * @module
 */

/** An element type, by its safetensors name. */
export type Dtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** Bytes per element of each {@linkcode Dtype}. */
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Whether `name` is a {@linkcode Dtype}. */
export function isDtype(name: string): name is Dtype {
  return Object.hasOwn(DTYPE_BYTES, name);
}

/** One tensor of a file. */
export interface TensorEntry {
  /** Name as stored in the file. */
  readonly name: string;
  /** Element type (little-endian). */
  readonly dtype: Dtype;
  /** Dimensions, outermost first (row-major data). */
  readonly shape: readonly number[];
  /** Absolute byte offset of the first byte in the file. */
  readonly begin: number;
  /** Absolute byte offset one past the last byte in the file. */
  readonly end: number;
}

/** One tensor's raw little-endian bytes, as yielded by {@linkcode TensorSource.stream}. */
export interface TensorChunk {
  /** The tensor. */
  readonly entry: TensorEntry;
  /**
   * Its `entry.end - entry.begin` bytes, on a plain `ArrayBuffer` (ready for `GPUQueue.writeBuffer`); may be a
   * view into a larger buffer, so do not assume `byteOffset` 0 or 4-byte alignment.
   */
  readonly bytes: Uint8Array<ArrayBuffer>;
}

/** Where the engine loads weights from: a file, bytes, a stream, a URL or a procedural generator. */
export interface TensorSource {
  /** File name, path or URL, for messages. */
  readonly file: string;
  /** The `__metadata__` map. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors by name. */
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  /**
   * Yields the `wanted` tensors (all when omitted) in file offset order, each exactly once, holding at most
   * one tensor in memory. Throws a `WeightsError` (engine/errors.ts) at once for a wanted name not in the file.
   */
  stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk>;
  /** Releases the file, stream or connection; later `stream()` calls fail. */
  close(): Promise<void> | void;
}
