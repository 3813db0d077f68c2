/**
 * The ViT kernels on the tiny Gröger fixture (testdata/groeger/tiny-vit-64: D 48, 3 heads, depth 3,
 * embedding = final norm of the class token of the last 2 blocks): from the fixture's `tokens` (after the
 * position embedding) through the three blocks, two gathers and the final LayerNorm, lowered with the
 * kernels' own entries, against the float64 PyTorch references `block0..2` and `embedding_f64`.
 *
 * The weights are the fixture's procedural ones (testdata/groeger/README.md), regenerated here and checked
 * tensor by tensor against the SHA-256 in testdata/procedural_weights.json before use.
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { GraphBuilder } from "../engine/graph.ts";
import { lowerGraph, loweringTable, type WeightBinding } from "../engine/lowering.ts";
import { attentionLowering } from "../kernels/attention.ts";
import { layerNormLowering } from "../kernels/layer_norm.ts";
import { linearLowering } from "../kernels/linear.ts";
import { tokenGatherLowering } from "../kernels/token_gather.ts";
import { gpuTest } from "./_gpu.ts";
import { relativeMaxError } from "./_compare.ts";
import { parseReference, proceduralWeightsRecords } from "./_fixtures.ts";
import { readTestdata } from "./_testdata.ts";

const TABLE = loweringTable([layerNormLowering, linearLowering, attentionLowering, tokenGatherLowering]);
const FILE = "groeger/tiny-vit-64.safetensors";
const D = 48;
const HEADS = 3;
const DEPTH = 3;
const VIT_BLOCKS = 2;
const T = 17;

/** v_i of testdata/FIXTURES_README.md in double: FNV-1a of seed/name, Weyl sequence, murmur3 fmix32. */
function proceduralV(seed: string, name: string, n: number): Float64Array {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(`${seed}/${name}`)) h = Math.imul(h ^ byte, 0x01000193);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let x = (h + Math.imul(i, 0x9e3779b9)) | 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b);
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35);
    x ^= x >>> 16;
    v[i] = ((x >>> 0) / 2 ** 32) * 2 - 1;
  }
  return v;
}

/** The Gröger procedural value map (testdata/groeger/README.md), rounded to float32. */
function grogerTensor(seed: string, name: string, shape: readonly number[]): Float32Array<ArrayBuffer> {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = proceduralV(seed, name, n);
  const last = name.split(".").pop()!;
  const fanIn = n / shape[0];
  const f = last === "cls_token" || last === "pos_embed"
    ? (x: number) => 0.5 * x
    : last === "bias"
    ? (x: number) => 0.25 * x
    : last === "weight" && shape.length === 1
    ? (x: number) => 1 + 0.25 * x
    : (x: number) => x * Math.sqrt(3 / fanIn);
  return Float32Array.from(v, f);
}

/** Every tensor of the fixture's weights, checked against its recorded SHA-256. */
function fixtureWeights(): Map<string, { shape: number[]; data: Float32Array<ArrayBuffer> }> {
  const record = proceduralWeightsRecords()[FILE];
  const out = new Map<string, { shape: number[]; data: Float32Array<ArrayBuffer> }>();
  for (const t of record.tensors) {
    const data = grogerTensor(record.metadata.seed, t.name, t.shape);
    const sha = createHash("sha256").update(new Uint8Array(data.buffer)).digest("hex");
    assert.equal(sha, t.sha256, `regenerated "${t.name}" differs from testdata/procedural_weights.json`);
    out.set(t.name, { shape: t.shape, data });
  }
  return out;
}

/** torch's [out, in] as [in, out] (Dout contiguous), the layout of linear's `weight`. */
function transposed(shape: readonly number[], data: Float32Array): Float32Array<ArrayBuffer> {
  const [o, i] = shape;
  const t = new Float32Array(o * i);
  for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) t[c * o + r] = data[r * i + c];
  return t;
}

