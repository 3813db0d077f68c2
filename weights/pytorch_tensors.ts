/**
 * PyTorch tensors in a pickle, as data: the storages that persistent ids name ({@linkcode StorageRef}), the
 * tensors that `torch._utils._rebuild_tensor_v2` and its relatives would build ({@linkcode TensorRef}), and
 * the copy of a tensor's elements out of its storage's bytes into contiguous row-major little-endian bytes
 * ({@linkcode gatherTensor}).
 *
 * Element types come from the storage class (`FloatStorage` -> F32, ... `UntypedStorage` -> U8, by name, as
 * torch's loader matches them, so `torch.cuda.FloatStorage` is F32 too) or, for `_rebuild_tensor_v3` over an
 * untyped storage (torch 2's newer dtypes), from the dtype argument (`torch.float32` -> F32...). Types outside
 * the project's {@linkcode Dtype} table (complex, quantized, float8, unsigned 16-64 bits) are kept with their
 * element size, so bounds are still checked, and refused only when such a tensor is loaded.
 *
 * Sizes, strides and offsets are checked here for type and overflow; a problem makes an
 * {@linkcode InvalidTensor}, which the checkpoint reader reports with the tensor's name (the pickle does not
 * know it). Bounds against the storage's bytes are checked there too.
 *
 * Over ~400 lines because the two type tables are long lists; the logic is under 300 lines.
 *
 * This module is browser compatible.
 * @module
 */
import type { Dtype } from "./dtypes.ts";
import { describePickleValue, PickleGlobal, PickleObject } from "./pickle.ts";
import { refusalReason } from "./pickle_globals.ts";

/** A torch element type: its name in torch, its size, and the project's dtype when it has one. */
export interface TorchType {
  /** torch's name ("float32", "complex64"...). */
  readonly torch: string;
  /** Bytes per element. */
  readonly bytes: number;
  /** The project's dtype, when the project reads this type. */
  readonly dtype?: Dtype;
}

const T = (torch: string, bytes: number, dtype?: Dtype): TorchType => ({ torch, bytes, dtype });

/** Storage classes by name (module ignored, as torch's `StorageType` does). */
export const STORAGE_TYPES: Readonly<Record<string, TorchType>> = {
  DoubleStorage: T("float64", 8, "F64"),
  FloatStorage: T("float32", 4, "F32"),
  HalfStorage: T("float16", 2, "F16"),
  BFloat16Storage: T("bfloat16", 2, "BF16"),
  LongStorage: T("int64", 8, "I64"),
  IntStorage: T("int32", 4, "I32"),
  ShortStorage: T("int16", 2, "I16"),
  CharStorage: T("int8", 1, "I8"),
  ByteStorage: T("uint8", 1, "U8"),
  BoolStorage: T("bool", 1, "BOOL"),
  UntypedStorage: T("uint8", 1, "U8"),
  ComplexFloatStorage: T("complex64", 8),
  ComplexDoubleStorage: T("complex128", 16),
  QInt8Storage: T("qint8", 1),
  QUInt8Storage: T("quint8", 1),
  QInt32Storage: T("qint32", 4),
  QUInt4x2Storage: T("quint4x2", 1),
  QUInt2x4Storage: T("quint2x4", 1),
};

