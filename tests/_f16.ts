/**
 * What the tests of f16 flavours share: data f16 holds exactly, buffers in either storage dtype, the
 * tolerance one f16 store adds, and {@linkcode f16GpuTest}: a GPU test that runs its check where the device
 * has `shader-f16` (lavapipe, `DENO_WEBGPU_BACKEND=vulkan`) and, where it has not (llvmpipe through GL),
 * asserts the clear refusal instead. Neither is a skip.
 * @module
 */
import assert from "node:assert/strict";
import type { Gpu } from "../engine/device.ts";
import { GpuError } from "../engine/errors.ts";
import type { KernelSpec } from "../engine/kernel.ts";
import { checkedGpuCall } from "../engine/device.ts";
import { createKernelPipeline } from "../engine/plan.ts";
import {
  type Dtype,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  SHADER_F16,
  toFloat16,
  widenFloat16,
} from "../engine/precision.ts";
import { gpuTest } from "./_gpu.ts";

/**
 * One ulp of f16 relative to the value (2^-10): what one f16 store may add. WGSL lets a conversion from f32
 * to f16 round either way, so a store is within one ulp, not half (lavapipe rounds to nearest).
 */
export const F16_ULP = 2 ** -10;

/** Spacing of f16's subnormals (2^-24): the absolute error of a store near zero. */
export const F16_SUBNORMAL = 2 ** -24;

/**
 * The tolerance of a result computed in f32 (within `f32`, from inputs f16 holds exactly) and stored as f16:
 * |f16(v) - ref| <= |f16(v) - v| + |v - ref| <= F16_ULP (|ref| + |v - ref|) + F16_SUBNORMAL + |v - ref|.
 */
export function f16Tolerance(f32: { abs: number; rel: number }): { abs: number; rel: number } {
  return {
    abs: f32.abs * (1 + F16_ULP) + F16_SUBNORMAL,
    rel: F16_ULP + f32.rel * (1 + F16_ULP),
  };
}

/** Values rounded to f16 (to nearest, ties to even) and back, as float64: what f16 storage holds exactly. */
export function roundF16(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values, (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
}

/** Values rounded to the dtype, as float64 (the reference's inputs). */
export function roundTo(values: ArrayLike<number>, dtype: Dtype): Float64Array {
  return dtype === "f16" ? roundF16(values) : Float64Array.from(new Float32Array(Float64Array.from(values)));
}

/** The bytes of a buffer holding `values` in `dtype` (f16: rounded to nearest even, padded to 4 bytes). */
export function stored(
  values: ArrayLike<number>,
  dtype: Dtype,
): Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer> {
  const f32 = Float32Array.from(values);
  return dtype === "f16" ? toFloat16(f32).bits : f32;
}

/** A buffer's bytes read back as f32 values (`count` of them, dropping f16 padding). */
export function loaded(bytes: ArrayBuffer, dtype: Dtype, count?: number): Float32Array {
  return dtype === "f16" ? widenFloat16(bytes, count) : new Float32Array(bytes, 0, count);
}

/** Whether the test device has `shader-f16`. */
export function hasF16(gpu: Gpu): boolean {
  return gpu.features.has(SHADER_F16);
}

/**
 * Asserts that each of `specs` is refused on this device, which lacks `shader-f16`: creating its pipeline
 * fails validation naming the f16 extension (naga: "the `f16` extension is not supported").
 */
export async function assertKernelsRefused(gpu: Gpu, specs: readonly KernelSpec[]): Promise<void> {
  assert.ok(specs.length > 0, "no f16 kernels to check");
  for (const spec of specs) {
    await assert.rejects(
      () => checkedGpuCall(gpu.device, spec.name, () => createKernelPipeline(gpu.device, spec)),
      (e: unknown) => e instanceof GpuError && /f16/.test(e.message) && e.layer === spec.name,
      `${spec.name} was not refused on an adapter without ${SHADER_F16}`,
    );
  }
}

/**
 * A GPU test of f16 work: `fn` on a device with `shader-f16`; on one without, `refused`, which must assert
 * the refusal (for kernels: {@linkcode assertKernelsRefused} of the specs given instead of a function).
 */
export function f16GpuTest(
  name: string,
  fn: (gpu: Gpu) => Promise<void>,
  refused: readonly KernelSpec[] | ((gpu: Gpu) => Promise<void>),
  options: { slow?: boolean; extended?: boolean } = {},
): void {
  gpuTest(name, async (gpu) => {
    if (hasF16(gpu)) return await fn(gpu);
    console.log(`${name}: the adapter has no ${SHADER_F16}; checking that it refuses f16 instead`);
    if (typeof refused === "function") await refused(gpu);
    else await assertKernelsRefused(gpu, refused);
  }, options);
}
