/**
 * Test-side writer of TensorFlow SavedModel directories shaped like Derm Foundation's, so the converter can
 * be tested end to end without TensorFlow and without the 1.5 GB original.
 *
 * Layout written (what Derm Foundation's jax2tf export has, per testdata/savedmodel/README.md):
 * - `saved_model.pb`: SavedModel {schema 1, one MetaGraphDef {meta_info_def {tags ["serve"],
 *   tensorflow_version}, object_graph_def}}; node 0 (root) has children "computation_module" (node 1),
 *   "tf_trackable_resources" and "signatures" (empty objects); node 1 has child "_var_leaves" (node 2),
 *   whose children "0", "1", ... are the variables (SavedVariable {dtype, shape, trainable false, name}) in
 *   leaf order: names sorted, as jax flattens a dict. No graph_def: the converter never reads it.
 * - `variables/variables.index`: an SSTable (restart interval 16, uncompressed blocks with masked CRC-32C
 *   trailers, a one-entry-per-block index, an empty metaindex) holding the BundleHeaderProto under "" and a
 *   BundleEntryProto per key `computation_module/_var_leaves/<i>/.ATTRIBUTES/VARIABLE_VALUE`, plus the
 *   `_CHECKPOINTABLE_OBJECT_GRAPH` string tensor TensorFlow always adds.
 * - `variables/variables.data-00000-of-00001`: the tensors back to back in the source's stream order (one
 *   tensor in memory at a time), then the object-graph string.
 * @module
 */
import { crc32c, maskCrc32c } from "../weights/crc32c.ts";
import { encodeVarint, ProtoWriter } from "../weights/protobuf.ts";
import type { SafetensorsDtype, TensorSource } from "../weights/safetensors.ts";
import { SSTABLE_MAGIC } from "../weights/sstable.ts";

const ENCODER = new TextEncoder();

/** TensorFlow DataType values of the safetensors dtypes. */
export const TF_DTYPE_OF: Partial<Record<SafetensorsDtype, number>> = { F32: 1, F16: 19, BF16: 14 };

/** Entries per restart point in data blocks (TensorFlow's table default). */
const RESTART_INTERVAL = 16;

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function u32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

function encodeBlock(entries: { key: Uint8Array; value: Uint8Array }[], interval: number): Uint8Array {
  const parts: Uint8Array[] = [];
  const restarts: number[] = [];
  let size = 0;
  let previous: Uint8Array = new Uint8Array(0);
  entries.forEach(({ key, value }, i) => {
    let shared = 0;
    if (i % interval === 0) restarts.push(size);
    else while (shared < previous.length && shared < key.length && previous[shared] === key[shared]) shared++;
    const entry = concat([
      encodeVarint(shared),
      encodeVarint(key.length - shared),
      encodeVarint(value.length),
      key.subarray(shared),
      value,
    ]);
    parts.push(entry);
    size += entry.length;
    previous = key;
  });
  if (restarts.length === 0) restarts.push(0);
  for (const r of restarts) parts.push(u32(r));
  parts.push(u32(restarts.length));
  return concat(parts);
}

/**
 * Encodes an SSTable of `entries` (sorted here by key bytes).
 *
 * @param entries Keys and values.
 * @param options `blockBytes`: start a new data block once one reaches this size (default 256 KiB, as
 * TensorFlow); `compression`: the type byte written in data-block trailers (default 0; anything else
 * makes an invalid table, for tests).
 * @returns The file.
 */
