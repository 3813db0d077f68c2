/**
 * The graph builder and the lowering loop on a made-up op table: shapes inferred, names checked,
 * outputs and scratch declared, weights resolved, variants chosen, the non-finite pass inserted.
 */
import assert from "node:assert/strict";
import { GraphBuilder, numberAttr } from "./graph.ts";
import type { KernelSpec } from "./kernel.ts";
import { graphFlops, lowerGraph, loweringTable, NONFINITE_CHECK_OP, type OpLowering } from "./lowering.ts";

const spec = (name: string, n: number): KernelSpec => ({
  name,
  wgsl: "",
  bindings: Array.from(
    { length: n },
    (_, i) => ({ name: `b${i}`, type: i === n - 1 ? "storage" : "read-only-storage" }),
  ),
  overrides: {},
});
const LAUNCH = { workgroups: [1, 1, 1] as [number, number, number], uniforms: new Uint8Array(16) };
const FAST = spec("scale_fast", 3), SLOW = spec("scale_slow", 3), CHECK = spec("check", 2);

/** y = x * w, with a scratch tensor; "fast" fits only even sizes. */
const scale: OpLowering = {
  op: "scale",
  outputShape: (node, [x]) => [...x.slice(0, -1), numberAttr(node, "out", x[x.length - 1])],
  flops: (node, shape) => 2 * shape(node.output).reduce((a, b) => a * b, 1),
  lower(ctx) {
    const shape = ctx.shape(ctx.node.inputs[0]);
    const s = ctx.choose([FAST, SLOW], (c) => c !== FAST || shape[shape.length - 1] % 2 === 0);
    ctx.scratch("tmp", 64);
    ctx.step(s, LAUNCH, [ctx.node.inputs[0], ctx.weight("w"), ctx.node.output]);
  },
};
const check: OpLowering = {
  op: NONFINITE_CHECK_OP,
  outputShape: (_n, [x]) => x,
  flops: () => 0,
  lower: (ctx) => ctx.step(CHECK, LAUNCH, [ctx.node.inputs[0], ctx.weight("flags")]),
};
const TABLE = loweringTable([scale, check]);
const BUF = {} as GPUBuffer;
const WEIGHTS = new Map([["w1", { buffer: BUF }], ["w2", { buffer: BUF }]]);
const DEVICE = { limits: { maxComputeWorkgroupsPerDimension: 65535 }, features: new Set<string>() };

function graph() {
  const g = new GraphBuilder(TABLE);
  const x = g.input("x", [2, 3]);
  const a = g.node("scale", "a", { inputs: [x], weights: { w: "w1" }, attrs: { out: 4 } });
  const b = g.node("scale", "b", { inputs: [a], weights: { w: "w2" } });
  g.node("scale", "c", { inputs: [b], weights: { w: "w1" }, output: b, inPlace: true });
  g.checkpoint("middle", a);
  return g.build(b);
}

Deno.test("GraphBuilder infers shapes, keeps order and checkpoints, and refuses bad nodes", () => {
  const gr = graph();
  assert.deepEqual(gr.nodes.map((n) => [n.name, n.output, n.inPlace]), [
    ["a", "a", false],
    ["b", "b", false],
    [
      "c",
      "b",
      true,
    ],
  ]);
  assert.deepEqual(gr.tensors.get("a"), [2, 4]);
  assert.deepEqual(gr.checkpoints, { middle: "a" });
  const g = new GraphBuilder(TABLE);
  const x = g.input("x", [2, 3]);
  assert.throws(() => g.node("matmul", "m", { inputs: [x] }), /unknown op "matmul"/);
  assert.throws(() => g.node("scale", "m", { inputs: ["nope"] }), /Cannot find tensor "nope"/);
  g.node("scale", "m", { inputs: [x] });
  assert.throws(() => g.node("scale", "m", { inputs: [x] }), /the name is taken/);
  assert.throws(
    () => g.node("scale", "n", { inputs: [x], attrs: { out: 5 }, output: x, inPlace: true }),
    /in place/,
  );
  assert.throws(() => g.input("y", [1]), /the graph has one/);
});

