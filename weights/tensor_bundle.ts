/**
 * TensorFlow's TensorBundle checkpoint index (`variables.index`): an SSTable whose entry under the empty key
 * is a `BundleHeaderProto` and whose other entries map checkpoint keys to `BundleEntryProto`s saying where
 * each tensor's bytes sit in the `variables.data-NNNNN-of-NNNNN` shards.
 *
 * Fields read (numbers from TensorFlow's `tensor_bundle.proto`, `tensor_shape.proto`, `versions.proto`):
 * - BundleHeaderProto: num_shards 1 (int32), endianness 2 (enum: 0 little, 1 big), version 3 (VersionDef:
 *   producer 1, min_consumer 2, bad_consumers 3).
 * - BundleEntryProto: dtype 1 (DataType enum), shape 2 (TensorShapeProto: dim 2 {size 1}, unknown_rank 3),
 *   shard_id 3, offset 4, size 5 (int64), crc32c 6 (fixed32, masked CRC-32C of the bytes), slices 7
 *   (partitioned variables: refused).
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { ProtoReader, WireType } from "./protobuf.ts";
import { readSstable, type Sstable } from "./sstable.ts";

/** TensorFlow `DataType` enum values and names, for the types a checkpoint of weights holds. */
export const TF_DTYPES: Readonly<Record<number, string>> = {
  1: "DT_FLOAT",
  2: "DT_DOUBLE",
  3: "DT_INT32",
  4: "DT_UINT8",
  5: "DT_INT16",
  6: "DT_INT8",
  7: "DT_STRING",
  9: "DT_INT64",
  10: "DT_BOOL",
  14: "DT_BFLOAT16",
  17: "DT_UINT16",
  19: "DT_HALF",
  20: "DT_RESOURCE",
  21: "DT_VARIANT",
  22: "DT_UINT32",
  23: "DT_UINT64",
};

/** Bytes per element of the fixed-size TensorFlow dtypes (strings, resources and variants have none). */
export const TF_DTYPE_BYTES: Readonly<Record<number, number>> = {
  1: 4,
  2: 8,
  3: 4,
  4: 1,
  5: 2,
  6: 1,
  9: 8,
  10: 1,
  14: 2,
  17: 2,
  19: 2,
  22: 4,
  23: 8,
};

/** The name of a `DataType` value (`DT_FLOAT`), or `DT_<n>` for one not listed. */
export function tfDtypeName(dtype: number): string {
  return TF_DTYPES[dtype] ?? `DT_${dtype}`;
}

/** The bundle's header entry. */
export interface BundleHeader {
  /** Number of data shards. */
  readonly numShards: number;
  /** 0 little-endian, 1 big-endian. */
  readonly endianness: number;
  /** The writer's version. */
  readonly version: { producer: number; minConsumer: number; badConsumers: number[] };
}

/** Where one tensor's bytes are. */
export interface BundleEntry {
  /** The checkpoint key. */
  readonly key: string;
  /** TensorFlow `DataType` value (1 = DT_FLOAT). */
  readonly dtype: number;
  /** Dimensions, outermost first. */
  readonly shape: number[];
  /** Which data shard. */
  readonly shardId: number;
  /** Byte offset in the shard. */
  readonly offset: number;
  /** Byte count in the shard. */
  readonly size: number;
  /** Masked CRC-32C of the bytes, as stored. */
  readonly crc32c: number;
}

/** A parsed index. */
export interface TensorBundleIndex {
  /** The header (key ""). */
  readonly header: BundleHeader;
  /** Entries by checkpoint key, in key order. */
  readonly entries: Map<string, BundleEntry>;
  /** The SSTable underneath (layout facts for tests and diagnostics). */
  readonly table: Sstable;
}

function parseVersion(r: ProtoReader): BundleHeader["version"] {
  const version = { producer: 0, minConsumer: 0, badConsumers: [] as number[] };
  while (r.next()) {
    if (r.field === 1 && r.wireType === WireType.VARINT) version.producer = r.int64();
    else if (r.field === 2 && r.wireType === WireType.VARINT) version.minConsumer = r.int64();
    else if (r.field === 3) version.badConsumers.push(...r.packedVarints());
    else r.skip();
  }
  return version;
}

/**
 * Decodes a `BundleHeaderProto`.
 *
 * @param bytes The value stored under the empty key.
 * @returns The header (absent fields are 0, as in proto3).
 * @throws {SyntaxError} for malformed protobuf.
 */
export function parseBundleHeader(bytes: Uint8Array): BundleHeader {
  const r = new ProtoReader(bytes);
  let numShards = 0, endianness = 0;
  let version: BundleHeader["version"] = { producer: 0, minConsumer: 0, badConsumers: [] };
  while (r.next()) {
    if (r.field === 1 && r.wireType === WireType.VARINT) numShards = r.int64();
    else if (r.field === 2 && r.wireType === WireType.VARINT) endianness = r.varint();
    else if (r.field === 3 && r.wireType === WireType.BYTES) version = parseVersion(r.message());
    else r.skip();
  }
  return { numShards, endianness, version };
}

/**
 * Decodes a `TensorShapeProto` into dimensions (unknown dimensions are -1).
 *
 * @param r A reader over the shape message.
 * @returns The dimensions, or `undefined` for `unknown_rank`.
 * @throws {SyntaxError} for malformed protobuf.
 */
