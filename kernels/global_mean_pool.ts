/**
 * global_mean_pool: the mean over H and W of an NHWC activation, per image and channel (the embedding's
 * last step).
 *
 * ```
 * y[n,c] = sum_p x[n,p,c] / (H*W)
 * bindings: 0 x r (f32 NHWC [N,H*W,C]) · 1 y rw (f32 [N,C]) · 2 uniforms {n,hw,c: u32}
 * workgroup: CH channels x RL pixel lanes; blocked per-lane sums, then a tree over lanes
 * flavours: f32, f16 (x and y f16) and f16to32 (x f16, y f32: the embedding of an f16 plan), sums f32
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
import { expectInputs } from "../engine/graph.ts";
import type { OpLowering } from "../engine/lowering.ts";
import { globalMeanPoolWgsl } from "./global_mean_pool.wgsl.ts";
import { type Flavour, flavourName, FLAVOURS, flavourSpec } from "./_precision.ts";

/** Channels per workgroup: the WGSL override `CH` (consecutive channels, for coalesced reads). */
export const GLOBAL_MEAN_POOL_CHANNELS = 32;

/** Pixel lanes per channel: the WGSL override `RL` (a power of two, for the tree). */
export const GLOBAL_MEAN_POOL_LANES = 8;

/** Shape of one global mean pool. */
export interface GlobalMeanPoolShape {
  /** Images (N). */
  readonly n: number;
  /** Pixels per image (H*W). */
  readonly hw: number;
  /** Channels (C). */
  readonly c: number;
}

/** The kernel in each flavour (f32, f16, f16to32): a workgroup per (image, tile of channels). */
export const GLOBAL_MEAN_POOL_FLAVOURS: Readonly<Partial<Record<Flavour, KernelSpec>>> = Object.fromEntries(
  (["f32", "f16", "f16to32"] as const).map((f) => {
    const name = flavourName("global_mean_pool", f);
    return [f, {
      name,
      wgsl: globalMeanPoolWgsl(name, FLAVOURS[f]),
      bindings: [
        { name: "x", type: "read-only-storage" },
        { name: "y", type: "storage" },
      ],
      overrides: { CH: GLOBAL_MEAN_POOL_CHANNELS, RL: GLOBAL_MEAN_POOL_LANES },
    }];
  }),
);

/** The f32 kernel: a workgroup per (image, tile of channels). */
export const globalMeanPoolSpec: KernelSpec = GLOBAL_MEAN_POOL_FLAVOURS.f32!;

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode globalMeanPoolSpec}.
 *
 * @param shape Activation shape.
 * @param limits The device's limits.
 * @returns N*ceil(C/CH) workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When a dimension is not a positive integer.
 * @throws {RangeError} When the input has 2^32 elements or more.
 * @example
 * ```ts
 * globalMeanPoolLaunch({ n: 1, hw: 14 * 14, c: 6144 }).workgroups; // [192, 1, 1]
 * ```
 */
export function globalMeanPoolLaunch(
  shape: GlobalMeanPoolShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  for (const key of ["n", "hw", "c"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(
        `Cannot launch global_mean_pool: expected ${key} to be a positive integer, got ${v}`,
      );
    }
  }
  const elements = shape.n * shape.hw * shape.c;
  if (elements > 0xffffffff) {
    throw new RangeError(
      `Cannot launch global_mean_pool: expected at most 2^32 - 1 elements, got ${elements}`,
    );
  }
  return {
    workgroups: foldWorkgroups(
      shape.n * Math.ceil(shape.c / GLOBAL_MEAN_POOL_CHANNELS),
      limits,
      "global_mean_pool",
    ),
    uniforms: packUniforms([["n", "u32", shape.n], ["hw", "u32", shape.hw], ["c", "u32", shape.c]]),
  };
}

/** The `global_mean_pool` op: x NHWC [N,H,W,C] → the mean over H and W, [N,C]. */
export const globalMeanPoolLowering: OpLowering = {
  op: "global_mean_pool",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1, 4);
    return [inputs[0][0], inputs[0][3]];
  },
  flops(node, shape) {
    return numel(shape(node.inputs[0]));
  },
  lower(ctx) {
    const [n, h, w, c] = ctx.shape(ctx.node.inputs[0]);
    const launch = globalMeanPoolLaunch({ n, hw: h * w, c }, ctx.device.limits);
    ctx.step(flavourSpec(ctx, GLOBAL_MEAN_POOL_FLAVOURS), launch, [ctx.node.inputs[0], ctx.node.output]);
  },
};
