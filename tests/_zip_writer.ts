/**
 * A small zip writer for tests: archives the way torch's `PyTorchStreamWriter` writes them (stored members,
 * data aligned to 64 bytes through a padding extra field in the local header, ZIP64 when asked or needed),
 * deflated members, and knobs for the hostile archives no honest writer makes.
 * @module
 */
import { deflateSync } from "fflate";
import { crc32 } from "../engine/crc32.ts";

/** One member to write. */
export interface ZipMember {
  /** Path inside the archive. */
  name: string;
  /** Uncompressed bytes. */
  data: Uint8Array;
  /** Deflate it (default: stored). */
  deflate?: boolean;
  /** Write this uncompressed size in the headers instead of the true one. */
  declaredSize?: number;
  /** Write this CRC-32 instead of the true one. */
  crc?: number;
}

/** Options of {@linkcode writeZip}. */
export interface ZipWriteOptions {
  /** Align each member's data to this many bytes (torch: 64; default 64). */
  align?: number;
  /** Write zip64 records and extra fields for every member, as torch does for files over 4 GB. */
  zip64?: boolean;
  /** Comment after the end record. */
  comment?: string;
}

/** Where things went, for tests that patch the archive afterwards. */
export interface ZipLayout {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Local header offset of each member. */
  readonly localOffsets: number[];
  /** Data offset of each member. */
  readonly dataOffsets: number[];
  /** Central directory offset and size. */
  readonly cdOffset: number;
  readonly cdSize: number;
  /** Offset of the (classic) end of central directory record. */
  readonly eocdOffset: number;
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Writes a zip archive.
 *
 * @param members The members, in order.
 * @param options Alignment, zip64, comment.
 * @returns The bytes and the layout.
 */
export function writeZip(members: ZipMember[], options: ZipWriteOptions = {}): ZipLayout {
  const align = options.align ?? 64;
  const zip64 = options.zip64 ?? false;
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  const localOffsets: number[] = [];
  const dataOffsets: number[] = [];
  let offset = 0;
  for (const m of members) {
    const name = enc.encode(m.name);
    const payload = m.deflate ? deflateSync(m.data) : m.data;
    const size = m.declaredSize ?? m.data.length;
    const crc = m.crc ?? crc32(m.data);
    const method = m.deflate ? 8 : 0;
    const zip64Extra = zip64 ? 20 : 0; // id, length, uncompressed size, compressed size
    let extra = zip64Extra;
    const unpadded = offset + 30 + name.length + extra;
    if (align > 1 && unpadded % align !== 0) {
      let pad = align - (unpadded % align);
      if (pad < 4) pad += align; // room for the padding field's own header
      extra += pad;
    }
    const local = new Uint8Array(30 + name.length + extra);
    const v = new DataView(local.buffer);
    v.setUint32(0, 0x04034b50, true);
    v.setUint16(4, zip64 ? 45 : 20, true);
    v.setUint16(6, 0x0800, true);
    v.setUint16(8, method, true);
    v.setUint32(14, crc, true);
    v.setUint32(18, zip64 ? 0xffffffff : payload.length, true);
    v.setUint32(22, zip64 ? 0xffffffff : size, true);
    v.setUint16(26, name.length, true);
    v.setUint16(28, extra, true);
    local.set(name, 30);
    let e = 30 + name.length;
    if (zip64) {
      v.setUint16(e, 1, true);
      v.setUint16(e + 2, 16, true);
      v.setBigUint64(e + 4, BigInt(size), true);
      v.setBigUint64(e + 12, BigInt(payload.length), true);
      e += 20;
    }
    if (extra > zip64Extra) {
      v.setUint16(e, 0x4246, true); // "FB", as torch's padding field
      v.setUint16(e + 2, extra - zip64Extra - 4, true);
    }
    localOffsets.push(offset);
    dataOffsets.push(offset + local.length);
    parts.push(local, payload);

    const cextra = zip64 ? 28 : 0; // id, length, sizes, local header offset
    const c = new Uint8Array(46 + name.length + cextra);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, zip64 ? 45 : 20, true);
    cv.setUint16(6, zip64 ? 45 : 20, true);
    cv.setUint16(8, 0x0800, true);
    cv.setUint16(10, method, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, zip64 ? 0xffffffff : payload.length, true);
    cv.setUint32(24, zip64 ? 0xffffffff : size, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, cextra, true);
    cv.setUint32(42, zip64 ? 0xffffffff : offset, true);
    c.set(name, 46);
    if (zip64) {
      const z = 46 + name.length;
      cv.setUint16(z, 1, true);
      cv.setUint16(z + 2, 24, true);
      cv.setBigUint64(z + 4, BigInt(size), true);
      cv.setBigUint64(z + 12, BigInt(payload.length), true);
      cv.setBigUint64(z + 20, BigInt(offset), true);
    }
    central.push(c);
    offset += local.length + payload.length;
  }
  const cdOffset = offset;
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const tail: Uint8Array[] = [];
  if (zip64) {
    const record = new Uint8Array(56);
    const rv = new DataView(record.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true);
    rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(members.length), true);
    rv.setBigUint64(32, BigInt(members.length), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(cdOffset), true);
    const locator = new Uint8Array(20);
    const lv = new DataView(locator.buffer);
    lv.setUint32(0, 0x07064b50, true);
    lv.setBigUint64(8, BigInt(cdOffset + cdSize), true);
    lv.setUint32(16, 1, true);
    tail.push(record, locator);
  }
  const comment = enc.encode(options.comment ?? "");
  const eocd = new Uint8Array(22 + comment.length);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, zip64 ? 0xffff : members.length, true);
  ev.setUint16(10, zip64 ? 0xffff : members.length, true);
  ev.setUint32(12, zip64 ? 0xffffffff : cdSize, true);
  ev.setUint32(16, zip64 ? 0xffffffff : cdOffset, true);
  ev.setUint16(20, comment.length, true);
  eocd.set(comment, 22);
  const eocdOffset = cdOffset + cdSize + tail.reduce((a, t) => a + t.length, 0);
  return {
    bytes: concat([...parts, ...central, ...tail, eocd]),
    localOffsets,
    dataOffsets,
    cdOffset,
    cdSize,
    eocdOffset,
  };
}
