/**
 * A TensorFlow 2 SavedModel directory as a {@linkcode TensorSource}, for Deno: the variables named in
 * `saved_model.pb`, their values read from `variables/` one tensor at a time (seek + read of the tensor's
 * byte range in its shard, never the whole 1.5 GB shard), each checked against its stored CRC-32C.
 *
 * Deno only (uses `Deno.open`).
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { crc32c, unmaskCrc32c } from "./crc32c.ts";
import {
  entriesInFileOrder,
  type SafetensorsDtype,
  type TensorChunk,
  type TensorEntry,
  type TensorSource,
} from "./safetensors.ts";
import {
  readSavedModel,
  type SavedModelGraph,
  type SavedModelVariable,
  type VariableKind,
} from "./savedmodel.ts";
import { type BundleEntry, readTensorBundleIndex, shardFileName, tfDtypeName } from "./tensor_bundle.ts";
import { describeFileError, readAt } from "./_file_deno.ts";

/** Largest `saved_model.pb` read (protobuf messages cannot exceed 2 GiB). */
export const MAX_SAVED_MODEL_PB_BYTES = 2 ** 31;
/** Largest `variables.index` read: Derm Foundation's is about 30 KB; a few MB covers any real model. */
export const MAX_INDEX_BYTES = 256 * 1024 * 1024;

const DTYPE_OF_TF: Readonly<Record<number, SafetensorsDtype>> = { 1: "F32", 19: "F16", 14: "BF16" };

/** A variable that is not part of the source, and why. */
export interface DroppedVariable {
  readonly variable: SavedModelVariable;
  /** E.g. "optimizer_slot" or "unsupported dtype DT_INT64". */
  readonly reason: string;
}

/** A SavedModel's weights as a tensor source, with what was read about it. */
export interface SavedModelSource extends TensorSource {
  /** The object graph's facts and every variable. */
  readonly graph: SavedModelGraph;
  /** The variables served, in object-graph order, by tensor name. */
  readonly variables: ReadonlyMap<string, SavedModelVariable>;
  /** Variables left out (training state, unsupported dtypes). */
  readonly dropped: readonly DroppedVariable[];
}

/** Options of {@linkcode openSavedModel}. */
export interface OpenSavedModelOptions {
  /** Variable kinds to serve (default: only `model`, dropping training state). */
  kinds?: readonly VariableKind[];
}

async function readSmallFile(path: string, what: string, limit: number, dir: string): Promise<Uint8Array> {
  let size: number;
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new WeightsError(path, "", `Cannot open "${path}": not a regular file`);
    size = info.size;
  } catch (e) {
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(
      path,
      "",
      `Cannot open "${path}": ${describeFileError(e)} (a SavedModel directory holds ${what})`,
      { cause: e },
    );
  }
  if (size > limit) {
    throw new WeightsError(path, "", `Cannot read "${path}": ${size} bytes is over the ${limit}-byte limit`);
  }
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new WeightsError(path, "", `Cannot read "${path}": ${describeFileError(e)} (in "${dir}")`, {
      cause: e,
    });
  }
}

/**
 * Opens a TensorFlow 2 SavedModel directory (`saved_model.pb` + `variables/`).
 *
 * Tensor names are `SavedVariable.name` (Derm Foundation: `params.feature_extractor...`), or the checkpoint
 * key where a name is missing or shared by two variables. Only `model` variables are served by default;
 * `dropped` lists the rest. Everything but the tensor bytes is checked here: the index, every entry's
 * dtype and shape against the object graph, each shard's presence and that every byte range lies inside
 * it. Each tensor's CRC-32C is checked as it is streamed.
 *
 * @param dir The SavedModel directory.
 * @param options Which variable kinds to serve.
 * @returns A source that can be streamed any number of times; `close()` it when done.
 * @throws {WeightsError} for a missing or non-directory path, missing or malformed `saved_model.pb` or
 * `variables.index`, a variable without an index entry, a dtype or shape disagreement, a missing shard,
 * or a byte range past the end of its shard.
 *
 * @example
 * ```ts
 * const source = await openSavedModel("derm-foundation");
 * try {
 *   await writeSafetensorsFile("derm.safetensors", source);
 * } finally {
 *   await source.close();
 * }
 * ```
 */
