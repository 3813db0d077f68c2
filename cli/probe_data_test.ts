import assert from "node:assert/strict";
import { join } from "node:path";
import { joinLabels, labelTask, readEmbeddings, readLabels } from "./probe_data.ts";
import { type EmbeddingRow, writeOutput } from "./outputs.ts";
import { encodeNpyFloat32 } from "./npy.ts";
import { withTempDir } from "../tests/_temp.ts";
import { testdataPath } from "../tests/_testdata.ts";

const INFO = {
  model: "procedural:tiny-derm",
  architecture: "BiT units 1/1/1/1",
  preset: "derm",
  size: 96,
  embeddingSize: 3,
  engine: "derm-webgpu test",
};

const ROWS: EmbeddingRow[] = [
  { path: "img/a.png", hash: "aa", metadata: { dx: "x" }, position: 0, embedding: Float32Array.of(1, 2, 3) },
  { path: "img/b.png", hash: "bb", metadata: {}, position: 1, embedding: Float32Array.of(-1, 0.5, 0) },
];

Deno.test("readEmbeddings() reads every format embed writes, with the model's facts", async () => {
  await withTempDir(async (dir) => {
    for (const ext of ["npy", "jsonl", "parquet", "safetensors"]) {
      const file = join(dir, `e.${ext}`);
      await writeOutput(file, ROWS, INFO);
      const e = await readEmbeddings(file);
      assert.deepEqual(e.paths, ["img/a.png", "img/b.png"], ext);
      assert.equal(e.d, 3);
      assert.deepEqual(Array.from(e.data), [1, 2, 3, -1, 0.5, 0], ext);
      assert.deepEqual(e.identity, {
        model: "procedural:tiny-derm",
        architecture: "BiT units 1/1/1/1",
        preset: "derm",
        input_size: 96,
        embedding_size: 3,
      }, ext);
    }
  });
});

Deno.test("readEmbeddings() reads a .npy with only its paths file, and a safetensors file without hashes (testdata/probe)", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "e.npy");
    await Deno.writeFile(file, encodeNpyFloat32(ROWS.map((r) => r.embedding), 3));
    await Deno.writeTextFile(`${file}.paths.txt`, "img/a.png\nimg/b.png\n");
    const e = await readEmbeddings(file);
    assert.deepEqual(e.paths, ["img/a.png", "img/b.png"]);
    assert.deepEqual(e.identity, {
      model: null,
      architecture: null,
      preset: null,
      input_size: null,
      embedding_size: 3,
    });
  });
  const fixture = await readEmbeddings(testdataPath("probe/embeddings.safetensors"));
  assert.equal(fixture.paths.length, 441);
  assert.equal(fixture.d, 1024);
  assert.match(fixture.identity.model!, /^procedural:tiny-derm/);
});

Deno.test("readEmbeddings() names the rows that hold NaN or infinity", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "e.npy");
    const rows = [...ROWS, { ...ROWS[0], path: "img/c.png", embedding: Float32Array.of(0, NaN, 1) }];
    await writeOutput(file, rows, INFO);
    await assert.rejects(() => readEmbeddings(file), /1 row holds NaN or infinity: img\/c.png/);
    const st = join(dir, "e.safetensors");
    await writeOutput(
      st,
      rows.map((r, i) => (i === 0 ? { ...r, embedding: Float32Array.of(Infinity, 0, 0) } : r)),
      INFO,
    );
    await assert.rejects(() => readEmbeddings(st), /2 rows hold NaN or infinity: img\/a.png, img\/c.png/);
  });
});

Deno.test("readEmbeddings() refuses a missing file, an unknown extension, a .npy without sidecars and a broken header", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      () => readEmbeddings(join(dir, "none.npy")),
      /Cannot read embeddings ".*none.npy": no such file/,
    );
    await assert.rejects(
      () => readEmbeddings(join(dir, "e.csv")),
      /expected a .npy, .jsonl, .parquet or .safetensors file/,
    );
    const npy = join(dir, "e.npy");
    await Deno.writeFile(npy, encodeNpyFloat32(ROWS.map((r) => r.embedding), 3));
    await assert.rejects(() => readEmbeddings(npy), /e.npy.json" or ".*e.npy.paths.txt" beside it/);
    const st = join(dir, "e.safetensors");
    await Deno.writeFile(st, Uint8Array.of(200, 0, 0, 0, 0, 0, 0, 0, 123));
    await assert.rejects(() => readEmbeddings(st), /header of 200 bytes runs past the end/);
  });
});

