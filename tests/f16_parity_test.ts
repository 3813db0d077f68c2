/**
 * Parity at precision f16: every fixture case, the BiT ones of testdata/bit/cases.json and Gröger et al.'s
 * ResNet-50s and ViTs of testdata/groeger/cases.json, with weights and activations stored as f16, against
 * the same float64 references as tests/parity_test.ts and tests/groeger_parity_test.ts, within
 * `f16Bound` (tests/_fixtures.ts: max(1e-2, 2^11 x PyTorch float32's own error)).
 *
 * Per case: the reference model input through the network, and (small cases) the image file through the
 * whole pipeline. On an adapter without `shader-f16` (llvmpipe through GL) each case asserts instead that
 * `createEmbedder` refuses precision f16 with a RangeError naming the adapter and the feature. The cases at
 * 224 and 448 are the slow tier, as in the f32 parity tests; R101x3 at 448 (10 minutes on lavapipe) is the
 * extended tier, run by `deno task test:extended` and listed as ignored by `deno task test`.
 */
import assert from "node:assert/strict";
import {
  caseImagePath,
  caseWeights,
  f16Bound,
  fixtureCases,
  groegerCases,
  groegerCaseWeights,
  groegerImagePath,
  readGroegerReference,
  readReference,
} from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import { f16GpuTest } from "./_f16.ts";
import { gpuTest } from "./_gpu.ts";
import { createEmbedder, type EmbedderOptions } from "../models/registry.ts";
import type { Gpu } from "../engine/device.ts";
import type { TensorSource } from "../engine/tensor_source.ts";

/** One fixture case, BiT or Gröger, as these tests need it. */
interface F16Case {
  name: string;
  size: number;
  reference(): { tensors: Map<string, { data: Float64Array }>; metadata: Record<string, string> };
  weights(): TensorSource;
  options: EmbedderOptions;
  image: string;
  imageName: string;
}

const CASES: F16Case[] = [
  ...fixtureCases().map((c) => ({
    name: c.name,
    size: c.size,
    reference: () => readReference(c.name),
    weights: () => caseWeights(c),
    options: { preset: c.preset, size: c.size },
    image: caseImagePath(c),
    imageName: c.image,
  })),
  ...groegerCases().map((c) => ({
    name: c.name,
    size: c.size,
    reference: () => readGroegerReference(c.name),
    weights: () => groegerCaseWeights(c),
    options: { size: c.size, resize: c.resize, vitBlocks: c.vit_blocks },
    image: groegerImagePath(c),
    imageName: c.image,
  })),
];

/** Asserts that precision f16 is refused here with a RangeError naming the adapter and `shader-f16`. */
export async function assertF16Refused(
  gpu: Gpu | undefined,
  weights: TensorSource,
  options: EmbedderOptions,
) {
  await assert.rejects(
    () => createEmbedder(weights, { ...options, gpu, precision: "f16" }),
    (e: unknown) => {
      assert.ok(e instanceof RangeError, `expected a RangeError, got ${e}`);
      assert.match(
        e.message,
        /^Cannot use precision "f16" on adapter "[^"]+": expected the "shader-f16" feature/,
      );
      if (gpu) assert.ok(e.message.includes(`"${gpu.adapterInfo.description}"`), e.message);
      return true;
    },
  );
}

for (const c of CASES) {
  // Derm Foundation's full geometry at f16 takes 10 minutes on lavapipe: the extended tier.
  const extended = c.size >= 448;
  f16GpuTest(
    `f16 parity: ${c.name} is within the f16 bound of the float64 reference${
      extended ? " (extended tier: deno task test:extended)" : ""
    }`,
    async (gpu) => {
      const ref = c.reference();
      const bound = f16Bound(ref.metadata);
      const want = ref.tensors.get("embedding_f64")!.data;
      const embedder = await createEmbedder(c.weights(), {
        ...c.options,
        gpu,
        maxBatch: 1,
        precision: "f16",
      });
      try {
        assert.equal(embedder.precision, "f16");
        const fromInput = await embedder.embedInputs(Float32Array.from(ref.tensors.get("input")!.data));
        const errors: [string, number][] = [[
          "embedding (reference input)",
          relativeMaxError(fromInput.rows[0], want),
        ]];
        if (c.size < 224) {
          const [row] = await embedder.embed([{ bytes: await Deno.readFile(c.image), name: c.imageName }]);
          errors.push(["embedding (image file)", relativeMaxError(row, want)]);
        }
        console.log(
          `${c.name} f16: bound ${bound.toExponential(2)}; ${
            errors.map(([k, e]) => `${k} ${e.toExponential(2)}`).join("; ")
          }; weights ${embedder.weights.bytes} bytes`,
        );
        for (const [k, e] of errors) {
          assert.ok(e <= bound, `${c.name} f16: ${k} relative error ${e.toExponential(3)} over ${bound}`);
        }
      } finally {
        embedder.dispose();
      }
    },
    (gpu) => assertF16Refused(gpu, c.weights(), c.options),
    { slow: c.size >= 224, extended },
  );
}

f16GpuTest(
  "createEmbedder() at precision f16 holds the weights in half the bytes (plus padding to 4 per tensor)",
  async (gpu) => {
    const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
    const options = { gpu, preset: c.preset, size: c.size, maxBatch: 1 };
    const f32 = await createEmbedder(caseWeights(c), options);
    const f16 = await createEmbedder(caseWeights(c), { ...options, precision: "f16" });
    try {
      assert.equal(f16.weights.dtype, "f16");
      assert.equal(f16.weights.buffers.size, f32.weights.buffers.size);
      assert.equal(f16.weights.parameters, f32.weights.parameters);
      const tensors = f32.weights.buffers.size;
      assert.ok(
        f16.weights.bytes >= f32.weights.bytes / 2 &&
          f16.weights.bytes <= f32.weights.bytes / 2 + 2 * tensors,
        `f16 ${f16.weights.bytes} bytes, f32 ${f32.weights.bytes}`,
      );
      assert.match(f16.describe(), /precision f16/);
    } finally {
      f32.dispose();
      f16.dispose();
    }
  },
  // Without a device given: the embedder's own device is released and the error is the same.
  async () => {
    const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
    await assertF16Refused(undefined, caseWeights(c), { preset: c.preset, size: c.size });
  },
);

gpuTest(
  "createEmbedder() refuses an unknown precision with a RangeError listing the known ones",
  async (gpu) => {
    const c = fixtureCases().find((x) => x.name === "tiny-bit-64")!;
    await assert.rejects(
      () => createEmbedder(caseWeights(c), { gpu, size: c.size, precision: "bf16" as "f16" }),
      { name: "RangeError", message: `Cannot use precision "bf16": expected one of f32, f16` },
    );
  },
);
