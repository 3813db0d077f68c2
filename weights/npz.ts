/**
 * BiT checkpoints as NumPy .npz (`BiT-M-R101x3.npz` from big_transfer): a zip archive of .npy arrays, read
 * through random access (central directory first, then one entry at a time), and exposed as a
 * {@linkcode TensorSource} under Derm Foundation's flax names so `adaptBitWeights` reads it like a Derm file.
 *
 * BiT key -> exposed name (prefix `params.feature_extractor.`; `a`, `b`, `c` are big_transfer's ResNetV2
 * unit parts: `a` = GroupNorm + 1x1 conv, `b` = GroupNorm + 3x3 conv (the stride), `c` = GroupNorm + 1x1 conv,
 * `a/proj` = the 1x1 projection of the pre-activated input):
 * - `resnet/root_block/standardized_conv2d/kernel` -> `root_block.conv_root.kernel` (HWIO, as stored)
 * - `resnet/block{s}/unit{u}/{a,b,c}/standardized_conv2d/kernel` -> `block{s}.unit{uu}.{conv1,conv2,conv3}.kernel`
 * - `resnet/block{s}/unit{u}/a/proj/standardized_conv2d/kernel` -> `block{s}.unit{uu}.conv_proj.kernel`
 * - `resnet/block{s}/unit{u}/{a,b,c}/group_norm/{gamma,beta}` -> `...{gn1,gn2,gn3}.{scale,bias}`, [C] -> [1,1,1,C]
 * - `resnet/group_norm/{gamma,beta}` -> `norm-pre-head.{scale,bias}`, [C] -> [1,1,1,C]
 * - `resnet/head/conv2d/{kernel,bias}` -> `params.head.conv2d.{kernel,bias}` (the adapter ignores them)
 *
 * Hostile archives fail with a {@linkcode WeightsError} before memory is spent: every entry's declared
 * uncompressed size must equal its .npy header plus the bytes its shape needs, the total is capped, entries
 * may not overlap, inflating stops as soon as an entry passes its declared size, and the CRC-32 is checked.
 *
 * This module is browser compatible.
 * @module
 */
import { Inflate } from "fflate";
import { WeightsError } from "../engine/errors.ts";
import type { SafetensorsDtype, TensorChunk, TensorEntry, TensorSource } from "./safetensors.ts";
import { DTYPE_BYTES } from "./dtypes.ts";

/** Random access to an archive's bytes (a file, a `Blob`, bytes in memory). */
export interface ByteRangeReader {
  /** Total size in bytes. */
  readonly size: number;
  /** Reads `length` bytes at `offset` (fewer only at the end of the data). */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the underlying file, if any. */
  close?(): void | Promise<void>;
}

/** Options of {@linkcode openNpz}. */
export interface NpzOptions {
  /** File name for messages (default "<bytes>"). */
  file?: string;
  /**
   * Largest total of the entries' declared uncompressed sizes (default
   * {@linkcode DEFAULT_MAX_NPZ_UNCOMPRESSED_BYTES}); also caps each entry.
   */
  maxUncompressedBytes?: number;
  /** Leave out the classifier head (`resnet/head/*`, 537 MB in R101x3) instead of exposing it. */
  dropHead?: boolean;
}

/** Default cap on the uncompressed size of an archive: R152x4 (the largest BiT) is 3.7 GB in float32. */
export const DEFAULT_MAX_NPZ_UNCOMPRESSED_BYTES = 8 * 2 ** 30;

/** Largest central directory read: real ones are ~100 bytes per entry (R101x3: ~40 KB). */
const MAX_CENTRAL_DIRECTORY_BYTES = 64 * 2 ** 20;
/** Largest .npy header accepted (NumPy pads it to 64 bytes; 64 KiB is the version 1.0 limit). */
const MAX_NPY_HEADER_BYTES = 65536;
/** End of central directory record: fixed part, and the largest comment after it. */
const EOCD_BYTES = 22;
const MAX_COMMENT_BYTES = 65535;
/** Zip64 end of central directory locator, just before the record. */
const ZIP64_LOCATOR_BYTES = 20;
/**
 * Compressed bytes pushed into the inflater at a time: deflate expands at most ~1032:1, so one push makes at
 * most ~34 MB before the size check runs.
 */
