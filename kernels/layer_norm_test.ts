import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose, relativeMaxError } from "../tests/_compare.ts";
import { randomF32AsF64, randomFloats } from "../tests/_random.ts";
import { recordingContext, testNode, uniformWords } from "../tests/_lowering_ctx.ts";
import { runKernelOnce } from "./_harness.ts";
import { f16GpuTest, f16Tolerance, loaded, roundTo, stored } from "../tests/_f16.ts";
import { FLAVOURS } from "./_precision.ts";
import {
  LAYER_NORM_FLAVOURS,
  LAYER_NORM_WORKGROUP_SIZE,
  layerNormLaunch,
  layerNormLowering,
  type LayerNormShape,
  layerNormSpec,
} from "./layer_norm.ts";
import { layerNormRef } from "./layer_norm_ref.ts";

const U = 2 ** -24;

Deno.test("layerNormRef() matches a hand-computed case", () => {
  // row [1, 2, 3, 6]: mean 3, biased var (4 + 1 + 0 + 9) / 4 = 3.5, eps 0.5 -> rstd 0.5
  const y = layerNormRef(
    new Float64Array([1, 2, 3, 6]),
    new Float64Array([1, 2, 1, 1]),
    new Float64Array([0, 0, 10, 0]),
    { rows: 1, d: 4, eps: 0.5 },
  );
  assert.deepEqual([...y], [-1, -1, 10, 1.5]);
});

Deno.test("layerNormLaunch() packs {rows, d: u32; eps: f32} and dispatches a workgroup per row", () => {
  const launch = layerNormLaunch({ rows: 3 * 197, d: 384, eps: 1e-6 });
  assert.equal(launch.uniforms.byteLength, 16);
  assert.deepEqual(uniformWords(launch).slice(0, 2), [591, 384]);
  assert.equal(new DataView(launch.uniforms.buffer).getFloat32(8, true), Math.fround(1e-6));
  assert.deepEqual(launch.workgroups, [591, 1, 1]);
  const folded = layerNormLaunch({ rows: 100, d: 4, eps: 0 }, { maxComputeWorkgroupsPerDimension: 16 });
  assert.ok(folded.workgroups[0] <= 16 && folded.workgroups[0] * folded.workgroups[1] >= 100);
  assert.throws(() => layerNormLaunch({ rows: 0, d: 4, eps: 0 }), { name: "TypeError", message: /rows/ });
  assert.throws(() => layerNormLaunch({ rows: 1, d: 4, eps: -1 }), {
    name: "RangeError",
    message: "Cannot launch layer_norm: expected eps to be finite and >= 0, got -1",
  });
});

Deno.test("layerNormLowering keeps the shape, binds gamma and beta, and needs eps", () => {
  const node = testNode("layer_norm", {
    name: "norm",
    inputs: ["cls"],
    weights: { gamma: "norm.weight", beta: "norm.bias" },
    attrs: { eps: 1e-6 },
  });
  assert.deepEqual(layerNormLowering.outputShape(node, [[3, 4, 384]]), [3, 4, 384]);
  assert.equal(layerNormLowering.flops(node, () => [3, 4, 384]), 8 * 3 * 4 * 384);
  assert.throws(() => layerNormLowering.outputShape({ ...node, attrs: {} }, [[3, 4, 384]]), /"eps"/);
  const weightBytes = { "norm.weight": 384 * 4, "norm.bias": 384 * 4 };
  const { ctx, steps } = recordingContext(node, { shapes: { cls: [3, 4, 384] }, weightBytes });
  layerNormLowering.lower(ctx);
  assert.equal(steps[0].spec, layerNormSpec);
  assert.deepEqual(steps[0].bindings.map((b) => typeof b === "string" ? b : b.label), [
    "cls",
    "norm.weight",
    "norm.bias",
    "y",
  ]);
  assert.deepEqual(uniformWords(steps[0].launch).slice(0, 2), [12, 384]);
  const bad = recordingContext(node, {
    shapes: { cls: [3, 4, 384] },
    weightBytes: { ...weightBytes, "norm.bias": 192 * 4 },
  });
  assert.throws(() => layerNormLowering.lower(bad.ctx), /"norm.bias" \(beta\) of 1536 bytes/);
});

