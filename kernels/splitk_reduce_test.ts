import assert from "node:assert/strict";
import { runKernelOnce } from "./_harness.ts";
import { splitkReduceLaunch, type SplitkReduceShape, splitkReduceSpec } from "./splitk_reduce.ts";
import { splitkReduceRef } from "./splitk_reduce_ref.ts";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomF32AsF64 } from "../tests/_random.ts";

const base: SplitkReduceShape = {
  rows: 1,
  cols: 4,
  splits: 2,
  bias: false,
  gelu: false,
  accumulate: false,
  residual: false,
  relu: false,
};

Deno.test("splitkReduceRef() sums the planes, then bias, GELU, residuals and ReLU in that order", () => {
  const part = new Float64Array([1, -2, 3, -4, 10, 20, -30, 1]);
  assert.deepEqual([...splitkReduceRef(part, undefined, undefined, undefined, base)], [11, 18, -27, -3]);
  const bias = new Float64Array([1, 1, 1, 1]);
  const yIn = new Float64Array([0, 0, 30, 0]);
  const got = splitkReduceRef(part, bias, undefined, yIn, {
    ...base,
    bias: true,
    accumulate: true,
    relu: true,
  });
  assert.deepEqual([...got], [12, 19, 4, 0]);
});

Deno.test("splitkReduceLaunch() rejects bad shapes and GELU with a residual", () => {
  assert.throws(() => splitkReduceLaunch({ ...base, cols: 6 }), {
    name: "TypeError",
    message: "Cannot launch splitk_reduce: expected N % 4 == 0, got 6",
  });
  assert.throws(() => splitkReduceLaunch({ ...base, splits: 0 }), { name: "TypeError", message: /splits/ });
  assert.throws(() => splitkReduceLaunch({ ...base, gelu: true, residual: true }), {
    name: "TypeError",
    message: "Cannot launch splitk_reduce: expected GELU or a residual, got both",
  });
  assert.throws(() => splitkReduceLaunch({ ...base, rows: 2 ** 20, cols: 2 ** 10, splits: 8 }), {
    name: "RangeError",
  });
});

const cases: { label: string; shape: SplitkReduceShape }[] = [
  {
    label: "3 splits, 7 x 12 (a partial workgroup), bias and ReLU",
    shape: { ...base, rows: 7, cols: 12, splits: 3, bias: true, relu: true },
  },
  {
    label: "2 splits, 197 x 8, bias and GELU (a ViT MLP)",
    shape: { ...base, rows: 197, cols: 8, splits: 2, bias: true, gelu: true },
  },
  {
    label: "5 splits, 9 x 20, bias and a residual binding",
    shape: { ...base, rows: 9, cols: 20, splits: 5, bias: true, residual: true },
  },
  {
    label: "4 splits, 13 x 4, accumulate into y and ReLU",
    shape: { ...base, rows: 13, cols: 4, splits: 4, accumulate: true, relu: true },
  },
];

for (const [i, { label, shape }] of cases.entries()) {
  gpuTest(`splitkReduceSpec matches splitkReduceRef for ${label}`, async ({ device }) => {
    const count = shape.rows * shape.cols;
    const part = randomF32AsF64(shape.splits * count, 10 + i);
    const bias = shape.bias ? randomF32AsF64(shape.cols, 20 + i) : undefined;
    const res = shape.residual ? randomF32AsF64(count, 30 + i) : undefined;
    const yIn = shape.accumulate ? randomF32AsF64(count, 40 + i) : undefined;
    const want = splitkReduceRef(part, bias, res, yIn, shape);
    const garbage = new Float32Array(4).fill(1e9);
    const [out] = await runKernelOnce(device, splitkReduceSpec, splitkReduceLaunch(shape, device.limits), [
      new Float32Array(part),
      bias ? new Float32Array(bias) : garbage,
      res ? new Float32Array(res) : garbage,
      yIn ? new Float32Array(yIn) : { bytes: count * 4 },
    ]);
    assertClose(new Float32Array(out), want, {
      abs: 1e-6,
      rel: 1e-5,
      shape: [shape.rows, shape.cols],
      what: label,
    });
  });
}
