import assert from "node:assert/strict";
import { parquetMetadata, parquetReadObjects } from "hyparquet";
import { encodeStruct } from "./thrift_compact.ts";
import { encodeRowGroup, footerEnd, footerHead, footerTail, PAR1 } from "./parquet_encode.ts";
import { concatBytes } from "./output_format.ts";
import type { EmbeddingRow } from "./output_rows.ts";

Deno.test("encodeStruct() writes Thrift compact field headers, zigzag varints, long deltas and lists", () => {
  // i32 2 (field 1), binary "x" (field 4), i64 -3 (field 20: delta over 15), list of 2 i32 (field 21).
  const bytes = encodeStruct([
    [1, { i32: 2 }],
    [4, { binary: "x" }],
    [20, { i64: -3 }],
    [21, { list: { type: 5, items: [{ i32: 1 }, { i32: 300 }] } }],
    [22, { bool: false }],
  ]);
  assert.deepEqual([...bytes], [
    0x15,
    0x04,
    0x38,
    0x01,
    0x78,
    0x06,
    0x28,
    0x05,
    0x19,
    0x25,
    0x02,
    0xd8,
    0x04,
    0x12,
    0x00,
  ]);
  assert.throws(() => encodeStruct([[2, { i32: 1 }], [1, { i32: 1 }]]), RangeError);
});

/** A file of `groups` encoded one by one, as the appending writer does. */
function file(groups: EmbeddingRow[][], d: number, pageBytes: number): Uint8Array {
  const layout = {
    metadata: [{ key: "site", column: "site" }, { key: "path", column: "metadata_path" }],
    embeddingSize: d,
  };
  const parts = [PAR1];
  let offset = 4;
  const entries = [];
  for (const g of groups) {
    const { data, entry } = encodeRowGroup(g, layout, { offset, pageBytes });
    parts.push(data);
    offset += data.length;
    entries.push(entry);
  }
  const head = footerHead(layout, groups.flat().length, groups.length);
  const tail = footerTail([["k", "v"]], "test");
  const footer = concatBytes([head, ...entries, tail]);
  return concatBytes([...parts, footer, footerEnd(footer.length)]);
}

Deno.test("encodeRowGroup() pages and groups read back by hyparquet, nulls and D = 1 included", async () => {
  for (const d of [1, 7]) {
    const rows: EmbeddingRow[] = Array.from({ length: 23 }, (_, i): EmbeddingRow => ({
      path: `dir/ïmg ${i}.png`,
      hash: i.toString(16).padStart(64, "0"),
      position: 1000 + 3 * i,
      metadata: (i % 4 === 0 ? {} : i % 4 === 1 ? { site: `s${i}` } : { site: "", path: `o/${i}` }) as Record<
        string,
        string
      >,
      embedding: Float32Array.from({ length: d }, (_, j) => (i - j) / 7),
    }));
    // Pages of at most 40 value bytes: many pages per chunk, each ending on a row.
    const bytes = file([rows.slice(0, 10), rows.slice(10, 20), rows.slice(20)], d, 40);
    const metadata = parquetMetadata(bytes.buffer as ArrayBuffer);
    assert.deepEqual(metadata.row_groups.map((g) => Number(g.num_rows)), [10, 10, 3]);
    assert.equal(Number(metadata.num_rows), 23);
    const objects = await parquetReadObjects({ file: bytes.buffer as ArrayBuffer });
    assert.deepEqual(
      objects.map((o) => [o.path, o.hash, Number(o.position), o.site, o.metadata_path]),
      rows.map((r) => [r.path, r.hash, r.position, r.metadata.site ?? null, r.metadata.path ?? null]),
    );
    objects.forEach((o, i) =>
      assert.deepEqual(Float32Array.from(o.embedding as number[]), rows[i].embedding)
    );
  }
});

Deno.test("encodeRowGroup() refuses a row of the wrong embedding size", () => {
  const row = { path: "a", hash: "h", position: 0, metadata: {}, embedding: new Float32Array(3) };
  assert.throws(() => encodeRowGroup([row], { metadata: [], embeddingSize: 4 }, { offset: 4 }), TypeError);
});
