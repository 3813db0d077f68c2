/**
 * nonfinite_check: flags the images of a batch whose activation holds a NaN or an infinity, so a run can
 * name the first layer where one appeared.
 *
 * ```
 * flags[n] = 1 when any of x[n*perImage .. (n+1)*perImage) is NaN or +-Inf; flags must be zeroed first
 * bindings: 0 x r (f32 [N*perImage]) · 1 flags rw (u32 [N]) · 2 uniforms {n,perImage: u32}
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
  packUniforms,
} from "../engine/kernel.ts";
import { NONFINITE_CHECK_WGSL } from "./nonfinite_check.wgsl.ts";

/** Threads per workgroup: the WGSL override `WG`. */
export const NONFINITE_CHECK_WORKGROUP_SIZE = 256;

/** Shape of one check. */
export interface NonfiniteCheckShape {
  /** Images (N): the length of `flags`. */
  readonly n: number;
  /** Elements per image. */
  readonly perImage: number;
}

/** The kernel variant: one thread per element. */
export const nonfiniteCheckSpec: KernelSpec = {
  name: "nonfinite_check",
  wgsl: NONFINITE_CHECK_WGSL,
  bindings: [
    { name: "x", type: "read-only-storage" },
    { name: "flags", type: "storage" },
  ],
  overrides: { WG: NONFINITE_CHECK_WORKGROUP_SIZE },
};

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
