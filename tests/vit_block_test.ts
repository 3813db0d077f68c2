/**
 * The ViT kernels composed through the engine: a graph of vit_tokens, one pre-norm transformer block
 * (LN1, qkv, attention, proj + residual, LN2, fc1 + GELU, fc2 + residual), two class-token gathers and
 * the final LayerNorm, lowered with the kernels' own entries, planned and run, against the float64
 * references composed in the same order.
 * @module
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../engine/graph.ts";
import { lowerGraph, loweringTable, type WeightBinding } from "../engine/lowering.ts";
import { attentionLowering } from "../kernels/attention.ts";
import { attentionRef } from "../kernels/attention_ref.ts";
import { layerNormLowering } from "../kernels/layer_norm.ts";
import { layerNormRef } from "../kernels/layer_norm_ref.ts";
import { linearLowering, type LinearShape } from "../kernels/linear.ts";
import { linearRef } from "../kernels/linear_ref.ts";
import { tokenGatherLowering } from "../kernels/token_gather.ts";
import { tokenGatherRef } from "../kernels/token_gather_ref.ts";
import { vitTokensLowering } from "../kernels/vit_tokens.ts";
import { vitTokensRef } from "../kernels/vit_tokens_ref.ts";
import { gpuTest } from "./_gpu.ts";
import { relativeMaxError } from "./_compare.ts";
import { randomF32AsF64, randomFloats } from "./_random.ts";

const TABLE = loweringTable([
  vitTokensLowering,
  layerNormLowering,
  linearLowering,
  attentionLowering,
  tokenGatherLowering,
]);

/** The tiny case's dimensions: D 48, 3 heads of 16, a 4x4 patch grid (T = 17), MLP 4D. */
const D = 48;
const HEADS = 3;
const GRID = 4;
const T = 1 + GRID * GRID;
const EPS = 1e-6;

/** Weights of one block and the embedding, float32 values held as float64, by graph weight name. */
function randomWeights(seed: number): Map<string, Float64Array> {
  const w = new Map<string, Float64Array>();
  let s = seed;
  const put = (name: string, n: number, f: (v: number) => number) =>
    w.set(name, Float64Array.from(new Float32Array(randomFloats(n, s++).map(f))));
  // the fixtures' procedural scales: LayerNorm 1 + v/4 and v/4, linear v * sqrt(3 / fan_in), bias v/4
  const linear = (name: string, din: number, dout: number) => {
    put(`${name}.weight`, din * dout, (v) => v * Math.sqrt(3 / din));
    put(`${name}.bias`, dout, (v) => v / 4);
  };
  put("cls_token", D, (v) => v / 2);
  put("pos_embed", T * D, (v) => v / 2);
  for (const norm of ["norm1", "norm2", "norm"]) {
    put(`${norm}.weight`, D, (v) => 1 + v / 4);
    put(`${norm}.bias`, D, (v) => v / 4);
  }
  linear("qkv", D, 3 * D);
  linear("proj", D, D);
  linear("fc1", D, 4 * D);
  linear("fc2", 4 * D, D);
  return w;
}

/** The graph: tokens, CLS of the block input into slot 0, the block, CLS of its output into slot 1, norm. */
function blockGraph(n: number) {
  const b = new GraphBuilder(TABLE);
  const patches = b.input("patches", [n, GRID, GRID, D]);
  const x = b.node("vit_tokens", "tokens", {
    inputs: [patches],
    weights: { cls: "cls_token", pos: "pos_embed" },
  });
  b.node("token_gather", "cls.0", { inputs: [x], output: "cls", attrs: { slots: 2, slot: 0 } });
  const norm = (name: string, input: string, weights: string) =>
    b.node("layer_norm", name, {
      inputs: [input],
      weights: { gamma: `${weights}.weight`, beta: `${weights}.bias` },
      attrs: { eps: EPS },
    });
  // The residual adds take the stream as a second input and write a new tensor.
  const linear = (
    name: string,
    input: string,
    dout: number,
    attrs: Record<string, string> = {},
    residual?: string,
  ) =>
    b.node("linear", name, {
      inputs: residual ? [input, residual] : [input],
      weights: { weight: `${name}.weight`, bias: `${name}.bias` },
      attrs: { outFeatures: dout, ...attrs },
    });
  const h1 = norm("norm1", x, "norm1");
  const qkv = linear("qkv", h1, 3 * D);
  const a = b.node("attention", "attn", { inputs: [qkv], attrs: { heads: HEADS } });
  const x1 = linear("proj", a, D, {}, x);
  const h2 = norm("norm2", x1, "norm2");
  const f = linear("fc1", h2, 4 * D, { activation: "gelu" });
  const x2 = linear("fc2", f, D, {}, x1);
  b.node("token_gather", "cls.1", {
    inputs: [x2],
    output: "cls",
    inPlace: true,
    attrs: { slots: 2, slot: 1 },
  });
  const out = norm("norm", "cls", "norm");
  b.checkpoint("block", x2);
  return b.build(out);
}

