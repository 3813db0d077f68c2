import assert from "node:assert/strict";
import { resnetGraph } from "../models/resnet.ts";
import { bitGraph } from "../models/bit.ts";
import { vitGraph } from "../models/vit.ts";
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

const TINY_VIT = { dim: 48, depth: 3, heads: 3, patch: 16, grid: 4, mlp: 192 };

Deno.test("distinctShapes() gives every ViT op an entry and reducedSet() keeps each ViT op kind", () => {
  const graph = vitGraph(TINY_VIT, { size: 64, batch: 1, blocks: 2 });
  const { shapes, unsupported } = distinctShapes(graph);
  assert.deepEqual(unsupported, {});
  assert.equal(shapes.reduce((a, s) => a + s.count, 0), graph.nodes.length);
  const count = (label: string) => shapes.find((s) => s.label === label)?.count;
  assert.equal(count("conv 16x16/16 64x64x4 -> 4x4x48 +bias"), 1);
  assert.equal(count("vit_tokens 4x4x48 -> 17x48"), 1);
  assert.equal(count("layer_norm 17x48"), 6);
  assert.equal(count("layer_norm 2x48"), 1);
  assert.equal(count("linear 17x48 -> 17x144 +bias"), 3);
  assert.equal(count("linear 17x48 -> 17x48 +bias +res"), 3);
  assert.equal(count("linear 17x48 -> 17x192 +bias gelu"), 3);
  assert.equal(count("linear 17x192 -> 17x48 +bias +res"), 3);
  assert.equal(count("attention 17x144 -> 17x48 3x16"), 3);
  assert.equal(count("token_gather class token 17x48 -> 2x48"), 1);
  assert.equal(count("token_gather class token 17x48 -> 2x48 in place"), 1);
  const gather = shapes.find((s) => s.label.endsWith("in place"))!;
  assert.deepEqual(gather.extraInputs, ["bench.y"]);
  const residual = shapes.find((s) => s.label === "linear 17x192 -> 17x48 +bias +res")!;
  assert.deepEqual(residual.extraInputs, ["bench.x1"]);
  assert.equal(residual.flop, 2 * 17 * 192 * 48);
  assert.equal(residual.bytes, 4 * (17 * 192 + 192 * 48 + 48 + 2 * 17 * 48));
  assert.equal(shapes.find((s) => s.op === "attention")!.flop, 4 * 17 * 17 * 48);
  // --quick: every op kind of the ViT, and each of the block's four linears and both norms.
  assert.deepEqual(reducedSet(shapes).map((s) => s.label), shapes.map((s) => s.label));
});

Deno.test("linear reference samples rows that equal the whole reference there", () => {
  const { shapes } = distinctShapes(vitGraph(TINY_VIT, { size: 64, batch: 2, blocks: 2 }));
  const entry = OP_BENCH.get("linear")!;
  for (const s of shapes.filter((s) => s.op === "linear")) {
    const data = caseData(entry, s, labelSeed(s.label));
    const whole = entry.reference(s, data, Infinity);
    assert.equal(whole.coverage, "all");
    const sample = entry.reference(s, data, 0);
    assert.equal(sample.coverage, "rows 0,1,17,18,32,33 of 34");
    let worst = 0;
    sample.index!.forEach((at, i) => worst = Math.max(worst, Math.abs(sample.values[i] - whole.values[at])));
    assert.ok(worst <= 1e-12, `${s.label}: sampled rows differ by ${worst}`);
  }
});

Deno.test("token_gather reference checks only its slot when the node creates the collector", () => {
  const { shapes } = distinctShapes(vitGraph(TINY_VIT, { size: 64, batch: 2, blocks: 2 }));
  const entry = OP_BENCH.get("token_gather")!;
  const [first, inPlace] = shapes.filter((s) => s.op === "token_gather");
  const data = caseData(entry, first, labelSeed(first.label));
  const ref = entry.reference(first, data, Infinity);
  assert.equal(ref.coverage, "slot 0 of 2");
  // Image 1's class token (row 0 of x[1]) lands in slot 0 of y[1].
  assert.equal(ref.index![48], 2 * 48);
  assert.equal(ref.values[48], data.inputs[0][17 * 48]);
  const d2 = caseData(entry, inPlace, labelSeed(inPlace.label));
  const whole = entry.reference(inPlace, d2, Infinity);
  assert.equal(whole.coverage, "all");
  assert.equal(whole.values[0], d2.prior![0]); // slot 0 kept
  assert.equal(whole.values[48], d2.inputs[0][0]); // slot 1 written
});

Deno.test("graphToOnnx() writes a ViT as MatMul, LayerNormalization, Softmax, Erf, Gather and Pad/Concat nodes", async () => {
  const source = proceduralWeights("tiny-vit");
  const definition = defineModel(source);
  const weights = await cpuResidentWeights(source, definition.weights);
  await source.close();
  const graph = definition.graph(64, 2);
  const { model } = graphToOnnx(graph, weights);
  const ops = (op: string) => model.nodes.filter((n) => n.op === op).length;
  const nodes = (op: string) => graph.nodes.filter((n) => n.op === op);
  assert.deepEqual(model.inputs, [{ name: "input", dims: [2, 4, 64, 64] }]);
  assert.deepEqual(model.outputs, [{ name: "output", dims: [...graph.tensors.get(graph.output)!] }]);
  assert.equal(ops("Conv"), 1);
  assert.equal(ops("LayerNormalization"), nodes("layer_norm").length);
  assert.equal(ops("Softmax"), nodes("attention").length);
  // Every linear and attention's two products.
  assert.equal(ops("MatMul"), nodes("linear").length + 2 * nodes("attention").length);
  assert.equal(ops("Erf"), nodes("linear").filter((n) => n.attrs.activation === "gelu").length);
  const gathers = nodes("token_gather");
  assert.equal(ops("Pad"), gathers.filter((n) => !n.inPlace).length);
  // Gather: q, k, v of each attention and the token of each token_gather.
  assert.equal(ops("Gather"), 3 * nodes("attention").length + gathers.length);
  // Concat: the class token before the patches, and each in-place gather between its slices.
  assert.equal(ops("Concat"), 1 + gathers.filter((n) => n.inPlace).length);
  const qkv = model.initializers.find((t) => t.name === "blocks.0.attn.qkv.weight")!;
  assert.deepEqual(qkv.dims, [48, 144]);
  assert.deepEqual(model.initializers.find((t) => t.name === "tokens.cls")!.dims, [2, 1, 48]);
  assert.deepEqual(model.initializers.find((t) => t.name === "tokens.pos")!.dims, [1, 17, 48]);
});
