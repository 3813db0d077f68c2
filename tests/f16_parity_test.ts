/**
 * Parity at precision f16: every fixture case, the BiT ones of testdata/bit/cases.json and Gröger et al.'s
 * ResNet-50s and ViTs of testdata/groeger/cases.json, with weights and activations stored as f16 (but the
 * layers the plan keeps f32: `f32Weights` in engine/precision.ts), against
 * the same float64 references as tests/parity_test.ts and tests/groeger_parity_test.ts, within
 * `F16_BOUND` (tests/_fixtures.ts: 1e-2).
 *
 * Per case: the reference model input through the network, and (small cases) the image file through the
 * whole pipeline. On an adapter without `shader-f16` (llvmpipe through GL) each case asserts instead that
 * `createEmbedder` refuses precision f16 with a RangeError naming the adapter and the feature. The cases at
 * 224 and 448 are the slow tier, as in the f32 parity tests; R101x3 at 448 (7 to 10 minutes on lavapipe) is the
 * extended tier, run by `deno task test:extended` and listed as ignored by `deno task test`.
 */
import assert from "node:assert/strict";
import {
  caseImagePath,
  caseWeights,
  F16_BOUND,
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
import { storageBytes } from "../engine/precision.ts";
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
  // Derm Foundation's full geometry at f16 takes 7 to 10 minutes on lavapipe: the extended tier.
  const extended = c.size >= 448;
  f16GpuTest(
    `f16 parity: ${c.name} is within the f16 bound of the float64 reference${
      extended ? " (extended tier: deno task test:extended)" : ""
    }`,
    async (gpu) => {
      const ref = c.reference();
      const bound = F16_BOUND;
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

// Which resident tensors an f16 plan keeps f32: BiT's stem and first stage and the norm reading its output
// (models/bit.ts, bitKeepsF32AtF16); in the other families only the first layer's.
const F16_PLAN_F32_WEIGHTS: Record<string, RegExp> = {
  "tiny-derm-96": /^(stem\.|stages\.0\.|stages\.1\.blocks\.0\.norm1\.)/,
  "tiny-resnet-64": /^conv1\./,
  "tiny-vit-64": /^patch_embed\.proj\./,
};
for (const [name, kept] of Object.entries(F16_PLAN_F32_WEIGHTS)) {
  f16GpuTest(
    `createEmbedder() at precision f16 holds ${name}'s weights in f16 but those its plan keeps f32`,
    async (gpu) => {
      const c = CASES.find((x) => x.name === name)!;
      const options = { ...c.options, gpu, maxBatch: 1 };
      const f32 = await createEmbedder(c.weights(), options);
      const f16 = await createEmbedder(c.weights(), { ...options, precision: "f16" });
      try {
        assert.equal(f16.weights.dtype, "f16");
        assert.equal(f16.weights.buffers.size, f32.weights.buffers.size);
        assert.equal(f16.weights.parameters, f32.weights.parameters);
        let want = 0, keptBytes = 0;
        for (const [tensor, b] of f16.weights.buffers) {
          const f32Bytes = f32.weights.buffers.get(tensor)!.buffer.size;
          const dtype = kept.test(tensor) ? "f32" : "f16";
          assert.equal(b.dtype, dtype, `${tensor} stored as ${b.dtype}, expected ${dtype}`);
          assert.equal(b.buffer.size, dtype === "f32" ? f32Bytes : storageBytes(f32Bytes / 4, "f16"), tensor);
          want += b.buffer.size;
          if (dtype === "f32") keptBytes += f32Bytes;
        }
        assert.ok(keptBytes > 0, `${name}: no tensor kept f32`);
        assert.equal(f16.weights.bytes, want);
        console.log(
          `${name}: f16 weights ${f16.weights.bytes} bytes of f32's ${f32.weights.bytes} (${
            (100 * f16.weights.bytes / f32.weights.bytes).toFixed(1)
          }%), ${keptBytes} bytes kept f32`,
        );
        assert.match(f16.describe(), /precision f16/);
        // The f16 plan builds and runs with those mixed weights.
        const [row] = await f16.embedInputs(new Float32Array(3 * c.size * c.size).fill(0.25)).then((r) =>
          r.rows
        );
        assert.ok(row.every(Number.isFinite));
      } finally {
        f32.dispose();
        f16.dispose();
      }
    },
    // Without a device given: the embedder's own device is released and the error is the same.
    async () => {
      const c = CASES.find((x) => x.name === name)!;
      await assertF16Refused(undefined, c.weights(), c.options);
    },
  );
}

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
