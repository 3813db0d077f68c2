import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomFloats } from "../tests/_random.ts";
import type { LaunchLimits } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import { f16GpuTest, roundTo, stored } from "../tests/_f16.ts";
import {
  GROUP_NORM_PARTIALS_SPECS,
  groupNormPartialsLaunch,
  groupNormStatsLaunch,
  type GroupNormStatsShape,
  groupNormStatsSpec,
  groupNormStatsSteps,
} from "./group_norm_stats.ts";
import { groupNormPartialsRef, groupNormStatsRef } from "./group_norm_stats_ref.ts";

/** Runs both steps (step 1 in the flavour of `shape.dtype`); returns the partials and the stats. */
async function runSteps(
  device: GPUDevice,
  x: Float64Array,
  shape: GroupNormStatsShape,
  limits?: LaunchLimits,
) {
  const { partialsBytes, statsBytes } = groupNormStatsSteps(shape, limits);
  const [partials] = await runKernelOnce(
    device,
    GROUP_NORM_PARTIALS_SPECS[shape.dtype ?? "f32"],
    groupNormPartialsLaunch(shape, limits),
    [
      stored(x, shape.dtype ?? "f32"),
      { bytes: partialsBytes },
    ],
  );
  const [stats] = await runKernelOnce(device, groupNormStatsSpec, groupNormStatsLaunch(shape, limits), [
    new Float32Array(partials),
    { bytes: statsBytes },
  ]);
  return { partials: new Float32Array(partials), stats: new Float32Array(stats) };
}

async function check(
  device: GPUDevice,
  shape: GroupNormStatsShape,
  seed: number,
  options: { offset?: number; limits?: LaunchLimits } = {},
) {
  // x as its storage dtype holds it: the reference sees what the kernel reads.
  const x64 = roundTo(
    randomFloats(shape.n * shape.hw * shape.c, seed, -1, 1).map((v) => v + (options.offset ?? 0)),
    shape.dtype ?? "f32",
  );
  const { partials, stats } = await runSteps(device, x64, shape, options.limits);
  const what = JSON.stringify(shape);
  assertClose(partials, groupNormPartialsRef(x64, shape), { abs: 1e-5, rel: 1e-5, what: `partials ${what}` });
  const want = groupNormStatsRef(x64, shape);
  const mean = (a: ArrayLike<number>) => Array.from(a).filter((_, i) => i % 2 === 0);
  const rstd = (a: ArrayLike<number>) => Array.from(a).filter((_, i) => i % 2 === 1);
  assertClose(mean(stats), mean(want), {
    abs: 1e-6,
    rel: 1e-6,
    shape: [shape.n, shape.groups],
    what: `mean ${what}`,
  });
  assertClose(rstd(stats), rstd(want), {
    abs: 0,
    rel: 4e-6,
    shape: [shape.n, shape.groups],
    what: `rstd ${what}`,
  });
}

Deno.test("groupNormStatsSteps() describes two steps and their buffers", () => {
  const { steps, partialsBytes, statsBytes } = groupNormStatsSteps({
    n: 1,
    hw: 12544,
    c: 768,
    groups: 32,
    eps: 1e-5,
  });
  assert.deepEqual(steps.map((s) => [s.spec.name, s.buffers]), [
    ["group_norm_partials", ["x", "partials"]],
    ["group_norm_stats", ["partials", "stats"]],
  ]);
  assert.equal(partialsBytes, 392 * 768 * 8);
  assert.equal(statsBytes, 32 * 8);
  assert.deepEqual(steps[0].launch.workgroups, [392 * 768 / 256, 1, 1]);
  assert.deepEqual(steps[1].launch.workgroups, [32, 1, 1]);
  const v = new DataView(steps[1].launch.uniforms.buffer);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => v.getUint32(i * 4, true)), [1, 12544, 768, 32, 32, 392]);
  assert.equal(v.getFloat32(24, true), Math.fround(1e-5));
});

Deno.test("groupNormStatsSteps() stays within the workgroup limit at every R101x3 shape up to batch 16", () => {
  const stages = [[112 * 112, 192], [112 * 112, 768], [56 * 56, 1536], [28 * 28, 3072], [14 * 14, 6144]];
  for (const n of [1, 16]) {
    for (const [hw, c] of stages) {
      for (const step of groupNormStatsSteps({ n, hw, c, groups: 32, eps: 1e-5 }).steps) {
        assert.ok(step.launch.workgroups.every((w) => w <= 65535));
      }
    }
  }
  // A 2-D fold past a small limit.
  const [x, y] = groupNormPartialsLaunch({ n: 16, hw: 12544, c: 768, groups: 32, eps: 1e-5 }, {
    maxComputeWorkgroupsPerDimension: 1000,
  }).workgroups;
  assert.ok(x <= 1000 && y <= 1000 && x * y >= 16 * 392 * 768 / 256);
});