const INFLATE_PUSH_BYTES = 32 * 1024;
/** Stored (uncompressed) entries are read in pieces of this size. */
const READ_CHUNK_BYTES = 16 * 2 ** 20;

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
const NPY_DTYPES: Readonly<Record<string, SafetensorsDtype>> = { "<f4": "F32", "<f2": "F16" };

/** A parsed .npy header. */
export interface NpyHeader {
  /** Element type ("<f4" -> F32, "<f2" -> F16). */
  readonly dtype: SafetensorsDtype;
  /** Dimensions, outermost first (C order). */
  readonly shape: number[];
  /** Bytes before the data: magic, version, length and the header text. */
  readonly headerBytes: number;
  /** Bytes of data the shape needs. */
  readonly dataBytes: number;
}

function fileError(file: string, message: string, cause?: unknown): WeightsError {
  return new WeightsError(file, "", `Cannot read "${file}": ${message}`, cause ? { cause } : undefined);
}

function entryError(file: string, tensor: string, message: string, cause?: unknown): WeightsError {
  return new WeightsError(
    file,
    tensor,
    `Cannot load "${tensor}" from "${file}": ${message}`,
    cause ? { cause } : undefined,
  );
}

let crcTable: Uint32Array | undefined;

/**
 * Continues a CRC-32 (zip's polynomial 0xEDB88320) over `bytes`.
 *
 * @param bytes The next bytes.
 * @param crc The CRC so far (0 to start).
 * @returns The updated CRC as an unsigned 32-bit integer.
 *
 * @example
 * ```ts
 * crc32(new TextEncoder().encode("123456789")); // 0xCBF43926
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The number of bytes a .npy header occupies, from its first 12 bytes (magic, version, length).
 *
 * @param first At least the first 10 bytes (12 for versions 2 and 3).
 * @param where Name for messages.
 * @returns Bytes before the data.
 * @throws {SyntaxError} for a bad magic, an unknown version, or a header over 64 KiB.
 */
export function npyHeaderBytes(first: Uint8Array, where: string): number {
  if (first.length < 10 || NPY_MAGIC.some((m, i) => first[i] !== m)) {
    throw new SyntaxError(`Cannot read .npy "${where}": not a .npy array (bad magic)`);
  }
  const major = first[6];
  if (major < 1 || major > 3) {
    throw new SyntaxError(`Cannot read .npy "${where}": unknown format version ${major}.${first[7]}`);
  }
  const view = new DataView(first.buffer, first.byteOffset, first.byteLength);
  if (major > 1 && first.length < 12) {
    throw new SyntaxError(`Cannot read .npy "${where}": truncated header`);
  }
  const length = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (length > MAX_NPY_HEADER_BYTES) {
    throw new SyntaxError(
      `Cannot read .npy "${where}": header of ${length} bytes exceeds the limit of ${MAX_NPY_HEADER_BYTES}`,
    );
  }
  return (major === 1 ? 10 : 12) + length;
}

/**
 * Parses a .npy header: little-endian float32 (`<f4`) or float16 (`<f2`) in C order only.
 *
 * @param bytes The array's first bytes (at least the whole header).
 * @param where Name for messages (the archive entry).
 * @returns dtype, shape, header size and data size.
 * @throws {SyntaxError} for a malformed header; {@linkcode TypeError} for another dtype or Fortran order.
 *
 * @example
 * ```ts
 * const { dtype, shape } = parseNpyHeader(npyBytes, "kernel.npy"); // "F32", [7, 7, 3, 192]
 * ```
 */
