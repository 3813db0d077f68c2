/**
 * Every kernel variant by name, so that tests, benchmarks and options can pick variants without
 * importing each wrapper. The model planner uses the same specs.
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelSpec } from "../engine/kernel.ts";
import { conv2dVariants } from "./conv2d.ts";
import { globalMeanPoolSpec } from "./global_mean_pool.ts";
import { GROUP_NORM_APPLY_SPECS } from "./group_norm_apply.ts";
import { groupNormPartialsSpec, groupNormStatsSpec } from "./group_norm_stats.ts";
import { maxPoolSpec } from "./max_pool.ts";
import { nonfiniteCheckSpec } from "./nonfinite_check.ts";
import { resizeBilinear } from "./resize_bilinear.ts";
import { weightStandardizeSpec } from "./weight_standardize.ts";

/** All kernel variants, by `spec.name`. */
export const KERNELS: ReadonlyMap<string, KernelSpec> = new Map(
  [
    ...conv2dVariants,
    ...Object.values(GROUP_NORM_APPLY_SPECS),
    groupNormPartialsSpec,
    groupNormStatsSpec,
    maxPoolSpec,
    globalMeanPoolSpec,
    nonfiniteCheckSpec,
    resizeBilinear,
    weightStandardizeSpec,
  ].map((spec) => [spec.name, spec]),
);

/** Names of the convolution variants (`conv2d_direct`, `conv2d_tiled`, ...). */
export const CONV2D_VARIANT_NAMES: readonly string[] = conv2dVariants.map((s) => s.name);

/**
 * Looks a kernel variant up by name.
 *
 * @throws {TypeError} Naming the known variants when `name` is not one.
 */
export function kernelSpec(name: string): KernelSpec {
  const spec = KERNELS.get(name);
  if (!spec) {
    throw new TypeError(`Cannot find kernel "${name}": expected one of ${[...KERNELS.keys()].join(", ")}`);
  }
  return spec;
}
