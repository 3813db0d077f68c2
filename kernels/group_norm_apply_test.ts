import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomFloats } from "../tests/_random.ts";
import type { LaunchLimits } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import { f16GpuTest, f16Tolerance, loaded, roundTo, stored } from "../tests/_f16.ts";
import { type Flavour, FLAVOURS } from "./_precision.ts";
import {
  GROUP_NORM_APPLY_FLAVOURS,
  groupNormApplyLaunch,
  type GroupNormApplyShape,
  groupNormApplyVariant,
} from "./group_norm_apply.ts";
import { groupNormApplyRef } from "./group_norm_apply_ref.ts";

/** Runs the shape's variant in `flavour` on random data (held exactly by each binding's dtype). */
async function check(
  device: GPUDevice,
  shape: GroupNormApplyShape,
  seed: number,
  limits?: LaunchLimits,
  flavour: Flavour = "f32",
) {
  const { n, hw, c, groups } = shape;
  const t = FLAVOURS[flavour];
  const x = roundTo(randomFloats(n * hw * c, seed, -2, 2), t.input);
  // Statistics are f32 in every flavour.
  const stats = roundTo(randomFloats(n * groups * 2, seed + 1, 0.5, 2), "f32").map((v, i) =>
    i % 2 === 0 ? v - 1.25 : v
  );
  const gamma = roundTo(randomFloats(c, seed + 2, 0.75, 1.25), t.weights);
  const beta = roundTo(randomFloats(c, seed + 3, -0.25, 0.25), t.weights);
  const spec = GROUP_NORM_APPLY_FLAVOURS[flavour]![groupNormApplyVariant(shape)];
  const [bytes] = await runKernelOnce(device, spec, groupNormApplyLaunch(shape, limits), [
    stored(x, t.input),
    Float32Array.from(stats),
    stored(gamma, t.weights),
    stored(beta, t.weights),
    { bytes: stored(x, t.output).byteLength },
  ]);
  const y = loaded(bytes, t.output, x.length);
  const want = groupNormApplyRef(x, stats, gamma, beta, shape);
  // f32: 1e-6; an f16 y adds one f16 store (f16Tolerance).
  const tol = t.output === "f16" ? f16Tolerance({ abs: 1e-6, rel: 1e-6 }) : { abs: 1e-6, rel: 1e-6 };
  assertClose(y, want, { ...tol, shape: [n, hw, c], what: `${spec.name} ${JSON.stringify(shape)}` });
  if (shape.relu) assert.ok(y.every((v) => v >= 0));
}

Deno.test("groupNormApplyLaunch() picks vec4 when C % 4 == 0 and packs uniforms", () => {
  assert.equal(groupNormApplyVariant({ c: 768 }), "vec4");
  assert.equal(groupNormApplyVariant({ c: 30 }), "scalar");
  const launch = groupNormApplyLaunch({ n: 1, hw: 12544, c: 768, groups: 32, relu: true });
  assert.deepEqual(launch.workgroups, [12544 / 4 * 768 / 4 / 256, 1, 1]);
  const v = new DataView(launch.uniforms.buffer);
  assert.equal(launch.uniforms.byteLength, 32);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => v.getUint32(i * 4, true)), [1, 12544, 768, 32, 1]);
});

Deno.test("groupNormApplyLaunch() folds batch 16 of R101x3 stage 1 into two dimensions", () => {
  // scalar: 16 * 112*112 * 768 / 256 = 602,112 workgroups; vec4: 37,632 (so fold past a 10,000 limit).
  for (const [variant, max] of [["scalar", 65535], ["vec4", 10000]] as const) {
    const [x, y, z] =
      groupNormApplyLaunch({ n: 16, hw: 112 * 112, c: 768, groups: 32, relu: false, variant }, {
        maxComputeWorkgroupsPerDimension: max,
      }).workgroups;
    const need = 16 * 112 * 112 * 768 / (variant === "vec4" ? 16 : 1) / 256;
    assert.ok(x <= max && y > 1 && y <= max && z === 1 && x * y >= need, `${variant}: ${x} x ${y}`);
  }
  // Every R101x3 shape up to batch 16 fits.
  for (
    const [hw, c] of [[112 * 112, 192], [112 * 112, 768], [56 * 56, 1536], [28 * 28, 3072], [14 * 14, 6144]]
  ) {
    const wg = groupNormApplyLaunch({ n: 16, hw, c, groups: 32, relu: true }).workgroups;
    assert.ok(wg.every((w) => w <= 65535));
  }
});

