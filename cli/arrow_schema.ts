/**
 * The Arrow IPC Schema message that Parquet writers put in the `ARROW:schema` key-value entry, written by
 * hand so that writing Parquet needs no Arrow library. Arrow readers (pyarrow and so pandas, polars,
 * arrow-rs) take column types from it: here UTF-8 string columns, the int64 position, and the embedding as
 * `FixedSizeList<float32>[D]`, which the Parquet schema alone can only call "list of float".
 *
 * Layout (Arrow columnar format, "Encapsulated message format"): 0xFFFFFFFF continuation marker, int32
 * length of the flatbuffer (padded to 8 bytes), then the flatbuffer `Message { version: V5, header: Schema,
 * bodyLength: 0 }`. Field ids below are those of Arrow's `Message.fbs` and `Schema.fbs`.
 *
 * The flatbuffer is laid out front to back: each table's vtable just before the table, children after
 * their parent, so every uoffset points forward as the format requires.
 * @module
 */

/** A flatbuffer value: a table (fields by id), a vector of tables, or a string. */
type FbNode =
  | { readonly table: readonly (FbField | undefined)[] }
  | { readonly vector: readonly FbNode[] }
  | { readonly string: string };

/** One table field: an inline scalar, or an offset to another node. */
type FbField =
  | { readonly u8: number }
  | { readonly i16: number }
  | { readonly i32: number }
  | { readonly i64: bigint }
  | { readonly ref: FbNode };

// Arrow enums and union tags (Schema.fbs, Message.fbs).
const METADATA_V5 = 4;
const HEADER_SCHEMA = 1;
const TYPE_INT = 2;
const TYPE_FLOATING_POINT = 3;
const TYPE_UTF8 = 5;
const TYPE_FIXED_SIZE_LIST = 16;
const PRECISION_SINGLE = 1;

/** `Field { name, nullable, type_type, type, dictionary, children }`. */
function field(
  name: string,
  nullable: boolean,
  typeTag: number,
  type: FbNode,
  children: FbNode[] = [],
): FbNode {
  return {
    table: [
      { ref: { string: name } },
      { u8: nullable ? 1 : 0 },
      { u8: typeTag },
      { ref: type },
      undefined,
      { ref: { vector: children } },
    ],
  };
}

class FbWriter {
  #bytes = new Uint8Array(1024);
  #view = new DataView(this.#bytes.buffer);
  length = 0;

