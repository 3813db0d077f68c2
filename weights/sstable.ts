/**
 * Reading an SSTable (the LevelDB table format TensorFlow uses for a checkpoint's `variables.index`).
 *
 * Layout, from the end of the file:
 * - footer, 48 bytes: metaindex block handle, index block handle (each two varints, offset and size),
 *   zero padding to 40 bytes, then the magic 0xdb4775248b80fb57 as fixed64 little-endian;
 * - index block: one entry per data block, key = a separator >= that block's last key, value = its handle;
 * - metaindex block: filter blocks and the like (TensorFlow writes it empty);
 * - data blocks: entries `shared varint, non_shared varint, value_length varint, key[shared..], value`, where
 *   the key shares its first `shared` bytes with the previous key; a full key at every restart point; then
 *   the restart offsets (u32 LE each) and their count (u32 LE).
 * Each block is followed by a 5-byte trailer: compression type (0 none, 1 snappy, ...) and the masked
 * CRC-32C of the block's bytes plus the type byte.
 *
 * TensorFlow writes bundle indexes uncompressed, so compressed blocks are refused with a clear error rather
 * than decoded. The whole index is read into memory: Derm Foundation's is about 30 KB.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { crc32c, unmaskCrc32c } from "./crc32c.ts";
import { ProtoReader } from "./protobuf.ts";

/** Bytes of the footer at the end of every table. */
export const SSTABLE_FOOTER_BYTES = 48;
/** Low and high 32 bits of the table magic number, stored little-endian in the last 8 bytes. */
export const SSTABLE_MAGIC = [0x8b80fb57, 0xdb477524] as const;
/** Bytes after each block: compression type (1) and masked CRC-32C (4). */
export const BLOCK_TRAILER_BYTES = 5;

/** Offset and size of a block (excluding its trailer). */
export interface BlockHandle {
  readonly offset: number;
  readonly size: number;
}

/** One key/value pair of a table. */
export interface SstableEntry {
  /** The key, decoded as UTF-8 (TensorFlow keys are tensor names). */
  readonly key: string;
  /** The value: a view into the table's bytes. */
  readonly value: Uint8Array;
}

/** A data block, as found through the index. */
export interface SstableBlockInfo extends BlockHandle {
  /** Number of entries. */
  readonly entries: number;
  /** Number of restart points. */
  readonly restarts: number;
  /** Compression type from the trailer (always 0 here: others are refused). */
  readonly compression: number;
}