export function parseTensorShape(r: ProtoReader): number[] | undefined {
  const dims: number[] = [];
  let unknownRank = false;
  while (r.next()) {
    if (r.field === 2 && r.wireType === WireType.BYTES) {
      const d = r.message();
      let size = 0;
      while (d.next()) {
        if (d.field === 1 && d.wireType === WireType.VARINT) size = d.int64();
        else d.skip();
      }
      dims.push(size);
    } else if (r.field === 3 && r.wireType === WireType.VARINT) unknownRank = r.bool();
    else r.skip();
  }
  return unknownRank ? undefined : dims;
}

/**
 * Decodes a `BundleEntryProto`.
 *
 * @param key The checkpoint key (for the result and messages).
 * @param bytes The value stored under `key`.
 * @returns The entry.
 * @throws {SyntaxError} for malformed protobuf; {@linkcode RangeError} for a sliced (partitioned) tensor,
 * an unknown rank or a negative dimension.
 */
export function parseBundleEntry(key: string, bytes: Uint8Array): BundleEntry {
  const r = new ProtoReader(bytes);
  let dtype = 0, shardId = 0, offset = 0, size = 0, crc = 0;
  let shape: number[] | undefined = [];
  let slices = 0;
  while (r.next()) {
    if (r.field === 1 && r.wireType === WireType.VARINT) dtype = r.varint();
    else if (r.field === 2 && r.wireType === WireType.BYTES) shape = parseTensorShape(r.message());
    else if (r.field === 3 && r.wireType === WireType.VARINT) shardId = r.int64();
    else if (r.field === 4 && r.wireType === WireType.VARINT) offset = r.int64();
    else if (r.field === 5 && r.wireType === WireType.VARINT) size = r.int64();
    else if (r.field === 6 && r.wireType === WireType.FIXED32) crc = r.fixed32();
    else if (r.field === 7) {
      slices++;
      r.skip();
    } else r.skip();
  }
  if (slices > 0) {
    throw new RangeError(`${slices} partitioned slices: sliced (partitioned) variables are not supported`);
  }
  if (!shape) throw new RangeError("unknown rank");
  if (shape.some((d) => d < 0)) throw new RangeError(`negative dimension in [${shape.join(",")}]`);
  if (shardId < 0 || offset < 0 || size < 0) {
    throw new RangeError(`negative shard, offset or size (${shardId}, ${offset}, ${size})`);
  }
  return { key, dtype, shape, shardId, offset, size, crc32c: crc };
}

/**
 * Reads a checkpoint index: the SSTable, its header entry and every tensor entry.
 *
 * @param bytes The whole `variables.index` file.
 * @param options `file`: name for messages.
 * @returns Header and entries by key.
 * @throws {WeightsError} for an unreadable table (see `readSstable`), a missing or malformed header, a
 * big-endian bundle, no shards, a malformed entry (naming its key as `tensor`), a shard id out of range, or a
 * numeric tensor whose byte count does not match its shape.
 *
 * @example
 * ```ts
 * const index = readTensorBundleIndex(await Deno.readFile("variables/variables.index"));
 * index.entries.get("conv1/kernel/.ATTRIBUTES/VARIABLE_VALUE")?.shape;
 * ```
 */
export function readTensorBundleIndex(bytes: Uint8Array, options: { file?: string } = {}): TensorBundleIndex {
  const file = options.file ?? "<bytes>";
  const table = readSstable(bytes, { file });
  const fail = (tensor: string, message: string, cause?: unknown): never => {
    throw new WeightsError(file, tensor, `Cannot read "${file}": ${message}`, cause ? { cause } : undefined);
  };
  const first = table.entries[0];
  if (!first || first.key !== "") fail("", "no bundle header (the entry with the empty key)");
  let header: BundleHeader;
  try {
    header = parseBundleHeader(first.value);
  } catch (e) {
    return fail("", `malformed bundle header: ${(e as Error).message}`, e);
  }
  if (header.endianness !== 0) fail("", "big-endian bundles are not supported");
  if (header.numShards < 1 || header.numShards > 99999) {
    fail("", `bundle header claims ${header.numShards} shards: expected 1 to 99999`);
  }
  const entries = new Map<string, BundleEntry>();
  for (const { key, value } of table.entries.slice(1)) {
    let entry: BundleEntry;
    try {
      entry = parseBundleEntry(key, value);
    } catch (e) {
      return fail(key, `entry "${key}": ${(e as Error).message}`, e);
    }
    if (entry.shardId >= header.numShards) {
      fail(key, `entry "${key}": shard ${entry.shardId} of ${header.numShards}`);
    }
    const elementBytes = TF_DTYPE_BYTES[entry.dtype];
    if (elementBytes !== undefined) {
      const want = entry.shape.reduce((a, b) => a * b, 1) * elementBytes;
      if (want !== entry.size) {
        fail(
          key,
          `entry "${key}": expected ${want} bytes for ${tfDtypeName(entry.dtype)} [${
            entry.shape.join(",")
          }], ` +
            `got ${entry.size}`,
        );
      }
    }
    entries.set(key, entry);
  }
  return { header, entries, table };
}

/**
 * The file name of a data shard: `variables.data-00000-of-00001`.
 *
 * @param prefix The checkpoint prefix (`variables`).
 * @param shardId Zero-based shard.
 * @param numShards Shard count from the header.
 * @returns The name TensorFlow gives it.
 */
export function shardFileName(prefix: string, shardId: number, numShards: number): string {
  const pad = (n: number) => String(n).padStart(5, "0");
  return `${prefix}.data-${pad(shardId)}-of-${pad(numShards)}`;
}