/** torch dtype globals (`torch.float32`...), for `_rebuild_tensor_v3`. */
export const TORCH_DTYPES: Readonly<Record<string, TorchType>> = {
  float64: STORAGE_TYPES.DoubleStorage,
  double: STORAGE_TYPES.DoubleStorage,
  float32: STORAGE_TYPES.FloatStorage,
  float: STORAGE_TYPES.FloatStorage,
  float16: STORAGE_TYPES.HalfStorage,
  half: STORAGE_TYPES.HalfStorage,
  bfloat16: STORAGE_TYPES.BFloat16Storage,
  int64: STORAGE_TYPES.LongStorage,
  long: STORAGE_TYPES.LongStorage,
  int32: STORAGE_TYPES.IntStorage,
  int: STORAGE_TYPES.IntStorage,
  int16: STORAGE_TYPES.ShortStorage,
  short: STORAGE_TYPES.ShortStorage,
  int8: STORAGE_TYPES.CharStorage,
  uint8: STORAGE_TYPES.ByteStorage,
  bool: STORAGE_TYPES.BoolStorage,
  uint16: T("uint16", 2),
  uint32: T("uint32", 4),
  uint64: T("uint64", 8),
  float8_e4m3fn: T("float8_e4m3fn", 1),
  float8_e5m2: T("float8_e5m2", 1),
  float8_e4m3fnuz: T("float8_e4m3fnuz", 1),
  float8_e5m2fnuz: T("float8_e5m2fnuz", 1),
  float8_e8m0fnu: T("float8_e8m0fnu", 1),
  complex32: T("complex32", 4),
  chalf: T("complex32", 4),
  complex64: STORAGE_TYPES.ComplexFloatStorage,
  cfloat: STORAGE_TYPES.ComplexFloatStorage,
  complex128: STORAGE_TYPES.ComplexDoubleStorage,
  cdouble: STORAGE_TYPES.ComplexDoubleStorage,
};

/** A storage named by a persistent id: its key in the file, its type and element count. */
export class StorageRef {
  /** Key of the (root) storage: `data/<key>` in a zip archive, an entry of the key list in the legacy format. */
  readonly key: string;
  /** Storage class name ("FloatStorage"...). */
  readonly storageType: string;
  /** Element type of the storage. */
  readonly type: TorchType;
  /** Elements in this storage (or view). */
  readonly numel: number;
  /** Device it was saved from ("cpu", "cuda:0"); data is read the same way whatever it says. */
  readonly location: string;
  /** For a legacy storage view: where the view starts in its root storage, in bytes (0 otherwise). */
  readonly byteOffset: number;
  /** Creates the reference. */
  constructor(
    fields: Pick<StorageRef, "key" | "storageType" | "type" | "numel" | "location" | "byteOffset">,
  ) {
    this.key = fields.key;
    this.storageType = fields.storageType;
    this.type = fields.type;
    this.numel = fields.numel;
    this.location = fields.location;
    this.byteOffset = fields.byteOffset;
  }
  /** Bytes of this storage (or view). */
  get byteLength(): number {
    return this.numel * this.type.bytes;
  }
}

/** A tensor of a checkpoint: a strided view of a storage, its data not yet read. */
export class TensorRef {
  /** Its storage. */
  readonly storage: StorageRef;
  /** Element type of the tensor (its storage's, or `_rebuild_tensor_v3`'s dtype argument). */
  readonly type: TorchType;
  /** Offset of its first element in the storage, in elements of `type`. */
  readonly storageOffset: number;
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Strides in elements, one per dimension. */
  readonly stride: readonly number[];
  /** Whether it was saved as requiring gradients (a parameter). */
  readonly requiresGrad: boolean;
  /** Creates the reference (arguments already checked by {@linkcode torchConstruct}). */
  constructor(
    fields: Pick<TensorRef, "storage" | "type" | "storageOffset" | "shape" | "stride" | "requiresGrad">,
  ) {
    this.storage = fields.storage;
    this.type = fields.type;
    this.storageOffset = fields.storageOffset;
    this.shape = Object.freeze([...fields.shape]);
    this.stride = Object.freeze([...fields.stride]);
    this.requiresGrad = fields.requiresGrad;
  }
  /** The project's dtype, or `undefined` for a type it does not read (complex, quantized, float8...). */
  get dtype(): Dtype | undefined {
    return this.type.dtype;
  }
  /** Number of elements. */
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  /** Whether the elements are contiguous and row-major in the storage (size-1 dimensions ignored). */
  get contiguous(): boolean {
    let expected = 1;
    for (let d = this.shape.length - 1; d >= 0; d--) {
      if (this.shape[d] === 1) continue;
      if (this.stride[d] !== expected) return false;
      expected *= this.shape[d];
    }
    return true;
  }
  /**
   * The bytes of its storage it reads, relative to the storage's start: from its first element to one past
   * its last (empty for no elements).
   */
  get byteSpan(): [begin: number, end: number] {
    const el = this.type.bytes;
    const begin = this.storageOffset * el;
    if (this.numel === 0) return [begin, begin];
    let last = this.storageOffset;
    for (let d = 0; d < this.shape.length; d++) last += (this.shape[d] - 1) * this.stride[d];
    return [begin, (last + 1) * el];
  }
}