/**
 * Tolerance from float32: the mean and the variance are sums of at most ceil(D / WG) terms per thread and a
 * 6-level tree, so their errors stay within a few u of max|x| and of the variance; in y they count as
 * 8 u * rstd * max|x| * max|gamma| (the mean's error scaled by rstd covers the offset of the data too),
 * plus 4 u relative for the final normalise and fma and 2 u of max|beta|.
 */
function tolerance(x: Float64Array, gamma: Float64Array, beta: Float64Array, s: LayerNormShape) {
  let worst = 0;
  for (let r = 0; r < s.rows; r++) {
    const row = x.subarray(r * s.d, (r + 1) * s.d);
    const mean = row.reduce((a, b) => a + b, 0) / s.d;
    const rstd = 1 / Math.sqrt(row.reduce((a, b) => a + (b - mean) ** 2, 0) / s.d + s.eps);
    worst = Math.max(worst, rstd * row.reduce((a, b) => Math.max(a, Math.abs(b)), 0));
  }
  const maxAbs = (a: Float64Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  return { abs: 8 * U * worst * maxAbs(gamma) + 2 * U * maxAbs(beta), rel: 4 * U };
}

async function check(device: GPUDevice, label: string, shape: LayerNormShape, seed: number, offset = 0) {
  const x = Float64Array.from(
    new Float32Array(randomFloats(shape.rows * shape.d, seed, -2, 2).map((v) => v + offset)),
  );
  const gamma = randomF32AsF64(shape.d, seed + 1, 0.5, 1.5);
  const beta = randomF32AsF64(shape.d, seed + 2, -0.25, 0.25);
  const want = layerNormRef(x, gamma, beta, shape);
  const [out] = await runKernelOnce(device, layerNormSpec, layerNormLaunch(shape, device.limits), [
    new Float32Array(x),
    new Float32Array(gamma),
    new Float32Array(beta),
    { bytes: x.length * 4 },
  ]);
  const got = new Float32Array(out);
  const tol = tolerance(x, gamma, beta, shape);
  console.log(
    `layer_norm ${label}: max |e|/max|ref| ${relativeMaxError(got, want).toExponential(2)} (abs tol ${
      tol.abs.toExponential(2)
    })`,
  );
  assertClose(got, want, { ...tol, shape: [shape.rows, shape.d], what: `layer_norm ${label}` });
}

gpuTest(
  "layerNorm() matches layerNormRef for ViT shapes with T = 17 and 197, N = 1 and 3",
  async ({ device }) => {
    await check(device, "T = 17, D = 48", { rows: 17, d: 48, eps: 1e-6 }, 1);
    await check(device, "N = 3, T = 197, D = 384", { rows: 3 * 197, d: 384, eps: 1e-6 }, 2);
    await check(device, "N = 3, T = 5, D = 768", { rows: 15, d: 768, eps: 1e-6 }, 3);
    await check(device, "N = 3, 4 gathered class tokens, D = 192", { rows: 12, d: 192, eps: 1e-6 }, 4);
  },
);

gpuTest("layerNorm() matches layerNormRef when D is odd or below the workgroup size", async ({ device }) => {
  assert.ok(37 < LAYER_NORM_WORKGROUP_SIZE && 1000 % LAYER_NORM_WORKGROUP_SIZE !== 0);
  await check(device, "D = 37", { rows: 5, d: 37, eps: 1e-5 }, 5);
  await check(device, "D = 1000", { rows: 3, d: 1000, eps: 1e-6 }, 6);
  // D = 1: the variance is 0, so y = beta (rstd = 1/sqrt(eps) times an exact zero)
  await check(device, "D = 1", { rows: 4, d: 1, eps: 1e-6 }, 7);
});

gpuTest("layerNorm() stays accurate on rows whose mean is 100 times their spread", async ({ device }) => {
  // E[x^2] - E[x]^2 in f32 would lose about 4 digits of the variance here.
  await check(device, "D = 768, x = 200 + U(-2, 2)", { rows: 6, d: 768, eps: 1e-6 }, 8, 200);
});

// f16 flavours: x, gamma and beta f16 (the reference sees those values); mean, variance and the normalise in
// f32 (the f32 tolerance above), then the store: one f16 rounding (f16), or none (f16to32, the embedding).
for (const flavour of ["f16", "f16to32"] as const) {
  const spec = LAYER_NORM_FLAVOURS[flavour]!;
  f16GpuTest(
    `layerNorm() ${flavour} flavour matches layerNormRef on ViT shapes, odd D and offset rows`,
    async ({ device }) => {
      const t = FLAVOURS[flavour];
      const cases: [string, LayerNormShape, number][] = [
        ["T = 17, D = 48", { rows: 17, d: 48, eps: 1e-6 }, 0],
        ["N = 3, T = 197, D = 384", { rows: 3 * 197, d: 384, eps: 1e-6 }, 0],
        ["N = 3, 4 gathered class tokens, D = 192", { rows: 12, d: 192, eps: 1e-6 }, 0],
        ["D = 37", { rows: 5, d: 37, eps: 1e-5 }, 0],
        ["D = 1000", { rows: 3, d: 1000, eps: 1e-6 }, 0],
        ["D = 1", { rows: 4, d: 1, eps: 1e-6 }, 0],
        ["D = 768, x = 200 + U(-2, 2)", { rows: 6, d: 768, eps: 1e-6 }, 200],
      ];
      for (const [i, [label, shape, offset]] of cases.entries()) {
        const x = roundTo(randomFloats(shape.rows * shape.d, 40 + i, -2, 2).map((v) => v + offset), t.input);
        const gamma = roundTo(randomFloats(shape.d, 50 + i, 0.5, 1.5), t.weights);
        const beta = roundTo(randomFloats(shape.d, 60 + i, -0.25, 0.25), t.weights);
        const want = layerNormRef(x, gamma, beta, shape);
        const [out] = await runKernelOnce(device, spec, layerNormLaunch(shape, device.limits), [
          stored(x, t.input),
          stored(gamma, t.weights),
          stored(beta, t.weights),
          stored(new Float32Array(x.length).fill(NaN), t.output),
        ]);
        const got = loaded(out, t.output, x.length);
        const f32 = tolerance(x, gamma, beta, shape);
        const tol = t.output === "f16" ? f16Tolerance(f32) : f32;
        console.log(
          `${spec.name} ${label}: max |e|/max|ref| ${relativeMaxError(got, want).toExponential(2)}`,
        );
        assertClose(got, want, { ...tol, shape: [shape.rows, shape.d], what: `${spec.name} ${label}` });
      }
    },
    [spec],
  );
}

Deno.test("layerNormLowering picks f16 for f16 tokens and f16to32 for an f32 embedding", () => {
  const node = testNode("layer_norm", {
    name: "norm",
    inputs: ["cls"],
    weights: { gamma: "norm.weight", beta: "norm.bias" },
    attrs: { eps: 1e-6 },
  });
  const weightBytes = { "norm.weight": 384 * 2, "norm.bias": 384 * 2 };
  for (const [output, flavour] of [["f16", "f16"], ["f32", "f16to32"]] as const) {
    const { ctx, steps } = recordingContext(node, {
      shapes: { cls: [3, 4, 384] },
      weightBytes,
      dtypes: { cls: "f16", y: output },
      weightDtype: "f16",
    });
    layerNormLowering.lower(ctx);
    assert.equal(steps[0].spec, LAYER_NORM_FLAVOURS[flavour]);
  }
  // f32 tokens into f16 (the weights of a node reading f32 are f32 in a plan): no such flavour here.
  const { ctx } = recordingContext(node, {
    shapes: { cls: [3, 4, 384] },
    weightBytes: { "norm.weight": 384 * 4, "norm.bias": 384 * 4 },
    dtypes: { cls: "f32", y: "f16" },
    weightDtype: "f32",
  });
  assert.throws(() => layerNormLowering.lower(ctx), {
    name: "TypeError",
    message: /expected a kernel flavour for f32 input and f16 output \(f32to16\), got only f32, f16, f16to32/,
  });
});
