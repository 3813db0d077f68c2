/**
 * A minimal Parquet encoder for `embed`'s rows, written so that a file can grow one row group at a time:
 * each row group is encoded on its own (its data pages, and its `RowGroup` footer entry as Thrift bytes),
 * and the footer is assembled at the end from those entries, which the writer keeps on disk.
 *
 * File layout (Apache Parquet format): `PAR1`, row groups, `FileMetaData` (Thrift compact), its length
 * (u32 LE), `PAR1`. Every column chunk is data pages v1, PLAIN encoding, uncompressed, no dictionary and no
 * statistics; pages end on row boundaries and hold at most `pageBytes` of values (at least one row).
 *
 * Schema (the leaves in column order):
 * - `path`, `hash`: REQUIRED BYTE_ARRAY, UTF8 (values: u32 length + bytes)
 * - `position`: REQUIRED INT64 (values: i64 LE)
 * - one OPTIONAL BYTE_ARRAY UTF8 column per metadata key (definition levels, bit width 1, then the
 *   values of the non-null rows)
 * - `embedding`: REQUIRED group LIST { REPEATED group `list` { REQUIRED FLOAT `element` } }: max repetition
 *   and definition level 1; repetition levels 0 then D - 1 ones per row, definition levels all 1, values
 *   float32 LE.
 * Levels are the RLE/bit-packing hybrid, RLE runs only, each level stream prefixed by its u32 byte length.
 * @module
 */
import { ByteSink, CT, encodeStruct, fieldHeader, listHeader, type ThriftFields } from "./thrift_compact.ts";
import type { EmbeddingRow, MetadataColumn } from "./output_rows.ts";

/** The Parquet magic, at both ends of the file. */
export const PAR1: Uint8Array = new TextEncoder().encode("PAR1");

/** Largest PLAIN values section of one data page, by default. */
export const DEFAULT_PAGE_BYTES = 1 << 20;

// parquet.thrift enums.
const TYPE_INT64 = 2;
const TYPE_FLOAT = 4;
const TYPE_BYTE_ARRAY = 6;
const REQUIRED = 0;
const OPTIONAL = 1;
const REPEATED = 2;
const CONVERTED_UTF8 = 0;
const CONVERTED_LIST = 3;
const ENCODING_PLAIN = 0;
const ENCODING_RLE = 3;
const PAGE_DATA = 0;
const CODEC_UNCOMPRESSED = 0;

/** What fixes a file's columns. */
export interface ParquetLayout {
  /** Metadata columns, in order. */
  readonly metadata: readonly MetadataColumn[];
  /** Floats per embedding (D). */
  readonly embeddingSize: number;
}

/** One encoded row group. */
export interface EncodedRowGroup {
  /** The column chunks' bytes, to be written at the `offset` given. */
  readonly data: Uint8Array;
  /** The `RowGroup` struct for the footer (Thrift compact bytes). */
  readonly entry: Uint8Array;
}

const enc = new TextEncoder();

/** RLE runs (bit width 1) of `count` copies of `value`, appended to `sink`. */
function rleRun(sink: ByteSink, count: number, value: number): void {
  if (count === 0) return;
  sink.varint(count * 2);
  sink.byte(value);
}

/** A level stream: u32 byte length, then the runs. */
function levels(runs: (sink: ByteSink) => void): Uint8Array {
  const body = new ByteSink();
  runs(body);
  const out = new ByteSink();
  out.u32(body.length);
  out.bytes(body.toBytes());
  return out.toBytes();
}

/** Byte arrays appended one after another, joined once (no reallocation as the group grows). */
class Parts {
  #parts: Uint8Array[] = [];
  length = 0;

  bytes(b: Uint8Array): void {
    this.#parts.push(b);
    this.length += b.length;
  }

