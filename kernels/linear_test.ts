import assert from "node:assert/strict";
import { DEFAULT_LAUNCH_LIMITS, type KernelSpec } from "../engine/kernel.ts";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose, relativeMaxError } from "../tests/_compare.ts";
import { randomF32AsF64 } from "../tests/_random.ts";
import { recordingContext, testNode, uniformWords } from "../tests/_lowering_ctx.ts";
import { runKernelOnce } from "./_harness.ts";
import {
  LINEAR_BIG_TILE_TILE_FEATURES,
  LINEAR_BIG_TILE_TILE_ROWS,
  LINEAR_BIG_TILE_WORKGROUP_SIZE,
  LINEAR_CHUNK,
  LINEAR_TILED_TILE_FEATURES,
  LINEAR_TILED_TILE_ROWS,
  LINEAR_WORKGROUP_SIZE,
  linearBigTile,
  linearDirect,
  linearFits,
  linearFlavours,
  linearLaunch,
  linearLowering,
  type LinearShape,
  linearTiled,
  linearVariants,
} from "./linear.ts";
import { linearRef } from "./linear_ref.ts";
import { f16GpuTest, f16Tolerance, loaded, roundTo, stored } from "../tests/_f16.ts";
import { FLAVOURS, type StorageTypes } from "./_precision.ts";

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

const U = 2 ** -24; // f32 unit roundoff

function shapeOf(p: Partial<LinearShape> & { rows: number; din: number; dout: number }): LinearShape {
  return { bias: true, activation: "none", accumulate: false, ...p };
}

// ---------- pure tests: reference, launch, uniforms, lowering ----------

Deno.test("linearRef() matches hand-computed cases with bias, a residual and GELU", () => {
  // x [2, 2] = [[1, 2], [3, -4]]; w [2, 3] = [[1, 0, -1], [0.5, 1, 0]]; b = [0, -1, 0.5]
  const x = new Float64Array([1, 2, 3, -4]);
  const w = new Float64Array([1, 0, -1, 0.5, 1, 0]);
  const b = new Float64Array([0, -1, 0.5]);
  const plain = linearRef(x, w, b, shapeOf({ rows: 2, din: 2, dout: 3 }));
  assert.deepEqual([...plain], [2, 1, -0.5, 1, -5, -2.5]);
  const res = new Float64Array([10, 20, 30, 40, 50, 60]);
  const withRes = linearRef(x, w, b, shapeOf({ rows: 2, din: 2, dout: 3, accumulate: true }), res);
  assert.deepEqual([...withRes], [12, 21, 29.5, 41, 45, 57.5]);
  const gelu = linearRef(x, w, b, shapeOf({ rows: 2, din: 2, dout: 3, activation: "gelu" }));
  // gelu(2) = 1.9544997361036416, gelu(1) = 0.8413447460685429, gelu(-0.5) = -0.15426876936299347
  const want = [1.9544997361036416, 0.8413447460685429, -0.15426876936299347];
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(gelu[i] - want[i]) < 1e-15, `${gelu[i]} vs ${want[i]}`);
});

