/**
 * Zip archives as `torch.save` writes them (PyTorch's miniz-based `PyTorchStreamWriter`), read through random
 * access: the end of central directory record is found from the end of the file, then the central directory,
 * then each entry's local header and data only when that entry is read. A Deno file, bytes in memory or HTTP
 * Range requests can back the reader ({@linkcode RandomAccessReader}).
 *
 * What is read: the end of central directory record (with a comment of up to 64 KiB after it), ZIP64 (the
 * zip64 end of central directory record and locator, and the zip64 extended information extra field of
 * each entry: torch writes these for archives and entries over 4 GB), stored entries (torch's default: its
 * storages are stored, 64-byte aligned through padding in the local extra field) and deflated entries.
 * Not read: multi-disk archives, encryption, other compression methods.
 *
 * Hostile archives fail with a {@linkcode WeightsError} naming the file before memory is spent: the central
 * directory must lie inside the file and before its end record, entries must not share or overlap their
 * data, a local header must match its central entry, a deflated entry may not claim more than
 * {@linkcode MAX_DEFLATE_RATIO} times its compressed size nor more than `maxInflatedBytes`, inflating stops
 * as soon as the output passes the declared size, and every entry read whole has its CRC-32 checked.
 *
 * Longer than ~400 lines on purpose: the end records, the central directory and the entry reads are one
 * chain of bounds checks, each relying on the last, and a third of the file is JSDoc and messages.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { crc32 } from "../engine/crc32.ts";

/** Random access to a file's bytes (a file, bytes in memory, HTTP Range requests). */
export interface RandomAccessReader {
  /** Total size in bytes. */
  readonly size: number;
  /** Bytes `[begin, end)`; fewer only where the data ends first. */
  read(begin: number, end: number): Promise<Uint8Array>;
  /** Releases the file or connection, if any. */
  close?(): void | Promise<void>;
}

/**
 * A {@linkcode RandomAccessReader} over bytes in memory (views, no copies).
 *
 * @param bytes The whole file.
 * @returns The reader.
 *
 * @example
 * ```ts
 * const zip = await openZip(bytesReader(bytes), { file: "model.pth" });
 * ```
 */
export function bytesReader(bytes: Uint8Array): RandomAccessReader {
  return {
    size: bytes.length,
    read(begin: number, end: number) {
      return Promise.resolve(bytes.subarray(Math.max(0, begin), Math.min(bytes.length, end)));
    },
  };
}

/**
 * A {@linkcode RandomAccessReader} over a `Blob` (a browser `File`, a cached response's body): each read
 * slices the blob, so a checkpoint the person chose is never in memory whole.
 *
 * @param blob The file.
 * @returns The reader.
 *
 * @example
 * ```ts
 * const checkpoint = await openPytorch(blobReader(input.files[0]), input.files[0].name);
 * ```
 */
export function blobReader(blob: Blob): RandomAccessReader {
  return {
    size: blob.size,
    async read(begin: number, end: number) {
      const slice = blob.slice(Math.max(0, begin), Math.min(blob.size, end));
      return new Uint8Array(await slice.arrayBuffer());
    },
  };
}

/** One member of the archive, as its central directory describes it. */
export interface ZipEntry {
  /** Name (path inside the archive). */
  readonly name: string;
  /** 0 (stored) or 8 (deflate). */
  readonly method: number;
  /** CRC-32 of the uncompressed data. */
  readonly crc32: number;
  /** Bytes stored in the archive. */
  readonly compressedSize: number;
  /** Bytes once uncompressed. */
  readonly size: number;
  /** Absolute offset of the entry's local header. */
  readonly localHeaderOffset: number;
}

/** An open archive. */
export interface ZipArchive {
  /** File name, path or URL, for messages. */
  readonly file: string;
  /** Entries by name, in central directory order. */
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** Absolute offset of an entry's (compressed) data: reads and checks its local header the first time. */
  dataOffset(entry: ZipEntry): Promise<number>;
  /** An entry's uncompressed bytes, whole, with its CRC-32 checked. */
  read(entry: ZipEntry): Promise<Uint8Array<ArrayBuffer>>;
  /** Closes the reader. */
  close(): Promise<void>;
}

/** Options of {@linkcode openZip}. */
export interface ZipOptions {
  /** File name for messages (default "<bytes>"). */
  file?: string;
  /** Largest uncompressed size of a deflated entry (default {@linkcode DEFAULT_MAX_INFLATED_BYTES}). */
  maxInflatedBytes?: number;
}