function vitGraph() {
  const b = new GraphBuilder(TABLE);
  const x = b.input("tokens", [1, T, D]);
  const norm = (name: string, input: string, weights: string) =>
    b.node("layer_norm", name, {
      inputs: [input],
      weights: { gamma: `${weights}.weight`, beta: `${weights}.bias` },
      attrs: { eps: 1e-6 },
    });
  const linear = (name: string, input: string, dout: number, attrs: Record<string, string | boolean> = {}) =>
    b.node("linear", name, {
      inputs: [input],
      weights: { weight: `${name}.weight`, bias: `${name}.bias` },
      attrs: { outFeatures: dout, ...attrs },
      ...(attrs.accumulate ? { output: x, inPlace: true } : {}),
    });
  for (let i = 0; i < DEPTH; i++) {
    const p = `blocks.${i}`;
    const qkv = linear(`${p}.attn.qkv`, norm(`${p}.norm1`, x, `${p}.norm1`), 3 * D);
    const a = b.node("attention", `${p}.attn`, { inputs: [qkv], attrs: { heads: HEADS } });
    linear(`${p}.attn.proj`, a, D, { accumulate: true });
    const f = linear(`${p}.mlp.fc1`, norm(`${p}.norm2`, x, `${p}.norm2`), 4 * D, { activation: "gelu" });
    linear(`${p}.mlp.fc2`, f, D, { accumulate: true });
    // the block output lives in x until the next block; a copy into slot i of "blocks" keeps it
    b.node("token_gather", `${p}.keep`, {
      inputs: [x],
      output: "kept",
      inPlace: i > 0,
      attrs: { slots: DEPTH, slot: i, token: 0 },
    });
    const slot = i - (DEPTH - VIT_BLOCKS);
    if (slot >= 0) {
      b.node("token_gather", `${p}.cls`, {
        inputs: [x],
        output: "cls",
        inPlace: slot > 0,
        attrs: { slots: VIT_BLOCKS, slot },
      });
    }
  }
  b.checkpoint("block2", x);
  b.checkpoint("kept", "kept");
  return b.build(norm("norm", "cls", "norm"));
}

gpuTest(
  "the ViT kernels reproduce the tiny-vit-64 fixture's blocks and embedding from its tokens",
  async (gpu) => {
    const refFile = "groeger/tiny-vit-64.ref.safetensors";
    const { tensors: ref, metadata } = parseReference(readTestdata(refFile), refFile);
    const weights = fixtureWeights();
    const buffers: GPUBuffer[] = [];
    const bindings = new Map<string, WeightBinding>();
    for (const [name, { shape, data }] of weights) {
      const values = shape.length === 2 ? transposed(shape, data) : data;
      const buffer = gpu.device.createBuffer({
        label: name,
        size: values.byteLength,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      gpu.device.queue.writeBuffer(buffer, 0, values);
      buffers.push(buffer);
      bindings.set(name, { buffer });
    }
    const graph = vitGraph();
    const builder = lowerGraph(graph, TABLE, bindings, gpu, {
      label: "tiny-vit",
      keep: [graph.checkpoints.block2, graph.checkpoints.kept],
    });
    const plan = await builder.build(gpu);
    try {
      const out = await plan.run({ tokens: new Float32Array(ref.get("tokens")!.data) });
      const embedding = new Float32Array(out.get(graph.output)!);
      const block2 = new Float32Array(await plan.readTensor(graph.checkpoints.block2));
      const kept = new Float32Array(await plan.readTensor(graph.checkpoints.kept));
      const clsErrors = Array.from(
        { length: DEPTH },
        (_, i) =>
          relativeMaxError(kept.subarray(i * D, (i + 1) * D), ref.get(`block${i}`)!.data.subarray(0, D)),
      );
      const errors = clsErrors.map((e, i) => `block${i} CLS ${e.toExponential(2)}`);
      const blockErr = relativeMaxError(block2, ref.get("block2")!.data);
      const err = relativeMaxError(embedding, ref.get("embedding_f64")!.data);
      // testdata/groeger/README.md: max(2 x PyTorch float32's own error, 2e-6)
      const bound = Math.max(2 * Number(metadata.torch_f32_max_rel_err), 2e-6);
      console.log(
        `tiny-vit-64: ${errors.join(", ")}; block2 (all tokens) ${blockErr.toExponential(2)}; embedding ` +
          `${err.toExponential(2)} (bound ${
            bound.toExponential(2)
          }, PyTorch f32 ${metadata.torch_f32_max_rel_err})`,
      );
      clsErrors.forEach((e, i) => assert.ok(e <= bound, `block${i} CLS: ${e}`));
      assert.ok(blockErr <= bound, `block2: ${blockErr}`);
      assert.ok(err <= bound, `embedding: ${err} > ${bound}`);
    } finally {
      plan.dispose();
      buffers.forEach((b) => b.destroy());
    }
  },
);
