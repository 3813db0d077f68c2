import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose, relativeMaxError } from "../tests/_compare.ts";
import { randomFloats } from "../tests/_random.ts";
import { recordingContext, testNode, uniformWords } from "../tests/_lowering_ctx.ts";
import { runKernelOnce } from "./_harness.ts";
import { f16GpuTest, f16Tolerance, loaded, roundTo, stored } from "../tests/_f16.ts";
import {
  ATTENTION_HEAD_DIMS,
  ATTENTION_TILED_WORKGROUP_SIZE,
  attentionFits,
  attentionFlavours,
  attentionLaunch,
  attentionLowering,
  attentionQueryTiled,
  type AttentionShape,
  attentionStreaming,
  attentionVariants,
} from "./attention.ts";
import { ATTENTION_TILED_QUERIES } from "./attention.wgsl.ts";
import { attentionRef } from "./attention_ref.ts";

const U = 2 ** -24;

Deno.test("attentionRef() matches a hand-computed two-token case", () => {
  // N 1, T 2, one head of 1: token rows (q, k, v) = (1, 0, 10), (2, ln 3, 20); scale 1
  // query 0 scores [0, ln 3] -> weights [1/4, 3/4] -> 17.5; query 1 scores [0, 2 ln 3] -> [1/10, 9/10] -> 19
  const qkv = new Float64Array([1, 0, 10, 2, Math.log(3), 20]);
  const out = attentionRef(qkv, { n: 1, tokens: 2, heads: 1, headDim: 1 });
  assert.ok(Math.abs(out[0] - 17.5) < 1e-13 && Math.abs(out[1] - 19) < 1e-13, `${out}`);
});

Deno.test("attentionLaunch() packs the uniforms and needs the variant's head dimension", () => {
  const shape: AttentionShape = { n: 3, tokens: 197, heads: 6, headDim: 64 };
  const launch = attentionLaunch(attentionQueryTiled.get(64)!, shape);
  const qblocks = Math.ceil(197 / ATTENTION_TILED_QUERIES);
  const units = 3 * 6 * qblocks;
  assert.equal(launch.uniforms.byteLength, 32);
  const words = uniformWords(launch);
  assert.deepEqual([...words.slice(0, 6), words[7]], [3, 197, 384, 6, qblocks, units, 0]);
  const scale = new DataView(launch.uniforms.buffer).getFloat32(24, true);
  assert.equal(scale, Math.fround(Math.LOG2E / 8));
  assert.deepEqual(launch.workgroups, [Math.ceil(units / ATTENTION_TILED_WORKGROUP_SIZE), 1, 1]);
  assert.deepEqual(launch.outShape, [3, 197, 384]);
  assert.deepEqual(
    uniformWords(attentionLaunch(attentionStreaming.get(16)!, { ...shape, headDim: 16 })).slice(4, 6),
    [
      197,
      3 * 6 * 197,
    ],
  );
  assert.throws(() => attentionLaunch(attentionStreaming.get(32)!, shape), {
    name: "TypeError",
    message: "Cannot launch attention_streaming_hd32: expected head dimension 32, got 64",
  });
  assert.throws(() => attentionLaunch(attentionStreaming.get(64)!, { ...shape, tokens: 0 }), /tokens/);
});