  join(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.#parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/** One page: its header (Thrift) and body. */
function page(sink: Parts, numValues: number, body: Uint8Array): void {
  const header = encodeStruct([
    [1, { i32: PAGE_DATA }],
    [2, { i32: body.length }],
    [3, { i32: body.length }],
    [5, {
      struct: [
        [1, { i32: numValues }],
        [2, { i32: ENCODING_PLAIN }],
        [3, { i32: ENCODING_RLE }],
        [4, { i32: ENCODING_RLE }],
      ],
    }],
  ]);
  sink.bytes(header);
  sink.bytes(body);
}

/** Splits `rows` into page ranges whose values stay under `pageBytes` (at least one row each). */
function pageRanges(count: number, bytesOf: (i: number) => number, pageBytes: number): [number, number][] {
  const ranges: [number, number][] = [];
  let start = 0;
  let size = 0;
  for (let i = 0; i < count; i++) {
    const b = bytesOf(i);
    if (i > start && size + b > pageBytes) {
      ranges.push([start, i]);
      start = i;
      size = 0;
    }
    size += b;
  }
  if (count > start || count === 0) ranges.push([start, count]);
  return ranges;
}

interface ChunkMeta {
  type: number;
  path: string[];
  levels: boolean;
  numValues: number;
  size: number;
  offset: number;
}

/**
 * Encodes `rows` as one row group whose first byte will sit at file offset `offset`.
 *
 * @param rows The rows (at least one).
 * @param layout The file's columns.
 * @param options `offset`: where the group starts in the file; `pageBytes`: page size limit.
 * @returns The bytes to write and the group's footer entry.
 */
export function encodeRowGroup(
  rows: readonly EmbeddingRow[],
  layout: ParquetLayout,
  options: { offset: number; pageBytes?: number },
): EncodedRowGroup {
  const d = layout.embeddingSize;
  const pageBytes = options.pageBytes ?? DEFAULT_PAGE_BYTES;
  for (const r of rows) {
    if (r.embedding.length !== d) {
      throw new TypeError(
        `Cannot write "${r.path}" to Parquet: expected ${d} floats, got ${r.embedding.length}`,
      );
    }
  }
  const sink = new Parts();
  const chunks: ChunkMeta[] = [];
  const chunk = (meta: Omit<ChunkMeta, "size" | "offset">, write: () => void) => {
    const start = sink.length;
    write();
    chunks.push({ ...meta, offset: options.offset + start, size: sink.length - start });
  };
  const strings = (values: readonly string[]) => values.map((v) => enc.encode(v));
  const byteArrayColumn = (name: string, values: readonly Uint8Array[]) =>
    chunk({ type: TYPE_BYTE_ARRAY, path: [name], levels: false, numValues: values.length }, () => {
      for (const [a, b] of pageRanges(values.length, (i) => 4 + values[i].length, pageBytes)) {
        const body = new ByteSink();
        for (let i = a; i < b; i++) {
          body.u32(values[i].length);
          body.bytes(values[i]);
        }
        page(sink, b - a, body.toBytes());
      }
    });

  byteArrayColumn("path", strings(rows.map((r) => r.path)));
  byteArrayColumn("hash", strings(rows.map((r) => r.hash)));
  chunk({ type: TYPE_INT64, path: ["position"], levels: false, numValues: rows.length }, () => {
    for (const [a, b] of pageRanges(rows.length, () => 8, pageBytes)) {
      const body = new Uint8Array(8 * (b - a));
      const view = new DataView(body.buffer);
      for (let i = a; i < b; i++) view.setBigInt64(8 * (i - a), BigInt(rows[i].position), true);
      page(sink, b - a, body);
    }
  });
  for (const { key, column } of layout.metadata) {
    const values = rows.map((r) => (key in r.metadata ? enc.encode(r.metadata[key]) : undefined));
    chunk({ type: TYPE_BYTE_ARRAY, path: [column], levels: true, numValues: rows.length }, () => {
      for (const [a, b] of pageRanges(rows.length, (i) => 4 + (values[i]?.length ?? 0), pageBytes)) {
        const def = levels((s) => {
          let run = 0;
          let value = values[a] ? 1 : 0;
          for (let i = a; i < b; i++) {
            const v = values[i] ? 1 : 0;
            if (v !== value) {
              rleRun(s, run, value);
              value = v;
              run = 0;
            }
            run++;
          }
          rleRun(s, run, value);
        });
        const body = new ByteSink();
        body.bytes(def);
        for (let i = a; i < b; i++) {
          const v = values[i];
          if (!v) continue;
          body.u32(v.length);
          body.bytes(v);
        }
        page(sink, b - a, body.toBytes());
      }
    });
  }
  chunk({
    type: TYPE_FLOAT,
    path: ["embedding", "list", "element"],
    levels: true,
    numValues: rows.length * d,
  }, () => {
    for (const [a, b] of pageRanges(rows.length, () => 4 * d, pageBytes)) {
      const n = b - a;
      const rep = levels((s) => {
        if (d === 1) rleRun(s, n, 0);
        else {
          for (let i = 0; i < n; i++) {
            rleRun(s, 1, 0);
            rleRun(s, d - 1, 1);
          }
        }
      });
      const def = levels((s) => rleRun(s, n * d, 1));
      const body = new Uint8Array(rep.length + def.length + 4 * d * n);
      body.set(rep);
      body.set(def, rep.length);
      // float32 bytes as they are in memory: little-endian on every platform Deno runs on.
      let o = rep.length + def.length;
      for (let i = a; i < b; i++, o += 4 * d) {
        const e = rows[i].embedding;
        body.set(new Uint8Array(e.buffer, e.byteOffset, 4 * d), o);
      }
      page(sink, n * d, body);
    }
  });

  const total = sink.length;
  const entry = encodeStruct([
    [1, {
      list: {
        type: CT.STRUCT,
        items: chunks.map((c) => ({
          struct: [
            [2, { i64: c.offset }],
            [3, {
              struct: [
                [1, { i32: c.type }],
                [2, {
                  list: {
                    type: CT.I32,
                    items: (c.levels ? [ENCODING_PLAIN, ENCODING_RLE] : [ENCODING_PLAIN]).map((e) => ({
                      i32: e,
                    })),
                  },
                }],
                [3, { list: { type: CT.BINARY, items: c.path.map((p) => ({ binary: p })) } }],
                [4, { i32: CODEC_UNCOMPRESSED }],
                [5, { i64: c.numValues }],
                [6, { i64: c.size }],
                [7, { i64: c.size }],
                [9, { i64: c.offset }],
              ],
            }],
          ] as ThriftFields,
        })),
      },
    }],
    [2, { i64: total }],
    [3, { i64: rows.length }],
    [5, { i64: options.offset }],
    [6, { i64: total }],
  ]);
  return { data: sink.join(), entry };
}

/** The schema elements of the footer. */
function schemaElements(layout: ParquetLayout): ThriftFields[] {
  const utf8 = (name: string, repetition: number): ThriftFields => [
    [1, { i32: TYPE_BYTE_ARRAY }],
    [3, { i32: repetition }],
    [4, { binary: name }],
    [6, { i32: CONVERTED_UTF8 }],
    [10, { struct: [[1, { struct: [] }]] }], // LogicalType STRING
  ];
  return [
    [[4, { binary: "schema" }], [5, { i32: 4 + layout.metadata.length }]],
    utf8("path", REQUIRED),
    utf8("hash", REQUIRED),
    [[1, { i32: TYPE_INT64 }], [3, { i32: REQUIRED }], [4, { binary: "position" }]],
    ...layout.metadata.map(({ column }) => utf8(column, OPTIONAL)),
    [
      [3, { i32: REQUIRED }],
      [4, { binary: "embedding" }],
      [5, { i32: 1 }],
      [6, { i32: CONVERTED_LIST }],
      [10, { struct: [[3, { struct: [] }]] }], // LogicalType LIST
    ],
    [[3, { i32: REPEATED }], [4, { binary: "list" }], [5, { i32: 1 }]],
    [[1, { i32: TYPE_FLOAT }], [3, { i32: REQUIRED }], [4, { binary: "element" }]],
  ];
}

/**
 * The footer's bytes before the row-group entries: `FileMetaData` fields 1 to 3 and the header of the
 * `row_groups` list (field 4); the entries follow as they are, then {@linkcode footerTail}.
 *
 * @param layout The columns.
 * @param numRows Rows in the file.
 * @param numGroups Row groups in the file.
 */
export function footerHead(layout: ParquetLayout, numRows: number, numGroups: number): Uint8Array {
  const sink = new ByteSink();
  fieldHeader(sink, 1, 1, CT.I32);
  sink.zigzag(2); // version
  fieldHeader(sink, 1, 2, CT.LIST);
  const schema = schemaElements(layout);
  listHeader(sink, CT.STRUCT, schema.length);
  for (const element of schema) sink.bytes(encodeStruct(element));
  fieldHeader(sink, 1, 3, CT.I64);
  sink.zigzag(numRows);
  fieldHeader(sink, 1, 4, CT.LIST);
  listHeader(sink, CT.STRUCT, numGroups);
  return sink.toBytes();
}

/** The footer after the row-group entries: key-value metadata (field 5), `created_by` (6), stop. */
export function footerTail(keyValues: readonly (readonly [string, string])[], createdBy: string): Uint8Array {
  const sink = new ByteSink();
  fieldHeader(sink, 1, 5, CT.LIST);
  listHeader(sink, CT.STRUCT, keyValues.length);
  for (const [key, value] of keyValues) {
    sink.bytes(encodeStruct([[1, { binary: key }], [2, { binary: value }]]));
  }
  fieldHeader(sink, 1, 6, CT.BINARY);
  const b = enc.encode(createdBy);
  sink.varint(b.length);
  sink.bytes(b);
  sink.byte(0);
  return sink.toBytes();
}

/** The last 8 bytes: the footer's length and `PAR1`. */
export function footerEnd(footerLength: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setUint32(0, footerLength, true);
  out.set(PAR1, 4);
  return out;
}