export function parseNpyHeader(bytes: Uint8Array, where: string): NpyHeader {
  const headerBytes = npyHeaderBytes(bytes, where);
  if (bytes.length < headerBytes) throw new SyntaxError(`Cannot read .npy "${where}": truncated header`);
  const start = bytes[6] === 1 ? 10 : 12;
  const text = new TextDecoder(bytes[6] === 3 ? "utf-8" : "latin1").decode(bytes.subarray(start, headerBytes))
    .trim();
  const bad = (what: string) =>
    new SyntaxError(`Cannot read .npy "${where}": malformed header (${what}): ${JSON.stringify(text)}`);
  if (!text.startsWith("{") || !text.endsWith("}")) throw bad("expected a dict");
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)\b/.exec(text);
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr) throw bad("no descr");
  if (!fortran) throw bad("no fortran_order");
  if (!shapeText) throw bad("no shape");
  const dtype = Object.hasOwn(NPY_DTYPES, descr[1]) ? NPY_DTYPES[descr[1]] : undefined;
  if (!dtype) {
    throw new TypeError(
      `Cannot read .npy "${where}": unsupported dtype "${
        descr[1]
      }": expected "<f4" (float32) or "<f2" (float16)`,
    );
  }
  if (fortran[1] === "True") {
    throw new TypeError(
      `Cannot read .npy "${where}": Fortran-order arrays are not supported, expected C order`,
    );
  }
  const parts = shapeText[1].split(",").map((s) => s.trim());
  if (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  if (!parts.every((p) => /^\d{1,15}$/.test(p))) throw bad("shape is not a tuple of integers");
  const shape = parts.map(Number);
  const dataBytes = shape.reduce((a, b) => a * b, DTYPE_BYTES[dtype]);
  if (!Number.isSafeInteger(dataBytes)) throw bad("shape too large");
  return { dtype, shape, headerBytes, dataBytes };
}

/** What a BiT key maps to: the exposed name, and whether it is a norm vector reshaped to [1,1,1,C]. */
export interface BitNpzName {
  /** Derm/flax name (`params.feature_extractor....` or `params.head....`). */
  readonly name: string;
  /** GroupNorm gamma or beta ([C] stored, exposed as [1,1,1,C]). */
  readonly norm: boolean;
  /** Part of the classifier head. */
  readonly head: boolean;
}

const FE = "params.feature_extractor.";
const UNIT_KEY =
  /^resnet\/block(\d{1,4})\/unit(\d{1,4})\/(a|b|c)\/(standardized_conv2d\/kernel|proj\/standardized_conv2d\/kernel|group_norm\/gamma|group_norm\/beta)$/;
const PART_INDEX: Readonly<Record<string, string>> = { a: "1", b: "2", c: "3" };

/**
 * The Derm/flax name of a big_transfer .npz key (without ".npy").
 *
 * @param key E.g. `resnet/block3/unit10/b/group_norm/gamma`.
 * @returns E.g. `{ name: "params.feature_extractor.block3.unit10.gn2.scale", norm: true, head: false }`, or
 * `undefined` for a key that is not part of a BiT ResNetV2.
 */
export function bitNpzName(key: string): BitNpzName | undefined {
  const fe = (name: string, norm = false) => ({ name: FE + name, norm, head: false });
  if (key === "resnet/root_block/standardized_conv2d/kernel") return fe("root_block.conv_root.kernel");
  if (key === "resnet/group_norm/gamma") return fe("norm-pre-head.scale", true);
  if (key === "resnet/group_norm/beta") return fe("norm-pre-head.bias", true);
  const head = /^resnet\/head\/conv2d\/(kernel|bias)$/.exec(key);
  if (head) return { name: `params.head.conv2d.${head[1]}`, norm: false, head: true };
  const m = UNIT_KEY.exec(key);
  if (!m) return undefined;
  const [, block, unit, part, rest] = m;
  const prefix = `block${Number(block)}.unit${String(Number(unit)).padStart(2, "0")}.`;
  if (rest === "proj/standardized_conv2d/kernel") {
    return part === "a" ? fe(`${prefix}conv_proj.kernel`) : undefined;
  }
  if (rest === "standardized_conv2d/kernel") return fe(`${prefix}conv${PART_INDEX[part]}.kernel`);
  return fe(`${prefix}gn${PART_INDEX[part]}.${rest === "group_norm/gamma" ? "scale" : "bias"}`, true);
}

/** One archive member, from the central directory. */
interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localOffset: number;
}

