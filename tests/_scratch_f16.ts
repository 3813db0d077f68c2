import { createEmbedder } from "../models/registry.ts";
import { caseWeights, fixtureCases, groegerCases, groegerCaseWeights, readGroegerReference, readReference } from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import { acquireGpu } from "../engine/device.ts";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../engine/precision.ts";
const gpu = await acquireGpu();
const big = Deno.args.includes("big");
const cases = [
  ...fixtureCases().map((c) => ({ name: c.name, size: c.size, ref: () => readReference(c.name), w: () => caseWeights(c), o: { preset: c.preset } })),
  ...groegerCases().map((c) => ({ name: c.name, size: c.size, ref: () => readGroegerReference(c.name), w: () => groegerCaseWeights(c), o: { resize: c.resize, vitBlocks: c.vit_blocks } })),
].filter((c) => big ? c.size >= 224 : c.size < 224).filter((c) => !Deno.args[1] || c.name === Deno.args[1]);
for (const c of cases) {
  const ref = c.ref();
  const want = ref.tensors.get("embedding_f64")!.data;
  const t0 = performance.now();
  const e = await createEmbedder(c.w(), { gpu, size: c.size, maxBatch: 1, precision: "f16", ...c.o });
  const input = Float32Array.from(ref.tensors.get("input")!.data);
  const out = await e.embedInputs(input);
  const rounded = input.map((v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
  const out2 = await e.embedInputs(rounded);
  console.log(c.name, "f16", relativeMaxError(out.rows[0], want).toExponential(3), "input rounded to f16:", relativeMaxError(out2.rows[0], want).toExponential(3), e.weights.bytes, ((performance.now() - t0) / 1000).toFixed(1), "s");
  e.dispose();
}
gpu.destroy();
