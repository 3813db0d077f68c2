/**
 * PyTorch checkpoints (`torch.save`, both formats) read as data, executing nothing, and their tensors
 * streamed as a {@linkcode TensorSource}.
 *
 * - Zip format (torch >= 1.6): a zip archive whose entries share a prefix (the archive name):
 *   `<prefix>/data.pkl` (the pickled object), `<prefix>/data/<key>` (each storage's raw bytes, stored and
 *   64-byte aligned), `<prefix>/byteorder` ("little" or "big", absent before torch 2.1: little),
 *   `<prefix>/version`. Persistent ids are `("storage", storage_type, key, location, numel)`.
 * - Legacy format: five pickles back to back (the magic number 0x1950a86a20f9469cfc6c, the protocol version
 *   1001, `sys_info`, the object, the list of storage keys), then each storage in that list's order as a
 *   u64 element count and its bytes, both little-endian whatever the machine that wrote them. Persistent ids are `("storage",
 *   storage_type, root_key, location, numel, view_metadata)`. The pre-2017 tar format is refused.
 *
 * Opening reads the pickles and the storage directory only (zip: end records and central directory; legacy:
 * the pickles at the start, then one 8-byte header per storage), never the tensor data, so a file of any size
 * can back it through random access ({@linkcode RandomAccessReader}: `pytorch_deno.ts` for files,
 * {@linkcode pytorchFromBytes} for bytes in memory). Every tensor reachable in the object is checked then:
 * its rebuild arguments, its storage's presence and size, and that its elements lie inside its storage; a
 * problem is a {@linkcode WeightsError} naming the file and the tensor (its path in the object, e.g.
 * `teacher/backbone.cls_token`).
 *
 * Layout selection over the object (DINO, MAE, BYOL, SimCLR, plain state dicts) is `pytorch_layout.ts`,
 * re-exported here; tensor and storage references, torch's rebuild functions and the gather of strided
 * views are `pytorch_tensors.ts`.
 *
 * Longer than ~400 lines on purpose: the two formats feed one storage interface, one tensor check and one
 * source, which read best side by side; about a third is JSDoc.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import type { Dtype } from "./dtypes.ts";
import { isNamespaceObject, isTruncatedPickle, PickleObject, unpickle } from "./pickle.ts";
import {
  gatherTensor,
  InvalidTensor,
  storageFromPersistentId,
  type StorageRef,
  TensorRef,
  torchConstruct,
} from "./pytorch_tensors.ts";
import { entriesInFileOrder, type TensorChunk, type TensorEntry, type TensorSource } from "./safetensors.ts";
import { bytesReader, openZip, type RandomAccessReader, type ZipArchive, type ZipEntry } from "./zip.ts";

export { InvalidTensor, StorageRef, TensorRef } from "./pytorch_tensors.ts";
export { type CheckpointLayout, type CheckpointStateDict, checkpointStateDict } from "./pytorch_layout.ts";
import { checkpointStateDict } from "./pytorch_layout.ts";
export { blobReader, bytesReader, type RandomAccessReader } from "./zip.ts";

/** The legacy format's first pickle. */
export const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
/** The legacy format's second pickle. */
export const LEGACY_PROTOCOL_VERSION = 1001;

/** Bytes of the legacy format read first; doubled until its pickles fit. */
const LEGACY_FIRST_READ = 1 << 20;
/** Largest pickle accepted (the object of a checkpoint of 100,000 tensors is about 20 MB). */
const MAX_PICKLE_BYTES = 1 << 30;

/** One tensor of a {@linkcode TensorSource} over a checkpoint. */
export interface PytorchTensorEntry extends TensorEntry {
  /** The tensor. */
  readonly tensor: TensorRef;
  /**
   * Absolute offset just past the last byte it reads. `begin` is where its first element is, `end` is `begin`
   * plus its contiguous size (the bytes a chunk holds); they differ from `[begin, readEnd)` only for a
   * strided view. For a deflated storage, offsets inside the inflated bytes are added to the entry's start.
   */
  readonly readEnd: number;
}