/** A parsed table. */
export interface Sstable {
  /** Handles from the footer. */
  readonly footer: { readonly metaindex: BlockHandle; readonly index: BlockHandle };
  /** Entries of the metaindex block (usually none). */
  readonly metaindex: SstableEntry[];
  /** The data blocks in index order. */
  readonly blocks: SstableBlockInfo[];
  /** Every data entry, in key order. */
  readonly entries: SstableEntry[];
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

interface RawEntry {
  key: Uint8Array;
  value: Uint8Array;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * Parses a whole SSTable held in memory, checking every block's trailer CRC, the restart array and the key
 * order.
 *
 * @param bytes The complete file.
 * @param options `file`: name for messages (default "<bytes>").
 * @returns Footer, blocks and entries.
 * @throws {WeightsError} naming the file and the byte offset for a short file, bad magic, a block past the
 * end, a CRC mismatch, a compressed block, a malformed entry or restart array, keys out of order, or a key
 * that is not UTF-8.
 *
 * @example
 * ```ts
 * const table = readSstable(await Deno.readFile("variables/variables.index"), { file: "variables.index" });
 * table.entries.map((e) => e.key); // ["", "computation_module/_var_leaves/0/.ATTRIBUTES/VARIABLE_VALUE", ...]
 * ```
 */
export function readSstable(bytes: Uint8Array, options: { file?: string } = {}): Sstable {
  const file = options.file ?? "<bytes>";
  const fail = (message: string, cause?: unknown): never => {
    throw new WeightsError(file, "", `Cannot read "${file}": ${message}`, cause ? { cause } : undefined);
  };
  if (bytes.length < SSTABLE_FOOTER_BYTES) {
    fail(`truncated table: ${bytes.length} bytes, shorter than the ${SSTABLE_FOOTER_BYTES}-byte footer`);
  }
  const footerAt = bytes.length - SSTABLE_FOOTER_BYTES;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(bytes.length - 8, true), hi = view.getUint32(bytes.length - 4, true);
  if (lo !== SSTABLE_MAGIC[0] || hi !== SSTABLE_MAGIC[1]) {
    const got = hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
    fail(`not an SSTable (truncated or another format): bad magic 0x${got} at offset ${bytes.length - 8}`);
  }

  const handles = new ProtoReader(bytes.subarray(footerAt, bytes.length - 8), footerAt);
  const readHandle = (r: ProtoReader, what: string): BlockHandle => {
    try {
      return { offset: r.rawVarint(), size: r.rawVarint() };
    } catch (e) {
      return fail(`malformed ${what} handle: ${(e as Error).message}`, e);
    }
  };
  const footer = {
    metaindex: readHandle(handles, "metaindex"),
    index: readHandle(handles, "index"),
  };

  function readBlock(handle: BlockHandle, what: string): { raw: RawEntry[]; info: SstableBlockInfo } {
    const { offset, size } = handle;
    const end = offset + size + BLOCK_TRAILER_BYTES;
    if (end > footerAt) {
      fail(
        `truncated block at offset ${offset}: ${what} needs bytes up to ${end}, the data ends at ${footerAt}`,
      );
    }
    const contents = bytes.subarray(offset, offset + size);
    const type = bytes[offset + size];
    const stored = view.getUint32(offset + size + 1, true);
    const computed = crc32c(bytes.subarray(offset + size, offset + size + 1), crc32c(contents));
    if (unmaskCrc32c(stored) !== computed) {
      fail(
        `CRC32C mismatch in ${what} at offset ${offset}: stored 0x${unmaskCrc32c(stored).toString(16)}, ` +
          `computed 0x${computed.toString(16)}`,
      );
    }
    if (type !== 0) {
      fail(
        `${what} at offset ${offset} is compressed (type ${type}${type === 1 ? ", snappy" : ""}): ` +
          "only uncompressed tables are supported, as TensorFlow writes them",
      );
    }
    if (size < 4) fail(`truncated block at offset ${offset}: ${what} of ${size} bytes has no restart count`);
    const bview = new DataView(contents.buffer, contents.byteOffset, contents.byteLength);
    const restartCount = bview.getUint32(size - 4, true);
    const restartsAt = size - 4 - 4 * restartCount;
    if (restartsAt < 0) {
      fail(
        `malformed ${what} at offset ${offset}: ${restartCount} restart points do not fit in ${size} bytes`,
      );
    }
    const restarts = new Set<number>();
    for (let i = 0; i < restartCount; i++) {
      const r = bview.getUint32(restartsAt + 4 * i, true);
      if (r >= restartsAt && !(r === 0 && restartsAt === 0)) {
        fail(`malformed ${what} at offset ${offset}: restart point ${r} is past the entries (${restartsAt})`);
      }
      restarts.add(r);
    }
    const raw: RawEntry[] = [];
    const reader = new ProtoReader(contents.subarray(0, restartsAt), offset);
    let previous = new Uint8Array(0);
    let at = 0;
    try {
      while (at < restartsAt) {
        const shared = reader.rawVarint();
        const nonShared = reader.rawVarint();
        const valueLength = reader.rawVarint();
        const keyAt = reader.offset - offset;
        if (shared > previous.length) {
          fail(
            `malformed entry at offset ${
              offset + at
            }: shares ${shared} key bytes, previous key has ${previous.length}`,
          );
        }
        if (restarts.has(at) && shared !== 0) {
          fail(`malformed entry at offset ${offset + at}: a restart point with a shared key prefix`);
        }
        if (nonShared + valueLength > restartsAt - keyAt) {
          fail(`truncated block at offset ${offset + at}: entry runs past the end of ${what}`);
        }
        const key = new Uint8Array(shared + nonShared);
        key.set(previous.subarray(0, shared));
        key.set(contents.subarray(keyAt, keyAt + nonShared), shared);
        const value = contents.subarray(keyAt + nonShared, keyAt + nonShared + valueLength);
        raw.push({ key, value });
        previous = key;
        at = keyAt + nonShared + valueLength;
        // Skip the consumed key and value in the reader too.
        reader.skipBytes(nonShared + valueLength);
      }
    } catch (e) {
      if (e instanceof WeightsError) throw e;
      fail(`truncated block: ${(e as Error).message} in ${what}`, e);
    }
    if (raw.length > 0 && !restarts.has(0)) {
      fail(`malformed ${what} at offset ${offset}: no restart point at its first entry`);
    }
    return { raw, info: { offset, size, entries: raw.length, restarts: restartCount, compression: type } };
  }

  const decodeKey = (key: Uint8Array, at: number): string => {
    try {
      return UTF8.decode(key);
    } catch (e) {
      return fail(`key in block at offset ${at} is not valid UTF-8`, e);
    }
  };

  const meta = readBlock(footer.metaindex, "metaindex block");
  const metaindex = meta.raw.map((e) => ({ key: decodeKey(e.key, footer.metaindex.offset), value: e.value }));
  const index = readBlock(footer.index, "index block");
  const blocks: SstableBlockInfo[] = [];
  const entries: SstableEntry[] = [];
  let lastKey: Uint8Array | undefined;
  for (const { value } of index.raw) {
    let handle: BlockHandle;
    try {
      const r = new ProtoReader(value, footer.index.offset);
      handle = { offset: r.rawVarint(), size: r.rawVarint() };
    } catch (e) {
      return fail(`malformed block handle in the index block: ${(e as Error).message}`, e);
    }
    const block = readBlock(handle, "data block");
    blocks.push(block.info);
    for (const e of block.raw) {
      if (lastKey && compareBytes(lastKey, e.key) >= 0) {
        fail(
          `keys out of order in the data block at offset ${handle.offset}: "${
            decodeKey(e.key, handle.offset)
          }"`,
        );
      }
      lastKey = e.key;
      entries.push({ key: decodeKey(e.key, handle.offset), value: e.value });
    }
  }
  return { footer, metaindex, blocks, entries };
}
