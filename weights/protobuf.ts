/**
 * A minimal protocol-buffers wire-format reader and writer: enough to pull a few fields out of TensorFlow's
 * `saved_model.pb` and checkpoint index entries (and, in tests, to write them), with no schema compiler.
 *
 * Wire format: a message is a sequence of fields, each a varint key `(field_number << 3) | wire_type`
 * followed by its value: type 0 varint, 1 fixed 64-bit little-endian, 2 length-delimited (varint length,
 * then bytes: strings, sub-messages, packed repeated scalars), 5 fixed 32-bit little-endian. Types 3 and 4
 * (groups) are obsolete and refused. Unknown fields are skipped by the caller via {@linkcode ProtoReader.skip}.
 *
 * Varints are returned as JS numbers and must stay below 2^53 (every size, offset and count TensorFlow
 * writes does); larger values, truncation and bad lengths throw a `SyntaxError` naming the byte offset,
 * which callers wrap in a `WeightsError` naming their file.
 *
 * This module is browser compatible.
 * @module
 */

/** Wire type of a field. */
export const WireType = { VARINT: 0, FIXED64: 1, BYTES: 2, FIXED32: 5 } as const;

const UTF8 = new TextDecoder("utf-8", { fatal: true });
const ENCODER = new TextEncoder();

/**
 * Reads fields one at a time from a message's bytes (a view; nothing is copied).
 *
 * @example
 * ```ts
 * const r = new ProtoReader(bytes);
 * while (r.next()) {
 *   if (r.field === 1 && r.wireType === WireType.VARINT) version = r.varint();
 *   else if (r.field === 2) name = r.string();
 *   else r.skip();
 * }
 * ```
 */
export class ProtoReader {
  #bytes: Uint8Array;
  #pos = 0;
  #base: number;
  /** Field number of the current field (after {@linkcode next}). */
  field = 0;
  /** Wire type of the current field. */
  wireType = 0;

  /**
   * @param bytes The message.
   * @param base Offset of `bytes` inside the enclosing file, so errors name absolute positions.
   */
  constructor(bytes: Uint8Array, base = 0) {
    this.#bytes = bytes;
    this.#base = base;
  }

  /** Absolute offset of the next unread byte. */
  get offset(): number {
    return this.#base + this.#pos;
  }

