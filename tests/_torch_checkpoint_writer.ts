/**
 * Writes `torch.save` checkpoints for tests, in both formats, the way torch lays them out: storages,
 * tensors rebuilt by `torch._utils._rebuild_tensor_v2` (or `_v3` over an untyped storage), parameters,
 * `OrderedDict` state dicts, over the pickle writer of `_pickle_writer.ts`.
 * @module
 */
import { call, dict, global, persid, pickle, type Py, tuple } from "./_pickle_writer.ts";
import { writeZip, type ZipWriteOptions } from "./_zip_writer.ts";

/** Bytes per element of each storage class the tests write. */
export const STORAGE_BYTES: Readonly<Record<string, number>> = {
  DoubleStorage: 8,
  FloatStorage: 4,
  HalfStorage: 2,
  BFloat16Storage: 2,
  LongStorage: 8,
  IntStorage: 4,
  ShortStorage: 2,
  CharStorage: 1,
  ByteStorage: 1,
  BoolStorage: 1,
  UntypedStorage: 1,
  ComplexFloatStorage: 8,
};

/** A storage to write. */
export interface Storage {
  readonly key: string;
  readonly type: string;
  readonly data: Uint8Array;
  /** Element count written in the persistent id (default: data length / element size). */
  readonly numel?: number;
}

/** Where a tensor sits in its storage. */
export interface TensorView {
  offset?: number;
  size: readonly (number | bigint)[];
  /** Default: contiguous row-major. */
  stride?: readonly (number | bigint)[];
  requiresGrad?: boolean;
  /** Write `_rebuild_tensor_v3` with this torch dtype name (over an untyped storage). */
  v3dtype?: string;
  /** Wrap in `_rebuild_parameter`. */
  parameter?: boolean;
}

/** Row-major strides of `size`. */
export function contiguousStride(size: readonly (number | bigint)[]): number[] {
  const out = new Array<number>(size.length);
  let s = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    out[d] = s;
    s *= Number(size[d]);
  }
  return out;
}

/** An `OrderedDict` of `entries` (REDUCE with no arguments, then SETITEMS). */
export function orderedDict(entries: Record<string, Py> | [Py, Py][]): Py {
  return call(global("collections", "OrderedDict"), [], {
    items: Array.isArray(entries) ? entries : Object.entries(entries),
  });
}

/** Builds a checkpoint: register storages, make tensor nodes, then write the file. */
export class CheckpointBuilder {
  readonly format: "zip" | "legacy";
  readonly storages: Storage[] = [];

  constructor(format: "zip" | "legacy") {
    this.format = format;
  }

  /** Registers a storage (key defaults to its index). */
  storage(type: string, data: Uint8Array, key?: string, numel?: number): Storage {
    const s = { key: key ?? String(this.storages.length), type, data, numel };
    this.storages.push(s);
    return s;
  }

  /** The persistent id of a storage, in this format's shape. */
  pid(s: Storage): Py {
    const numel = s.numel ?? s.data.length / STORAGE_BYTES[s.type];
    const fields: Py[] = ["storage", global("torch", s.type), s.key, "cpu", numel];
    if (this.format === "legacy") fields.push(null);
    return persid(tuple(...fields));
  }

  /** A tensor over `s`. */
  tensor(s: Storage, view: TensorView): Py {
    const stride = view.stride ?? contiguousStride(view.size);
    const args: Py[] = [
      this.pid(s),
      view.offset ?? 0,
      tuple(...view.size),
      tuple(...stride),
      view.requiresGrad ?? false,
      orderedDict([]),
    ];
    let t: Py;
    if (view.v3dtype) {
      t = call(global("torch._utils", "_rebuild_tensor_v3"), [...args, global("torch", view.v3dtype)]);
    } else {
      t = call(global("torch._utils", "_rebuild_tensor_v2"), args);
    }
    if (view.parameter) t = call(global("torch._utils", "_rebuild_parameter"), [t, true, orderedDict([])]);
    return t;
  }

  /** A storage holding `data` and a contiguous tensor of `size` over all of it. */
  whole(type: string, data: Uint8Array, size: readonly number[], key?: string): Py {
    return this.tensor(this.storage(type, data, key), { size });
  }

  /** The checkpoint file of `tree`. */
  write(tree: Py, options: TorchWriteOptions = {}): Uint8Array<ArrayBuffer> {
    return this.format === "zip" ? this.#zip(tree, options) : this.#legacy(tree, options);
  }

  #zip(tree: Py, options: TorchWriteOptions): Uint8Array<ArrayBuffer> {
    const prefix = options.prefix ?? "archive";
    const enc = new TextEncoder();
    const members = [
      { name: `${prefix}/data.pkl`, data: options.pickle ?? pickle(tree), deflate: options.deflatePickle },
      ...(options.byteorder === null
        ? []
        : [{ name: `${prefix}/byteorder`, data: enc.encode(options.byteorder ?? "little") }]),
      ...this.storages.map((s) => ({ name: `${prefix}/data/${s.key}`, data: s.data })),
      { name: `${prefix}/version`, data: enc.encode("3\n") },
      { name: `${prefix}/.data/serialization_id`, data: enc.encode("1234567890") },
    ];
    return writeZip(members, options.zip).bytes;
  }

  #legacy(tree: Py, options: TorchWriteOptions): Uint8Array<ArrayBuffer> {
    const parts: Uint8Array[] = [
      pickle(0x1950a86a20f9469cfc6cn),
      pickle(1001),
      pickle(dict({
        protocol_version: 1001,
        little_endian: options.byteorder !== "big",
        type_sizes: dict({ short: 2, int: 4, long: 4 }),
      })),
      options.pickle ?? pickle(tree),
      pickle(this.storages.map((s) => s.key)),
    ];
    for (const s of this.storages) {
      const header = new Uint8Array(8);
      const numel = options.legacyCounts?.[s.key] ?? s.numel ?? s.data.length / STORAGE_BYTES[s.type];
      new DataView(header.buffer).setBigUint64(0, BigInt(numel), true);
      parts.push(header, s.data);
    }
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/** Options of {@linkcode CheckpointBuilder.write}. */
export interface TorchWriteOptions {
  /** Zip: the archive name (default "archive"). */
  prefix?: string;
  /** Zip: "little" (default), "big", or null for no byteorder record (torch < 2.1); legacy: little_endian. */
  byteorder?: "little" | "big" | null;
  /** Zip: writer options (zip64...). */
  zip?: ZipWriteOptions;
  /** Zip: deflate data.pkl. */
  deflatePickle?: boolean;
  /** Legacy: write these element counts in the storage headers instead of the true ones. */
  legacyCounts?: Record<string, number>;
  /** Use these bytes as the object pickle instead of pickling the tree. */
  pickle?: Uint8Array;
}
