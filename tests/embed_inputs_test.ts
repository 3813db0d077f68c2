/**
 * Pure tests of `deno task embed`'s helpers: input collection (folders, globs, lists, CSV, duplicates),
 * EXIF orientation, and the output writers read back by independent parsers.
 */
import assert from "node:assert/strict";
import { collectInputs, globToRegExp, parseCsv } from "../cli/inputs.ts";
import { applyOrientation, readExifOrientation, withExifOrientation } from "../cli/exif.ts";
import { type EmbeddingRow, readOutput, writeOutput } from "../cli/outputs.ts";
import { parquetMetadata, parquetReadObjects } from "hyparquet";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "derm-embed-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("collectInputs() expands folders, globs and lists in a stable order, each path once", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/b/c`, { recursive: true });
    for (const f of ["a.png", "b/z.JPG", "b/c/y.jpeg", "b/c/notes.txt", "b/a.png"]) {
      await Deno.writeFile(`${dir}/${f}`, new Uint8Array([1]));
    }
    await Deno.writeTextFile(`${dir}/list.txt`, "# comment\nb/a.png\n\nmissing.png\n");
    await Deno.writeTextFile(
      `${dir}/labels.csv`,
      'path,diagnosis,note\nb/c/y.jpeg,nevus,"says ""hi"", twice"\nother.png,melanoma,\n',
    );
    const got = await collectInputs([`${dir}/b`, `${dir}/a.png`, `${dir}/b/a.png`, `${dir}/**/*.png`], {
      lists: [`${dir}/list.txt`, `${dir}/labels.csv`],
    });
    assert.deepEqual(got.map((g) => g.path.slice(dir.length + 1)), [
      "b/a.png",
      "b/c/y.jpeg",
      "b/z.JPG",
      "a.png",
      "missing.png",
      "other.png",
    ]);
    assert.deepEqual(got[5].metadata, { diagnosis: "melanoma", note: "" });
    // b/c/y.jpeg came first from the folder, without metadata: the first occurrence wins.
    assert.deepEqual(got[1].metadata, {});
    const csv = await collectInputs([], { lists: [`${dir}/labels.csv`] });
    assert.deepEqual(csv[0].metadata, { diagnosis: "nevus", note: 'says "hi", twice' });
    await assert.rejects(collectInputs([`${dir}/*.gif`]), /no image matches/);
  });
});

Deno.test("globToRegExp() and parseCsv() handle the usual forms", () => {
  assert.ok(globToRegExp("a/**/*.png").test("a/x/y/z.png"));
  assert.ok(globToRegExp("a/**/*.png").test("a/z.png"));
  assert.ok(!globToRegExp("a/*.png").test("a/x/z.png"));
  assert.ok(globToRegExp("a/img_?[0-9].jpg").test("a/img_x7.jpg"));
  assert.deepEqual(parseCsv('a,b\r\n"1\n2",3\r\n'), [["a", "b"], ["1\n2", "3"]]);
});

Deno.test("readExifOrientation() finds the tag a test splices in; applyOrientation() turns all 8 ways", () => {
  const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xdb, 0, 4, 0, 0, 0xff, 0xd9]);
  assert.equal(readExifOrientation(jpeg), 1);
  for (let o = 1; o <= 8; o++) assert.equal(readExifOrientation(withExifOrientation(jpeg, o)), o);
  // 3 x 2 image, pixel value = its index: 0 1 2 / 3 4 5.
  const rgba = new Uint8Array(24);
  for (let i = 0; i < 6; i++) rgba[i * 4] = i;
  const image = { width: 3, height: 2, rgba, format: "jpeg" as const };
  const shown = (o: number) => {
    const r = applyOrientation(image, o);
    return { w: r.width, px: Array.from({ length: 6 }, (_, i) => r.rgba[i * 4]) };
  };
  assert.deepEqual(shown(1), { w: 3, px: [0, 1, 2, 3, 4, 5] });
  assert.deepEqual(shown(2), { w: 3, px: [2, 1, 0, 5, 4, 3] });
  assert.deepEqual(shown(3), { w: 3, px: [5, 4, 3, 2, 1, 0] });
  assert.deepEqual(shown(4), { w: 3, px: [3, 4, 5, 0, 1, 2] });
  assert.deepEqual(shown(5), { w: 2, px: [0, 3, 1, 4, 2, 5] });
  assert.deepEqual(shown(6), { w: 2, px: [3, 0, 4, 1, 5, 2] }); // rotated 90° clockwise
  assert.deepEqual(shown(7), { w: 2, px: [5, 2, 4, 1, 3, 0] });
  assert.deepEqual(shown(8), { w: 2, px: [2, 5, 1, 4, 0, 3] }); // rotated 90° anticlockwise
});

Deno.test("writeOutput() writes every format so that independent readers get the rows back", async () => {
  await withTempDir(async (dir) => {
    const info = {
      model: "m.safetensors",
      architecture: "BiT",
      preset: "derm",
      size: 96,
      embeddingSize: 3,
      engine: "derm-webgpu test",
    };
    const rows: EmbeddingRow[] = [
      { path: "a.png", hash: "aa", metadata: { dx: "nevus" }, embedding: new Float32Array([0.1, -2, 3e-8]) },
      { path: "b.jpg", hash: "bb", metadata: {}, embedding: new Float32Array([1, 2, 3]) },
    ];
    for (const ext of ["npy", "jsonl", "parquet", "safetensors"]) {
      const out = `${dir}/e.${ext}`;
      await writeOutput(out, rows, info);
      const back = await readOutput(out);
      assert.deepEqual(back!.rows, rows, ext);
    }
    // Independent readers: hyparquet, JSON, the .npy header by hand, the safetensors header by hand.
    const pq = (await Deno.readFile(`${dir}/e.parquet`)).buffer;
    const objects = await parquetReadObjects({ file: pq });
    assert.deepEqual(objects[0], {
      path: "a.png",
      hash: "aa",
      dx: "nevus",
      embedding: [...rows[0].embedding],
    });
    assert.equal(objects[1].dx, null);
    const kv = Object.fromEntries(parquetMetadata(pq).key_value_metadata!.map((e) => [e.key, e.value]));
    assert.equal(kv.input_size, "96");
    const line = JSON.parse((await Deno.readTextFile(`${dir}/e.jsonl`)).split("\n")[0]);
    assert.equal(line.engine, "derm-webgpu test");
    assert.deepEqual(Float32Array.from(line.embedding), rows[0].embedding);
    const npy = await Deno.readFile(`${dir}/e.npy`);
    const headerLength = npy[8] | (npy[9] << 8);
    assert.match(new TextDecoder().decode(npy.subarray(10, 10 + headerLength)), /'shape': \(2, 3\)/);
    assert.deepEqual(
      new Float32Array(npy.slice(10 + headerLength).buffer),
      new Float32Array([...rows[0].embedding, 1, 2, 3]),
    );
    assert.equal(await Deno.readTextFile(`${dir}/e.npy.paths.txt`), "a.png\nb.jpg\n");
    const st = await Deno.readFile(`${dir}/e.safetensors`);
    const n = Number(new DataView(st.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(st.subarray(8, 8 + n)));
    assert.deepEqual(header.embeddings.shape, [2, 3]);
    assert.deepEqual(JSON.parse(header.__metadata__.paths), ["a.png", "b.jpg"]);
    assert.equal((8 + n) % 8, 0);
  });
});
