import assert from "node:assert/strict";
import { ENGINE, npyFiles, scoresCsv, sha256Hex } from "./export.ts";
import { ENGINE as CLI_ENGINE } from "../cli/embed.ts";
import { writeOutput } from "../cli/outputs.ts";
import { decodeNpyFloat32 } from "../cli/npy.ts";
import { withTempDir } from "../tests/_temp.ts";

Deno.test("npyFiles() writes byte for byte the .npy, .paths.txt and .json of deno task embed", async () => {
  const rows = [
    { path: "a.png", hash: "00".repeat(32), embedding: Float32Array.of(1, -2.5, 3e-8) },
    { path: "dir/b c.jpg", hash: "ff".repeat(32), embedding: Float32Array.of(0, Math.PI, -0) },
  ];
  const info = {
    model: "procedural:tiny-bit",
    architecture: "BiT units 1/1/1/1",
    preset: "bit",
    size: 64,
    embeddingSize: 3,
  };
  const files = npyFiles(rows, info);
  assert.equal(ENGINE, CLI_ENGINE);
  await withTempDir(async (dir) => {
    await writeOutput(`${dir}/e.npy`, rows.map((r, position) => ({ ...r, position, metadata: {} })), {
      ...info,
      engine: CLI_ENGINE,
    });
    assert.deepEqual(files.npy, await Deno.readFile(`${dir}/e.npy`));
    assert.equal(files.pathsTxt, await Deno.readTextFile(`${dir}/e.npy.paths.txt`));
    assert.equal(files.json, await Deno.readTextFile(`${dir}/e.npy.json`));
  });
  const back = decodeNpyFloat32(files.npy);
  assert.deepEqual(back.shape, [2, 3]);
  assert.equal(back.data[4], Math.fround(Math.PI));
});

Deno.test("scoresCsv() writes one row per image with round-trip numbers and the top class", () => {
  const csv = scoresCsv(["benign", 'says "hi", twice'], [
    { path: "a,b.png", scores: [0.25, 0.75] },
    { path: "c.png", scores: [0.9, 0.1] },
  ]);
  assert.equal(
    csv,
    'path,benign,"says ""hi"", twice",predicted\n"a,b.png",0.25,0.75,"says ""hi"", twice"\nc.png,0.9,0.1,benign\n',
  );
});

Deno.test("sha256Hex() hashes as the command line does", async () => {
  assert.equal(
    await sha256Hex(new TextEncoder().encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});