Deno.test("linearLaunch() packs the uniform struct field by field as u32", () => {
  const shape = shapeOf({ rows: 197, din: 384, dout: 1152, activation: "gelu" });
  const { uniforms, workgroups, outShape } = linearLaunch(linearTiled, shape);
  assert.equal(uniforms.byteLength, 32);
  const tiles = 1152 / LINEAR_TILED_TILE_FEATURES;
  const units = Math.ceil(197 / LINEAR_TILED_TILE_ROWS) * tiles;
  // m din dout units col_tiles bias gelu accumulate
  assert.deepEqual(uniformWords({ uniforms, workgroups }), [197, 384, 1152, units, tiles, 1, 1, 0]);
  assert.deepEqual(workgroups, [Math.ceil(units / LINEAR_WORKGROUP_SIZE), 1, 1]);
  assert.deepEqual(outShape, [197, 1152]);
  const big = linearLaunch(linearBigTile, shape);
  const bigTiles = 1152 / LINEAR_BIG_TILE_TILE_FEATURES;
  const bigUnits = Math.ceil(197 / LINEAR_BIG_TILE_TILE_ROWS) * bigTiles;
  assert.deepEqual(uniformWords(big), [197, 384, 1152, bigUnits, bigTiles, 1, 1, 0]);
  const acc = linearLaunch(linearBigTile, { ...shape, activation: "none", accumulate: true });
  assert.deepEqual(uniformWords(acc).slice(5), [1, 0, 1]);
  assert.deepEqual(big.workgroups, [Math.ceil(bigUnits / LINEAR_BIG_TILE_WORKGROUP_SIZE), 1, 1]);
  const direct = linearLaunch(linearDirect, shapeOf({ rows: 5, din: 7, dout: 3, bias: false }));
  assert.deepEqual(uniformWords(direct), [5, 7, 3, 15, 3, 0, 0, 0]);
});

Deno.test("linearLaunch() rejects bad shapes with a TypeError naming the problem", () => {
  const good = shapeOf({ rows: 17, din: 48, dout: 144 });
  assert.throws(() => linearLaunch(linearTiled, { ...good, din: 46 }), {
    name: "TypeError",
    message: "Cannot launch linear_tiled: expected Din % 4 == 0, got 46",
  });
  assert.throws(() => linearLaunch(linearTiled, { ...good, dout: 10 }), {
    name: "TypeError",
    message: "Cannot launch linear_tiled: expected Dout % 4 == 0, got 10",
  });
  assert.throws(() => linearLaunch(linearDirect, { ...good, rows: 0 }), /rows to be a positive integer/);
  assert.throws(
    () => linearLaunch(linearDirect, { ...good, activation: "relu" as "gelu" }),
    /expected activation "none" or "gelu", got "relu"/,
  );
  assert.throws(
    () => linearLaunch(linearDirect, { ...good, accumulate: 1 as unknown as boolean }),
    /accumulate to be a boolean/,
  );
  assert.throws(() => linearLaunch({ ...linearTiled, name: "gemm" }, good), /expected a linear variant/);
  assert.throws(() => linearLaunch(linearTiled, { ...good, activation: "gelu", accumulate: true }), {
    name: "TypeError",
    message: "Cannot launch linear_tiled: expected GELU or accumulate, got both",
  });
  assert.throws(() => linearLaunch(linearDirect, { ...good, rows: 2 ** 22, dout: 2 ** 10 }), {
    name: "RangeError",
  });
  assert.deepEqual(linearLaunch(linearDirect, { ...good, din: 7, dout: 5 }).outShape, [17, 5]);
});

Deno.test("linearLaunch() folds big dispatches within the per-dimension limit", () => {
  const max = DEFAULT_LAUNCH_LIMITS.maxComputeWorkgroupsPerDimension;
  // ViT-B fc1 at batch 64: 64*197 rows x 3072 features, one output per invocation
  const shape = shapeOf({ rows: 64 * 197, din: 768, dout: 3072 });
  const { workgroups } = linearLaunch(linearDirect, shape);
  const needed = Math.ceil(64 * 197 * 3072 / LINEAR_WORKGROUP_SIZE);
  assert.ok(workgroups[1] > 1 && workgroups.every((g) => g <= max), `${workgroups}`);
  assert.ok(
    workgroups[0] * workgroups[1] >= needed && workgroups[0] * workgroups[1] - needed < workgroups[1],
  );
  assert.throws(() => linearLaunch(linearDirect, shape, { maxComputeWorkgroupsPerDimension: 100 }), {
    name: "RangeError",
  });
});

