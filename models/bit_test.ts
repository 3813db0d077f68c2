import assert from "node:assert/strict";
import { graphFlops, lowerGraph, type WeightBinding } from "../engine/lowering.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { bitGraph, bitPreprocessing } from "./bit.ts";
import { BIT_R101X3, bitArchitecture } from "./bit_arch.ts";

// Lowering only checks that each weight exists: any name resolves to a stand-in buffer.
const ANY_WEIGHTS = new Proxy(new Map<string, WeightBinding>(), {
  get: (target, prop) => prop === "get" ? () => ({ buffer: {} as GPUBuffer }) : Reflect.get(target, prop),
});
const DEVICE = { limits: { maxComputeWorkgroupsPerDimension: 65535 }, features: new Set<string>() };

Deno.test("bitGraph() lowers every R101x3 dispatch within 65,535 workgroups per dimension up to batch 16", () => {
  for (const batch of [1, 3, 16]) {
    const graph = bitGraph(BIT_R101X3, { preset: "derm", size: 448, batch });
    const builder = lowerGraph(graph, LOWERINGS, ANY_WEIGHTS, DEVICE, { label: `r101x3-b${batch}` });
    for (const step of builder.steps) {
      for (const d of step.launch.workgroups) {
        assert.ok(d >= 1 && d <= 65535, `${step.label} at batch ${batch}: ${step.launch.workgroups}`);
      }
    }
  }
});

Deno.test("bitGraph() gives Derm Foundation's 278 GMAC per image and the fixtures' checkpoints", () => {
  const graph = bitGraph(BIT_R101X3, { preset: "derm", size: 448, batch: 1 });
  const convFlops = graph.nodes.filter((n) => n.op === "conv2d")
    .reduce((a, n) => a + LOWERINGS.get("conv2d")!.flops(n, (t) => graph.tensors.get(t)!), 0);
  assert.equal(Math.round(convFlops / 2 / 1e9), 278);
  assert.ok(graphFlops(graph, LOWERINGS) > convFlops);
  assert.deepEqual(Object.keys(graph.checkpoints), [
    "stem",
    "stage1",
    "stage2",
    "stage3",
    "stage4",
    "final_norm",
  ]);
  assert.deepEqual(graph.tensors.get(graph.output), [1, 6144]);
  assert.deepEqual(graph.tensors.get(graph.checkpoints.stage3), [1, 28, 28, 3072]);
  // 1 stem conv + pool, per unit 3 GN + 3 conv (+ proj on the first), final norm + pool
  const units = 3 + 4 + 23 + 3;
  assert.equal(graph.nodes.length, 2 + units * 6 + 4 + 2);
});

Deno.test("bitGraph() pads the stem max-pool per preset and refuses tiny inputs", () => {
  const arch = bitArchitecture([1, 1, 1, 1], [128, 256, 512, 1024], 32);
  const pool = (preset: "derm" | "bit") =>
    bitGraph(arch, { preset, size: 64, batch: 1 }).nodes.find((n) => n.op === "max_pool")!.attrs.padValue;
  assert.equal(pool("derm"), "-inf");
  assert.equal(pool("bit"), "zero");
  assert.throws(() => bitGraph(arch, { preset: "derm", size: 16, batch: 1 }), RangeError);
  assert.throws(() => bitGraph(arch, { preset: "derm", size: 64, batch: 0 }), RangeError);
});

Deno.test("bitPreprocessing() is data: TF bilinear with the preset's scale and offset", () => {
  assert.deepEqual(bitPreprocessing("derm", 448), {
    resize: "bilinear",
    size: 448,
    scale: [Math.fround(1 / 255), Math.fround(1 / 255), Math.fround(1 / 255)],
    offset: [0, 0, 0],
  });
  assert.deepEqual(bitPreprocessing("bit", 224).offset, [-1, -1, -1]);
});