  #fail(what: string, at = this.#pos): never {
    throw new SyntaxError(`${what} at offset ${this.#base + at}`);
  }

  /** Reads a raw varint (no key). */
  rawVarint(): number {
    const bytes = this.#bytes;
    const start = this.#pos;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.#pos >= bytes.length) this.#fail("truncated varint", start);
      const b = bytes[this.#pos++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) this.#fail("varint above 2^53", start);
        return result;
      }
      scale *= 128;
    }
    this.#fail("varint longer than 10 bytes", start);
  }

  /**
   * Advances to the next field.
   *
   * @returns false at the end of the message.
   * @throws {SyntaxError} for a truncated key, field number 0 or a group / unknown wire type.
   */
  next(): boolean {
    if (this.#pos >= this.#bytes.length) return false;
    const at = this.#pos;
    const key = this.rawVarint();
    this.field = Math.floor(key / 8);
    this.wireType = key % 8;
    if (this.field === 0) this.#fail("field number 0", at);
    if (this.wireType !== 0 && this.wireType !== 1 && this.wireType !== 2 && this.wireType !== 5) {
      this.#fail(`unsupported wire type ${this.wireType} (field ${this.field})`, at);
    }
    return true;
  }

  #expect(wireType: number): void {
    if (this.wireType !== wireType) {
      this.#fail(`field ${this.field}: expected wire type ${wireType}, got ${this.wireType}`);
    }
  }

  /** The current varint field as an unsigned number (int32/int64/uint/enum/bool). */
  varint(): number {
    this.#expect(WireType.VARINT);
    return this.rawVarint();
  }

  /**
   * The current varint field as a signed int64 / int32 (two's complement over 64 bits); negative values
   * come out exactly when above -2^53.
   */
  int64(): number {
    this.#expect(WireType.VARINT);
    const start = this.#pos;
    const bytes = this.#bytes;
    let lo = 0, hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.#pos >= bytes.length) this.#fail("truncated varint", start);
      const b = bytes[this.#pos++];
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) {
        const value = (hi | 0) * 4294967296 + (lo >>> 0);
        if (!Number.isSafeInteger(value)) this.#fail("int64 outside ±2^53", start);
        return value;
      }
    }
    this.#fail("varint longer than 10 bytes", start);
  }

  /** The current field as a bool. */
  bool(): boolean {
    return this.varint() !== 0;
  }

  /** The current fixed32 field, unsigned. */
  fixed32(): number {
    this.#expect(WireType.FIXED32);
    if (this.#pos + 4 > this.#bytes.length) this.#fail("truncated fixed32");
    const b = this.#bytes, p = this.#pos;
    this.#pos += 4;
    return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  }

  /** The current length-delimited field's bytes (a view), with its absolute offset. */
  bytesAt(): { bytes: Uint8Array; offset: number } {
    this.#expect(WireType.BYTES);
    const length = this.rawVarint();
    const start = this.#pos;
    if (length > this.#bytes.length - start) {
      this.#fail(`field ${this.field}: length ${length} is past the end of the message`, start);
    }
    this.#pos += length;
    return { bytes: this.#bytes.subarray(start, start + length), offset: this.#base + start };
  }

  /** The current length-delimited field's bytes (a view). */
  bytes(): Uint8Array {
    return this.bytesAt().bytes;
  }

  /** A reader over the current sub-message field. */
  message(): ProtoReader {
    const { bytes, offset } = this.bytesAt();
    return new ProtoReader(bytes, offset);
  }

  /** The current field as UTF-8 text. */
  string(): string {
    const { bytes, offset } = this.bytesAt();
    try {
      return UTF8.decode(bytes);
    } catch {
      throw new SyntaxError(`field ${this.field}: invalid UTF-8 at offset ${offset}`);
    }
  }

  /** A repeated varint field, packed (one length-delimited field) or not (one value). */
  packedVarints(): number[] {
    if (this.wireType === WireType.VARINT) return [this.rawVarint()];
    const inner = this.message();
    const values: number[] = [];
    while (inner.#pos < inner.#bytes.length) values.push(inner.rawVarint());
    return values;
  }

  /** Skips `count` raw bytes (for formats that mix varints with raw bytes, like SSTable blocks). */
  skipBytes(count: number): void {
    if (count > this.#bytes.length - this.#pos) this.#fail(`${count} bytes past the end`);
    this.#pos += count;
  }

  /** Skips the current field's value. */
  skip(): void {
    switch (this.wireType) {
      case WireType.VARINT:
        this.rawVarint();
        return;
      case WireType.FIXED64:
        if (this.#pos + 8 > this.#bytes.length) this.#fail("truncated fixed64");
        this.#pos += 8;
        return;
      case WireType.FIXED32:
        if (this.#pos + 4 > this.#bytes.length) this.#fail("truncated fixed32");
        this.#pos += 4;
        return;
      default:
        this.bytesAt();
    }
  }
}

/**
 * Builds a message field by field (for tests and writers). Nested messages are written as bytes:
 * `w.bytes(7, sub.finish())`.
 *
 * @example
 * ```ts
 * const header = new ProtoWriter().varint(1, 1).bytes(3, new ProtoWriter().varint(1, 1).finish()).finish();
 * ```
 */
export class ProtoWriter {
  #parts: number[] = [];

  #raw(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Cannot encode varint: expected a non-negative safe integer, got ${value}`);
    }
    while (value >= 0x80) {
      this.#parts.push((value % 128) | 0x80);
      value = Math.floor(value / 128);
    }
    this.#parts.push(value);
  }

  #key(field: number, wireType: number): void {
    this.#raw(field * 8 + wireType);
  }

  /** Appends a varint field (non-negative). */
  varint(field: number, value: number): this {
    this.#key(field, WireType.VARINT);
    this.#raw(value);
    return this;
  }

  /** Appends a fixed32 field. */
  fixed32(field: number, value: number): this {
    this.#key(field, WireType.FIXED32);
    for (let i = 0; i < 4; i++) this.#parts.push((value >>> (8 * i)) & 0xff);
    return this;
  }

  /** Appends a length-delimited field. */
  bytes(field: number, value: Uint8Array): this {
    this.#key(field, WireType.BYTES);
    this.#raw(value.length);
    for (const b of value) this.#parts.push(b);
    return this;
  }

  /** Appends a UTF-8 string field. */
  string(field: number, value: string): this {
    return this.bytes(field, ENCODER.encode(value));
  }

  /** The message bytes. */
  finish(): Uint8Array<ArrayBuffer> {
    return Uint8Array.from(this.#parts);
  }
}

/**
 * Encodes a bare varint (no key), as SSTable blocks and handles use.
 *
 * @param value A non-negative safe integer.
 * @returns Its 1 to 8 bytes.
 */
export function encodeVarint(value: number): Uint8Array<ArrayBuffer> {
  const w = new ProtoWriter();
  // A varint field with field number 0 would be refused by readers; the key byte is dropped here.
  return w.varint(1, value).finish().subarray(1);
}