/** The same computation in float64 with the kernels' references. */
function blockRef(n: number, patches: Float64Array, w: Map<string, Float64Array>) {
  const g = (name: string) => w.get(name)!;
  const rows = n * T;
  const x = vitTokensRef(patches, g("cls_token"), g("pos_embed"), { n, patches: GRID * GRID, d: D });
  let cls = tokenGatherRef(x, new Float64Array(n * 2 * D), {
    n,
    tokens: T,
    d: D,
    token: 0,
    slots: 2,
    slot: 0,
  });
  const ln = (v: Float64Array, name: string, r = rows) =>
    layerNormRef(v, g(`${name}.weight`), g(`${name}.bias`), { rows: r, d: D, eps: EPS });
  const lin = (
    v: Float64Array,
    name: string,
    shape: Omit<LinearShape, "rows" | "bias">,
    res?: Float64Array,
  ) => linearRef(v, g(`${name}.weight`), g(`${name}.bias`), { rows, bias: true, ...shape }, res);
  const none = { activation: "none", accumulate: false } as const;
  const qkv = lin(ln(x, "norm1"), "qkv", { din: D, dout: 3 * D, ...none });
  const a = attentionRef(qkv, { n, tokens: T, heads: HEADS, headDim: D / HEADS });
  const x1 = lin(a, "proj", { din: D, dout: D, activation: "none", accumulate: true }, x);
  const f = lin(ln(x1, "norm2"), "fc1", { din: D, dout: 4 * D, activation: "gelu", accumulate: false });
  const x2 = lin(f, "fc2", { din: 4 * D, dout: D, activation: "none", accumulate: true }, x1);
  cls = tokenGatherRef(x2, cls, { n, tokens: T, d: D, token: 0, slots: 2, slot: 1 });
  return { block: x2, embedding: ln(cls, "norm", n * 2) };
}

for (const n of [1, 3]) {
  gpuTest(
    `the ViT kernels compose into a pre-norm block within 1e-6 of float64 at D 48, T 17, N ${n}`,
    async (gpu) => {
      const weights = randomWeights(40 + n);
      const patches = randomF32AsF64(n * GRID * GRID * D, 7 + n, -2, 2);
      const graph = blockGraph(n);
      const buffers: GPUBuffer[] = [];
      const bindings = new Map<string, WeightBinding>();
      for (const [name, values] of weights) {
        const data = new Float32Array(values);
        const buffer = gpu.device.createBuffer({
          label: name,
          size: data.byteLength,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
        });
        gpu.device.queue.writeBuffer(buffer, 0, data);
        buffers.push(buffer);
        bindings.set(name, { buffer });
      }
      const builder = lowerGraph(graph, TABLE, bindings, gpu, {
        label: "vit-block",
        keep: [graph.checkpoints.block],
      });
      assert.deepEqual(builder.steps.map((s) => s.label), [
        "tokens/vit_tokens",
        "cls.0/token_gather",
        "norm1/layer_norm",
        "qkv/linear_big_tile",
        "attn/attention_query_tiled_hd16",
        "proj/linear_big_tile",
        "norm2/layer_norm",
        "fc1/linear_big_tile",
        "fc2/linear_big_tile",
        "cls.1/token_gather",
        "norm/layer_norm",
      ]);
      const plan = await builder.build(gpu);
      try {
        const outputs = await plan.run({ patches: new Float32Array(patches) });
        const embedding = new Float32Array(outputs.get(graph.output)!);
        const block = new Float32Array(await plan.readTensor(graph.checkpoints.block));
        const want = blockRef(n, patches, weights);
        const blockErr = relativeMaxError(block, want.block);
        const embeddingErr = relativeMaxError(embedding, want.embedding);
        console.log(
          `N ${n}: block max |e|/max|ref| ${blockErr.toExponential(2)}, embedding ${
            embeddingErr.toExponential(2)
          }`,
        );
        assert.ok(blockErr <= 1e-6, `block: ${blockErr}`);
        assert.ok(embeddingErr <= 1e-6, `embedding: ${embeddingErr}`);
      } finally {
        plan.dispose();
        buffers.forEach((b) => b.destroy());
      }
    },
  );
}