/** A tensor whose rebuild arguments are malformed: what is wrong, reported with its name by the reader. */
export class InvalidTensor {
  /** What is wrong, e.g. "size [2,-1] has a negative dimension". */
  readonly problem: string;
  /** Creates the record. */
  constructor(problem: string) {
    this.problem = problem;
  }
}

function text(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return new TextDecoder("latin1").decode(value);
  return undefined;
}

function storageTypeOf(value: unknown): [string, TorchType] {
  const name = value instanceof PickleGlobal ? value.name : text(value);
  if (name === undefined) {
    throw new TypeError(`expected a storage class, got ${describePickleValue(value)}`);
  }
  const short = name.split(".").pop()!;
  if (!Object.hasOwn(STORAGE_TYPES, short)) {
    throw new TypeError(
      `unknown storage class "${name}": expected one of ${Object.keys(STORAGE_TYPES).join(", ")}`,
    );
  }
  return [short, STORAGE_TYPES[short]];
}

function count(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(
      `${what} is ${describePickleValue(value)} ${
        JSON.stringify(String(value))
      }, expected a non-negative int`,
    );
  }
  return value;
}

/**
 * A storage from a persistent id: `("storage", storage_type, key, location, numel)` (zip format) or
 * `("storage", storage_type, root_key, location, root_numel, view_metadata)` (legacy; `view_metadata` is
 * `(view_key, offset, view_numel)` or None). The first id seen for a key wins, as in torch's loader.
 *
 * @param pid The persistent id.
 * @param seen Storages already made, by key (and view key); updated.
 * @returns The storage (a `module` id of the legacy format gives its class, a {@linkcode PickleGlobal}).
 * @throws {TypeError} for an id that is not one of these forms.
 */
export function storageFromPersistentId(pid: unknown, seen: Map<string, StorageRef>): unknown {
  if (!Array.isArray(pid) || pid.length < 1) {
    throw new TypeError(`expected a persistent id tuple, got ${describePickleValue(pid)}`);
  }
  const kind = text(pid[0]);
  if (kind === "module" && pid.length >= 2) return pid[1]; // a saved nn.Module's class, kept inert
  if (kind !== "storage" || (pid.length !== 5 && pid.length !== 6)) {
    throw new TypeError(
      `expected ("storage", type, key, location, numel[, view]), got a ${pid.length}-tuple of kind ${
        JSON.stringify(kind)
      }`,
    );
  }
  const [storageType, type] = storageTypeOf(pid[1]);
  const key = text(pid[2]) ?? (typeof pid[2] === "number" ? String(pid[2]) : undefined);
  if (key === undefined) throw new TypeError(`storage key is ${describePickleValue(pid[2])}, expected a str`);
  const location = text(pid[3]) ?? "";
  const numel = count(pid[4], `numel of storage "${key}"`);
  if (!Number.isSafeInteger(numel * type.bytes)) {
    throw new TypeError(`storage "${key}" of ${numel} elements overflows`);
  }
  let root = seen.get(key);
  if (!root) {
    root = new StorageRef({ key, storageType, type, numel, location, byteOffset: 0 });
    seen.set(key, root);
  }
  const view = pid.length === 6 ? pid[5] : null;
  if (view === null || view === undefined) return root;
  if (!Array.isArray(view) || view.length !== 3) {
    throw new TypeError(
      `view metadata of storage "${key}" is ${describePickleValue(view)}, expected (key, offset, numel)`,
    );
  }
  const viewKey = text(view[0]) ?? String(view[0]);
  const known = seen.get(`view:${viewKey}`);
  if (known) return known;
  const offset = count(view[1], `view offset of storage "${key}"`);
  const viewNumel = count(view[2], `view numel of storage "${key}"`);
  if (offset + viewNumel > root.numel) {
    throw new TypeError(
      `view [${offset},${offset + viewNumel}) of storage "${key}" is past its ${root.numel} elements`,
    );
  }
  const made = new StorageRef({
    key,
    storageType: root.storageType,
    type: root.type,
    numel: viewNumel,
    location,
    byteOffset: offset * root.type.bytes,
  });
  seen.set(`view:${viewKey}`, made);
  return made;
}

