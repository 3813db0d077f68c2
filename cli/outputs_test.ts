import assert from "node:assert/strict";
import { parquetMetadata, parquetReadObjects } from "hyparquet";
import { type EmbeddingRow, readOutput, writeOutput } from "./outputs.ts";
import { withTempDir } from "../tests/_temp.ts";

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
      {
        path: "a.png",
        hash: "aa",
        metadata: { dx: "nevus" },
        position: 0,
        embedding: new Float32Array([0.1, -2, 3e-8]),
      },
      { path: "b.jpg", hash: "bb", metadata: {}, position: 2, embedding: new Float32Array([1, 2, 3]) },
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
      position: 0n,
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