Deno.test("linearLowering gives [..., outFeatures], counts FLOPs and takes a residual as a second input", () => {
  const node = testNode("linear", { inputs: ["x"], attrs: { outFeatures: 144 } });
  assert.deepEqual(linearLowering.outputShape(node, [[3, 17, 48]]), [3, 17, 144]);
  assert.equal(linearLowering.flops(node, () => [3, 17, 48]), 2 * 51 * 48 * 144);
  const withResidual = { ...node, inputs: ["x", "stream"] };
  assert.deepEqual(linearLowering.outputShape(withResidual, [[3, 17, 48], [3, 17, 144]]), [3, 17, 144]);
  assert.throws(
    () => linearLowering.outputShape(withResidual, [[3, 17, 48], [3, 17, 48]]),
    { name: "TypeError", message: /expected the residual "stream" of shape \[3,17,144\], got \[3,17,48\]/ },
  );
  assert.throws(
    () => linearLowering.outputShape({ ...node, inPlace: true }, [[3, 17, 48]]),
    /expected a new output tensor, got inPlace/,
  );
  assert.throws(() => linearLowering.outputShape({ ...node, attrs: {} }, [[3, 17, 48]]), /outFeatures/);
  assert.throws(
    () => linearLowering.outputShape({ ...node, attrs: { outFeatures: 8, activation: "tanh" } }, [[1, 4]]),
    /"activation" to be "none" or "gelu"/,
  );
  assert.throws(() => linearLowering.outputShape(node, [[48]]), /rank >= 2/);
  const both = { ...withResidual, attrs: { outFeatures: 144, activation: "gelu" } };
  assert.throws(
    () => linearLowering.outputShape(both, [[3, 17, 48], [3, 17, 144]]),
    /"gelu" or a residual, got both/,
  );
  assert.throws(
    () => linearLowering.outputShape(node, [[1, 48], [1, 144], [1, 144]]),
    /expected 1 input \(x\) or 2 \(x, residual\), got 3/,
  );
});

Deno.test("linearLowering.lower() records one linear_big_tile step bound to x, weight, bias, residual and y", () => {
  const node = testNode("linear", {
    name: "blocks.0.mlp.fc2",
    inputs: ["h", "mid"],
    output: "stream",
    weights: { weight: "fc2.w", bias: "fc2.b" },
    attrs: { outFeatures: 48 },
  });
  const weightBytes = { "fc2.w": 192 * 48 * 4, "fc2.b": 48 * 4 };
  const shapes = { h: [3, 17, 192], mid: [3, 17, 48] };
  const { ctx, steps } = recordingContext(node, { shapes, weightBytes });
  linearLowering.lower(ctx);
  assert.equal(steps.length, 1);
  const [step] = steps;
  assert.equal(step.spec, linearBigTile);
  assert.deepEqual(step.bindings.map((b) => typeof b === "string" ? b : b.label), [
    "h",
    "fc2.w",
    "fc2.b",
    "mid",
    "stream",
  ]);
  assert.deepEqual(uniformWords(step.launch).slice(0, 3), [51, 192, 48]);
  assert.deepEqual(uniformWords(step.launch).slice(5), [1, 0, 1]);

  // No bias: the weight stands in at binding 2 and the bias flag is off; no residual: x stands in at
  // binding 3; Din 6 falls back to linear_direct.
  const plain = testNode("linear", { inputs: ["x"], weights: { weight: "w" }, attrs: { outFeatures: 5 } });
  const r = recordingContext(plain, { shapes: { x: [2, 6] }, weightBytes: { w: 6 * 5 * 4 } });
  linearLowering.lower(r.ctx);
  assert.equal(r.steps[0].spec, linearDirect);
  assert.deepEqual(r.steps[0].bindings.map((b) => typeof b === "string" ? b : b.label), [
    "x",
    "w",
    "w",
    "x",
    "y",
  ]);
  assert.equal(uniformWords(r.steps[0].launch)[5], 0);

  // A forced variant is honoured where it fits.
  for (const spec of [linearTiled, linearDirect]) {
    const f = recordingContext(node, { shapes, weightBytes, forced: [spec.name] });
    linearLowering.lower(f.ctx);
    assert.equal(f.steps[0].spec, spec);
  }
});

