import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { randomF32, randomFloats } from "../tests/_random.ts";
import type { LaunchLimits } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import {
  NONFINITE_CHECK_SPECS,
  nonfiniteCheckLaunch,
  type NonfiniteCheckShape,
  nonfiniteCheckSpec,
} from "./nonfinite_check.ts";
import { nonfiniteCheckRef } from "./nonfinite_check_ref.ts";
import { float16BitsToFloat32 } from "../engine/precision.ts";

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
  const x = randomF32(3 * 315, 1, -1e38, 1e38);
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
  const x = randomF32(1505, 2);
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

/** Runs the f16 flavour on raw f16 bits (padded to whole words) and compares with the reference. */
async function checkF16(
  device: GPUDevice,
  bits: Uint16Array,
  shape: NonfiniteCheckShape,
  limits?: LaunchLimits,
) {
  const padded = new Uint16Array(Math.ceil(bits.length / 2) * 2);
  padded.set(bits);
  const [flags] = await runKernelOnce(
    device,
    NONFINITE_CHECK_SPECS.f16,
    nonfiniteCheckLaunch(shape, limits),
    [
      padded,
      { bytes: shape.n * 4 },
    ],
  );
  const got = [...new Uint32Array(flags)];
  assert.deepEqual(got, [...nonfiniteCheckRef(Float64Array.from(bits, float16BitsToFloat32), shape)]);
  return got;
}

// The f16 flavour tests bits in u32 words and needs no shader-f16: it runs on every adapter.
gpuTest(
  "nonfiniteCheck() f16 flavour flags images whose f16 values hold NaN or +-Inf, odd sizes too",
  async (gpu) => {
    const shape = { n: 3, perImage: 7 * 9 * 5 }; // 315 f16 values per image: images start mid-word
    // Random finite f16 bit patterns (exponent below 31).
    const bits = Uint16Array.from(randomFloats(3 * 315, 3, 0, 65536), (v) => {
      const b = Math.floor(v);
      return (b & 0x7c00) === 0x7c00 ? b & 0xbfff : b;
    });
    assert.deepEqual(await checkF16(gpu.device, bits, shape), [0, 0, 0]);
    bits[314] = 0x7e00; // NaN, last value of image 0 (the low half of a word shared with image 1)
    bits[2 * 315] = 0xfc00; // -Inf, first value of image 2 (a high half)
    assert.deepEqual(await checkF16(gpu.device, bits, shape), [1, 0, 1]);
    bits[315 + 200] = 0x7c00; // +Inf
    assert.deepEqual(await checkF16(gpu.device, bits, shape), [1, 1, 1]);
    // 65504, -65504, the smallest subnormal and zero are finite; a NaN with a payload is not.
    const edge = Uint16Array.from([0x7bff, 0xfbff, 0x0001, 0x0000, 0x7c01]);
    assert.deepEqual(await checkF16(gpu.device, edge.subarray(0, 4), { n: 1, perImage: 4 }), [0]);
    assert.deepEqual(await checkF16(gpu.device, edge, { n: 5, perImage: 1 }), [0, 0, 0, 0, 1]);
    // 5 * 301 f16 values on a folded dispatch: [3, 2, 1] workgroups with a tail.
    const folded = new Uint16Array(1505).fill(0x3c00);
    folded[4 * 301 + 300] = 0x7c00;
    assert.deepEqual(
      await checkF16(gpu.device, folded, { n: 5, perImage: 301 }, { maxComputeWorkgroupsPerDimension: 3 }),
      [0, 0, 0, 0, 1],
    );
  },
);
