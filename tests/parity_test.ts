/**
 * Model parity: every case of testdata/bit/cases.json against its float64 reference.
 *
 * For each case two paths are checked:
 * - the reference model input (`input`, decode and resize excluded) through the network, comparing the
 *   embedding and, where the fixture has them, `stem`, `stage1`..`stage4` and `final_norm`, so a failure
 *   names the stage;
 * - the image file through the whole pipeline (decode, GPU resize, network), comparing the embedding.
 * The bound is max|e - ref| / max|ref| <= min(2 x PyTorch float32's own error, 5e-5) for every case and
 * both paths, the JPEG case too: the default JPEG decoder gives libjpeg-turbo's pixels exactly.
 *
 * The full Derm Foundation geometry (R101x3 at 448) is the slow tier, skipped by `deno task test:fast`.
 */
import assert from "node:assert/strict";
import { gpuTest } from "./_gpu.ts";
import {
  caseImagePath,
  caseWeights,
  embeddingBound,
  type FixtureCase,
  fixtureCases,
  readReference,
} from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import { createEmbedder } from "../models/registry.ts";

const CHECKPOINTS = ["stem", "stage1", "stage2", "stage3", "stage4", "final_norm"];

function isSlow(c: FixtureCase): boolean {
  return c.size >= 224;
}

for (const c of fixtureCases()) {
  gpuTest(`parity: ${c.name} matches the float64 reference`, async (gpu) => {
    const ref = readReference(c.name);
    const bound = embeddingBound(ref.metadata);
    const want = ref.tensors.get("embedding_f64")!.data;
    const embedder = await createEmbedder(caseWeights(c), {
      gpu,
      preset: c.preset,
      size: c.size,
      maxBatch: 1,
    });
    try {
      const lines: string[] = [];
      const checkpoints = CHECKPOINTS.filter((k) => ref.tensors.has(k));
      const input = Float32Array.from(ref.tensors.get("input")!.data);
      const fromInput = await embedder.embedInputs(input, { checkpoints });
      const errors: [string, number][] = [];
      for (const k of checkpoints) {
        errors.push([k, relativeMaxError(fromInput.checkpoints.get(k)!, ref.tensors.get(k)!.data)]);
      }
      errors.push(["embedding (reference input)", relativeMaxError(fromInput.rows[0], want)]);
      const imageBytes = await Deno.readFile(caseImagePath(c));
      const [row] = await embedder.embed([{ bytes: imageBytes, name: c.image }]);
      const endToEnd = relativeMaxError(row, want);
      lines.push(...errors.map(([k, e]) => `${k} ${e.toExponential(2)}`));
      lines.push(`embedding (image file) ${endToEnd.toExponential(2)}`);
      console.log(`${c.name}: bound ${bound.toExponential(2)}; ${lines.join("; ")}`);
      for (const [k, e] of errors) {
        assert.ok(
          e <= bound,
          `${c.name}: ${k} relative error ${e.toExponential(3)} over ${bound.toExponential(3)}`,
        );
      }
      assert.ok(
        endToEnd <= bound,
        `${c.name}: end-to-end relative error ${endToEnd.toExponential(3)} over ${bound.toExponential(3)}`,
      );
    } finally {
      embedder.dispose();
    }
  }, { slow: isSlow(c) });
}

gpuTest("embed() gives each image of a batch the row it gets alone", async (gpu) => {
  const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
  const images = fixtureCases()
    .filter((x) => x.name.startsWith("tiny-derm-96"))
    .map((x) => ({ bytes: Deno.readFileSync(caseImagePath(x)), name: x.image }));
  const embedder = await createEmbedder(caseWeights(c), { gpu, size: c.size, maxBatch: 4 });
  try {
    const together = await embedder.embed(images); // batches of 4 and 2
    for (const [i, image] of images.entries()) {
      const [alone] = await embedder.embed([image]);
      assert.deepEqual(together[i], alone, `row ${i} (${image.name}) differs between batch and alone`);
    }
  } finally {
    embedder.dispose();
  }
});
