/**
 * Model parity for Gröger et al.'s models: every case of testdata/groeger/cases.json against its float64
 * reference, within max(2 x PyTorch float32's own error, 2e-6).
 *
 * Per case: the preprocessing (Pillow's resize and crop) must give `input_u8` byte for byte; the reference
 * input through the network (tiny cases: every intermediate too, so a failure names the layer); and the
 * image file through the whole pipeline (decode, Pillow resize on the CPU, normalisation on the GPU,
 * network). Full-size models (224) are the slow tier.
 */
import assert from "node:assert/strict";
import { gpuTest } from "./_gpu.ts";
import {
  groegerBound,
  groegerCases,
  groegerCaseWeights,
  groegerImagePath,
  readGroegerReference,
} from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import { createEmbedder } from "../models/registry.ts";
import { decodeImage } from "../engine/image_decode.ts";
import { cpuPreprocess } from "../engine/input_stage.ts";
import { testdataPath } from "./_testdata.ts";
import { fixtureCheckpointFile } from "./_fixtures.ts";
import { checkpointStateDict, pytorchFromBytes } from "../weights/pytorch.ts";

const CHECKPOINTS: Record<string, string[]> = {
  resnet: ["stem", "layer1", "layer2", "layer3", "layer4"],
  vit: ["tokens", "block0", "block1", "block2", "final_norm"],
};

for (const c of groegerCases()) {
  gpuTest(`groeger parity: ${c.name} matches the float64 reference`, async (gpu) => {
    const ref = readGroegerReference(c.name);
    const bound = groegerBound(ref.metadata);
    const want = ref.tensors.get("embedding_f64")!.data;
    const imageBytes = await Deno.readFile(groegerImagePath(c));
    // Pillow's resize and crop, byte for byte.
    const embedder = await createEmbedder(groegerCaseWeights(c), {
      gpu,
      size: c.size,
      resize: c.resize,
      vitBlocks: c.vit_blocks,
      maxBatch: 1,
    });
    try {
      const u8 = cpuPreprocess(await decodeImage(imageBytes, c.image), embedder.preprocessing);
      const wantU8 = ref.tensors.get("input_u8")!.data;
      const gotU8 = Float64Array.from(
        { length: c.size * c.size * 3 },
        (_, i) => u8.rgba[Math.floor(i / 3) * 4 + (i % 3)],
      );
      assert.deepEqual(gotU8, wantU8, `${c.name}: input_u8 differs from Pillow's`);
      const checkpoints = (c.intermediates ? CHECKPOINTS[c.family] : []).filter((k) => ref.tensors.has(k));
      const fromInput = await embedder.embedInputs(Float32Array.from(ref.tensors.get("input")!.data), {
        checkpoints,
      });
      const errors: [string, number][] = checkpoints.map((k) => [
        k,
        relativeMaxError(fromInput.checkpoints.get(k)!, ref.tensors.get(k)!.data),
      ]);
      errors.push(["embedding (reference input)", relativeMaxError(fromInput.rows[0], want)]);
      const [row] = await embedder.embed([{ bytes: imageBytes, name: c.image }]);
      errors.push(["embedding (image file)", relativeMaxError(row, want)]);
      console.log(
        `${c.name}: bound ${bound.toExponential(2)}; ${
          errors.map(([k, e]) => `${k} ${e.toExponential(2)}`).join("; ")
        }`,
      );
      for (const [k, e] of errors) {
        assert.ok(
          e <= bound,
          `${c.name}: ${k} relative error ${e.toExponential(3)} over ${bound.toExponential(3)}`,
        );
      }
    } finally {
      embedder.dispose();
    }
  }, { slow: c.size >= 224 });
}

for (const c of groegerCases().filter((x) => x.store_checkpoint)) {
  gpuTest(
    `groeger parity: ${c.name}.pth (${c.checkpoint} layout, ${
      c.checkpoint_format ?? "zip"
    } format) loads and matches`,
    async (gpu) => {
      const ref = readGroegerReference(c.name);
      const bound = groegerBound(ref.metadata);
      const weights = c.checkpoint_format === "legacy"
        ? await fixtureCheckpointFile(`groeger/${c.name}.pth`)
        : testdataPath(`groeger/${c.name}.pth`);
      const embedder = await createEmbedder(weights, {
        gpu,
        size: c.size,
        resize: c.resize,
        vitBlocks: c.vit_blocks,
        // A DINO checkpoint's args may not state the heads, and D = 48 does not say them (D / 64).
        vitHeads: c.family === "vit" ? c.heads : undefined,
      });
      try {
        assert.equal(embedder.model.family, c.family);
        assert.equal(embedder.weights.metadata.layout, c.checkpoint);
        if (c.checkpoint === "dino") assert.equal(embedder.weights.metadata.from, "teacher");
        const [row] = await embedder.embed([{
          bytes: await Deno.readFile(groegerImagePath(c)),
          name: c.image,
        }]);
        const error = relativeMaxError(row, ref.tensors.get("embedding_f64")!.data);
        let student = "";
        if (c.checkpoint === "dino") {
          // The student of the same file: the reference is the teacher's, so it must not match.
          const file = `${c.name}.pth`;
          const checkpoint = await pytorchFromBytes(await Deno.readFile(weights), file);
          const tree = checkpoint.tree as Map<string, unknown>;
          const dict = checkpointStateDict(new Map([["student", tree.get("student")]]), file);
          assert.equal(dict.from, "student");
          const other = await createEmbedder(await checkpoint.source(dict.tensors), {
            gpu,
            size: c.size,
            resize: c.resize,
            vitBlocks: c.vit_blocks,
            vitHeads: c.heads,
          });
          try {
            const [s] = await other.embed([{
              bytes: await Deno.readFile(groegerImagePath(c)),
              name: c.image,
            }]);
            const e = relativeMaxError(s, ref.tensors.get("embedding_f64")!.data);
            student = `; the student's ${e.toExponential(2)}`;
            assert.ok(e > 1000 * bound, `${c.name}.pth: the student matches the teacher's reference (${e})`);
          } finally {
            other.dispose();
          }
        }
        console.log(
          `${c.name}.pth: error ${error.toExponential(2)}, bound ${bound.toExponential(2)}${student}`,
        );
        assert.ok(error <= bound, `${c.name}.pth: ${error} over ${bound}`);
      } finally {
        embedder.dispose();
      }
    },
  );
}