Deno.test("groupNormStatsLaunch() rejects C not a multiple of G", () => {
  assert.throws(() => groupNormStatsLaunch({ n: 1, hw: 4, c: 30, groups: 32, eps: 1e-5 }), {
    name: "TypeError",
    message: "Cannot launch group_norm_stats: expected C % G == 0, got C 30, G 32",
  });
  assert.throws(
    () => groupNormPartialsLaunch({ n: 1, hw: 0, c: 32, groups: 32, eps: 1e-5 }),
    /hw to be a positive/,
  );
});

Deno.test("groupNormStatsRef() computes a hand-checked case", () => {
  // N 1, HW 2, C 2, G 1: values 1, 2, 3, 6: mean 3, var (4 + 1 + 0 + 9) / 4 = 3.5
  const got = groupNormStatsRef(new Float64Array([1, 2, 3, 6]), { n: 1, hw: 2, c: 2, groups: 1, eps: 0.5 });
  assertClose(got, [3, 0.5], { abs: 1e-15, rel: 0 });
});

gpuTest("groupNormStats() matches reference with odd H*W, C/G of 1, 2, 3 and chunk tails", async (gpu) => {
  await check(gpu.device, { n: 1, hw: 7 * 9, c: 32, groups: 32, eps: 1e-5, rows: 8 }, 1); // C/G 1
  await check(gpu.device, { n: 3, hw: 5 * 7, c: 30, groups: 15, eps: 1e-5, rows: 8 }, 2); // C/G 2, C % 4 != 0
  await check(gpu.device, { n: 3, hw: 3 * 11, c: 96, groups: 32, eps: 1e-5 }, 3); // one chunk
  await check(gpu.device, { n: 1, hw: 1, c: 12, groups: 4, eps: 1e-5 }, 4); // a single pixel
});

gpuTest("groupNormStats() matches reference on a folded dispatch", async (gpu) => {
  // 3*15 = 45 groups -> [8, 6, 1] with a tail of 3.
  await check(gpu.device, { n: 3, hw: 5 * 7, c: 30, groups: 15, eps: 1e-5, rows: 7 }, 5, {
    limits: { maxComputeWorkgroupsPerDimension: 8 },
  });
  // 21 chunks * 200 channels = 4200 partial threads -> 17 workgroups -> [5, 4, 1]; 8 groups -> [4, 2, 1].
  await check(gpu.device, { n: 1, hw: 9 * 9, c: 200, groups: 8, eps: 1e-5, rows: 4 }, 6, {
    limits: { maxComputeWorkgroupsPerDimension: 5 },
  });
});

gpuTest("groupNormStats() stays accurate on a 301,056-element group with a large mean", async (gpu) => {
  // R101x3 stage 1 group size (112*112 pixels x 24 channels), data centred at 3: E[x^2] - E[x]^2 in f32
  // would lose about 4 digits here.
  await check(gpu.device, { n: 1, hw: 112 * 112, c: 48, groups: 2, eps: 1e-5 }, 7, { offset: 3 });
});

// ---------- f16 flavour of step 1: f16 x, f32 partials and statistics ----------

// The statistics stay f32 in an f16 plan, so the f32 tolerances hold: x is rounded to f16 before the
// reference sees it, and everything after the load is the f32 flavour's arithmetic.
f16GpuTest(
  "groupNormStats() with group_norm_partials_f16 matches reference on the same shapes",
  async (gpu) => {
    const f16 = { eps: 1e-5, dtype: "f16" } as const;
    await check(gpu.device, { n: 1, hw: 7 * 9, c: 32, groups: 32, rows: 8, ...f16 }, 1);
    await check(gpu.device, { n: 3, hw: 5 * 7, c: 30, groups: 15, rows: 8, ...f16 }, 2);
    await check(gpu.device, { n: 3, hw: 3 * 11, c: 96, groups: 32, ...f16 }, 3);
    await check(gpu.device, { n: 1, hw: 1, c: 12, groups: 4, ...f16 }, 4); // one pixel: an odd count of f16
    await check(gpu.device, { n: 3, hw: 5 * 7, c: 30, groups: 15, rows: 7, ...f16 }, 5, {
      limits: { maxComputeWorkgroupsPerDimension: 8 },
    });
    await check(gpu.device, { n: 1, hw: 112 * 112, c: 48, groups: 2, ...f16 }, 7, { offset: 3 });
  },
  [GROUP_NORM_PARTIALS_SPECS.f16],
);