/** Options of {@linkcode PytorchCheckpoint.source}. */
export interface PytorchSourceOptions {
  /** Added to the source's metadata (which has `source`: "pytorch-zip" or "pytorch-legacy"). */
  metadata?: Record<string, string>;
}

/** An open checkpoint: its object tree, and sources over chosen tensors of it. */
export interface PytorchCheckpoint {
  /** File name, path or URL, for messages. */
  readonly file: string;
  /** "zip" (torch >= 1.6) or "legacy". */
  readonly format: "zip" | "legacy";
  /**
   * What `torch.load` would return, as data (see `pickle_values.ts`): dicts are `Map`s, tensors
   * {@linkcode TensorRef}, an `argparse.Namespace` a plain object, other objects inert placeholders.
   */
  readonly tree: unknown;
  /** Every tensor in the tree, by path (`teacher/backbone.cls_token`), checked against its storage. */
  readonly tensors: ReadonlyMap<string, TensorRef>;
  /**
   * A source streaming `tensors` (names the caller chooses) one at a time, in file order, as contiguous
   * little-endian bytes. Reads the storages' local headers (zip) to place them in the file.
   *
   * @throws {WeightsError} naming the tensor for one not of this checkpoint or of a dtype the project
   * does not read (complex, quantized, float8...).
   */
  source(tensors: ReadonlyMap<string, TensorRef>, options?: PytorchSourceOptions): Promise<TensorSource>;
  /** Releases the file; sources made from it stop working. */
  close(): Promise<void>;
}

/** Where a format's storages are, behind one interface. */
interface StorageStore {
  /** Bytes of each storage in the file, by key. */
  byteLength(key: string): number | undefined;
  /** Absolute file offset of a storage's first byte. */
  offset(key: string): Promise<number>;
  /** Bytes `[begin, end)` of a storage. */
  read(key: string, begin: number, end: number): Promise<Uint8Array>;
  /** The storage's bytes are big-endian. */
  readonly bigEndian: boolean;
}

function fileError(file: string, message: string, cause?: unknown): WeightsError {
  return new WeightsError(file, "", `Cannot read "${file}": ${message}`, cause ? { cause } : undefined);
}

function tensorError(file: string, tensor: string, message: string, cause?: unknown): WeightsError {
  return new WeightsError(
    file,
    tensor,
    `Cannot load "${tensor}" from "${file}": ${message}`,
    cause ? { cause } : undefined,
  );
}

/** Every tensor (and malformed tensor) in `tree` with its first path; the tree is acyclic (pickle.ts). */
function collectTensors(tree: unknown): Map<TensorRef | InvalidTensor, string> {
  const found = new Map<TensorRef | InvalidTensor, string>();
  const seen = new Set<object>();
  const walk = (value: unknown, path: string) => {
    if (value instanceof TensorRef || value instanceof InvalidTensor) {
      if (!found.has(value)) found.set(value, path || "<root>");
      return;
    }
    if (typeof value !== "object" || value === null || seen.has(value)) return;
    seen.add(value);
    const at = (part: string) => path ? `${path}/${part}` : part;
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, at(String(i))));
    else if (value instanceof Map) {
      for (const [k, v] of value) {
        walk(v, at(typeof k === "string" || typeof k === "number" ? String(k) : "<key>"));
      }
    } else if (value instanceof Set) [...value].forEach((v, i) => walk(v, at(String(i))));
    else if (value instanceof PickleObject) {
      value.args.forEach((v, i) => walk(v, at(`args/${i}`)));
      walk(value.state, at("state"));
      for (const [k, v] of value.items) walk(v, at(String(k)));
      value.list.forEach((v, i) => walk(v, at(String(i))));
    } else if (isNamespaceObject(value)) { for (const [k, v] of Object.entries(value)) walk(v, at(k)); }
  };
  walk(tree, "");
  return found;
}

