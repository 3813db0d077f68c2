/**
 * How much of a BiT fixture case's f16 error its weights alone cause: the f32 plan run on resident weights
 * rounded to f16 values (to nearest even, kept as f32, so every activation stays f32), against the case's
 * float64 reference, with the same measure as the parity tests (max|e - ref| / max|ref|).
 *
 * The resident weights are the model's own recipes replayed on the CPU (`cpu_weights.ts`: the weight
 * standardisation through its float64 reference, rounded to f32), then rounded as `--round` says:
 * - `none`: as they are (a control: it must give the f32 parity error);
 * - `conv`: the outputs of GPU transforms only (BiT's standardised convolution kernels);
 * - `all`: every resident tensor (the GroupNorm vectors too), what an f16 plan stores.
 *
 * ```
 * DENO_WEBGPU_BACKEND=vulkan deno run -A --config deno.dev.json bench/f16_weights_floor.ts \
 *   r50x1-bit-224 [none,conv,all]
 * ```
 * @module
 */
import { acquireGpu } from "../engine/device.ts";
import { Embedder } from "../engine/embedder.ts";
import { float16BitsToFloat32, toFloat16 } from "../engine/precision.ts";
import type { WeightBinding } from "../engine/lowering.ts";
import { RUNTIME_KERNELS } from "../kernels/registry.ts";
import { defineModel } from "../models/registry.ts";
import { caseWeights, fixtureCases, readReference } from "../tests/_fixtures.ts";
import { cpuResidentWeights } from "./cpu_weights.ts";
import { relativeMaxError } from "./_timing.ts";

const [name, modes = "none,conv,all"] = Deno.args;
const c = fixtureCases().find((x) => x.name === name);
if (!c) {
  throw new TypeError(`Cannot find case "${name}": expected one of ${fixtureCases().map((x) => x.name)}`);
}
const ref = readReference(c.name);
const want = ref.tensors.get("embedding_f64")!.data;
const input = Float32Array.from(ref.tensors.get("input")!.data);
const source = caseWeights(c);
const model = defineModel(source, { preset: c.preset, size: c.size });
const resident = await cpuResidentWeights(source, model.weights);
const gpuMade = new Set(model.weights.filter((r) => r.transform.kind === "gpu").flatMap((r) => r.outputs));
const gpu = await acquireGpu();

function roundedToF16(v: Float32Array): Float32Array<ArrayBuffer> {
  const { bits } = toFloat16(v);
  return Float32Array.from({ length: v.length }, (_, i) => float16BitsToFloat32(bits[i]));
}

for (const mode of modes.split(",")) {
  if (!["none", "conv", "all"].includes(mode)) {
    throw new TypeError(`Cannot round "${mode}": expected none, conv, all`);
  }
  const buffers = new Map<string, WeightBinding>();
  let bytes = 0;
  for (const [tensor, values] of resident) {
    const round = mode === "all" || (mode === "conv" && gpuMade.has(tensor));
    const data = round ? roundedToF16(values) : Float32Array.from(values);
    const buffer = gpu.device.createBuffer({
      label: tensor,
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    gpu.device.queue.writeBuffer(buffer, 0, data);
    buffers.set(tensor, { buffer });
    bytes += data.byteLength;
  }
  const weights = {
    file: `procedural:${c.seed}`,
    metadata: {},
    buffers,
    parameters: model.parameters,
    bytes,
    dtype: "f32" as const,
    dispose: () => buffers.forEach((b) => b.buffer.destroy()),
  };
  const embedder = new Embedder(gpu, model, weights, RUNTIME_KERNELS, false, { size: c.size, maxBatch: 1 });
  const { rows } = await embedder.embedInputs(input);
  console.log(
    `${c.name}: weights rounded to f16: ${mode}; activations f32: max|e|/max|ref| ${
      relativeMaxError(rows[0], want).toExponential(2)
    }`,
  );
  embedder.dispose();
  weights.dispose();
}
gpu.destroy();
