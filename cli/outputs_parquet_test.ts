/**
 * The `.parquet` output of `deno task embed` read by independent readers: arrow-rs (through parquet-wasm)
 * must see the embedding as `FixedSizeList<float32>[D]` across row groups (restored from the `ARROW:schema` entry, as
 * pyarrow/pandas and polars do), DuckDB (native, in a child process with FFI) must read the same values.
 *
 * Both readers are development dependencies (deno.dev.json); one that cannot be loaded fails its test.
 */
import assert from "node:assert/strict";
import * as arrow from "apache-arrow";
import { parquetMetadata } from "hyparquet";
import { readParquet } from "parquet-wasm/node";
import { type EmbeddingRow, type OutputInfo, readOutput, writeOutput } from "./outputs.ts";

/**
 * The newest release whose platform packages are all published (Deno resolves every optional one). Loaded by
 * a child Deno with FFI, without this project's config, so it is named in full here.
 */
const DUCKDB = "npm:@duckdb/node-api@1.5.5-r.5";

const D = 7;
const INFO: OutputInfo = {
  model: "procedural:tiny-derm",
  architecture: "test",
  preset: "fp32",
  size: 96,
  embeddingSize: D,
  engine: "derm-webgpu test",
};

/** Four rows: a metadata key missing in one row (null), one clashing with a column (`metadata_path`). */
function sampleRows(): EmbeddingRow[] {
  return [0, 1, 2, 3].map((i): EmbeddingRow => ({
    path: `samples/img ${i}.jpg`,
    hash: (i + 10).toString(16).repeat(64).slice(0, 64),
    metadata: i === 2 ? { path: `orig/${i}` } : { site: ["arm", "leg", "", "back"][i], path: `orig/${i}` },
    position: 3 * i + 1,
    embedding: Float32Array.from({ length: D }, (_, j) => Math.sin(i * 7.3 + j) * 10 ** (j % 4 - 2)),
  }));
}

async function writeSample(): Promise<{ dir: string; file: string; rows: EmbeddingRow[] }> {
  const dir = await Deno.makeTempDir({ prefix: "derm-parquet-" });
  const rows = sampleRows();
  const file = `${dir}/x.parquet`;
  // Row groups of 3 rows, one row per commit: two groups (3 + 1), the second written by finish().
  await writeOutput(file, rows, INFO, { rowGroupRows: 3, batch: 1 });
  return { dir, file, rows };
}

Deno.test("writeOutput() .parquet: an Arrow reader (arrow-rs via parquet-wasm) sees FixedSizeList<float32>[D]", async () => {
  const { dir, file, rows } = await writeSample();
  try {
    const bytes = await Deno.readFile(file);

    // The entry is a pyarrow-style IPC schema message: continuation, length, flatbuffer padded to 8.
    const metadata = parquetMetadata(bytes.slice().buffer);
    assert.deepEqual(metadata.row_groups.map((g) => Number(g.num_rows)), [3, 1]);
    const kv = Object.fromEntries((metadata.key_value_metadata ?? []).map((e) => [e.key, e.value]));
    assert.ok(kv["ARROW:schema"], "ARROW:schema key-value entry");
    const message = Uint8Array.from(atob(kv["ARROW:schema"]!), (c) => c.charCodeAt(0));
    const view = new DataView(message.buffer);
    assert.equal(view.getUint32(0, true), 0xffffffff);
    assert.equal(8 + view.getInt32(4, true), message.length);
    assert.equal(message.length % 8, 0);

    const table = arrow.tableFromIPC(readParquet(bytes).intoIPCStream());
    const types = Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]));
    assert.deepEqual(types, {
      path: "Utf8",
      hash: "Utf8",
      position: "Int64",
      site: "Utf8",
      metadata_path: "Utf8",
      embedding: `FixedSizeList[${D}]<Float32>`,
    });
    const embeddingType = table.schema.fields.find((f) => f.name === "embedding")!.type;
    assert.ok(arrow.DataType.isFixedSizeList(embeddingType));
    assert.equal(embeddingType.listSize, D);
    const child = embeddingType.children[0].type;
    assert.ok(arrow.DataType.isFloat(child) && child.precision === arrow.Precision.SINGLE);

    assert.equal(table.numRows, rows.length);
    const embedding = table.getChild("embedding")!;
    rows.forEach((r, i) => {
      assert.equal(table.getChild("path")!.get(i), r.path);
      assert.equal(table.getChild("hash")!.get(i), r.hash);
      assert.equal(table.getChild("position")!.get(i), BigInt(r.position));
      assert.equal(table.getChild("site")!.get(i), r.metadata.site ?? null);
      assert.equal(table.getChild("metadata_path")!.get(i), r.metadata.path);
      assert.deepEqual(embedding.get(i)!.toArray(), r.embedding, `row ${i}`);
    });

    // --resume reads the same file back with hyparquet.
    const back = await readOutput(file);
    assert.deepEqual(back!.rows, rows);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Runs in a child Deno with FFI (the test runner is not given it). Prints one JSON line: the DESCRIBE
 * rows and the data, or `{ loadError }` when the package cannot be loaded.
 */