Deno.test("groupNormApplyLaunch() rejects bad shapes naming the variant", () => {
  assert.throws(() => groupNormApplyLaunch({ n: 1, hw: 4, c: 30, groups: 32, relu: false }), {
    name: "TypeError",
    message: "Cannot launch group_norm_apply_scalar: expected C % G == 0, got C 30, G 32",
  });
  assert.throws(
    () => groupNormApplyLaunch({ n: 1, hw: 4, c: 30, groups: 15, relu: false, variant: "vec4" }),
    { message: "Cannot launch group_norm_apply_vec4: expected C % 4 == 0, got C 30" },
  );
});

Deno.test("groupNormApplyRef() computes a hand-checked case", () => {
  // C 2, G 2: channel 0 uses (mean 1, rstd 2), channel 1 uses (mean -1, rstd 0.5); gamma [1, 2], beta [0, -3]
  const got = groupNormApplyRef(
    new Float64Array([3, 1]),
    new Float64Array([1, 2, -1, 0.5]),
    new Float64Array([1, 2]),
    new Float64Array([0, -3]),
    { n: 1, hw: 1, c: 2, groups: 2, relu: false },
  );
  assertClose(got, [4, -1], { abs: 0, rel: 0 });
});

gpuTest("groupNormApply() vec4 matches reference when a vec4 spans groups (C/G 1, 2, 3, 6)", async (gpu) => {
  await check(gpu.device, { n: 1, hw: 7 * 9, c: 32, groups: 32, relu: true }, 10);
  await check(gpu.device, { n: 3, hw: 5 * 3, c: 64, groups: 32, relu: false }, 20);
  await check(gpu.device, { n: 3, hw: 11, c: 12, groups: 4, relu: true }, 30);
  await check(gpu.device, { n: 1, hw: 9 * 7, c: 192, groups: 32, relu: false }, 40);
});

gpuTest("groupNormApply() scalar matches reference when C is not a multiple of 4", async (gpu) => {
  await check(gpu.device, { n: 1, hw: 7 * 9, c: 30, groups: 15, relu: true }, 50);
  await check(gpu.device, { n: 3, hw: 5 * 5, c: 6, groups: 3, relu: false }, 60);
  await check(gpu.device, { n: 3, hw: 13, c: 64, groups: 32, relu: true, variant: "scalar" }, 70);
});

gpuTest("groupNormApply() matches reference on a folded dispatch with a tail", async (gpu) => {
  // vec4: 3*ceil(37/4)*192/4 = 1440 threads -> 6 workgroups -> [3, 2, 1], the last pixel chunk holds 1
  // pixel; scalar: 3*37*30 = 3330 threads -> 14 workgroups -> [4, 4, 1].
  const limits = { maxComputeWorkgroupsPerDimension: 4 };
  await check(gpu.device, { n: 3, hw: 37, c: 192, groups: 32, relu: true }, 80, limits);
  await check(gpu.device, { n: 3, hw: 37, c: 30, groups: 10, relu: false }, 90, limits);
});

for (const flavour of ["f16", "f32to16"] as const) {
  f16GpuTest(`groupNormApply() ${flavour} flavours match reference on the f32 tests' shapes`, async (gpu) => {
    const limits = { maxComputeWorkgroupsPerDimension: 4 };
    const shapes: [GroupNormApplyShape, number, LaunchLimits?][] = [
      [{ n: 1, hw: 7 * 9, c: 32, groups: 32, relu: true }, 10],
      [{ n: 3, hw: 5 * 3, c: 64, groups: 32, relu: false }, 20],
      [{ n: 3, hw: 11, c: 12, groups: 4, relu: true }, 30],
      [{ n: 1, hw: 9 * 7, c: 192, groups: 32, relu: false }, 40],
      [{ n: 1, hw: 7 * 9, c: 30, groups: 15, relu: true }, 50],
      [{ n: 3, hw: 5 * 5, c: 6, groups: 3, relu: false }, 60],
      [{ n: 1, hw: 7, c: 15, groups: 5, relu: false }, 65], // 105 values: an odd count of f16, padded
      [{ n: 3, hw: 13, c: 64, groups: 32, relu: true, variant: "scalar" }, 70],
      [{ n: 3, hw: 37, c: 192, groups: 32, relu: true }, 80, limits],
      [{ n: 3, hw: 37, c: 30, groups: 10, relu: false }, 90, limits],
    ];
    for (const [shape, seed, l] of shapes) await check(gpu.device, shape, seed, l, flavour);
  }, Object.values(GROUP_NORM_APPLY_FLAVOURS[flavour]!));
}
