import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomF32, randomFloats } from "../tests/_random.ts";
import type { LaunchLimits } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import { MAX_POOL_FLAVOURS, maxPoolLaunch, maxPoolOutput, type MaxPoolShape } from "./max_pool.ts";
import { maxPoolRef } from "./max_pool_ref.ts";
import type { Dtype } from "../engine/precision.ts";
import { f16GpuTest, loaded, roundTo, stored } from "../tests/_f16.ts";

async function run(
  device: GPUDevice,
  x: ArrayLike<number>,
  shape: MaxPoolShape,
  limits?: LaunchLimits,
  dtype: Dtype = "f32",
) {
  const [oh, ow] = maxPoolOutput(shape);
  const outputs = shape.n * oh * ow * shape.c;
  const [y] = await runKernelOnce(device, MAX_POOL_FLAVOURS[dtype]!, maxPoolLaunch(shape, limits), [
    stored(x, dtype),
    { bytes: stored(new Float32Array(outputs), dtype).byteLength },
  ]);
  return loaded(y, dtype, outputs);
}

/** The pool in the flavour of `dtype` on random data it holds exactly: the max is exact in both. */
async function check(
  device: GPUDevice,
  shape: MaxPoolShape,
  seed: number,
  limits?: LaunchLimits,
  dtype: Dtype = "f32",
) {
  const x = roundTo(randomFloats(shape.n * shape.h * shape.w * shape.c, seed, -2, 1), dtype);
  const got = await run(device, x, shape, limits, dtype);
  const [oh, ow] = maxPoolOutput(shape);
  assertClose(got, maxPoolRef(Float64Array.from(x), shape), {
    abs: 0,
    rel: 0,
    shape: [shape.n, oh, ow, shape.c],
    what: `max_pool ${JSON.stringify(shape)}`,
  });
  return got;
}

Deno.test("maxPoolLaunch() packs uniforms and sizes the R101x3 stem pool", () => {
  const shape = { n: 1, h: 224, w: 224, c: 192, k: 3, stride: 2, pad: 1, padValue: "zero" } as const;
  assert.deepEqual(maxPoolOutput(shape), [112, 112]);
  const launch = maxPoolLaunch(shape);
  assert.deepEqual(launch.workgroups, [112 * 112 * 192 / 256, 1, 1]);
  assert.equal(launch.uniforms.byteLength, 48);
  const v = new DataView(launch.uniforms.buffer);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map((i) => v.getUint32(i * 4, true)),
    [1, 224, 224, 192, 3, 2, 1, 112, 112, 1, 0, 0],
  );
  assert.deepEqual(maxPoolOutput({ ...shape, h: 7, w: 9 }), [4, 5]);
});

Deno.test("maxPoolLaunch() folds batch 16 of the stem pool into two dimensions", () => {
  // 16 * 112*112*192 / 256 = 150,528 workgroups
  const [x, y, z] =
    maxPoolLaunch({ n: 16, h: 224, w: 224, c: 192, k: 3, stride: 2, pad: 1, padValue: "-inf" })
      .workgroups;
  assert.ok(x <= 65535 && y === 3 && z === 1 && x * y >= 150528);
});

Deno.test("maxPoolLaunch() rejects bad shapes", () => {
  const base = { n: 1, h: 8, w: 8, c: 4, k: 3, stride: 2, pad: 1, padValue: "-inf" } as const;
  assert.throws(() => maxPoolLaunch({ ...base, pad: 2 }), {
    name: "TypeError",
    message: "Cannot launch max_pool: expected pad to be an integer in [0, floor(k / 2)], got pad 2, k 3",
  });
  assert.throws(
    () => maxPoolLaunch({ ...base, h: 1, pad: 0 }),
    /expected the window to fit the padded input/,
  );
  assert.throws(
    () => maxPoolLaunch({ ...base, padValue: "nan" as "zero" }),
    /expected padValue "-inf" or "zero"/,
  );
});