Deno.test("linearLowering.lower() rejects a weight of the wrong size naming the tensor", () => {
  const node = testNode("linear", {
    name: "qkv",
    inputs: ["x"],
    weights: { weight: "qkv.weight", bias: "qkv.bias" },
    attrs: { outFeatures: 144 },
  });
  const { ctx } = recordingContext(node, {
    shapes: { x: [1, 17, 48] },
    weightBytes: { "qkv.weight": 48 * 48 * 4, "qkv.bias": 144 * 4 },
  });
  assert.throws(() => linearLowering.lower(ctx), {
    name: "TypeError",
    message:
      `Cannot build "qkv" (linear): expected weight "qkv.weight" (weight) of 27648 bytes (f32 [48, 144]), got 9216`,
  });
});

Deno.test("linearFits() needs Din and Dout multiples of 4 for the register-tiled variants only", () => {
  for (const spec of [linearTiled, linearBigTile]) {
    assert.ok(linearFits(spec, { din: 48, dout: 144 }));
    assert.ok(!linearFits(spec, { din: 48, dout: 142 }));
    assert.ok(!linearFits(spec, { din: 46, dout: 144 }));
  }
  assert.ok(linearFits(linearDirect, { din: 7, dout: 5 }));
});

// ---------- kernel tests: every variant against the reference ----------

interface Case {
  label: string;
  shape: LinearShape;
  /** Only variants that fit run. */
}

const cases: Case[] = [
  { label: "ViT-T qkv (T = 17, N = 1, 48 -> 144, bias)", shape: shapeOf({ rows: 17, din: 48, dout: 144 }) },
  {
    label: "N = 3, T = 5 (15 rows), 48 -> 192, GELU",
    shape: shapeOf({ rows: 15, din: 48, dout: 192, activation: "gelu" }),
  },
  {
    label: "ViT-T fc2 with residual (N = 3, T = 17), 192 -> 48",
    shape: shapeOf({ rows: 51, din: 192, dout: 48, accumulate: true }),
  },
  {
    label: "ViT-S proj with residual (T = 197), 384 -> 384",
    shape: shapeOf({ rows: 197, din: 384, dout: 384, accumulate: true }),
  },
  {
    label: "Dout 20 (a partial tile), Din 100 (a partial chunk), no bias, GELU, 9 rows",
    shape: shapeOf({ rows: 9, din: 100, dout: 20, bias: false, activation: "gelu" }),
  },
  {
    label: "N = 3, T = 197 (several tiles each way), 48 -> 144, no bias, residual",
    shape: shapeOf({ rows: 591, din: 48, dout: 144, bias: false, accumulate: true }),
  },
  {
    label: "ViT-B fc1 (T = 5), 768 -> 3072, GELU",
    shape: shapeOf({ rows: 5, din: 768, dout: 3072, activation: "gelu" }),
  },
  {
    label: "3 rows, Din 16, Dout 4 (smaller than any tile), GELU",
    shape: shapeOf({ rows: 3, din: 16, dout: 4, activation: "gelu" }),
  },
  {
    label: "Din 7, Dout 5 (direct only), 3 rows, bias and residual",
    shape: shapeOf({ rows: 3, din: 7, dout: 5, accumulate: true }),
  },
];