/** Checks every tensor against its storage; returns them by path. */
function checkTensors(tree: unknown, store: StorageStore, file: string): Map<string, TensorRef> {
  const out = new Map<string, TensorRef>();
  for (const [tensor, path] of collectTensors(tree)) {
    if (tensor instanceof InvalidTensor) throw tensorError(file, path, `malformed tensor: ${tensor.problem}`);
    const { storage } = tensor;
    const stored = store.byteLength(storage.key);
    if (stored === undefined) {
      throw tensorError(file, path, `its storage "${storage.key}" is not in the file`);
    }
    if (storage.byteOffset + storage.byteLength > stored) {
      throw tensorError(
        file,
        path,
        `its storage "${storage.key}" claims ${storage.byteOffset + storage.byteLength} bytes ` +
          `(${storage.numel} x ${storage.type.torch}), the file holds ${stored}`,
      );
    }
    const [begin, end] = tensor.byteSpan;
    if (end > storage.byteLength) {
      throw tensorError(
        file,
        path,
        `${tensor.type.torch} [${tensor.shape.join(",")}] with stride [${
          tensor.stride.join(",")
        }] and offset ` +
          `${tensor.storageOffset} reads bytes [${begin},${end}) of storage "${storage.key}", which holds ${storage.byteLength}`,
      );
    }
    out.set(path, tensor);
  }
  return out;
}

/** Makes the checkpoint object once the format is read. */
function checkpoint(
  file: string,
  format: "zip" | "legacy",
  tree: unknown,
  store: StorageStore,
  close: () => Promise<void>,
): PytorchCheckpoint {
  const tensors = checkTensors(tree, store, file);
  const known = new Set(tensors.values());
  let closed = false;
  const closeOnce = async () => {
    if (closed) return;
    closed = true;
    await close();
  };
  return {
    file,
    format,
    tree,
    tensors,
    close: closeOnce,
    async source(chosen, options = {}) {
      const entries = new Map<string, PytorchTensorEntry>();
      for (const [name, tensor] of chosen) {
        if (!known.has(tensor)) throw tensorError(file, name, "not a tensor of this checkpoint");
        const dtype: Dtype | undefined = tensor.dtype;
        if (!dtype) {
          throw tensorError(
            file,
            name,
            `unsupported dtype ${tensor.type.torch}: expected a float, int or bool type`,
          );
        }
        let start: number;
        try {
          start = await store.offset(tensor.storage.key) + tensor.storage.byteOffset;
        } catch (e) {
          if (e instanceof WeightsError) throw e;
          throw tensorError(file, name, `reading failed (${(e as Error)?.message ?? e})`, e);
        }
        const [begin, end] = tensor.byteSpan;
        entries.set(name, {
          name,
          dtype,
          shape: tensor.shape,
          begin: start + begin,
          end: start + begin + tensor.numel * tensor.type.bytes,
          readEnd: start + end,
          tensor,
        });
      }
      return tensorSource(file, format, entries, store, options, () => closed, closeOnce);
    },
  };
}

function tensorSource(
  file: string,
  format: "zip" | "legacy",
  tensors: Map<string, PytorchTensorEntry>,
  store: StorageStore,
  options: PytorchSourceOptions,
  isClosed: () => boolean,
  close: () => Promise<void>,
): TensorSource {
  const closedError = () => fileError(file, "the source is closed");
  return {
    file,
    metadata: { source: `pytorch-${format}`, ...options.metadata },
    tensors,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (isClosed()) throw closedError();
      for (const name of wanted ?? []) {
        if (!tensors.has(name)) throw tensorError(file, name, "no such tensor in the source");
      }
      const order = entriesInFileOrder(tensors.values()).filter((e) =>
        !wanted || wanted.has(e.name)
      ) as PytorchTensorEntry[];
      return (async function* () {
        for (const entry of order) {
          if (isClosed()) throw closedError();
          const { tensor } = entry;
          const [begin, end] = tensor.byteSpan;
          let span: Uint8Array;
          try {
            span = await store.read(
              tensor.storage.key,
              tensor.storage.byteOffset + begin,
              tensor.storage.byteOffset + end,
            );
          } catch (e) {
            if (e instanceof WeightsError) {
              throw e.tensor ? e : new WeightsError(
                file,
                entry.name,
                e.message.replace(/^Cannot read "[^"]*"/, `Cannot load "${entry.name}" from "${file}"`),
                { cause: e },
              );
            }
            throw tensorError(file, entry.name, `reading failed (${(e as Error)?.message ?? e})`, e);
          }
          if (span.length < end - begin) {
            throw tensorError(file, entry.name, `file truncated: got ${span.length} of ${end - begin} bytes`);
          }
          yield { entry, bytes: gatherTensor(tensor, span, store.bigEndian) };
        }
      })();
    },
    close,
  };
}

