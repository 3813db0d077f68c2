/**
 * nonfinite_check: flags the images of a batch whose activation holds a NaN or an infinity, so a run can
 * name the first layer where one appeared.
 *
 * ```
 * flags[n] = 1 when any of x[n*perImage .. (n+1)*perImage) is NaN or +-Inf; flags must be zeroed first
 * bindings: 0 x r (f32 [N*perImage]) · 1 flags rw (u32 [N]) · 2 uniforms {n,perImage: u32}
 * flavours: f32 (`nonfinite_check`) and f16 (`nonfinite_check_f16`: x f16, any perImage, even odd)
 * ```
 *
 * This module is browser compatible.
 * @module
 */
import {
  DEFAULT_LAUNCH_LIMITS,
  foldWorkgroups,
  type KernelLaunch,
  type KernelSpec,
  type LaunchLimits,
  numel,
  packUniforms,
} from "../engine/kernel.ts";
import { NONFINITE_CHECK_OP, type OpLowering } from "../engine/lowering.ts";
import type { Dtype } from "../engine/precision.ts";
import { nonfiniteCheckWgsl } from "./nonfinite_check.wgsl.ts";
import { flavourName } from "./_precision.ts";

/** Threads per workgroup: the WGSL override `WG`. */
export const NONFINITE_CHECK_WORKGROUP_SIZE = 256;

/** Shape of one check. */
export interface NonfiniteCheckShape {
  /** Images (N): the length of `flags`. */
  readonly n: number;
  /** Elements per image. */
  readonly perImage: number;
}

function spec(dtype: Dtype): KernelSpec {
  const name = flavourName("nonfinite_check", dtype);
  return {
    name,
    wgsl: nonfiniteCheckWgsl(name, dtype),
    bindings: [
      { name: "x", type: "read-only-storage" },
      { name: "flags", type: "storage" },
    ],
    overrides: { WG: NONFINITE_CHECK_WORKGROUP_SIZE },
  };
}

/** The kernel by the dtype of the values checked: one thread per element. */
export const NONFINITE_CHECK_SPECS: Readonly<Record<Dtype, KernelSpec>> = {
  f32: spec("f32"),
  f16: spec("f16"),
};

/** The f32 kernel: one thread per element. */
export const nonfiniteCheckSpec: KernelSpec = NONFINITE_CHECK_SPECS.f32;

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode nonfiniteCheckSpec}.
 *
 * @param shape Images and elements per image.
 * @param limits The device's limits.
 * @returns ceil(N*perImage / WG) workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When a dimension is not a positive integer.
 * @throws {RangeError} When there are 2^32 elements or more.
 * @example
 * ```ts
 * nonfiniteCheckLaunch({ n: 16, perImage: 56 * 56 * 1536 }).workgroups; // [65535, 19, 1]
 * ```
 */
export function nonfiniteCheckLaunch(
  shape: NonfiniteCheckShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  for (const key of ["n", "perImage"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(
        `Cannot launch nonfinite_check: expected ${key} to be a positive integer, got ${v}`,
      );
    }
  }
  const elements = shape.n * shape.perImage;
  if (elements > 0xffffffff) {
    throw new RangeError(
      `Cannot launch nonfinite_check: expected at most 2^32 - 1 elements, got ${elements}`,
    );
  }
  return {
    workgroups: foldWorkgroups(
      Math.ceil(elements / NONFINITE_CHECK_WORKGROUP_SIZE),
      limits,
      "nonfinite_check",
    ),
    uniforms: packUniforms([["n", "u32", shape.n], ["perImage", "u32", shape.perImage]]),
  };
}

/**
 * The `nonfinite_check` op the engine's non-finite pass inserts after a node: reads the node's output
 * (any shape, images outermost, f32 or f16) and sets flag n (u32, weight role `flags`) when image n holds
 * NaN or infinity. It writes no activation (`inPlace` on the tensor it checks).
 */
export const nonfiniteCheckLowering: OpLowering = {
  op: NONFINITE_CHECK_OP,
  outputShape(_node, inputs) {
    return inputs[0];
  },
  flops(node, shape) {
    return numel(shape(node.inputs[0]));
  },
  lower(ctx) {
    const shape = ctx.shape(ctx.node.inputs[0]);
    const n = shape[0];
    const launch = nonfiniteCheckLaunch({ n, perImage: numel(shape) / n }, ctx.device.limits);
    const spec = NONFINITE_CHECK_SPECS[ctx.dtype(ctx.node.inputs[0])];
    ctx.step(spec, launch, [ctx.node.inputs[0], ctx.weight("flags")]);
  },
};