Deno.test("lowerGraph() declares outputs and scratch, binds weights, and picks the variant that fits", () => {
  const builder = lowerGraph(graph(), TABLE, WEIGHTS, DEVICE, { label: "t" });
  // a reads x [2, 3] (odd: only the slow variant fits); b and c read [2, 4].
  assert.deepEqual(builder.steps.map((s) => s.label), ["a/scale_slow", "b/scale_fast", "c/scale_fast"]);
  assert.equal(builder.bytesOf("a"), 2 * 4 * 4);
  assert.equal(builder.bytesOf("a.tmp"), 64);
  assert.deepEqual(builder.steps[0].bindings[1], {
    buffer: BUF,
    label: "w1",
    offset: undefined,
    size: undefined,
  });
  const forced = lowerGraph(graph(), TABLE, WEIGHTS, DEVICE, {
    label: "t",
    forcedKernels: new Set(["scale_slow"]),
  });
  assert.deepEqual(forced.steps.map((s) => s.label), ["a/scale_slow", "b/scale_slow", "c/scale_slow"]);
  // An odd width: the fast variant does not fit, whatever is forced.
  const g = new GraphBuilder(TABLE);
  const y = g.node("scale", "odd", { inputs: [g.input("x", [1, 3])], weights: { w: "w1" } });
  assert.deepEqual(lowerGraph(g.build(y), TABLE, WEIGHTS, DEVICE, { label: "t" }).steps.map((s) => s.label), [
    "odd/scale_slow",
  ]);
  assert.throws(
    () => lowerGraph(graph(), TABLE, new Map([["w1", { buffer: BUF }]]), DEVICE, { label: "t" }),
    /Cannot lower "b": weight "w2" \(w\) is not loaded/,
  );
  assert.equal(graphFlops(graph(), TABLE), 2 * (8 + 8 + 8));
});

Deno.test("lowerGraph() inserts a non-finite check after every node, each bound to its slot", () => {
  const flags = {} as GPUBuffer;
  const builder = lowerGraph(graph(), TABLE, WEIGHTS, DEVICE, {
    label: "t",
    nonfiniteFlags: { buffer: flags, stride: 256 },
  });
  assert.deepEqual(builder.steps.map((s) => s.label), [
    "a/scale_slow",
    "a/check",
    "b/scale_fast",
    "b/check",
    "c/scale_fast",
    "c/check",
  ]);
  assert.deepEqual(builder.steps[3].bindings, ["b", {
    buffer: flags,
    label: "nonfinite flags/1",
    offset: 256,
    size: 256,
  }]);
});

Deno.test("lowerGraph() gives each node its weights' dtype, its input's when it has none, and refuses a mix", () => {
  const seen: [string, string][] = [];
  const probe: OpLowering = {
    op: "probe",
    outputShape: (_n, [x]) => x,
    flops: () => 0,
    lower(ctx) {
      seen.push([ctx.node.name, ctx.weightDtype]);
      ctx.step(CHECK, LAUNCH, [ctx.node.inputs[0], ctx.node.output]);
    },
  };
  const table = loweringTable([probe]);
  const g = new GraphBuilder(table);
  const x = g.input("x", [2, 4]);
  const a = g.node("probe", "a", { inputs: [x], weights: { w: "w32" } });
  const b = g.node("probe", "b", { inputs: [a], weights: { w: "w16", v: "untyped" } });
  const c = g.node("probe", "c", { inputs: [b] });
  const gr = g.build(c);
  const weights = new Map([
    ["w32", { buffer: BUF, dtype: "f32" as const }],
    ["w16", { buffer: BUF, dtype: "f16" as const }],
    ["untyped", { buffer: BUF }],
  ]);
  const dtypes = new Map([["x", "f32" as const], ["a", "f16" as const], ["b", "f16" as const], [
    "c",
    "f16" as const,
  ]]);
  // A binding without a dtype is the option's weightDtype (f16 here), so b's two weights agree.
  lowerGraph(gr, table, weights, DEVICE, { label: "t", dtypes, weightDtype: "f16" });
  assert.deepEqual(seen, [["a", "f32"], ["b", "f16"], ["c", "f16"]]);
  // At the default weightDtype (f32) the untyped binding disagrees with w16: the node and each weight named.
  assert.throws(() => lowerGraph(gr, table, weights, DEVICE, { label: "t", dtypes }), {
    name: "TypeError",
    message: 'Cannot lower "b": expected weights of one dtype, got w16 (w) f16, untyped (v) f32',
  });
});