async function runLinear(
  device: GPUDevice,
  spec: KernelSpec,
  shape: LinearShape,
  data: { x: Float64Array; w: Float64Array; b?: Float64Array; residual?: Float64Array },
  types: StorageTypes = FLAVOURS.f32,
): Promise<Float32Array> {
  const launch = linearLaunch(spec, shape, device.limits);
  const [rows, dout] = launch.outShape;
  const x = stored(data.x, types.input);
  const w = stored(data.w, types.weights);
  // y starts as NaN: every output must be written, and the residual read from its own binding.
  const [out] = await runKernelOnce(device, spec, launch, [
    x,
    w,
    data.b ? stored(data.b, types.weights) : w,
    data.residual ? stored(data.residual, types.input) : x,
    stored(new Float32Array(rows * dout).fill(NaN), types.output),
  ]);
  return loaded(out, types.output, rows * dout);
}

/**
 * Tolerance from float32: the dot product's rounding errors (random signs) grow like sqrt(Din) u per term
 * bounded by max|x| max|w|, times 16 for the two summation levels and the tails; then 8 u relative for the
 * bias add, the GELU (measured <= 3 u) and the residual add, and u of the largest bias and residual.
 */
function tolerance(
  shape: LinearShape,
  d: { x: Float64Array; w: Float64Array; b?: Float64Array; residual?: Float64Array },
) {
  const abs = 16 * U * Math.sqrt(shape.din) * maxAbs(d.x) * maxAbs(d.w) +
    2 * U * (maxAbs(d.b ?? []) + maxAbs(d.residual ?? []));
  return { abs, rel: 8 * U };
}

function caseData(shape: LinearShape, seed: number) {
  const { rows, din, dout } = shape;
  const scale = Math.sqrt(3 / din); // the procedural weights' scale: unit-variance outputs
  return {
    x: randomF32AsF64(rows * din, seed, -2, 2),
    w: randomF32AsF64(din * dout, seed + 1, -scale, scale),
    b: shape.bias ? randomF32AsF64(dout, seed + 2, -0.25, 0.25) : undefined,
    residual: shape.accumulate ? randomF32AsF64(rows * dout, seed + 3) : undefined,
  };
}

for (const spec of linearVariants) {
  for (const [i, { label, shape }] of cases.entries()) {
    if (!linearFits(spec, shape)) continue;
    gpuTest(`${spec.name} matches linearRef for ${label}`, async ({ device }) => {
      const d = caseData(shape, 100 + 10 * i);
      const want = linearRef(d.x, d.w, d.b, shape, d.residual);
      const got = await runLinear(device, spec, shape, d);
      const tol = tolerance(shape, d);
      const err = relativeMaxError(got, want);
      console.log(
        `${spec.name} ${label}: max |e|/max|ref| ${err.toExponential(2)} (abs tol ${
          tol.abs.toExponential(2)
        })`,
      );
      assertClose(got, want, { ...tol, shape: [shape.rows, shape.dout], what: `${spec.name} ${label}` });
    });
  }
}

// f16 flavours: the same cases with every input rounded to f16 first (the reference sees what the kernel
// reads), the same f32 arithmetic (the tolerance above), then one f16 store (f16Tolerance). linear_big_tile_f16
// has no GELU, so it skips those cases (linear_tiled_f16 takes them in a plan).
for (const spec of linearFlavours.f16!) {
  for (const [i, { label, shape }] of cases.entries()) {
    if (!linearFits(spec, shape)) continue;
    f16GpuTest(`${spec.name} matches linearRef for ${label}`, async ({ device }) => {
      const raw = caseData(shape, 100 + 10 * i);
      const d = {
        x: roundTo(raw.x, "f16"),
        w: roundTo(raw.w, "f16"),
        b: raw.b && roundTo(raw.b, "f16"),
        residual: raw.residual && roundTo(raw.residual, "f16"),
      };
      const want = linearRef(d.x, d.w, d.b, shape, d.residual);
      const got = await runLinear(device, spec, shape, d, FLAVOURS.f16);
      console.log(`${spec.name} ${label}: max |e|/max|ref| ${relativeMaxError(got, want).toExponential(2)}`);
      assertClose(got, want, {
        ...f16Tolerance(tolerance(shape, d)),
        shape: [shape.rows, shape.dout],
        what: `${spec.name} ${label}`,
      });
    }, [spec]);
  }
}