  #reserve(n: number): number {
    while (this.length + n > this.#bytes.length) {
      const grown = new Uint8Array(this.#bytes.length * 2);
      grown.set(this.#bytes);
      this.#bytes = grown;
      this.#view = new DataView(grown.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  align(n: number): void {
    this.#reserve((n - (this.length % n)) % n);
  }

  u8(at: number, v: number): void {
    this.#view.setUint8(at, v);
  }
  u16(at: number, v: number): void {
    this.#view.setUint16(at, v, true);
  }
  i32(at: number, v: number): void {
    this.#view.setInt32(at, v, true);
  }
  i64(at: number, v: bigint): void {
    this.#view.setBigInt64(at, v, true);
  }
  bytes(): Uint8Array {
    return this.#bytes.slice(0, this.length);
  }

  /** Appends `node` and returns its position; offsets inside it are patched once their targets exist. */
  write(node: FbNode): number {
    if ("string" in node) {
      const text = new TextEncoder().encode(node.string);
      this.align(4);
      const at = this.#reserve(4 + text.length + 1);
      this.i32(at, text.length);
      this.#bytes.set(text, at + 4);
      return at;
    }
    if ("vector" in node) {
      this.align(4);
      const at = this.#reserve(4 + 4 * node.vector.length);
      this.i32(at, node.vector.length);
      node.vector.forEach((item, i) => {
        const slot = at + 4 + 4 * i;
        this.i32(slot, this.write(item) - slot);
      });
      return at;
    }
    const fields = node.table;
    // Inline layout relative to the table start: the soffset to the vtable, then each present field at its
    // natural alignment (the table start is 8-aligned, so relative alignment is absolute alignment).
    const offsets: number[] = [];
    let size = 4;
    for (const f of fields) {
      if (!f) {
        offsets.push(0);
        continue;
      }
      const width = "u8" in f ? 1 : "i16" in f ? 2 : "i64" in f ? 8 : 4;
      size = Math.ceil(size / width) * width;
      offsets.push(size);
      size += width;
    }
    const vtableBytes = 4 + 2 * fields.length;
    // Place the vtable so that the table after it starts 8-aligned.
    this.align(2);
    const pad = (8 - ((this.length + vtableBytes) % 8)) % 8;
    const vtable = this.#reserve(pad + vtableBytes) + pad;
    this.u16(vtable, vtableBytes);
    this.u16(vtable + 2, size);
    offsets.forEach((o, i) => this.u16(vtable + 4 + 2 * i, o));
    const table = this.#reserve(size);
    this.i32(table, table - vtable);
    const refs: [number, FbNode][] = [];
    fields.forEach((f, i) => {
      if (!f) return;
      const at = table + offsets[i];
      if ("u8" in f) this.u8(at, f.u8);
      else if ("i16" in f) this.u16(at, f.i16);
      else if ("i32" in f) this.i32(at, f.i32);
      else if ("i64" in f) this.i64(at, f.i64);
      else refs.push([at, f.ref]);
    });
    for (const [at, target] of refs) this.i32(at, this.write(target) - at);
    return table;
  }
}

/**
 * The `ARROW:schema` value (base64 of the encapsulated IPC Schema message) for `embed`'s Parquet output:
 * `path`, `hash` (UTF-8, required), `position` (Int64, required), each metadata column (UTF-8, nullable),
 * `embedding` (`FixedSizeList<float32>[d]` of required `element`).
 *
 * @param metadataColumns Metadata column names, in column order.
 * @param d Floats per embedding.
 * @returns Base64 text.
 * @example
 * ```ts
 * const entry = { key: "ARROW:schema", value: arrowSchemaBase64(["site"], 6144) };
 * ```
 */
export function arrowSchemaBase64(metadataColumns: readonly string[], d: number): string {
  if (!Number.isInteger(d) || d < 1 || d > 0x7fffffff) {
    throw new RangeError(`Cannot describe the embedding column: expected a size from 1, got ${d}`);
  }
  const utf8: FbNode = { table: [] };
  const fields = [
    field("path", false, TYPE_UTF8, utf8),
    field("hash", false, TYPE_UTF8, utf8),
    field("position", false, TYPE_INT, { table: [{ i32: 64 }, { u8: 1 }] }), // Int { bitWidth, is_signed }
    ...metadataColumns.map((c) => field(c, true, TYPE_UTF8, utf8)),
    field("embedding", false, TYPE_FIXED_SIZE_LIST, { table: [{ i32: d }] }, [
      field("element", false, TYPE_FLOATING_POINT, { table: [{ i16: PRECISION_SINGLE }] }),
    ]),
  ];
  const schema: FbNode = { table: [{ i16: 0 /* little-endian */ }, { ref: { vector: fields } }] };
  const message: FbNode = {
    table: [{ i16: METADATA_V5 }, { u8: HEADER_SCHEMA }, { ref: schema }, { i64: 0n }],
  };
  return encapsulate(flatbuffer(message));
}

/** A flatbuffer whose first 4 bytes are the uoffset of the root table `root`. */
function flatbuffer(root: FbNode): Uint8Array {
  const writer = new FbWriter();
  writer.length = 8; // root uoffset, padded so the first vtable can start anywhere
  const at = writer.write(root);
  writer.align(8);
  const bytes = writer.bytes();
  new DataView(bytes.buffer).setUint32(0, at, true);
  return bytes;
}

/** Continuation marker, padded length, flatbuffer padded to 8 bytes; base64. */
function encapsulate(fb: Uint8Array): string {
  const padded = Math.ceil(fb.length / 8) * 8;
  const out = new Uint8Array(8 + padded);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0xffffffff, true);
  view.setInt32(4, padded, true);
  out.set(fb, 8);
  let binary = "";
  for (const b of out) binary += String.fromCharCode(b);
  return btoa(binary);
}
