/**
 * The Thrift compact protocol, encoding only: what a Parquet footer, page header and row-group entry need
 * (structs of i16/i32/i64, binary/string, bool, lists, nested structs). Fields are given with their ids in
 * increasing order; an undefined value is left out (an absent optional field).
 *
 * Wire format (Apache Thrift, "Thrift Compact protocol encoding"): a field header is one byte
 * `delta << 4 | type` when the id is 1 to 15 above the previous field's, else the type byte and the id as a
 * zigzag varint; integers are zigzag ULEB128 varints; binary is a varint length and the bytes; a list
 * header is `size << 4 | elementType` for sizes under 15, else `0xF0 | elementType` and a varint size; a
 * struct ends with a 0 byte. Booleans in a struct are the field type itself (1 true, 2 false).
 * @module
 */

/** Compact-protocol type ids. */
export const CT = {
  TRUE: 1,
  FALSE: 2,
  I16: 4,
  I32: 5,
  I64: 6,
  BINARY: 8,
  LIST: 9,
  STRUCT: 12,
} as const;

/** A value to encode. `raw` is an already-encoded struct (its bytes, stop byte included). */
export type ThriftValue =
  | { readonly i16: number }
  | { readonly i32: number }
  | { readonly i64: number }
  | { readonly bool: boolean }
  | { readonly binary: string | Uint8Array }
  | { readonly struct: ThriftFields }
  | { readonly raw: Uint8Array }
  | { readonly list: ThriftList };

/** A list: element type and items (`raw` items for pre-encoded structs). */
export interface ThriftList {
  readonly type: number;
  readonly items: readonly ThriftValue[];
}

/** Struct fields as `[id, value]`, ids increasing; undefined values are skipped. */
export type ThriftFields = readonly (readonly [number, ThriftValue | undefined])[];

/** A growable byte buffer. */
export class ByteSink {
  #bytes = new Uint8Array(256);
  /** Bytes written so far. */
  length = 0;

  #reserve(n: number): void {
    if (this.length + n <= this.#bytes.length) return;
    let size = this.#bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#bytes.subarray(0, this.length));
    this.#bytes = grown;
  }

  /** Appends one byte. */
  byte(b: number): void {
    this.#reserve(1);
    this.#bytes[this.length++] = b & 0xff;
  }

  /** Appends bytes. */
  bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#bytes.set(b, this.length);
    this.length += b.length;
  }

  /** Appends a little-endian uint32. */
  u32(v: number): void {
    this.#reserve(4);
    new DataView(this.#bytes.buffer).setUint32(this.length, v >>> 0, true);
    this.length += 4;
  }

  /** Appends an unsigned LEB128 varint (0 to 2^53 - 1). */
  varint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`Cannot encode a varint: expected an integer from 0 to 2^53 - 1, got ${v}`);
    }
    while (v >= 0x80) {
      this.byte((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.byte(v);
  }

  /** A zigzag varint (signed, |v| < 2^52). */
  zigzag(v: number): void {
    this.varint(v >= 0 ? 2 * v : -2 * v - 1);
  }

  /** The bytes written (a copy). */
  toBytes(): Uint8Array {
    return this.#bytes.slice(0, this.length);
  }
}

const enc = new TextEncoder();

function typeOf(v: ThriftValue): number {
  if ("i16" in v) return CT.I16;
  if ("i32" in v) return CT.I32;
  if ("i64" in v) return CT.I64;
  if ("bool" in v) return v.bool ? CT.TRUE : CT.FALSE;
  if ("binary" in v) return CT.BINARY;
  if ("list" in v) return CT.LIST;
  return CT.STRUCT;
}

/** Writes a value's body (a struct field's value or a list item). */
function writeValue(sink: ByteSink, v: ThriftValue): void {
  if ("i16" in v) sink.zigzag(v.i16);
  else if ("i32" in v) sink.zigzag(v.i32);
  else if ("i64" in v) sink.zigzag(v.i64);
  else if ("bool" in v) sink.byte(v.bool ? 1 : 0); // only reached inside lists
  else if ("binary" in v) {
    const b = typeof v.binary === "string" ? enc.encode(v.binary) : v.binary;
    sink.varint(b.length);
    sink.bytes(b);
  } else if ("struct" in v) writeStruct(sink, v.struct);
  else if ("raw" in v) sink.bytes(v.raw);
  else {
    listHeader(sink, v.list.type, v.list.items.length);
    for (const item of v.list.items) writeValue(sink, item);
  }
}

/** Writes a list header for `size` items of compact type `type` (items follow, written by the caller). */
export function listHeader(sink: ByteSink, type: number, size: number): void {
  if (size < 15) sink.byte((size << 4) | type);
  else {
    sink.byte(0xf0 | type);
    sink.varint(size);
  }
}

/** Writes a struct: its fields, then the stop byte. */
export function writeStruct(sink: ByteSink, fields: ThriftFields): void {
  let last = 0;
  for (const [id, value] of fields) {
    if (value === undefined) continue;
    if (id <= last) throw new RangeError(`Cannot encode field ${id}: ids must increase, previous ${last}`);
    fieldHeader(sink, id - last, id, typeOf(value));
    last = id;
    if (!("bool" in value)) writeValue(sink, value);
  }
  sink.byte(0);
}

/** A field header (used directly when a field's body is streamed by the caller). */
export function fieldHeader(sink: ByteSink, delta: number, id: number, type: number): void {
  if (delta > 0 && delta <= 15) sink.byte((delta << 4) | type);
  else {
    sink.byte(type);
    sink.zigzag(id);
  }
}

/**
 * Encodes one struct.
 *
 * @param fields `[id, value]` pairs, ids increasing.
 * @returns The struct's bytes, stop byte included.
 * @example
 * ```ts
 * encodeStruct([[1, { i32: 2 }], [4, { binary: "x" }]]); // 15 04 38 01 78 00
 * ```
 */
export function encodeStruct(fields: ThriftFields): Uint8Array {
  const sink = new ByteSink();
  writeStruct(sink, fields);
  return sink.toBytes();
}