Deno.test("linearFits() keeps GELU off linear_big_tile_f16, which has no GELU epilogue", () => {
  const [bigTile, tiled, direct] = linearFlavours.f16!;
  const gelu = shapeOf({ rows: 3, din: 16, dout: 8, activation: "gelu" });
  assert.equal(linearFits(bigTile, gelu), false);
  assert.equal(linearFits(tiled, gelu), true);
  assert.equal(linearFits(direct, gelu), true);
  assert.equal(linearFits(linearBigTile, gelu), true);
  assert.equal(linearFits(bigTile, { ...gelu, activation: "none" }), true);
  assert.doesNotMatch(bigTile.wgsl, /gelu_erf|gelu4/);
  assert.throws(() => linearLaunch(bigTile, gelu), {
    name: "TypeError",
    message:
      'Cannot launch linear_big_tile_f16: expected activation "none" (this variant has no GELU), got "gelu"',
  });
});

Deno.test("linear kernel cases cover row and feature tails, several tiles and a partial chunk", () => {
  const tiles: [KernelSpec, number, number][] = [
    [linearTiled, LINEAR_TILED_TILE_ROWS, LINEAR_TILED_TILE_FEATURES],
    [linearBigTile, LINEAR_BIG_TILE_TILE_ROWS, LINEAR_BIG_TILE_TILE_FEATURES],
  ];
  for (const [spec, rows, features] of tiles) {
    const fit = cases.filter(({ shape }) => linearFits(spec, shape));
    assert.ok(fit.some(({ shape }) => shape.rows % rows !== 0 && shape.rows > rows));
    assert.ok(fit.some(({ shape }) => shape.dout % features !== 0 && shape.dout > features));
    assert.ok(fit.some(({ shape }) => shape.dout < features && shape.rows < rows));
  }
  assert.ok(cases.some(({ shape }) => shape.din % LINEAR_CHUNK !== 0));
  assert.ok(cases.some(({ shape }) => !linearFits(linearTiled, shape)));
});

// ---------- accuracy over a long Din ----------

/** One sequential f32 chain per output (rounded after every op): the naive baseline. */
function naiveF32(x: Float64Array, w: Float64Array, s: LinearShape): Float64Array {
  const f = Math.fround;
  const y = new Float64Array(s.rows * s.dout);
  for (let r = 0; r < s.rows; r++) {
    for (let o = 0; o < s.dout; o++) {
      let acc = 0;
      for (let i = 0; i < s.din; i++) acc = f(acc + f(x[r * s.din + i] * w[i * s.dout + o]));
      y[r * s.dout + o] = acc;
    }
  }
  return y;
}

// ViT-B fc2's Din (3072), inputs positive-biased so the sum grows and one chain's rounding shows.
const longShape = shapeOf({ rows: 9, din: 3072, dout: 8, bias: false });
const longX = randomF32AsF64(9 * 3072, 7, -0.2, 1);
const longW = randomF32AsF64(3072 * 8, 8, -0.2, 1);

for (const spec of linearVariants) {
  gpuTest(`${spec.name} is more accurate than one f32 chain for Din 3072`, async ({ device }) => {
    const want = linearRef(longX, longW, undefined, longShape);
    const naive = relativeMaxError(naiveF32(longX, longW, longShape), want);
    const got = await runLinear(device, spec, longShape, { x: longX, w: longW });
    const err = relativeMaxError(got, want);
    console.log(
      `${spec.name} Din=3072 max rel err ${err.toExponential(2)}; naive f32 chain ${naive.toExponential(2)}`,
    );
    assert.ok(err <= naive, `${spec.name}: ${err} > naive ${naive}`);
    assert.ok(err < 1e-6, `${spec.name}: ${err}`);
  });
}