/** An archive member that holds a tensor, with where its data starts. */
interface NpzMember {
  readonly zip: ZipEntry;
  /** Absolute offset of the compressed data. */
  readonly dataStart: number;
  readonly npy: NpyHeader;
  readonly entry: TensorEntry;
}

function u64(view: DataView, at: number): number {
  const value = view.getBigUint64(at, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(value);
}

async function readExactly(reader: ByteRangeReader, file: string, offset: number, length: number) {
  const bytes = await reader.read(offset, length);
  if (bytes.length < length) {
    throw fileError(
      file,
      `truncated archive: expected ${length} bytes at offset ${offset}, got ${bytes.length}`,
    );
  }
  return bytes;
}

/** Finds the central directory: offset, size and entry count (zip64 aware). */
async function findCentralDirectory(reader: ByteRangeReader, file: string) {
  const tailLength = Math.min(reader.size, EOCD_BYTES + MAX_COMMENT_BYTES + ZIP64_LOCATOR_BYTES);
  const tailStart = reader.size - tailLength;
  const tail = await readExactly(reader, file, tailStart, tailLength);
  const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let at = -1;
  for (let i = tail.length - EOCD_BYTES; i >= 0; i--) {
    // The record's comment must run exactly to the end of the file.
    if (
      view.getUint32(i, true) === SIG_EOCD && i + EOCD_BYTES + view.getUint16(i + 20, true) === tail.length
    ) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    throw fileError(
      file,
      "not a zip archive (no end of central directory record; truncated or another format)",
    );
  }
  if (view.getUint16(at + 4, true) !== 0 || view.getUint16(at + 6, true) !== 0) {
    throw fileError(file, "multi-part zip archives are not supported");
  }
  let count = view.getUint16(at + 10, true);
  let cdSize = view.getUint32(at + 12, true);
  let cdOffset = view.getUint32(at + 16, true);
  let cdEnd = tailStart + at;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = at - ZIP64_LOCATOR_BYTES;
    if (loc < 0 || view.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) {
      throw fileError(file, "malformed zip64 archive: no zip64 end of central directory locator");
    }
    const recordOffset = u64(view, loc + 8);
    if (recordOffset + 56 > tailStart + loc) {
      throw fileError(file, "malformed zip64 archive: bad zip64 end of central directory offset");
    }
    const record = await readExactly(reader, file, recordOffset, 56);
    const rv = new DataView(record.buffer, record.byteOffset, record.byteLength);
    if (rv.getUint32(0, true) !== SIG_ZIP64_EOCD) {
      throw fileError(file, "malformed zip64 archive: bad zip64 end of central directory signature");
    }
    count = u64(rv, 32);
    cdSize = u64(rv, 40);
    cdOffset = u64(rv, 48);
    cdEnd = recordOffset;
  }
  if (cdOffset + cdSize > cdEnd) {
    throw fileError(
      file,
      `malformed zip archive: central directory [${cdOffset}, +${cdSize}] past its end record`,
    );
  }
  if (cdSize > MAX_CENTRAL_DIRECTORY_BYTES) {
    throw fileError(
      file,
      `central directory of ${cdSize} bytes exceeds the limit of ${MAX_CENTRAL_DIRECTORY_BYTES}`,
    );
  }
  return { count, cdSize, cdOffset };
}