const DUCKDB_SCRIPT = `
let duckdb;
try {
  duckdb = await import(${JSON.stringify(DUCKDB)});
} catch (e) {
  console.log(JSON.stringify({ loadError: String(e?.message ?? e) }));
  Deno.exit(0);
}
const [file, d] = Deno.args;
const source = "read_parquet('" + file.replaceAll("'", "''") + "')";
const con = await (await duckdb.DuckDBInstance.create(":memory:")).connect();
const rows = async (sql) => (await con.runAndReadAll(sql)).getRowObjectsJson();
console.log(JSON.stringify({
  version: (await rows("SELECT version() AS v"))[0].v,
  describe: await rows("DESCRIBE SELECT * FROM " + source),
  data: await rows("SELECT path, hash, site, metadata_path, embedding, embedding::FLOAT[" + d + "] AS fixed, " +
    "typeof(embedding::FLOAT[" + d + "]) AS fixed_type FROM " + source),
}));
`;

Deno.test("writeOutput() .parquet: DuckDB reads the columns and the float32 embeddings", async () => {
  const { dir, file, rows } = await writeSample();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-lock",
        "--no-config",
        "--allow-read",
        "--allow-env",
        "--allow-ffi",
        "--allow-sys",
        "-",
      ]
        .concat([file, String(D)]),
      cwd: dir,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(DUCKDB_SCRIPT));
    await writer.close();
    const { code, stdout, stderr } = await child.output();
    const err = new TextDecoder().decode(stderr);
    const lastLine = new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "";
    assert.equal(code, 0, `DuckDB child failed:\n${err}`);
    const out = JSON.parse(lastLine);
    assert.equal(out.loadError, undefined, `cannot load ${DUCKDB}`);

    const types = Object.fromEntries(
      (out.describe as { column_name: string; column_type: string }[]).map((
        c,
      ) => [c.column_name, c.column_type]),
    );
    console.log(`DuckDB ${out.version} DESCRIBE: ${JSON.stringify(types)}`);
    assert.equal(types.path, "VARCHAR");
    assert.equal(types.hash, "VARCHAR");
    assert.equal(types.site, "VARCHAR");
    assert.equal(types.metadata_path, "VARCHAR");
    // DuckDB (through 1.5.5) ignores ARROW:schema and reads any Parquet LIST, even one it wrote from a
    // FLOAT[n] ARRAY itself, as FLOAT[]; accept FLOAT[D] should it start honouring the entry.
    assert.match(types.embedding, new RegExp(`^FLOAT\\[(${D})?\\]$`));

    const data = out.data as Record<string, unknown>[];
    assert.equal(data.length, rows.length);
    rows.forEach((r, i) => {
      const got = data[i];
      assert.equal(got.path, r.path);
      assert.equal(got.hash, r.hash);
      assert.equal(got.site, r.metadata.site ?? null);
      assert.equal(got.metadata_path, r.metadata.path);
      assert.equal(got.fixed_type, `FLOAT[${D}]`);
      // FLOAT values widen to doubles exactly: the float32 bits match.
      assert.deepEqual(Float32Array.from(got.embedding as number[]), r.embedding, `row ${i}`);
      assert.deepEqual(got.fixed, got.embedding);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