Deno.test("attentionLowering maps [N, T, 3D] to [N, T, D], picks the tiled variant and refuses other head dims", () => {
  const node = testNode("attention", { name: "blocks.0.attn", inputs: ["qkv"], attrs: { heads: 6 } });
  assert.deepEqual(attentionLowering.outputShape(node, [[2, 197, 1152]]), [2, 197, 384]);
  assert.equal(attentionLowering.flops(node, () => [2, 197, 1152]), 4 * 2 * 197 * 197 * 384);
  assert.throws(() => attentionLowering.outputShape(node, [[2, 197, 1000]]), /3 \* heads \(6\) \* head dim/);
  assert.throws(() => attentionLowering.outputShape({ ...node, attrs: { heads: 3 } }, [[1, 5, 3 * 3 * 40]]), {
    name: "TypeError",
    message: `Cannot build "blocks.0.attn" (attention): expected a head dimension in 16, 32, 64, got 40`,
  });
  assert.throws(() => attentionLowering.outputShape({ ...node, attrs: {} }, [[1, 5, 144]]), /"heads"/);
  const { ctx, steps } = recordingContext(node, { shapes: { qkv: [2, 197, 1152] } });
  attentionLowering.lower(ctx);
  assert.equal(steps[0].spec, attentionQueryTiled.get(64));
  assert.deepEqual(steps[0].bindings, ["qkv", "y"]);
  const forced = recordingContext(node, {
    shapes: { qkv: [2, 197, 1152] },
    forced: ["attention_streaming_hd64"],
  });
  attentionLowering.lower(forced.ctx);
  assert.equal(forced.steps[0].spec, attentionStreaming.get(64));
  assert.ok(
    attentionVariants.every((v) => ATTENTION_HEAD_DIMS.some((hd) => attentionFits(v, { headDim: hd }))),
  );
});

interface Case {
  label: string;
  shape: AttentionShape;
  /** Scale of q and k (larger: more peaked softmax). */
  qk?: number;
}

const cases: Case[] = [
  { label: "ViT tiny case (T = 17, 3 heads of 16)", shape: { n: 1, tokens: 17, heads: 3, headDim: 16 } },
  { label: "N = 3, T = 5, 2 heads of 32", shape: { n: 3, tokens: 5, heads: 2, headDim: 32 } },
  { label: "ViT-T dims (N = 3, T = 17, 3 heads of 64)", shape: { n: 3, tokens: 17, heads: 3, headDim: 64 } },
  { label: "ViT-S (T = 197, 6 heads of 64)", shape: { n: 1, tokens: 197, heads: 6, headDim: 64 } },
  { label: "one token (N = 2, 2 heads of 16)", shape: { n: 2, tokens: 1, heads: 2, headDim: 16 } },
  { label: "T = 16, a whole number of query tiles", shape: { n: 1, tokens: 16, heads: 1, headDim: 32 } },
  {
    label: "peaked softmax (scores up to ~90, T = 9, 2 heads of 32)",
    shape: { n: 1, tokens: 9, heads: 2, headDim: 32 },
    qk: 4,
  },
];

/**
 * Tolerance from float32: a score s = q.k / sqrt(hd) is bounded by S = sqrt(hd) max|q| max|k| and errs by
 * a few u * S (the dot product, the scale folded into q); that error is an absolute error of the exponent,
 * so a relative error of each weight; exp2 adds up to 3 ulps, the sums over keys and the division a few
 * more. In out, weighted means of v: 8 u * (2 + S) * max|v| absolute, 8 u relative.
 */
function tolerance(qkv: Float64Array, s: AttentionShape) {
  const d = s.heads * s.headDim;
  let q = 0, k = 0, v = 0;
  qkv.forEach((x, i) => {
    const col = i % (3 * d);
    if (col < d) q = Math.max(q, Math.abs(x));
    else if (col < 2 * d) k = Math.max(k, Math.abs(x));
    else v = Math.max(v, Math.abs(x));
  });
  const bound = Math.sqrt(s.headDim) * q * k;
  return { abs: 8 * U * (2 + bound) * v, rel: 8 * U, bound };
}