export function encodeSstable(
  entries: { key: string; value: Uint8Array }[],
  options: { blockBytes?: number; compression?: number } = {},
): Uint8Array<ArrayBuffer> {
  const blockBytes = options.blockBytes ?? 256 * 1024;
  const sorted = entries.map((e) => ({ key: ENCODER.encode(e.key), value: e.value }))
    .sort((a, b) => {
      for (let i = 0; i < Math.min(a.key.length, b.key.length); i++) {
        if (a.key[i] !== b.key[i]) return a.key[i] - b.key[i];
      }
      return a.key.length - b.key.length;
    });
  const parts: Uint8Array[] = [];
  let offset = 0;
  const writeBlock = (contents: Uint8Array, type = 0) => {
    const handle = { offset, size: contents.length };
    const typeByte = Uint8Array.of(type);
    const trailer = concat([typeByte, u32(maskCrc32c(crc32c(typeByte, crc32c(contents))))]);
    parts.push(contents, trailer);
    offset += contents.length + trailer.length;
    return handle;
  };
  const handleBytes = (h: { offset: number; size: number }) =>
    concat([encodeVarint(h.offset), encodeVarint(h.size)]);
  const index: { key: Uint8Array; value: Uint8Array }[] = [];
  let block: typeof sorted = [];
  let blockSize = 0;
  const flush = () => {
    if (block.length === 0) return;
    const handle = writeBlock(encodeBlock(block, RESTART_INTERVAL), options.compression ?? 0);
    index.push({ key: block[block.length - 1].key, value: handleBytes(handle) });
    block = [];
    blockSize = 0;
  };
  for (const e of sorted) {
    block.push(e);
    blockSize += e.key.length + e.value.length + 3;
    if (blockSize >= blockBytes) flush();
  }
  flush();
  const metaindex = writeBlock(encodeBlock([], RESTART_INTERVAL));
  const indexHandle = writeBlock(encodeBlock(index, 1));
  const footer = new Uint8Array(48);
  footer.set(concat([handleBytes(metaindex), handleBytes(indexHandle)]));
  new DataView(footer.buffer).setUint32(40, SSTABLE_MAGIC[0], true);
  new DataView(footer.buffer).setUint32(44, SSTABLE_MAGIC[1], true);
  parts.push(footer);
  return concat(parts);
}

function shapeProto(shape: readonly number[]): Uint8Array {
  const w = new ProtoWriter();
  for (const d of shape) w.bytes(2, new ProtoWriter().varint(1, d).finish());
  return w.finish();
}

/** A BundleEntryProto's fields. */
export interface BundleEntryFields {
  dtype: number;
  shape: readonly number[];
  shardId: number;
  offset: number;
  size: number;
  /** Masked CRC-32C. */
  crc32c: number;
  /** Number of (empty) partition slices to add, for tests. */
  slices?: number;
}

/** Encodes a BundleEntryProto. */
export function encodeBundleEntry(e: BundleEntryFields): Uint8Array<ArrayBuffer> {
  const w = new ProtoWriter().varint(1, e.dtype).bytes(2, shapeProto(e.shape));
  if (e.shardId) w.varint(3, e.shardId);
  if (e.offset) w.varint(4, e.offset);
  if (e.size) w.varint(5, e.size);
  w.fixed32(6, e.crc32c);
  for (let i = 0; i < (e.slices ?? 0); i++) w.bytes(7, new Uint8Array(0));
  return w.finish();
}

/** Encodes a BundleHeaderProto (little-endian, producer 1). */
export function encodeBundleHeader(numShards: number): Uint8Array<ArrayBuffer> {
  return new ProtoWriter().varint(1, numShards).bytes(3, new ProtoWriter().varint(1, 1).finish()).finish();
}

/** A variable of the object graph to write. */
export interface VariableToWrite {
  name: string;
  dtype: number;
  shape: readonly number[];
}

/**
 * Encodes a `saved_model.pb` whose object graph is laid out like Derm Foundation's.
 *
 * @param variables In `_var_leaves` order.
 * @param options `tensorflowVersion` (default "2.17.0").
 * @returns The file.
 */
export function encodeDermSavedModelPb(
  variables: readonly VariableToWrite[],
  options: { tensorflowVersion?: string } = {},
): Uint8Array<ArrayBuffer> {
  const child = (nodeId: number, name: string) =>
    new ProtoWriter().varint(1, nodeId).string(2, name).finish();
  const object = (children: Uint8Array[], variable?: Uint8Array) => {
    const w = new ProtoWriter();
    for (const c of children) w.bytes(1, c);
    // An empty user object (identifier only) for the non-variable nodes, as TensorFlow writes them.
    if (variable) w.bytes(7, variable);
    else w.bytes(4, new ProtoWriter().string(1, "_generic_user_object").finish());
    return w.finish();
  };
  const first = 5; // nodes 0 root, 1 computation_module, 2 _var_leaves, 3 tf_trackable_resources, 4 signatures
  const nodes = [
    object([child(1, "computation_module"), child(3, "tf_trackable_resources"), child(4, "signatures")]),
    object([child(2, "_var_leaves")]),
    object(variables.map((_, i) => child(first + i, String(i)))),
    object([]),
    object([]),
    ...variables.map((v) =>
      object(
        [],
        new ProtoWriter().varint(1, v.dtype).bytes(2, shapeProto(v.shape)).string(6, v.name).finish(),
      )
    ),
  ];
  const graph = new ProtoWriter();
  for (const n of nodes) graph.bytes(1, n);
  const info = new ProtoWriter().string(4, "serve").string(5, options.tensorflowVersion ?? "2.17.0").finish();
  const meta = new ProtoWriter().bytes(1, info).bytes(7, graph.finish()).finish();
  return new ProtoWriter().varint(1, 1).bytes(2, meta).finish();
}