async function labelsFile(dir: string, text: string): Promise<string> {
  const file = join(dir, "labels.csv");
  await Deno.writeTextFile(file, text);
  return file;
}

Deno.test("readLabels() takes the path column by preference, relative to the CSV's folder, trims cells and keeps the first of a repeated path", async () => {
  await withTempDir(async (dir) => {
    const file = await labelsFile(
      dir,
      'image,file,dx\r\nx.png,img/a.png," benign "\r\ny.png,img/b.png,\r\nz.png,img/a.png,malignant\r\n',
    );
    const t = await readLabels(file);
    assert.equal(t.pathColumn, "file"); // path, then file, filename, image
    assert.equal(t.rows.length, 2);
    assert.equal(t.duplicates, 1);
    assert.equal(t.rows[0].key, join(dir, "img/a.png"));
    assert.equal(t.rows[0].values.dx, "benign");
    await Deno.writeTextFile(file, "name,dx\na.png,x\n");
    await assert.rejects(
      () => readLabels(file),
      /expected a column named path, file, filename, image, got name, dx/,
    );
  });
});

Deno.test("joinLabels() takes relative embedding paths from the working directory, or from the embeddings' folder when that matches more", async () => {
  await withTempDir(async (dir) => {
    const file = await labelsFile(dir, "path,dx\nimg/a.png,benign\nimg/b.png,malignant\nimg/c.png,benign\n");
    const labels = await readLabels(file);
    const embeddings = await (async () => {
      const out = join(dir, "e.safetensors");
      await writeOutput(out, ROWS, INFO);
      return readEmbeddings(out);
    })();
    // Run from dir: "img/a.png" is dir/img/a.png.
    const fromCwd = joinLabels(embeddings, labels, dir);
    assert.equal(fromCwd.base, "working directory");
    assert.deepEqual(fromCwd.pairs, [{ row: 0, label: 0 }, { row: 1, label: 1 }]);
    assert.deepEqual(fromCwd.missingEmbeddings, ["img/c.png"]);
    assert.equal(fromCwd.unmatchedEmbeddings, 0);
    // Run from elsewhere: the embeddings file's folder (dir) gives the matches.
    const elsewhere = joinLabels(embeddings, labels, "/");
    assert.equal(elsewhere.base, "embeddings folder");
    assert.equal(elsewhere.pairs.length, 2);
    // No common path: a clear error with an example of each side.
    await Deno.writeTextFile(file, "path,dx\nother/a.png,benign\n");
    assert.throws(
      () =>
        joinLabels(embeddings, {
          ...labels,
          rows: [{ path: "other/a.png", key: "/nowhere/a.png", values: {} }],
        }, dir),
      /no image path is in both \(embeddings: "img\/a.png".*labels: "other\/a.png"/,
    );
  });
});

Deno.test("labelTask() sorts the classes, skips and counts unlabelled rows, and refuses a missing column or a single class", async () => {
  await withTempDir(async (dir) => {
    const file = await labelsFile(
      dir,
      "path,dx,one\nimg/a.png,malignant,x\nimg/b.png,,x\nimg/c.png,benign,x\n",
    );
    const labels = await readLabels(file);
    const out = join(dir, "e.safetensors");
    await writeOutput(out, [...ROWS, { ...ROWS[0], path: "img/c.png" }], INFO);
    const j = joinLabels(await readEmbeddings(out), labels, dir);
    const task = labelTask(j, labels, "dx");
    assert.deepEqual(task.classes, ["benign", "malignant"]);
    assert.deepEqual(task.rows, [0, 2]);
    assert.deepEqual(Array.from(task.y), [1, 0]);
    assert.equal(task.unlabelled, 1);
    assert.throws(
      () => labelTask(j, labels, "nope"),
      /Cannot use --label "nope": ".*labels.csv" has no such column \(columns: path, dx, one\)/,
    );
    assert.throws(() => labelTask(j, labels, "one"), /expected two or more classes, got only "x"/);
  });
});