/** Checks rebuild arguments; returns the tensor, or an {@linkcode InvalidTensor} saying what is wrong. */
function rebuild(
  storage: unknown,
  offset: unknown,
  size: unknown,
  stride: unknown,
  requiresGrad: unknown,
  dtype?: TorchType,
): TensorRef | InvalidTensor {
  if (!(storage instanceof StorageRef)) {
    return new InvalidTensor(`its storage is ${describePickleValue(storage)}`);
  }
  const list = (v: unknown) =>
    Array.isArray(v)
      ? `[${v.map((x) => typeof x === "bigint" ? `${x}` : JSON.stringify(x)).join(",")}]`
      : describePickleValue(v);
  if (!Array.isArray(size)) {
    return new InvalidTensor(`size is ${describePickleValue(size)}, expected a tuple`);
  }
  if (!Array.isArray(stride)) {
    return new InvalidTensor(`stride is ${describePickleValue(stride)}, expected a tuple`);
  }
  const isInt = (x: unknown) => typeof x === "bigint" || (typeof x === "number" && Number.isInteger(x));
  for (const [name, dims] of [["size", size], ["stride", stride]] as const) {
    if (!dims.every(isInt)) return new InvalidTensor(`${name} ${list(dims)} is not all ints`);
    if (dims.some((x) => x < 0)) return new InvalidTensor(`${name} ${list(dims)} has a negative entry`);
  }
  if (size.length !== stride.length) {
    return new InvalidTensor(`size ${list(size)} and stride ${list(stride)} differ in length`);
  }
  if (!isInt(offset) || (offset as number) < 0) {
    return new InvalidTensor(
      `storage offset ${
        typeof offset === "bigint" ? offset : JSON.stringify(offset)
      } is not a non-negative int`,
    );
  }
  const type = dtype ?? storage.type;
  // Exact arithmetic: element count, byte count and the last element's index must all be safe integers.
  const big = (x: unknown) => BigInt(x as number | bigint);
  const numel = size.reduce((a: bigint, d) => a * big(d), 1n);
  let last = big(offset);
  if (numel > 0n) size.forEach((d, i) => last += (big(d) - 1n) * big(stride[i]));
  const limit = BigInt(Number.MAX_SAFE_INTEGER);
  if (
    numel * BigInt(type.bytes) > limit || (last + 1n) * BigInt(type.bytes) > limit || big(offset) > limit ||
    stride.some((s) => big(s) > limit)
  ) {
    return new InvalidTensor(`size ${list(size)}, stride ${list(stride)} and offset ${offset} overflow`);
  }
  if (typeof requiresGrad !== "boolean") {
    return new InvalidTensor(`requires_grad is ${describePickleValue(requiresGrad)}, expected a bool`);
  }
  return new TensorRef({
    storage,
    type,
    storageOffset: Number(offset),
    shape: size.map(Number),
    stride: stride.map(Number),
    requiresGrad,
  });
}

function dtypeArgument(value: unknown): TorchType | InvalidTensor {
  const name = value instanceof PickleGlobal && value.module === "torch" ? value.name : undefined;
  if (name === undefined || !Object.hasOwn(TORCH_DTYPES, name)) {
    return new InvalidTensor(
      `dtype is ${describePickleValue(value)}, expected a torch dtype such as torch.float32`,
    );
  }
  return TORCH_DTYPES[name];
}

