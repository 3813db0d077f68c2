import assert from "node:assert/strict";
import { resnetGraph } from "../models/resnet.ts";
import { bitGraph } from "../models/bit.ts";
import { bitArchitecture } from "../models/bit_arch.ts";
import { graphFlops } from "../engine/lowering.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { distinctShapes, reducedSet } from "./kernels_bench.ts";
import { caseData, labelSeed, OP_BENCH } from "./op_table.ts";
import { graphToOnnx } from "./onnx_export.ts";
import { cpuResidentWeights } from "./cpu_weights.ts";
import { defineModel, proceduralWeights } from "../models/registry.ts";

const TINY_RESNET = { layers: [1, 1, 1, 1], widthPerGroup: 16, stemChannels: 64 };

Deno.test("distinctShapes() counts every node of a ResNet once and labels the conv epilogues", () => {
  const graph = resnetGraph(TINY_RESNET, { size: 64, batch: 1 });
  const { shapes, unsupported } = distinctShapes(graph);
  assert.deepEqual(unsupported, {});
  assert.equal(shapes.reduce((a, s) => a + s.count, 0), graph.nodes.length);
  const labels = shapes.map((s) => s.label);
  assert.ok(labels.includes("conv 7x7/2 64x64x4 -> 32x32x64 +bias relu"), labels.join("\n"));
  assert.ok(labels.includes("conv 1x1/1 16x16x16 -> 16x16x256 +bias +res relu"), labels.join("\n"));
  assert.ok(labels.includes("conv 1x1/2 16x16x256 -> 8x8x512 +bias"), labels.join("\n"));
  const res = shapes.find((s) => s.label.includes("+res"))!;
  assert.deepEqual(res.extraInputs, ["bench.y"]);
  assert.equal(res.graph.output, "bench.y");
});

Deno.test("distinctShapes() sums to the lowering table's FLOP where the bench counts the same work", () => {
  // The stem's padding channel aside (the bench counts the 4 channels the kernel reads), conv FLOP agree.
  const graph = bitGraph(bitArchitecture([1, 1, 1, 1], [128, 256, 512, 1024], 32), {
    preset: "derm",
    size: 64,
    batch: 2,
  });
  const { shapes } = distinctShapes(graph);
  const convs = { ...graph, nodes: graph.nodes.filter((n) => n.op === "conv2d" && n.name !== "stem.conv") };
  const bench = shapes.filter((s) => s.op === "conv2d" && !s.label.startsWith("conv 7x7"))
    .reduce((a, s) => a + s.count * s.flop, 0);
  assert.equal(bench, graphFlops(convs, LOWERINGS));
  assert.ok(shapes.every((s) => s.label.endsWith("(N=2)")));
});

Deno.test("reducedSet() keeps the cheapest node of each op and conv kernel/stride", () => {
  const { shapes } = distinctShapes(resnetGraph(TINY_RESNET, { size: 64, batch: 1 }));
  const reduced = reducedSet(shapes);
  const groups = new Set(shapes.map((s) => s.group));
  assert.equal(reduced.length, groups.size);
  for (const r of reduced) {
    assert.ok(shapes.filter((s) => s.group === r.group).every((s) => s.flop >= r.flop));
  }
});

Deno.test("conv2d reference samples rows that equal the whole reference there", () => {
  // A strided, padded conv with bias, residual and ReLU, small enough to compute whole.
  const graph = resnetGraph(TINY_RESNET, { size: 64, batch: 2 });
  const { shapes } = distinctShapes(graph);
  const entry = OP_BENCH.get("conv2d")!;
  const picked = [
    shapes.find((s) => s.label.startsWith("conv 7x7/2"))!,
    shapes.find((s) => s.label.startsWith("conv 3x3/2"))!,
    shapes.find((s) => s.label.includes("+res"))!,
  ];
  for (const s of picked) {
    const data = caseData(entry, s, labelSeed(s.label));
    const whole = entry.reference(s, data, Infinity);
    assert.equal(whole.coverage, "all");
    const sample = entry.reference(s, data, 0);
    assert.match(sample.coverage, /^rows /);
    assert.ok(sample.index && sample.index.length === sample.values.length && sample.index.length > 0);
    let worst = 0;
    sample.index!.forEach((at, i) => worst = Math.max(worst, Math.abs(sample.values[i] - whole.values[at])));
    assert.ok(worst <= 1e-12, `${s.label}: sampled rows differ by ${worst}`);
  }
});

Deno.test("graphToOnnx() writes NCHW inputs and outputs, a Conv per conv2d node and an Add per residual", async () => {
  const source = proceduralWeights("tiny-resnet");
  const definition = defineModel(source);
  const weights = await cpuResidentWeights(source, definition.weights);
  await source.close();
  const graph = definition.graph(64, 1);
  const { model } = graphToOnnx(graph, weights);
  assert.deepEqual(model.inputs, [{ name: "input", dims: [1, 4, 64, 64] }]);
  assert.deepEqual(model.outputs, [{ name: "output", dims: [1, 2048] }]);
  const convs = graph.nodes.filter((n) => n.op === "conv2d");
  assert.equal(model.nodes.filter((n) => n.op === "Conv").length, convs.length);
  assert.equal(model.nodes.filter((n) => n.op === "Add").length, graph.nodes.filter((n) => n.inPlace).length);
  const stem = model.initializers.find((t) => t.name === "stem.conv.weight")!;
  assert.deepEqual(stem.dims, [64, 4, 7, 7]);
  assert.equal(model.initializers.find((t) => t.name === "stem.conv.bias")!.dims[0], 64);
  assert.throws(() => graphToOnnx(graph, new Map()), /weight "conv1\.w" \(weight\) is missing/);
});
