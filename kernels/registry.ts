/**
 * Every kernel variant by name, and the tables the engine runs on: {@linkcode LOWERINGS} (each op's entry,
 * exported beside its kernel) and {@linkcode RUNTIME_KERNELS} (the lowering table plus the input stage's
 * resize and the NaN/infinity check). Tests, benchmarks and options pick variants by name here.
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelSpec } from "../engine/kernel.ts";
import { type LoweringTable, loweringTable } from "../engine/lowering.ts";
import type { RuntimeKernels } from "../engine/embedder.ts";
import { attentionLowering, attentionVariants } from "./attention.ts";
import { conv2dLowering, conv2dVariants } from "./conv2d.ts";
import { conv2dBlockVariants } from "./conv2d_block.ts";
import { splitkReduceSpec } from "./splitk_reduce.ts";
import { globalMeanPoolLowering, globalMeanPoolSpec } from "./global_mean_pool.ts";
import { GROUP_NORM_APPLY_SPECS, groupNormLowering } from "./group_norm_apply.ts";
import { groupNormPartialsSpec, groupNormStatsSpec } from "./group_norm_stats.ts";
import { layerNormLowering, layerNormSpec } from "./layer_norm.ts";
import { linearLowering, linearVariants } from "./linear.ts";
import { linearBlockVariants } from "./linear_block.ts";
import { maxPoolLowering, maxPoolSpec } from "./max_pool.ts";
import { nonfiniteCheckLaunch, nonfiniteCheckLowering, nonfiniteCheckSpec } from "./nonfinite_check.ts";
import { resizeBilinear, resizeBilinearLaunch } from "./resize_bilinear.ts";
import { tokenGatherLowering, tokenGatherSpec } from "./token_gather.ts";
import { vitTokensLowering, vitTokensSpec } from "./vit_tokens.ts";
import { weightStandardizeSpec } from "./weight_standardize.ts";

/** All kernel variants, by `spec.name`. */
export const KERNELS: ReadonlyMap<string, KernelSpec> = new Map(
  [
    ...conv2dVariants,
    ...conv2dBlockVariants,
    splitkReduceSpec,
    ...Object.values(GROUP_NORM_APPLY_SPECS),
    groupNormPartialsSpec,
    groupNormStatsSpec,
    maxPoolSpec,
    globalMeanPoolSpec,
    nonfiniteCheckSpec,
    resizeBilinear,
    weightStandardizeSpec,
    ...linearVariants,
    ...linearBlockVariants,
    ...attentionVariants,
    layerNormSpec,
    vitTokensSpec,
    tokenGatherSpec,
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

/** The op entries, by op name: what graphs are lowered with. */
export const LOWERINGS: LoweringTable = loweringTable([
  conv2dLowering,
  groupNormLowering,
  maxPoolLowering,
  globalMeanPoolLowering,
  nonfiniteCheckLowering,
  linearLowering,
  layerNormLowering,
  attentionLowering,
  vitTokensLowering,
  tokenGatherLowering,
]);

/** What the embedder runtime needs from the kernels. */
export const RUNTIME_KERNELS: RuntimeKernels = {
  lowerings: LOWERINGS,
  resize: { spec: resizeBilinear, launch: resizeBilinearLaunch },
  nonfinite: { spec: nonfiniteCheckSpec, launch: nonfiniteCheckLaunch },
};
