/**
 * f32 against f16 storage on this adapter: for each procedural model given, the resident weight bytes (the
 * embedder's buffers), the largest difference between the two precisions' embeddings, and the throughput of
 * `embedInputs` on a batch of random model inputs (wall clock, median of trials; the two precisions
 * alternate, so a busy machine slows both alike).
 *
 * ```
 * DENO_WEBGPU_BACKEND=vulkan deno run -A --config deno.dev.json bench/precision_bench.ts \
 *   [--model tiny-derm --size 96] [--batch 4] [--rounds 3]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { createEmbedder } from "../models/registry.ts";
import { acquireGpu } from "../engine/device.ts";
import type { Embedder } from "../engine/embedder.ts";
import { PRECISIONS } from "../engine/precision.ts";
import { median, relativeMaxError, timeByWall } from "./_timing.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "tiny-derm" },
    size: { type: "string", default: "96" },
    batch: { type: "string", default: "4" },
    rounds: { type: "string", default: "3" },
  },
});
const size = Number(values.size);
const batch = Number(values.batch);
const gpu = await acquireGpu();
const embedders = new Map<string, Embedder>();
for (const precision of PRECISIONS) {
  embedders.set(
    precision,
    await createEmbedder(`procedural:${values.model}`, {
      gpu,
      size,
      maxBatch: batch,
      precision,
      tune: "off",
    }),
  );
}
// Random inputs in the model's input range (BiT's derm preset: [0, 1]; ImageNet-normalised ones: about +-2).
const x = Float32Array.from({ length: batch * size * size * 3 }, (_, i) => ((i * 2654435761) % 1000) / 1000);
const rows = new Map<string, number[]>();
for (const [p, e] of embedders) rows.set(p, (await e.embedInputs(x)).rows.flatMap((r) => [...r]));
const times = new Map<string, number[]>(PRECISIONS.map((p) => [p, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (const [p, e] of embedders) {
    const t = await timeByWall(() => e.embedInputs(x), () => gpu.device.queue.onSubmittedWorkDone(), {
      budgetMs: 3000,
      maxRepeats: 10,
    });
    times.get(p)!.push(t.wallMs);
  }
}
console.log(
  `adapter: ${gpu.adapterInfo.description}; model procedural:${values.model} at ${size}, batch ${batch}`,
);
for (const [p, e] of embedders) {
  const ms = median(times.get(p)!);
  console.log(
    `${p}: weights ${e.weights.bytes} bytes; ${ms.toFixed(1)} ms per batch, ${
      (batch / (ms / 1000)).toFixed(2)
    } images/s (rounds: ${times.get(p)!.map((t) => t.toFixed(1)).join(", ")} ms)`,
  );
}
console.log(
  `f16 vs f32 embeddings: max |e16 - e32| / max |e32| = ${
    relativeMaxError(rows.get("f16")!, rows.get("f32")!).toExponential(2)
  }`,
);
for (const e of embedders.values()) e.dispose();
gpu.destroy();