Deno.test("maxPoolRef() pads with -inf or zero as asked", () => {
  const x = new Float64Array([-1, -2]);
  const shape = { n: 1, h: 1, w: 2, c: 1, k: 3, stride: 2, pad: 1 } as const;
  assert.deepEqual([...maxPoolRef(x, { ...shape, padValue: "-inf" })], [-1]);
  assert.deepEqual([...maxPoolRef(x, { ...shape, padValue: "zero" })], [0]);
});

for (const padValue of ["-inf", "zero"] as const) {
  gpuTest(`maxPool() matches reference with ${padValue} padding and odd H and W`, async (gpu) => {
    await check(gpu.device, { n: 1, h: 7, w: 9, c: 5, k: 3, stride: 2, pad: 1, padValue }, 1);
    await check(gpu.device, { n: 3, h: 15, w: 13, c: 8, k: 3, stride: 2, pad: 1, padValue }, 2);
    await check(gpu.device, { n: 3, h: 6, w: 5, c: 3, k: 3, stride: 1, pad: 1, padValue }, 3);
    await check(gpu.device, { n: 1, h: 9, w: 8, c: 6, k: 2, stride: 2, pad: 0, padValue }, 4);
    // 3*12*8*7 = 2016 outputs -> 8 workgroups -> [3, 3, 1] with a tail.
    await check(gpu.device, { n: 3, h: 23, w: 15, c: 7, k: 3, stride: 2, pad: 1, padValue }, 5, {
      maxComputeWorkgroupsPerDimension: 3,
    });
  });
}

gpuTest("maxPool() gives different borders for -inf and zero padding on negative inputs", async (gpu) => {
  const shape = { n: 1, h: 5, w: 5, c: 2, k: 3, stride: 2, pad: 1 } as const;
  const x = randomF32(50, 6, -3, -1); // all negative
  const inf = await run(gpu.device, x, { ...shape, padValue: "-inf" });
  const zero = await run(gpu.device, x, { ...shape, padValue: "zero" });
  // 3x3 outputs: all but the centre (1,1) touch the padding.
  for (let p = 0; p < 9; p++) {
    for (let ch = 0; ch < 2; ch++) {
      if (p === 4) assert.equal(inf[p * 2 + ch], zero[p * 2 + ch]);
      else {
        assert.ok(inf[p * 2 + ch] < 0);
        assert.equal(zero[p * 2 + ch], 0);
      }
    }
  }
  assertClose(inf, maxPoolRef(Float64Array.from(x), { ...shape, padValue: "-inf" }), { abs: 0, rel: 0 });
});

f16GpuTest("maxPool() f16 flavour matches reference exactly on the f32 tests' shapes", async (gpu) => {
  for (const padValue of ["-inf", "zero"] as const) {
    await check(
      gpu.device,
      { n: 1, h: 7, w: 9, c: 5, k: 3, stride: 2, pad: 1, padValue },
      1,
      undefined,
      "f16",
    );
    await check(
      gpu.device,
      { n: 3, h: 15, w: 13, c: 8, k: 3, stride: 2, pad: 1, padValue },
      2,
      undefined,
      "f16",
    );
    await check(
      gpu.device,
      { n: 3, h: 6, w: 5, c: 3, k: 3, stride: 1, pad: 1, padValue },
      3,
      undefined,
      "f16",
    );
    await check(
      gpu.device,
      { n: 1, h: 9, w: 8, c: 6, k: 2, stride: 2, pad: 0, padValue },
      4,
      undefined,
      "f16",
    );
    const limits = { maxComputeWorkgroupsPerDimension: 3 };
    await check(
      gpu.device,
      { n: 3, h: 23, w: 15, c: 7, k: 3, stride: 2, pad: 1, padValue },
      5,
      limits,
      "f16",
    );
  }
}, [MAX_POOL_FLAVOURS.f16!]);
