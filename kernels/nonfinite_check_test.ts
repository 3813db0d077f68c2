import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { randomFloats } from "../tests/_random.ts";
import type { LaunchLimits } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import { nonfiniteCheckLaunch, type NonfiniteCheckShape, nonfiniteCheckSpec } from "./nonfinite_check.ts";
import { nonfiniteCheckRef } from "./nonfinite_check_ref.ts";

async function check(device: GPUDevice, x: Float32Array, shape: NonfiniteCheckShape, limits?: LaunchLimits) {
  const [flags] = await runKernelOnce(device, nonfiniteCheckSpec, nonfiniteCheckLaunch(shape, limits), [
    x,
    { bytes: shape.n * 4 },
  ]);
  const got = [...new Uint32Array(flags)];
  assert.deepEqual(got, [...nonfiniteCheckRef(Float64Array.from(x), shape)]);
  return got;
}

Deno.test("nonfiniteCheckLaunch() folds batch 16 of R101x3 stage 2 into two dimensions", () => {
  // 16 * 56*56*1536 = 77,070,336 elements -> 301,056 workgroups
  const launch = nonfiniteCheckLaunch({ n: 16, perImage: 56 * 56 * 1536 });
  const [x, y, z] = launch.workgroups;
  assert.ok(x <= 65535 && y <= 65535 && z === 1 && x * y >= 301056);
  const v = new DataView(launch.uniforms.buffer);
  assert.deepEqual([v.getUint32(0, true), v.getUint32(4, true)], [16, 56 * 56 * 1536]);
  assert.throws(() => nonfiniteCheckLaunch({ n: 0, perImage: 4 }), {
    name: "TypeError",
    message: "Cannot launch nonfinite_check: expected n to be a positive integer, got 0",
  });
});

Deno.test("nonfiniteCheckRef() flags NaN and both infinities", () => {
  const x = new Float64Array([1, NaN, 2, 3, -Infinity, 0, Infinity, 1]);
  assert.deepEqual([...nonfiniteCheckRef(x, { n: 4, perImage: 2 })], [1, 0, 1, 1]);
});

gpuTest("nonfiniteCheck() flags only the images holding NaN or +-Inf", async (gpu) => {
  const shape = { n: 3, perImage: 7 * 9 * 5 }; // 315 elements, odd
  const x = Float32Array.from(randomFloats(3 * 315, 1, -1e38, 1e38));
  assert.deepEqual(await check(gpu.device, x, shape), [0, 0, 0]);
  x[314] = NaN; // last element of image 0
  x[2 * 315] = -Infinity; // first element of image 2
  assert.deepEqual(await check(gpu.device, x, shape), [1, 0, 1]);
  x[315 + 200] = Infinity;
  assert.deepEqual(await check(gpu.device, x, shape), [1, 1, 1]);
  // Largest finite values and subnormals are not flagged; a NaN with a payload is.
  const edge = new Float32Array([3.4028234663852886e38, -3.4028234663852886e38, 1e-45, 0]);
  assert.deepEqual(await check(gpu.device, edge, { n: 1, perImage: 4 }), [0]);
  new Uint32Array(edge.buffer)[2] = 0xffc00001;
  assert.deepEqual(await check(gpu.device, edge, { n: 2, perImage: 2 }), [0, 1]);
});

gpuTest("nonfiniteCheck() flags the right image on a folded dispatch", async (gpu) => {
  // 5 * 301 = 1505 elements -> 6 workgroups -> [3, 2, 1] with a tail.
  const x = Float32Array.from(randomFloats(1505, 2));
  x[4 * 301 + 300] = NaN;
  assert.deepEqual(
    await check(gpu.device, x, { n: 5, perImage: 301 }, { maxComputeWorkgroupsPerDimension: 3 }),
    [
      0,
      0,
      0,
      0,
      1,
    ],
  );
});