/** Default cap on a deflated entry's size: torch stores its storages, so only small records are deflated. */
export const DEFAULT_MAX_INFLATED_BYTES = 2 ** 30;

/**
 * Largest uncompressed:compressed ratio accepted for a deflated entry. Deflate cannot exceed about 1032:1
 * (258 bytes per 2-bit code at best), so a higher claim is a lie about the sizes.
 */
export const MAX_DEFLATE_RATIO = 1040;

/** Largest central directory read: ~100 bytes per entry, so this is over half a million entries. */
const MAX_CENTRAL_DIRECTORY_BYTES = 64 * 2 ** 20;
const EOCD_BYTES = 22;
const MAX_COMMENT_BYTES = 65535;
const ZIP64_LOCATOR_BYTES = 20;
const ZIP64_EOCD_BYTES = 56;
const CENTRAL_HEADER_BYTES = 46;
const LOCAL_HEADER_BYTES = 30;
/** Compressed bytes written into the inflater at a time. */
const INFLATE_PUSH_BYTES = 32 * 1024;

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EXTRA_ID = 0x0001;
const FLAG_ENCRYPTED = 0x0001;
const FLAG_UTF8 = 0x0800;
const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;

function fileError(file: string, message: string, cause?: unknown): WeightsError {
  return new WeightsError(file, "", `Cannot read "${file}": ${message}`, cause ? { cause } : undefined);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A u64 as a number; beyond 2^53 it is `Infinity`, which every bounds check then refuses. */
function u64(v: DataView, at: number): number {
  const value = v.getBigUint64(at, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(value);
}

async function readExactly(
  reader: RandomAccessReader,
  file: string,
  begin: number,
  end: number,
  what: string,
): Promise<Uint8Array> {
  if (begin < 0 || end > reader.size || begin > end) {
    throw fileError(file, `${what} [${begin},${end}) is outside the ${reader.size}-byte file`);
  }
  let bytes: Uint8Array;
  try {
    bytes = await reader.read(begin, end);
  } catch (e) {
    if (e instanceof WeightsError) throw e;
    throw fileError(file, `reading ${what} failed (${(e as Error)?.message ?? e})`, e);
  }
  if (bytes.length < end - begin) {
    throw fileError(
      file,
      `truncated: expected ${end - begin} bytes of ${what} at byte ${begin}, got ${bytes.length}`,
    );
  }
  return bytes;
}

interface CentralDirectory {
  readonly offset: number;
  readonly size: number;
  readonly count: number;
  /** Where the end records begin: the central directory must end at or before this. */
  readonly end: number;
}

async function findCentralDirectory(reader: RandomAccessReader, file: string): Promise<CentralDirectory> {
  if (reader.size < EOCD_BYTES) {
    throw fileError(
      file,
      `not a zip archive: ${reader.size} bytes is too short for an end of central directory`,
    );
  }
  const tailLength = Math.min(reader.size, EOCD_BYTES + MAX_COMMENT_BYTES + ZIP64_LOCATOR_BYTES);
  const tailStart = reader.size - tailLength;
  const tail = await readExactly(reader, file, tailStart, reader.size, "the end of central directory");
  const v = view(tail);
  let at = -1;
  for (let i = tail.length - EOCD_BYTES; i >= 0; i--) {
    // The record's comment must run exactly to the end of the file.
    if (v.getUint32(i, true) === SIG_EOCD && i + EOCD_BYTES + v.getUint16(i + 20, true) === tail.length) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    throw fileError(
      file,
      "not a zip archive: no end of central directory record (truncated or another format)",
    );
  }
  if (v.getUint16(at + 4, true) !== 0 || v.getUint16(at + 6, true) !== 0) {
    throw fileError(file, "multi-disk zip archives are not supported");
  }
  const onDisk = v.getUint16(at + 8, true);
  let count = v.getUint16(at + 10, true);
  let size = v.getUint32(at + 12, true);
  let offset = v.getUint32(at + 16, true);
  let end = tailStart + at;
  if (onDisk !== count) throw fileError(file, "multi-disk zip archives are not supported");
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    const loc = at - ZIP64_LOCATOR_BYTES;
    if (loc < 0 || v.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) {
      throw fileError(file, "malformed zip64 archive: no zip64 end of central directory locator");
    }
    if (v.getUint32(loc + 4, true) !== 0 || v.getUint32(loc + 16, true) > 1) {
      throw fileError(file, "multi-disk zip archives are not supported");
    }
    const recordOffset = u64(v, loc + 8);
    if (recordOffset + ZIP64_EOCD_BYTES > tailStart + loc) {
      throw fileError(
        file,
        `malformed zip64 archive: its end of central directory record at byte ${recordOffset} is outside the file`,
      );
    }
    const record = view(
      await readExactly(reader, file, recordOffset, recordOffset + ZIP64_EOCD_BYTES, "the zip64 end record"),
    );
    if (record.getUint32(0, true) !== SIG_ZIP64_EOCD) {
      throw fileError(file, "malformed zip64 archive: bad zip64 end of central directory signature");
    }
    if (record.getUint32(16, true) !== 0 || record.getUint32(20, true) !== 0) {
      throw fileError(file, "multi-disk zip archives are not supported");
    }
    count = u64(record, 32);
    size = u64(record, 40);
    offset = u64(record, 48);
    end = recordOffset;
  }
  if (offset + size > end) {
    throw fileError(
      file,
      `the central directory [${offset},${
        offset + size
      }) is outside the file (its end records start at byte ${end})`,
    );
  }
  if (size > MAX_CENTRAL_DIRECTORY_BYTES) {
    throw fileError(
      file,
      `central directory of ${size} bytes exceeds the limit of ${MAX_CENTRAL_DIRECTORY_BYTES}`,
    );
  }
  if (count * CENTRAL_HEADER_BYTES > size) {
    throw fileError(file, `the central directory claims ${count} entries in ${size} bytes`);
  }
  return { offset, size, count, end };
}

/** Applies the zip64 extended information extra field to the saturated fields of a central entry. */
function applyZip64(
  extra: DataView,
  fields: { size: number; compressedSize: number; localHeaderOffset: number },
  name: string,
  file: string,
): void {
  let i = 0;
  while (i + 4 <= extra.byteLength) {
    const id = extra.getUint16(i, true);
    const length = extra.getUint16(i + 2, true);
    if (i + 4 + length > extra.byteLength) break;
    if (id === ZIP64_EXTRA_ID) {
      let at = i + 4;
      const next = (what: string) => {
        if (at + 8 > i + 4 + length) {
          throw fileError(file, `malformed zip64 extra field of "${name}": no ${what}`);
        }
        const value = u64(extra, at);
        at += 8;
        return value;
      };
      // Only the fields saturated in the header are present, in this order.
      if (fields.size === 0xffffffff) fields.size = next("uncompressed size");
      if (fields.compressedSize === 0xffffffff) fields.compressedSize = next("compressed size");
      if (fields.localHeaderOffset === 0xffffffff) fields.localHeaderOffset = next("local header offset");
      return;
    }
    i += 4 + length;
  }
  if (
    fields.size === 0xffffffff || fields.compressedSize === 0xffffffff ||
    fields.localHeaderOffset === 0xffffffff
  ) {
    throw fileError(file, `malformed zip64 archive: "${name}" has saturated sizes and no zip64 extra field`);
  }
}

const UTF8 = new TextDecoder("utf-8");
const LATIN1 = new TextDecoder("latin1");

interface ParsedDirectory {
  readonly entries: Map<string, ZipEntry>;
  /** Each entry's name as stored, to compare with its local header. */
  readonly rawNames: Map<string, Uint8Array>;
}

function parseCentralDirectory(bytes: Uint8Array, cd: CentralDirectory, file: string): ParsedDirectory {
  const v = view(bytes);
  const entries = new Map<string, ZipEntry>();
  const rawNames = new Map<string, Uint8Array>();
  let at = 0;
  for (let n = 0; n < cd.count; n++) {
    if (at + CENTRAL_HEADER_BYTES > bytes.length || v.getUint32(at, true) !== SIG_CENTRAL) {
      throw fileError(file, `malformed central directory: entry ${n} of ${cd.count} is missing or corrupt`);
    }
    const flags = v.getUint16(at + 8, true);
    const method = v.getUint16(at + 10, true);
    const nameLength = v.getUint16(at + 28, true);
    const extraLength = v.getUint16(at + 30, true);
    const commentLength = v.getUint16(at + 32, true);
    const next = at + CENTRAL_HEADER_BYTES + nameLength + extraLength + commentLength;
    if (next > bytes.length) {
      throw fileError(file, `malformed central directory: entry ${n} runs past its end`);
    }
    const nameBytes = bytes.subarray(at + CENTRAL_HEADER_BYTES, at + CENTRAL_HEADER_BYTES + nameLength);
    const name = (flags & FLAG_UTF8 ? UTF8 : LATIN1).decode(nameBytes);
    const fields = {
      size: v.getUint32(at + 24, true),
      compressedSize: v.getUint32(at + 20, true),
      localHeaderOffset: v.getUint32(at + 42, true),
    };
    const extra = new DataView(
      bytes.buffer,
      bytes.byteOffset + at + CENTRAL_HEADER_BYTES + nameLength,
      extraLength,
    );
    applyZip64(extra, fields, name, file);
    if (flags & FLAG_ENCRYPTED) throw fileError(file, `"${name}" is encrypted, which is not supported`);
    if (method !== METHOD_STORED && method !== METHOD_DEFLATE) {
      throw fileError(
        file,
        `"${name}" uses compression method ${method}: expected 0 (stored) or 8 (deflate)`,
      );
    }
    if (method === METHOD_STORED && fields.size !== fields.compressedSize) {
      throw fileError(
        file,
        `stored entry "${name}" claims ${fields.size} bytes uncompressed but ${fields.compressedSize} stored`,
      );
    }
    if (entries.has(name)) throw fileError(file, `the archive holds "${name}" twice`);
    entries.set(name, { name, method, crc32: v.getUint32(at + 16, true), ...fields });
    rawNames.set(name, nameBytes);
    at = next;
  }
  // Every entry's data lies before the central directory, and no two share or overlap their bytes (a zip
  // bomb may point many entries at one deflate stream). The local extra field may be longer than the central
  // one (torch pads it for alignment), so only the fixed header and the data are counted here.
  const byOffset = [...entries.values()].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 0; i < byOffset.length; i++) {
    const e = byOffset[i];
    const end = e.localHeaderOffset + LOCAL_HEADER_BYTES + e.compressedSize;
    if (end > cd.offset) {
      throw fileError(
        file,
        `"${e.name}" [${e.localHeaderOffset},${end}) runs past the start of the central directory at byte ${cd.offset}`,
      );
    }
    const after = byOffset[i + 1];
    if (after && end > after.localHeaderOffset) {
      throw fileError(file, `"${e.name}" overlaps "${after.name}" at byte ${after.localHeaderOffset}`);
    }
  }
  return { entries, rawNames };
}

