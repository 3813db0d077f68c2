/**
 * Every kernel variant by name, and the tables the engine runs on: {@linkcode LOWERINGS} (each op's entry,
 * exported beside its kernel) and {@linkcode RUNTIME_KERNELS} (the lowering table plus the input stage's
 * resize and the NaN/infinity check). Tests, benchmarks and options pick variants by name here, storage
 * flavours included (`conv2d_tiled_f16`, `layer_norm_f16to32`...: `kernels/_precision.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelSpec } from "../engine/kernel.ts";
import { type LoweringTable, loweringTable } from "../engine/lowering.ts";
import type { RuntimeKernels } from "../engine/embedder.ts";
import { attentionAllVariants, attentionLowering } from "./attention.ts";
import { conv2dAllVariants, conv2dLowering, conv2dVariants } from "./conv2d.ts";
import { conv2dBlockVariants } from "./conv2d_block.ts";
import { splitkReduceSpec } from "./splitk_reduce.ts";
import { GLOBAL_MEAN_POOL_FLAVOURS, globalMeanPoolLowering } from "./global_mean_pool.ts";
import { groupNormApplyAllVariants, groupNormLowering } from "./group_norm_apply.ts";
import { GROUP_NORM_PARTIALS_SPECS, groupNormStatsSpec } from "./group_norm_stats.ts";
import { LAYER_NORM_FLAVOURS, layerNormLowering } from "./layer_norm.ts";
import { linearAllVariants, linearLowering } from "./linear.ts";
import { linearBlockVariants } from "./linear_block.ts";
import { MAX_POOL_FLAVOURS, maxPoolLowering } from "./max_pool.ts";
import { NONFINITE_CHECK_SPECS, nonfiniteCheckLaunch, nonfiniteCheckLowering } from "./nonfinite_check.ts";
import { resizeBilinear, resizeBilinearLaunch } from "./resize_bilinear.ts";
import { TOKEN_GATHER_FLAVOURS, tokenGatherLowering } from "./token_gather.ts";
import { VIT_TOKENS_FLAVOURS, vitTokensLowering } from "./vit_tokens.ts";
import { WEIGHT_STANDARDIZE_SPECS } from "./weight_standardize.ts";

/** All kernel variants in all their flavours, by `spec.name`. */
export const KERNELS: ReadonlyMap<string, KernelSpec> = new Map(
  [
    ...conv2dAllVariants,
    ...conv2dBlockVariants,
    splitkReduceSpec,
    ...groupNormApplyAllVariants,
    ...Object.values(GROUP_NORM_PARTIALS_SPECS),
    groupNormStatsSpec,
    ...Object.values(MAX_POOL_FLAVOURS),
    ...Object.values(GLOBAL_MEAN_POOL_FLAVOURS),
    ...Object.values(NONFINITE_CHECK_SPECS),
    resizeBilinear,
    ...Object.values(WEIGHT_STANDARDIZE_SPECS),
    ...linearAllVariants,
    ...linearBlockVariants,
    ...attentionAllVariants,
    ...Object.values(LAYER_NORM_FLAVOURS),
    ...Object.values(VIT_TOKENS_FLAVOURS),
    ...Object.values(TOKEN_GATHER_FLAVOURS),
  ].map((spec) => [spec!.name, spec!]),
);

/** Names of the f32 convolution variants (`conv2d_direct`, `conv2d_tiled`, ...). */
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
  nonfinite: { specs: NONFINITE_CHECK_SPECS, launch: nonfiniteCheckLaunch },
};