function parseCentralDirectory(cd: Uint8Array, count: number, file: string): ZipEntry[] {
  const view = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const names = new TextDecoder("utf-8", { fatal: false });
  const entries: ZipEntry[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > cd.length || view.getUint32(at, true) !== SIG_CENTRAL) {
      throw fileError(file, `malformed zip archive: central directory entry ${i} of ${count} is missing`);
    }
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    const crc = view.getUint32(at + 16, true);
    let compressedSize = view.getUint32(at + 20, true);
    let size = view.getUint32(at + 24, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    let localOffset = view.getUint32(at + 42, true);
    const end = at + 46 + nameLength + extraLength + commentLength;
    if (end > cd.length) {
      throw fileError(file, `malformed zip archive: central directory entry ${i} is truncated`);
    }
    const name = names.decode(cd.subarray(at + 46, at + 46 + nameLength));
    // Zip64 extra field (id 1): the 64-bit values of the fields saturated at 0xFFFFFFFF, in this order.
    let extra = at + 46 + nameLength;
    const extraEnd = extra + extraLength;
    while (extra + 4 <= extraEnd) {
      const id = view.getUint16(extra, true);
      const length = view.getUint16(extra + 2, true);
      if (id === 1) {
        let field = extra + 4;
        const next = () => {
          if (field + 8 > extra + 4 + length) throw fileError(file, `malformed zip64 field for "${name}"`);
          const value = u64(view, field);
          field += 8;
          return value;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      extra += 4 + length;
    }
    if (flags & 1) throw entryError(file, name, "encrypted zip entries are not supported");
    if (method !== METHOD_STORED && method !== METHOD_DEFLATE) {
      throw entryError(
        file,
        name,
        `unsupported zip compression method ${method}: expected stored (0) or deflate (8)`,
      );
    }
    entries.push({ name, method, crc, compressedSize, size, localOffset });
    at = end;
  }
  return entries;
}

/**
 * Yields an entry's uncompressed bytes from its start, in pieces, and checks them: never more than the
 * declared size (inflating stops as soon as it is passed), exactly the declared size at the end, and the CRC.
 * `stopAfter` ends early (no end checks) once that many bytes were yielded.
 */
async function* entryBytes(
  reader: ByteRangeReader,
  file: string,
  tensor: string,
  member: { zip: ZipEntry; dataStart: number },
  stopAfter = Infinity,
): AsyncGenerator<Uint8Array> {
  const { zip, dataStart } = member;
  let produced = 0;
  let crc = 0;
  const check = (piece: Uint8Array) => {
    produced += piece.length;
    if (produced > zip.size) {
      throw entryError(
        file,
        tensor,
        `zip entry "${zip.name}" inflates past its declared size of ${zip.size} bytes (corrupt archive or zip bomb)`,
      );
    }
    crc = crc32(piece, crc);
  };
  let read = 0;
  if (zip.method === METHOD_STORED) {
    while (read < zip.compressedSize) {
      const piece = await readExactly(
        reader,
        file,
        dataStart + read,
        Math.min(READ_CHUNK_BYTES, zip.compressedSize - read, stopAfter - produced),
      );
      read += piece.length;
      check(piece);
      yield piece;
      if (produced >= stopAfter) return;
    }
  } else {
    const pieces: Uint8Array[] = [];
    const inflater = new Inflate((data) => {
      if (data.length > 0) pieces.push(data);
    });
    let final = zip.compressedSize === 0;
    do {
      const length = Math.min(INFLATE_PUSH_BYTES, zip.compressedSize - read);
      const input = length > 0
        ? await readExactly(reader, file, dataStart + read, length)
        : new Uint8Array(0);
      read += length;
      final = read >= zip.compressedSize;
      try {
        inflater.push(input, final);
      } catch (e) {
        throw entryError(file, tensor, `zip entry "${zip.name}" is corrupt (${(e as Error).message})`, e);
      }
      for (const piece of pieces.splice(0)) {
        check(piece);
        yield piece;
        if (produced >= stopAfter) return;
      }
    } while (!final);
  }
  if (produced !== zip.size) {
    throw entryError(
      file,
      tensor,
      `zip entry "${zip.name}" holds ${produced} bytes, its directory declares ${zip.size}`,
    );
  }
  if (crc !== zip.crc) {
    const hex = (x: number) => x.toString(16).padStart(8, "0");
    throw entryError(
      file,
      tensor,
      `CRC-32 mismatch in zip entry "${zip.name}": expected ${hex(zip.crc)}, got ${
        hex(crc)
      } (corrupt archive)`,
    );
  }
}

/** Reads (inflates) the first `count` bytes of an entry, or fewer if it is shorter. */
async function entryPrefix(
  reader: ByteRangeReader,
  file: string,
  tensor: string,
  member: { zip: ZipEntry; dataStart: number },
  count: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(Math.min(count, member.zip.size));
  let filled = 0;
  for await (const piece of entryBytes(reader, file, tensor, member, out.length)) {
    const n = Math.min(piece.length, out.length - filled);
    out.set(piece.subarray(0, n), filled);
    filled += n;
    if (filled >= out.length) break;
  }
  return out.subarray(0, filled);
}

function storedShape(member: BitNpzName, shape: number[], file: string, key: string): number[] {
  if (!member.norm) return shape;
  const c = shape[shape.length - 1];
  if (shape.length === 0 || shape.slice(0, -1).some((d) => d !== 1)) {
    throw entryError(file, key, `expected a GroupNorm vector [C] or [1,1,1,C], got [${shape.join(",")}]`);
  }
  return [1, 1, 1, c];
}

/**
 * Opens a BiT .npz archive: reads its central directory and every entry's .npy header (not the data), maps
 * the keys to Derm names and checks the declared sizes.
 *
 * @param reader Random access to the archive.
 * @param options File name, size cap, whether to drop the head.
 * @returns A source streaming one tensor at a time (each inflated and CRC-checked when reached), any number
 * of times; metadata `{ preset: "bit", source: "bit-npz" }`.
 * @throws {WeightsError} for a non-zip, truncated or hostile archive, an unsupported .npy (dtype, order),
 * a key that is not part of a BiT ResNetV2, or sizes that disagree.
 *
 * @example
 * ```ts
 * const bytes = new Uint8Array(await (await fetch("BiT-M-R50x1.npz")).arrayBuffer());
 * const source = await openNpz(npzBytesReader(bytes), { file: "BiT-M-R50x1.npz" });
 * adaptBitWeights(source).architecture; // R50x1
 * ```
 */
export async function openNpz(reader: ByteRangeReader, options: NpzOptions = {}): Promise<TensorSource> {
  const file = options.file ?? "<bytes>";
  const cap = options.maxUncompressedBytes ?? DEFAULT_MAX_NPZ_UNCOMPRESSED_BYTES;
  const { count, cdSize, cdOffset } = await findCentralDirectory(reader, file);
  const zipEntries = parseCentralDirectory(await readExactly(reader, file, cdOffset, cdSize), count, file);
  // Entries in archive order may not overlap one another or the central directory (overlapping entries are
  // how a small archive declares gigabytes).
  const byOffset = [...zipEntries].sort((a, b) => a.localOffset - b.localOffset);
  const seen = new Set<string>();
  let total = 0;
  const members: NpzMember[] = [];
  let previousEnd = 0;
  let previousName = "";
  let virtualOffset = 0;
  for (const zip of byOffset) {
    if (zip.name.endsWith("/") && zip.size === 0) continue; // a directory
    if (!zip.name.endsWith(".npy")) {
      throw entryError(file, zip.name, "unexpected member in a .npz archive: expected NAME.npy");
    }
    const key = zip.name.slice(0, -4);
    const mapped = bitNpzName(key);
    if (!mapped) {
      throw entryError(
        file,
        key,
        "not a BiT ResNetV2 tensor: expected resnet/root_block/..., resnet/block{s}/unit{u}/{a,b,c}/..., " +
          "resnet/group_norm/... or resnet/head/...",
      );
    }
    if (seen.has(mapped.name)) throw entryError(file, key, `duplicate tensor (both map to "${mapped.name}")`);
    seen.add(mapped.name);
    if (zip.localOffset < previousEnd) {
      throw entryError(file, key, `zip entry overlaps "${previousName}" (hostile archive)`);
    }
    if (zip.size > cap || total + zip.size > cap) {
      throw entryError(
        file,
        key,
        `declared uncompressed size ${
          total + zip.size
        } exceeds the limit of ${cap} bytes (maxUncompressedBytes)`,
      );
    }
    total += zip.size;
    if (zip.method === METHOD_STORED && zip.compressedSize !== zip.size) {
      throw entryError(
        file,
        key,
        `stored entry declares ${zip.compressedSize} bytes stored but ${zip.size} in all`,
      );
    }
    const local = await readExactly(reader, file, zip.localOffset, 30);
    const lv = new DataView(local.buffer, local.byteOffset, local.byteLength);
    if (lv.getUint32(0, true) !== SIG_LOCAL) {
      throw entryError(file, key, `malformed zip archive: no local header at offset ${zip.localOffset}`);
    }
    const dataStart = zip.localOffset + 30 + lv.getUint16(26, true) + lv.getUint16(28, true);
    const dataEnd = dataStart + zip.compressedSize;
    if (dataEnd > cdOffset) {
      throw entryError(
        file,
        key,
        `zip entry data [${dataStart}, ${dataEnd}) runs into the central directory`,
      );
    }
    previousEnd = dataEnd;
    previousName = zip.name;
    if (mapped.head && options.dropHead) continue;
    const member = { zip, dataStart };
    let npy: NpyHeader;
    try {
      // NumPy pads headers to 64 bytes: 128 in practice, so one read usually holds the whole header.
      let prefix = await entryPrefix(reader, file, key, member, 256);
      const headerBytes = npyHeaderBytes(prefix, zip.name);
      if (headerBytes > prefix.length) prefix = await entryPrefix(reader, file, key, member, headerBytes);
      npy = parseNpyHeader(prefix, zip.name);
    } catch (e) {
      if (e instanceof WeightsError) throw e;
      throw entryError(file, key, (e as Error).message, e);
    }
    if (npy.headerBytes + npy.dataBytes !== zip.size) {
      throw entryError(
        file,
        key,
        `zip entry declares ${zip.size} bytes, its .npy header needs ${npy.headerBytes + npy.dataBytes} ` +
          `(${npy.dtype} [${npy.shape.join(",")}])`,
      );
    }
    const shape = storedShape(mapped, npy.shape, file, key);
    const entry: TensorEntry = {
      name: mapped.name,
      dtype: npy.dtype,
      shape,
      begin: virtualOffset,
      end: virtualOffset + npy.dataBytes,
    };
    virtualOffset += npy.dataBytes;
    members.push({ zip, dataStart, npy, entry });
  }
  return npzSource(reader, file, members);
}

function npzSource(reader: ByteRangeReader, file: string, members: NpzMember[]): TensorSource {
  const tensors = new Map(members.map((m) => [m.entry.name, m.entry]));
  let closed = false;
  return {
    file,
    metadata: { preset: "bit", source: "bit-npz" },
    tensors,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (closed) throw fileError(file, "the source is closed");
      for (const name of wanted ?? []) {
        if (!tensors.has(name)) throw entryError(file, name, "no such tensor in the file");
      }
      const chosen = members.filter((m) => !wanted || wanted.has(m.entry.name));
      return (async function* () {
        for (const member of chosen) {
          const { entry, npy } = member;
          const bytes = new Uint8Array(npy.dataBytes);
          let at = 0;
          try {
            for await (const piece of entryBytes(reader, file, entry.name, member)) {
              if (closed) throw fileError(file, "the source is closed");
              // Skip the .npy header: the first npy.headerBytes bytes of the entry.
              const skip = Math.max(0, npy.headerBytes - at);
              if (skip < piece.length) bytes.set(piece.subarray(skip), at + skip - npy.headerBytes);
              at += piece.length;
            }
          } catch (e) {
            if (e instanceof WeightsError) throw e;
            throw entryError(file, entry.name, `reading failed (${(e as Error)?.message ?? e})`, e);
          }
          yield { entry, bytes };
        }
      })();
    },
    async close() {
      if (closed) return;
      closed = true;
      await reader.close?.();
    },
  };
}

/**
 * A {@linkcode ByteRangeReader} over bytes in memory.
 *
 * @param bytes The whole archive.
 * @returns The reader (views, no copies).
 */
export function npzBytesReader(bytes: Uint8Array): ByteRangeReader {
  return {
    size: bytes.length,
    read: (offset, length) =>
      Promise.resolve(bytes.subarray(offset, Math.min(bytes.length, offset + length))),
  };
}

/**
 * A {@linkcode ByteRangeReader} over a `Blob` (a browser `File`), reading only the slices asked for.
 *
 * @param blob The archive.
 * @returns The reader.
 */
export function npzBlobReader(blob: Blob): ByteRangeReader {
  return {
    size: blob.size,
    read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
  };
}