export async function openSavedModel(
  dir: string,
  options: OpenSavedModelOptions = {},
): Promise<SavedModelSource> {
  const kinds = new Set<VariableKind>(options.kinds ?? ["model"]);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    throw new WeightsError(dir, "", `Cannot open "${dir}": ${describeFileError(e)}`, { cause: e });
  }
  if (!info.isDirectory) {
    throw new WeightsError(
      dir,
      "",
      `Cannot open "${dir}": not a SavedModel directory (expected a folder holding saved_model.pb and variables/)`,
    );
  }
  const pbPath = `${dir}/saved_model.pb`;
  const indexPath = `${dir}/variables/variables.index`;
  const graph = readSavedModel(
    await readSmallFile(pbPath, "saved_model.pb", MAX_SAVED_MODEL_PB_BYTES, dir),
    { file: pbPath },
  );
  const index = readTensorBundleIndex(
    await readSmallFile(indexPath, "variables/variables.index", MAX_INDEX_BYTES, dir),
    { file: indexPath },
  );
  const fail = (tensor: string, message: string): never => {
    throw new WeightsError(dir, tensor, `Cannot load "${tensor}" from "${dir}": ${message}`);
  };

  // Pick the variables, check them against the index.
  const dropped: DroppedVariable[] = [];
  const chosen: { variable: SavedModelVariable; entry: BundleEntry; dtype: SafetensorsDtype }[] = [];
  for (const variable of graph.variables) {
    if (!kinds.has(variable.kind)) {
      dropped.push({ variable, reason: variable.kind });
      continue;
    }
    const label = variable.name || variable.key;
    const entry = index.entries.get(variable.key);
    if (!entry) fail(label, `checkpoint key "${variable.key}" is not in "${indexPath}"`);
    const dtype = DTYPE_OF_TF[entry!.dtype];
    if (!dtype) {
      dropped.push({ variable, reason: `unsupported dtype ${tfDtypeName(entry!.dtype)}` });
      continue;
    }
    if (entry!.dtype !== variable.dtype) {
      fail(
        label,
        `the index stores ${tfDtypeName(entry!.dtype)}, the object graph says ${tfDtypeName(variable.dtype)}`,
      );
    }
    const known = variable.shape;
    if (
      known && (known.length !== entry!.shape.length || known.some((d, i) => d >= 0 && d !== entry!.shape[i]))
    ) {
      fail(
        label,
        `the index stores shape [${entry!.shape.join(",")}], the object graph says [${known.join(",")}]`,
      );
    }
    chosen.push({ variable, entry: entry!, dtype });
  }

  // Names: SavedVariable.name when present and unique, else the checkpoint key.
  const nameCount = new Map<string, number>();
  for (const { variable } of chosen) nameCount.set(variable.name, (nameCount.get(variable.name) ?? 0) + 1);
  const useName = (v: SavedModelVariable) =>
    v.name !== "" && v.name !== "__metadata__" && nameCount.get(v.name) === 1;

  // Shards: present, and every byte range inside one. Offsets below are virtual: shard base + offset.
  const numShards = index.header.numShards;
  const shardPaths: string[] = [];
  const shardBase: number[] = [];
  const shardSize: number[] = [];
  const usedShards = new Set(chosen.map((c) => c.entry.shardId));
  let base = 0;
  for (let s = 0; s < numShards; s++) {
    const path = `${dir}/variables/${shardFileName("variables", s, numShards)}`;
    shardPaths.push(path);
    shardBase.push(base);
    let size = 0;
    if (usedShards.has(s)) {
      try {
        const stat = await Deno.stat(path);
        if (!stat.isFile) throw new Error("not a regular file");
        size = stat.size;
      } catch (e) {
        throw new WeightsError(
          path,
          "",
          `Cannot open "${path}": ${describeFileError(e)} (data shard ${s} of ${numShards} of "${dir}")`,
          { cause: e },
        );
      }
    }
    shardSize.push(size);
    base += size;
  }
  const tensors = new Map<string, TensorEntry>();
  const variables = new Map<string, SavedModelVariable>();
  const bundleOf = new Map<string, BundleEntry>();
  for (const { variable, entry, dtype } of chosen) {
    const name = useName(variable) ? variable.name : variable.key;
    const end = entry.offset + entry.size;
    if (end > shardSize[entry.shardId]) {
      fail(
        name,
        `bytes [${entry.offset},${end}) are past the end of the ${shardSize[entry.shardId]}-byte shard ` +
          `"${shardPaths[entry.shardId]}"`,
      );
    }
    const begin = shardBase[entry.shardId] + entry.offset;
    tensors.set(name, { name, dtype, shape: [...entry.shape], begin, end: begin + entry.size });
    variables.set(name, variable);
    bundleOf.set(name, entry);
  }

  const handles = new Map<number, Deno.FsFile>();
  let closed = false;
  async function shardHandle(shard: number): Promise<Deno.FsFile> {
    let handle = handles.get(shard);
    if (!handle) {
      try {
        handle = await Deno.open(shardPaths[shard], { read: true });
      } catch (e) {
        throw new WeightsError(
          shardPaths[shard],
          "",
          `Cannot open "${shardPaths[shard]}": ${describeFileError(e)}`,
          {
            cause: e,
          },
        );
      }
      handles.set(shard, handle);
    }
    return handle;
  }

  async function readTensor(entry: TensorEntry): Promise<Uint8Array<ArrayBuffer>> {
    if (closed) fail(entry.name, "the source is closed");
    const bundle = bundleOf.get(entry.name)!;
    const shardPath = shardPaths[bundle.shardId];
    const file = await shardHandle(bundle.shardId);
    const bytes = new Uint8Array(bundle.size);
    let got: number;
    try {
      got = await readAt(file, bundle.offset, bytes);
    } catch (e) {
      throw new WeightsError(
        dir,
        entry.name,
        `Cannot load "${entry.name}" from "${shardPath}": ${describeFileError(e)}`,
        {
          cause: e,
        },
      );
    }
    if (got < bytes.length) {
      fail(
        entry.name,
        `shard "${shardPath}" truncated: data ends at byte ${bundle.offset + got}, expected ${
          bundle.offset + bundle.size
        }`,
      );
    }
    const computed = crc32c(bytes);
    const stored = unmaskCrc32c(bundle.crc32c);
    if (computed !== stored) {
      fail(
        entry.name,
        `CRC32C mismatch in "${shardPath}" at bytes [${bundle.offset},${bundle.offset + bundle.size}): ` +
          `stored 0x${stored.toString(16).padStart(8, "0")}, computed 0x${
            computed.toString(16).padStart(8, "0")
          }`,
      );
    }
    return bytes;
  }

  return {
    file: dir,
    metadata: { source_format: "tensorflow-savedmodel", tensorflow_version: graph.tensorflowVersion },
    tensors,
    graph,
    variables,
    dropped,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (closed) throw new WeightsError(dir, "", `Cannot read "${dir}": the source is closed`);
      for (const name of wanted ?? []) {
        if (!tensors.has(name)) fail(name, "no such tensor in the SavedModel");
      }
      const entries = entriesInFileOrder(tensors.values()).filter((e) => !wanted || wanted.has(e.name));
      return (async function* () {
        for (const entry of entries) yield { entry, bytes: await readTensor(entry) };
      })();
    },
    close() {
      if (closed) return;
      closed = true;
      for (const h of handles.values()) h.close();
      handles.clear();
    },
  };
}