/** The checkpoint key of `_var_leaves` entry `i`. */
export function dermLeafKey(i: number): string {
  return `computation_module/_var_leaves/${i}/.ATTRIBUTES/VARIABLE_VALUE`;
}

/** Options of {@linkcode writeDermSavedModel}. */
export interface WriteSavedModelOptions {
  /** Change an index entry before it is encoded (hostile-input tests). */
  editEntry?: (key: string, entry: BundleEntryFields) => BundleEntryFields;
  /** Data-block size of the index table (default 256 KiB). */
  blockBytes?: number;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/**
 * Writes `source` as a Derm-Foundation-shaped SavedModel directory (created if missing).
 *
 * @param dir The SavedModel directory.
 * @param source Tensors (any naming); variable names are the source's tensor names.
 * @param options Hooks for hostile tests.
 * @returns The variables in leaf order with their keys, and the data shard's size.
 */
export async function writeDermSavedModel(
  dir: string,
  source: TensorSource,
  options: WriteSavedModelOptions = {},
): Promise<{ variables: (VariableToWrite & { key: string })[]; dataBytes: number }> {
  const names = [...source.tensors.keys()].sort();
  const variables = names.map((name, i) => {
    const e = source.tensors.get(name)!;
    const dtype = TF_DTYPE_OF[e.dtype];
    if (dtype === undefined) throw new TypeError(`Cannot write "${name}" to a SavedModel: dtype ${e.dtype}`);
    return { name, dtype, shape: [...e.shape], key: dermLeafKey(i) };
  });
  await Deno.mkdir(`${dir}/variables`, { recursive: true });
  await Deno.writeFile(`${dir}/saved_model.pb`, encodeDermSavedModelPb(variables));
  const keyOf = new Map(variables.map((v) => [v.name, v]));
  const entries: { key: string; value: Uint8Array }[] = [{ key: "", value: encodeBundleHeader(1) }];
  const edit = options.editEntry ?? ((_: string, e: BundleEntryFields) => e);
  const data = await Deno.open(`${dir}/variables/variables.data-00000-of-00001`, {
    write: true,
    create: true,
    truncate: true,
  });
  let offset = 0;
  try {
    for await (const { entry, bytes } of source.stream()) {
      const v = keyOf.get(entry.name)!;
      await writeAll(data, bytes);
      const fields = {
        dtype: v.dtype,
        shape: v.shape,
        shardId: 0,
        offset,
        size: bytes.length,
        crc32c: maskCrc32c(crc32c(bytes)),
      };
      entries.push({ key: v.key, value: encodeBundleEntry(edit(v.key, fields)) });
      offset += bytes.length;
    }
    // The object-graph string tensor, in TensorFlow's string layout: varint length, masked CRC-32C of the
    // length as u32 LE, then the bytes; its entry CRC covers u32 length + length checksum + bytes.
    const graph = ENCODER.encode("object graph placeholder");
    const lengthCrc = u32(maskCrc32c(crc32c(u32(graph.length))));
    const onDisk = concat([encodeVarint(graph.length), lengthCrc, graph]);
    await writeAll(data, onDisk);
    const stringCrc = maskCrc32c(crc32c(concat([u32(graph.length), lengthCrc, graph])));
    entries.push({
      key: "_CHECKPOINTABLE_OBJECT_GRAPH",
      value: encodeBundleEntry({
        dtype: 7,
        shape: [],
        shardId: 0,
        offset,
        size: onDisk.length,
        crc32c: stringCrc,
      }),
    });
    offset += onDisk.length;
  } finally {
    data.close();
  }
  await Deno.writeFile(
    `${dir}/variables/variables.index`,
    encodeSstable(entries, { blockBytes: options.blockBytes }),
  );
  return { variables, dataBytes: offset };
}