for (const spec of attentionVariants) {
  for (const [i, { label, shape, qk }] of cases.entries()) {
    if (!attentionFits(spec, shape)) continue;
    gpuTest(`${spec.name} matches attentionRef for ${label}`, async ({ device }) => {
      const { n, tokens, heads, headDim } = shape;
      const d = heads * headDim;
      const scale = qk ?? 1;
      const qkv = Float64Array.from(
        new Float32Array(
          randomFloats(n * tokens * 3 * d, 500 + i).map((x, j) => (j % (3 * d) < 2 * d ? scale * x : x)),
        ),
      );
      const want = attentionRef(qkv, shape);
      const [out] = await runKernelOnce(device, spec, attentionLaunch(spec, shape, device.limits), [
        new Float32Array(qkv),
        { bytes: want.length * 4 },
      ]);
      const got = new Float32Array(out);
      const tol = tolerance(qkv, shape);
      console.log(
        `${spec.name} ${label}: max |e|/max|ref| ${relativeMaxError(got, want).toExponential(2)} ` +
          `(abs tol ${tol.abs.toExponential(2)}, score bound ${tol.bound.toFixed(1)})`,
      );
      assertClose(got, want, {
        abs: tol.abs,
        rel: tol.rel,
        shape: [n, tokens, d],
        what: `${spec.name} ${label}`,
      });
    });
  }
}

// f16 flavours: qkv f16 (the reference sees those values); scores, softmax (max, exp2, sums) and the weighted
// sums of v in f32 (the f32 tolerance above), then one f16 store.
for (const spec of attentionFlavours.f16!) {
  for (const [i, { label, shape, qk }] of cases.entries()) {
    if (!attentionFits(spec, shape)) continue;
    f16GpuTest(`${spec.name} matches attentionRef for ${label}`, async ({ device }) => {
      const { n, tokens, heads, headDim } = shape;
      const d = heads * headDim;
      const scale = qk ?? 1;
      const qkv = roundTo(
        randomFloats(n * tokens * 3 * d, 700 + i).map((x, j) => (j % (3 * d) < 2 * d ? scale * x : x)),
        "f16",
      );
      const want = attentionRef(qkv, shape);
      const [out] = await runKernelOnce(device, spec, attentionLaunch(spec, shape, device.limits), [
        stored(qkv, "f16"),
        stored(new Float32Array(want.length).fill(NaN), "f16"),
      ]);
      const got = loaded(out, "f16", want.length);
      const tol = f16Tolerance(tolerance(qkv, shape));
      console.log(`${spec.name} ${label}: max |e|/max|ref| ${relativeMaxError(got, want).toExponential(2)}`);
      assertClose(got, want, { ...tol, shape: [n, tokens, d], what: `${spec.name} ${label}` });
    }, [spec]);
  }
}

Deno.test("attentionLowering picks the f16 variants for f16 tensors, tiled first and streaming when forced", () => {
  const node = testNode("attention", { name: "blocks.0.attn", inputs: ["qkv"], attrs: { heads: 6 } });
  const options = {
    shapes: { qkv: [2, 197, 1152] },
    dtypes: { qkv: "f16", y: "f16" } as const,
    weightDtype: "f16" as const,
  };
  const { ctx, steps } = recordingContext(node, options);
  attentionLowering.lower(ctx);
  assert.equal(steps[0].spec.name, "attention_query_tiled_hd64_f16");
  const forced = recordingContext(node, { ...options, forced: ["attention_streaming_hd64_f16"] });
  attentionLowering.lower(forced.ctx);
  assert.equal(forced.steps[0].spec.name, "attention_streaming_hd64_f16");
});

Deno.test("attention kernel cases cover every head dimension, query tails and batches", () => {
  for (const hd of ATTENTION_HEAD_DIMS) assert.ok(cases.some(({ shape }) => shape.headDim === hd));
  assert.ok(cases.some(({ shape }) => shape.tokens % ATTENTION_TILED_QUERIES !== 0 && shape.tokens > 8));
  assert.ok(cases.some(({ shape }) => shape.tokens % ATTENTION_TILED_QUERIES === 0));
  assert.ok(cases.some(({ shape }) => shape.n === 3) && cases.some(({ shape }) => shape.n === 1));
});