/**
 * Opens a zip archive: reads its end records and central directory (nothing else until entries are read).
 *
 * @param reader The archive's bytes.
 * @param options File name for messages and the inflate cap.
 * @returns The archive.
 * @throws {WeightsError} naming the file for a missing or malformed end record, a central directory outside
 * the file, a multi-disk or encrypted archive, an unsupported method, duplicate or overlapping entries.
 *
 * @example
 * ```ts
 * const zip = await openZip(bytesReader(bytes), { file: "model.pth" });
 * const pickle = await zip.read(zip.entries.get("model/data.pkl")!);
 * ```
 */
export async function openZip(reader: RandomAccessReader, options: ZipOptions = {}): Promise<ZipArchive> {
  const file = options.file ?? "<bytes>";
  const maxInflated = options.maxInflatedBytes ?? DEFAULT_MAX_INFLATED_BYTES;
  const cd = await findCentralDirectory(reader, file);
  const { entries, rawNames } = parseCentralDirectory(
    await readExactly(reader, file, cd.offset, cd.offset + cd.size, "the central directory"),
    cd,
    file,
  );
  const dataOffsets = new Map<string, number>();
  let closed = false;

  async function dataOffset(entry: ZipEntry): Promise<number> {
    const known = dataOffsets.get(entry.name);
    if (known !== undefined) return known;
    const at = entry.localHeaderOffset;
    const header = await readExactly(
      reader,
      file,
      at,
      at + LOCAL_HEADER_BYTES,
      `the local header of "${entry.name}"`,
    );
    const v = view(header);
    if (v.getUint32(0, true) !== SIG_LOCAL) {
      throw fileError(file, `"${entry.name}" has no local header at byte ${at}`);
    }
    const nameLength = v.getUint16(26, true);
    const extraLength = v.getUint16(28, true);
    const name = await readExactly(
      reader,
      file,
      at + LOCAL_HEADER_BYTES,
      at + LOCAL_HEADER_BYTES + nameLength,
      `the local name of "${entry.name}"`,
    );
    const central = rawNames.get(entry.name)!;
    if (central.length !== name.length || central.some((b, i) => b !== name[i])) {
      throw fileError(
        file,
        `the local header at byte ${at} names "${LATIN1.decode(name)}", not "${entry.name}"`,
      );
    }
    const start = at + LOCAL_HEADER_BYTES + nameLength + extraLength;
    if (start + entry.compressedSize > cd.offset) {
      throw fileError(
        file,
        `"${entry.name}" data [${start},${
          start + entry.compressedSize
        }) runs past the start of the central directory`,
      );
    }
    dataOffsets.set(entry.name, start);
    return start;
  }

  async function read(entry: ZipEntry): Promise<Uint8Array<ArrayBuffer>> {
    if (closed) throw fileError(file, "the archive is closed");
    if (entries.get(entry.name) !== entry) throw fileError(file, `no entry "${entry.name}" in the archive`);
    const start = await dataOffset(entry);
    let out: Uint8Array<ArrayBuffer>;
    if (entry.method === METHOD_STORED) {
      const bytes = await readExactly(reader, file, start, start + entry.size, `"${entry.name}"`);
      out = bytes.buffer instanceof ArrayBuffer ? bytes as Uint8Array<ArrayBuffer> : bytes.slice();
    } else {
      out = await inflateEntry(
        entry,
        await readExactly(reader, file, start, start + entry.compressedSize, `"${entry.name}"`),
        maxInflated,
        file,
      );
    }
    const crc = crc32(out);
    if (crc !== entry.crc32) {
      throw fileError(
        file,
        `"${entry.name}" is corrupt: CRC-32 0x${hex(crc)}, expected 0x${
          hex(entry.crc32)
        } from the central directory`,
      );
    }
    return out;
  }

  return {
    file,
    entries,
    dataOffset,
    read,
    async close() {
      if (closed) return;
      closed = true;
      await reader.close?.();
    },
  };
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/**
 * Inflates a deflated entry into exactly its declared size, refusing sizes that cannot be true. Uses the
 * web-standard `DecompressionStream`, fed {@linkcode INFLATE_PUSH_BYTES} at a time and read as it goes, so
 * the output stops as soon as it passes the declared size.
 */
async function inflateEntry(
  entry: ZipEntry,
  compressed: Uint8Array,
  maxInflated: number,
  file: string,
): Promise<Uint8Array<ArrayBuffer>> {
  if (entry.size > maxInflated) {
    throw fileError(
      file,
      `"${entry.name}" claims ${entry.size} bytes inflated, over the limit of ${maxInflated}`,
    );
  }
  if (entry.size > Math.max(1, entry.compressedSize) * MAX_DEFLATE_RATIO) {
    throw fileError(
      file,
      `"${entry.name}" claims ${entry.size} bytes from ${entry.compressedSize} deflated, ` +
        `over deflate's possible ratio of ${MAX_DEFLATE_RATIO}:1`,
    );
  }
  const out = new Uint8Array(entry.size);
  const stream = new DecompressionStream("deflate-raw");
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const feeding = (async () => {
    for (let i = 0; i < compressed.length; i += INFLATE_PUSH_BYTES) {
      await writer.write(compressed.slice(i, i + INFLATE_PUSH_BYTES));
    }
    await writer.close();
  })();
  // Failures surface through the reader; the feeder's own rejection is not a second error.
  feeding.catch(() => {});
  let filled = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (filled + value.length > out.length) {
        await reader.cancel().catch(() => {});
        throw inflatedTooMuch(entry, file);
      }
      out.set(value, filled);
      filled += value.length;
    }
  } catch (e) {
    if (e instanceof WeightsError) throw e;
    throw fileError(file, `"${entry.name}" is corrupt: inflating failed (${(e as Error)?.message ?? e})`, e);
  }
  if (filled !== entry.size) {
    throw fileError(file, `"${entry.name}" inflates to ${filled} bytes, expected ${entry.size}`);
  }
  return out;
}

function inflatedTooMuch(entry: ZipEntry, file: string): WeightsError {
  return fileError(file, `"${entry.name}" inflates to more than its declared ${entry.size} bytes`);
}
