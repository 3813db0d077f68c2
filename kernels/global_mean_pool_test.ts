import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomFloats } from "../tests/_random.ts";
import type { LaunchLimits } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import {
  GLOBAL_MEAN_POOL_FLAVOURS,
  globalMeanPoolLaunch,
  type GlobalMeanPoolShape,
} from "./global_mean_pool.ts";
import { globalMeanPoolRef } from "./global_mean_pool_ref.ts";
import { type Flavour, FLAVOURS } from "./_precision.ts";
import { f16GpuTest, f16Tolerance, loaded, roundTo, stored } from "../tests/_f16.ts";

async function check(
  device: GPUDevice,
  shape: GlobalMeanPoolShape,
  seed: number,
  options: { lo?: number; limits?: LaunchLimits; rel?: number; flavour?: Flavour } = {},
) {
  const flavour = options.flavour ?? "f32";
  const t = FLAVOURS[flavour];
  const x = roundTo(randomFloats(shape.n * shape.hw * shape.c, seed, options.lo ?? -1, 3), t.input);
  const spec = GLOBAL_MEAN_POOL_FLAVOURS[flavour]!;
  const outputs = shape.n * shape.c;
  const [y] = await runKernelOnce(device, spec, globalMeanPoolLaunch(shape, options.limits), [
    stored(x, t.input),
    { bytes: stored(new Float32Array(outputs), t.output).byteLength },
  ]);
  // The sums are f32 in every flavour; an f16 y adds one f16 store.
  const tol = { abs: 1e-6, rel: options.rel ?? 1e-6 };
  assertClose(loaded(y, t.output, outputs), globalMeanPoolRef(x, shape), {
    ...(t.output === "f16" ? f16Tolerance(tol) : tol),
    shape: [shape.n, shape.c],
    what: `${spec.name} ${JSON.stringify(shape)}`,
  });
}

Deno.test("globalMeanPoolLaunch() packs uniforms and tiles channels", () => {
  const launch = globalMeanPoolLaunch({ n: 3, hw: 196, c: 6144 });
  assert.deepEqual(launch.workgroups, [3 * 6144 / 32, 1, 1]);
  const v = new DataView(launch.uniforms.buffer);
  assert.equal(launch.uniforms.byteLength, 16);
  assert.deepEqual([0, 1, 2].map((i) => v.getUint32(i * 4, true)), [3, 196, 6144]);
  // Batch 16 of the final R101x3 activation needs 3072 workgroups; fold past a limit of 100.
  const [x, y] = globalMeanPoolLaunch({ n: 16, hw: 196, c: 6144 }, { maxComputeWorkgroupsPerDimension: 100 })
    .workgroups;
  assert.ok(x <= 100 && y <= 100 && x * y >= 3072);
  assert.throws(() => globalMeanPoolLaunch({ n: 1, hw: 0, c: 4 }), {
    name: "TypeError",
    message: "Cannot launch global_mean_pool: expected hw to be a positive integer, got 0",
  });
});

Deno.test("globalMeanPoolRef() averages each channel", () => {
  assert.deepEqual([...globalMeanPoolRef(new Float64Array([1, 10, 3, 20]), { n: 1, hw: 2, c: 2 })], [2, 15]);
});

gpuTest(
  "globalMeanPool() matches reference with odd H*W and C not a multiple of 4 or of the tile",
  async (gpu) => {
    await check(gpu.device, { n: 1, hw: 7 * 9, c: 37 }, 1);
    await check(gpu.device, { n: 3, hw: 1, c: 5 }, 2);
    await check(gpu.device, { n: 3, hw: 14 * 14, c: 70 }, 3);
    await check(gpu.device, { n: 3, hw: 5, c: 33 }, 4, { limits: { maxComputeWorkgroupsPerDimension: 4 } }); // [3, 2, 1]
  },
);

gpuTest("globalMeanPool() stays accurate over 112*112 pixels of positive values", async (gpu) => {
  // A plain f32 running sum over these 12,544 values per channel is off by up to 4.7e-6 relative.
  await check(gpu.device, { n: 1, hw: 112 * 112, c: 19 }, 5, { lo: 0, rel: 5e-7 });
});

for (const flavour of ["f16", "f16to32"] as const) {
  f16GpuTest(
    `globalMeanPool() ${flavour} flavour matches reference on the f32 tests' shapes`,
    async (gpu) => {
      await check(gpu.device, { n: 1, hw: 7 * 9, c: 37 }, 1, { flavour }); // 37 outputs: an odd count of f16
      await check(gpu.device, { n: 3, hw: 1, c: 5 }, 2, { flavour });
      await check(gpu.device, { n: 3, hw: 14 * 14, c: 70 }, 3, { flavour });
      await check(gpu.device, { n: 3, hw: 5, c: 33 }, 4, {
        flavour,
        limits: { maxComputeWorkgroupsPerDimension: 4 },
      });
      await check(gpu.device, { n: 1, hw: 112 * 112, c: 19 }, 5, { flavour, lo: 0, rel: 5e-7 });
    },
    [GLOBAL_MEAN_POOL_FLAVOURS[flavour]!],
  );
}