/**
 * The `construct` hook of the pickle reader for torch's globals: tensor rebuilds become
 * {@linkcode TensorRef} (or {@linkcode InvalidTensor}), parameters their tensor, `torch.Size` a tuple;
 * anything else (`undefined`) becomes a placeholder.
 *
 * Handled: `torch._utils._rebuild_tensor(storage, offset, size, stride)`, `_rebuild_tensor_v2(storage,
 * offset, size, stride, requires_grad, backward_hooks[, metadata])`, `_rebuild_tensor_v3(storage, offset,
 * size, stride, requires_grad, backward_hooks, dtype[, metadata])`, `_rebuild_parameter(data,
 * requires_grad, backward_hooks)`, `_rebuild_parameter_with_state(data, requires_grad, backward_hooks,
 * state)`, `torch._tensor._rebuild_from_type_v2(func, type, args, state)` (func applied to args, the subclass
 * dropped), `torch.Size(dims)`.
 *
 * @param callable The global being called.
 * @param args Its arguments.
 * @returns The value, or `undefined`.
 * @throws {TypeError} when `_rebuild_from_type_v2` names a refused function.
 */
export function torchConstruct(callable: PickleGlobal, args: readonly unknown[]): unknown {
  const { module, name } = callable;
  if (module === "torch._utils" || module === "torch.tensor" || module === "torch._tensor") {
    switch (name) {
      case "_rebuild_tensor":
        return rebuild(args[0], args[1], args[2], args[3], false);
      case "_rebuild_tensor_v2":
        return rebuild(args[0], args[1], args[2], args[3], args[4]);
      case "_rebuild_tensor_v3": {
        const dtype = dtypeArgument(args[6]);
        return dtype instanceof InvalidTensor
          ? dtype
          : rebuild(args[0], args[1], args[2], args[3], args[4], dtype);
      }
      case "_rebuild_parameter":
      case "_rebuild_parameter_with_state":
        return args[0] instanceof TensorRef || args[0] instanceof InvalidTensor
          ? args[0]
          : new InvalidTensor(`a parameter of ${describePickleValue(args[0])}`);
      case "_rebuild_from_type_v2": {
        const [func, , inner] = args;
        if (!(func instanceof PickleGlobal) || !Array.isArray(inner)) return undefined;
        const reason = refusalReason(func);
        if (reason) throw new TypeError(`refused to call ${func}: ${reason} (nothing was run)`);
        return torchConstruct(func, inner) ?? new PickleObject(func.module, func.name, inner);
      }
    }
  }
  if (module === "torch" && name === "Size" && Array.isArray(args[0])) return Object.freeze([...args[0]]);
  return undefined;
}

/**
 * Copies a tensor's elements from its storage's bytes into contiguous row-major little-endian bytes.
 *
 * @param tensor The tensor (bounds already checked).
 * @param span The bytes of `tensor.byteSpan` (its first element at index 0).
 * @param bigEndian The storage's bytes are big-endian (swap each element).
 * @returns `numel * element size` bytes; a view of `span` when nothing needs moving.
 */
export function gatherTensor(
  tensor: TensorRef,
  span: Uint8Array,
  bigEndian: boolean,
): Uint8Array<ArrayBuffer> {
  const el = tensor.type.bytes;
  const n = tensor.numel * el;
  let out: Uint8Array<ArrayBuffer>;
  if (tensor.contiguous) {
    const view = span.subarray(0, n);
    out = view.buffer instanceof ArrayBuffer && !bigEndian ? view as Uint8Array<ArrayBuffer> : view.slice();
  } else {
    out = new Uint8Array(n);
    const { shape, stride } = tensor;
    const rank = shape.length;
    const inner = shape[rank - 1];
    const innerStride = stride[rank - 1] * el;
    const index = new Array<number>(rank).fill(0);
    let at = 0;
    let src = 0; // byte offset of element `index` relative to the first element
    while (at < n) {
      if (innerStride === el) {
        out.set(span.subarray(src, src + inner * el), at);
        at += inner * el;
      } else {
        for (let i = 0, s = src; i < inner; i++, s += innerStride) {
          for (let b = 0; b < el; b++) out[at++] = span[s + b];
        }
      }
      // Advance the odometer over the outer dimensions.
      let d = rank - 2;
      for (; d >= 0; d--) {
        src += stride[d] * el;
        if (++index[d] < shape[d]) break;
        src -= shape[d] * stride[d] * el;
        index[d] = 0;
      }
      if (d < 0) break;
    }
  }
  if (bigEndian && el > 1) {
    for (let i = 0; i < n; i += el) out.subarray(i, i + el).reverse();
  }
  return out;
}