function torchPersistentLoad(seen: Map<string, StorageRef>) {
  return (pid: unknown) => storageFromPersistentId(pid, seen);
}

/** The zip format: the object from `<prefix>/data.pkl`, storages from `<prefix>/data/<key>`. */
async function openZipCheckpoint(reader: RandomAccessReader, file: string): Promise<PytorchCheckpoint> {
  let zip: ZipArchive;
  try {
    zip = await openZip(reader, { file });
  } catch (e) {
    await reader.close?.();
    throw e;
  }
  try {
    const first = zip.entries.keys().next().value as string | undefined;
    const slash = first?.indexOf("/") ?? -1;
    if (first === undefined || slash <= 0) {
      throw fileError(
        file,
        `not a torch.save archive: expected entries under a folder, got ${JSON.stringify(first ?? "")}`,
      );
    }
    const prefix = first.slice(0, slash + 1);
    const record = (name: string) => zip.entries.get(prefix + name);
    if (record("constants.pkl")) {
      throw fileError(file, "a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
    }
    const pkl = record("data.pkl");
    if (!pkl) throw fileError(file, `not a torch.save archive: no "${prefix}data.pkl"`);
    if (pkl.size > MAX_PICKLE_BYTES) {
      throw fileError(file, `"${pkl.name}" of ${pkl.size} bytes exceeds the limit of ${MAX_PICKLE_BYTES}`);
    }
    let bigEndian = false;
    const order = record("byteorder");
    if (order) {
      const text = new TextDecoder().decode(await zip.read(order)).trim();
      if (text !== "little" && text !== "big") {
        throw fileError(file, `"${order.name}" says ${JSON.stringify(text)}, expected "little" or "big"`);
      }
      bigEndian = text === "big";
    }
    const { value } = unpickle(await zip.read(pkl), {
      file,
      part: pkl.name,
      persistentLoad: torchPersistentLoad(new Map()),
      construct: torchConstruct,
    });
    const storage = (key: string) => record(`data/${key}`);
    let cached: { entry: ZipEntry; bytes: Uint8Array } | undefined;
    const store: StorageStore = {
      bigEndian,
      byteLength: (key) => storage(key)?.size,
      offset: (key) => zip.dataOffset(storage(key)!),
      async read(key, begin, end) {
        const entry = storage(key)!;
        // Whole entries, so the CRC-32 is checked; the last one is kept for tensors sharing it.
        if (cached?.entry !== entry) cached = { entry, bytes: await zip.read(entry) };
        return cached.bytes.subarray(begin, end);
      },
    };
    return checkpoint(file, "zip", value, store, () => zip.close());
  } catch (e) {
    await zip.close();
    throw e;
  }
}

/** Reads pickles from the start of a legacy file, reading more of it while a pickle runs past what is read. */
class LegacyHead {
  #reader: RandomAccessReader;
  #file: string;
  bytes: Uint8Array = new Uint8Array(0);

  constructor(reader: RandomAccessReader, file: string) {
    this.#reader = reader;
    this.#file = file;
  }

  async grow(): Promise<boolean> {
    const size = Math.min(
      this.#reader.size,
      Math.max(LEGACY_FIRST_READ, this.bytes.length * 2),
      MAX_PICKLE_BYTES,
    );
    if (size <= this.bytes.length) return false;
    const bytes = await this.#reader.read(0, size);
    if (bytes.length < size) {
      throw fileError(this.#file, `truncated: expected ${size} bytes, got ${bytes.length}`);
    }
    this.bytes = bytes;
    return true;
  }

  /** The pickle at `start`; `make` builds fresh options for each attempt. */
  async pickle(start: number, part: string, make: () => Parameters<typeof unpickle>[1] = () => ({})) {
    while (true) {
      try {
        return unpickle(this.bytes, { ...make(), file: this.#file, part, start });
      } catch (e) {
        if (!isTruncatedPickle(e) || !(await this.grow())) throw e;
      }
    }
  }
}

/** The legacy format: five pickles, then the storages in key-list order, each after its element count. */
async function openLegacyCheckpoint(reader: RandomAccessReader, file: string): Promise<PytorchCheckpoint> {
  try {
    const head = new LegacyHead(reader, file);
    await head.grow();
    let magic;
    try {
      magic = await head.pickle(0, "magic number");
    } catch (e) {
      throw fileError(file, `not a PyTorch checkpoint (neither a zip archive nor the legacy format)`, e);
    }
    if (magic.value !== LEGACY_MAGIC) {
      throw fileError(file, `not a PyTorch checkpoint: its first pickle is not torch's magic number`);
    }
    const version = await head.pickle(magic.end, "protocol version");
    if (version.value !== LEGACY_PROTOCOL_VERSION) {
      throw fileError(
        file,
        `unsupported legacy protocol version ${String(version.value)}: expected ${LEGACY_PROTOCOL_VERSION}`,
      );
    }
    // sys_info's little_endian is not needed: torch writes legacy storages (and their counts) little-endian
    // whatever the machine (THPStorage_writeFileRaw), and its loader ignores the flag too.
    const sysInfo = await head.pickle(version.end, "sys_info");
    let roots = new Map<string, StorageRef>();
    const main = await head.pickle(sysInfo.end, "object", () => {
      roots = new Map();
      return { persistentLoad: torchPersistentLoad(roots), construct: torchConstruct };
    });
    const keysPickle = await head.pickle(main.end, "storage keys");
    const keys = keysPickle.value;
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
      throw fileError(file, "malformed legacy checkpoint: the storage key list is not a list of strings");
    }
    // Walk the storage headers: u64 element count, then the bytes.
    const places = new Map<string, { start: number; bytes: number }>();
    let at = keysPickle.end;
    for (const key of keys as string[]) {
      const root = roots.get(key);
      if (!root) {
        throw fileError(
          file,
          `malformed legacy checkpoint: storage "${key}" is listed but no tensor uses it`,
        );
      }
      if (places.has(key)) {
        throw fileError(file, `malformed legacy checkpoint: storage "${key}" is listed twice`);
      }
      if (at + 8 > reader.size) {
        throw fileError(
          file,
          `truncated: the header of storage "${key}" at byte ${at} is past the end of the ${reader.size}-byte file`,
        );
      }
      const header = await reader.read(at, at + 8);
      const count = header.length === 8
        ? new DataView(header.buffer, header.byteOffset, 8).getBigUint64(0, true)
        : -1n;
      if (count !== BigInt(root.numel)) {
        throw fileError(
          file,
          `storage "${key}" at byte ${at} holds ${count} elements, its tensors say ${root.numel}`,
        );
      }
      const bytes = root.byteLength;
      if (at + 8 + bytes > reader.size) {
        throw fileError(
          file,
          `truncated: storage "${key}" [${at + 8},${
            at + 8 + bytes
          }) is past the end of the ${reader.size}-byte file`,
        );
      }
      places.set(key, { start: at + 8, bytes });
      at += 8 + bytes;
    }
    const store: StorageStore = {
      bigEndian: false,
      byteLength: (key) => places.get(key)?.bytes,
      offset: (key) => Promise.resolve(places.get(key)!.start),
      read: (key, begin, end) => {
        const { start } = places.get(key)!;
        return reader.read(start + begin, start + end);
      },
    };
    return checkpoint(file, "legacy", main.value, store, async () => await reader.close?.());
  } catch (e) {
    await reader.close?.();
    throw e;
  }
}

/**
 * Opens a checkpoint through random access (a file, HTTP Range requests, bytes), whichever format it is.
 *
 * @param reader The file's bytes; closed with the checkpoint (and on failure).
 * @param file Name for messages.
 * @returns The checkpoint.
 * @throws {WeightsError} naming the file (and the tensor, where one is concerned) for anything malformed
 * or hostile: see the module doc, `zip.ts` and `pickle.ts`.
 *
 * @example
 * ```ts
 * const checkpoint = await openPytorch(bytesReader(bytes), "dino.pth");
 * const { tensors } = checkpointStateDict(checkpoint.tree, checkpoint.file);
 * const source = await checkpoint.source(tensors);
 * ```
 */
export async function openPytorch(reader: RandomAccessReader, file: string): Promise<PytorchCheckpoint> {
  let first: Uint8Array;
  try {
    first = await reader.read(0, Math.min(reader.size, 512));
  } catch (e) {
    await reader.close?.();
    throw fileError(file, `reading failed (${(e as Error)?.message ?? e})`, e);
  }
  if (first.length === 0) {
    await reader.close?.();
    throw fileError(file, "the file is empty");
  }
  if (first[0] === 0x50 && first[1] === 0x4b && first[2] === 3 && first[3] === 4) {
    return await openZipCheckpoint(reader, file);
  }
  if (first.length >= 262 && new TextDecoder().decode(first.subarray(257, 262)) === "ustar") {
    await reader.close?.();
    throw fileError(
      file,
      "the tar format of PyTorch before 0.3 is not supported: load and save it again with a newer torch",
    );
  }
  return await openLegacyCheckpoint(reader, file);
}

/**
 * Opens a checkpoint held in memory (a browser `File`'s bytes, a download).
 *
 * @param bytes The whole file.
 * @param file Name for messages (default "<bytes>").
 * @returns The checkpoint.
 * @throws {WeightsError} as {@linkcode openPytorch}.
 *
 * @example
 * ```ts
 * const checkpoint = await pytorchFromBytes(new Uint8Array(await file.arrayBuffer()), file.name);
 * ```
 */
export function pytorchFromBytes(bytes: Uint8Array, file = "<bytes>"): Promise<PytorchCheckpoint> {
  return openPytorch(bytesReader(bytes), file);
}

/** JSON of a checkpoint's `args` (an argparse Namespace as data): big integers as numbers, other values as text. */
function argsJson(args: Record<string, unknown>): string {
  return JSON.stringify(args, (_key, value) => {
    if (typeof value === "bigint") return Number(value);
    if (value instanceof Map) return Object.fromEntries(value);
    if (
      value !== null && typeof value === "object" && !Array.isArray(value) &&
      Object.getPrototypeOf(value) !== Object.prototype
    ) {
      return String(value);
    }
    return value;
  });
}

/**
 * The weights of a training checkpoint as a source: the state dict of its layout (DINO / iBOT's teacher,
 * MAE's encoder, BYOL's and SimCLR's `state_dict`, a plain state dict), under the model's names, with the
 * layout, where it came from and the `args` (JSON) in the metadata. Closing the source closes the file.
 *
 * @param checkpoint An open checkpoint.
 * @returns The source.
 * @throws {WeightsError} When the checkpoint holds no state dict of tensors.
 * @example
 * ```ts
 * const source = await checkpointSource(await pytorchFromBytes(bytes, "dino.pth"));
 * ```
 */
export async function checkpointSource(checkpoint: PytorchCheckpoint): Promise<TensorSource> {
  try {
    const sd = checkpointStateDict(checkpoint.tree, checkpoint.file);
    const metadata: Record<string, string> = { layout: sd.layout, from: sd.from };
    if (sd.args) metadata.args = argsJson(sd.args);
    return await checkpoint.source(sd.tensors, { metadata });
  } catch (e) {
    await checkpoint.close();
    throw e;
  }
}

/** Whether bytes start like a `torch.save` file: a zip archive, or the legacy format's pickled magic number. */
export function looksLikePytorch(first: Uint8Array): boolean {
  const zip = first[0] === 0x50 && first[1] === 0x4b && first[2] === 3 && first[3] === 4;
  // Legacy: PROTO 2, then LONG1 of 10 bytes holding 0x1950a86a20f9469cfc6c.
  const legacy = first[0] === 0x80 && first[1] === 0x02 && first[2] === 0x8a && first[3] === 0x0a &&
    first[4] === 0x6c && first[5] === 0xfc && first[6] === 0x9c && first[7] === 0x46;
  return zip || legacy;
}
