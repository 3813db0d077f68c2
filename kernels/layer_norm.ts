/**
 * layer_norm: normalises each row (token) of a tensor over its last dimension, then scales and shifts per
 * feature. The wrapper describes the kernel, validates a shape into a launch, and lowers a graph node of op
 * `layer_norm`. It never allocates, submits or reads back.
 *
 * ```
 * y[r,i] = (x[r,i] - mean_r) / sqrt(var_r + eps) * gamma[i] + beta[i], var biased (mean of squared deviations)
 * x, y: f32 [R,D] (R = N*T: the rows of [N,T,D]) · gamma, beta: f32 [D]
 * bindings: 0 x r · 1 gamma r · 2 beta r · 3 y rw · 4 uniforms {rows,d: u32; eps: f32}
 * overrides: WG (workgroup size, a power of two) · dispatch: R workgroups, folded over x,y (foldWorkgroups)
 * numerics: f32; two passes (mean, then squared deviations), each a per-thread strided sum then a tree
 * flavours: f32, f16 (x, gamma, beta, y f16) and f16to32 (y f32: a ViT embedding in an f16 plan)
 * ```
 *
 * One workgroup per row: a ViT row is 192 to 768 features, so each of the 64 threads sums at most 12
 * terms before the tree, and the 197 rows of one image give 197 workgroups.
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
import { expectInputs, numberAttr } from "../engine/graph.ts";
import type { OpLowering } from "../engine/lowering.ts";
import { checkedWeight, leadingRows, nodeError } from "./_lowering.ts";
import { layerNormWgsl } from "./layer_norm.wgsl.ts";
import { type Flavour, flavourName, FLAVOURS, flavourSpec } from "./_precision.ts";

/** Threads per workgroup (a power of two, for the tree): the WGSL override `WG`. */
export const LAYER_NORM_WORKGROUP_SIZE = 64;

/** Shape of one LayerNorm over the last dimension. */
export interface LayerNormShape {
  /** Rows R (N*T for a token tensor). */
  readonly rows: number;
  /** Features D normalised over. */
  readonly d: number;
  /** Added to the variance before the square root (1e-6 for the ViTs). */
  readonly eps: number;
}

/** The kernel in each flavour (f32, f16, f16to32): one workgroup per row. */
export const LAYER_NORM_FLAVOURS: Readonly<Partial<Record<Flavour, KernelSpec>>> = Object.fromEntries(
  (["f32", "f16", "f16to32"] as const).map((f) => {
    const name = flavourName("layer_norm", f);
    return [f, {
      name,
      wgsl: layerNormWgsl(name, FLAVOURS[f]),
      bindings: [
        { name: "x", type: "read-only-storage" },
        { name: "gamma", type: "read-only-storage" },
        { name: "beta", type: "read-only-storage" },
        { name: "y", type: "storage" },
      ],
      overrides: { WG: LAYER_NORM_WORKGROUP_SIZE },
    }];
  }),
);

/** The f32 kernel: one workgroup per row. */
export const layerNormSpec: KernelSpec = LAYER_NORM_FLAVOURS.f32!;

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode layerNormSpec}.
 *
 * @param shape Rows, features and eps.
 * @param limits The device's limits.
 * @returns R workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When rows or d is not a positive integer.
 * @throws {RangeError} When eps is negative or not finite, or the tensor has 2^32 elements or more.
 * @example
 * ```ts
 * layerNormLaunch({ rows: 197, d: 384, eps: 1e-6 }).workgroups; // [197, 1, 1]
 * ```
 */
export function layerNormLaunch(
  shape: LayerNormShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const what = layerNormSpec.name;
  for (const key of ["rows", "d"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${v}`);
    }
  }
  if (!Number.isFinite(shape.eps) || shape.eps < 0) {
    throw new RangeError(`Cannot launch ${what}: expected eps to be finite and >= 0, got ${shape.eps}`);
  }
  if (shape.rows * shape.d > 0xffffffff) {
    throw new RangeError(
      `Cannot launch ${what}: expected fewer than 2^32 elements, got ${shape.rows * shape.d}`,
    );
  }
  return {
    workgroups: foldWorkgroups(shape.rows, limits, what),
    uniforms: packUniforms([
      ["rows", "u32", shape.rows],
      ["d", "u32", shape.d],
      ["eps", "f32", shape.eps],
    ]),
  };
}

/**
 * The lowering entry of op `layer_norm`.
 *
 * Contract: inputs `[x]`, [..., D] (tokens [N, T, D], or gathered class tokens [N, k, D]); output the
 * same shape; f32, f16, or f16 in and f32 out (the flavour). Weights by role: `gamma` [D] (timm
 * `norm.weight`), `beta` [D] (`norm.bias`).
 * Attributes: `eps` (required; 1e-6 for the ViTs). FLOPs: 8 per element (sum, deviation, square-add,
 * normalise, scale-shift, counted loosely).
 */
export const layerNormLowering: OpLowering = {
  op: "layer_norm",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1);
    if (inputs[0].length < 1) throw nodeError(node, `expected an input of rank >= 1, got [${inputs[0]}]`);
    const eps = numberAttr(node, "eps");
    if (eps < 0) throw nodeError(node, `expected attribute "eps" >= 0, got ${eps}`);
    return [...inputs[0]];
  },
  flops(node, shape) {
    return 8 * shape(node.inputs[0]).reduce((a, b) => a * b, 1);
  },
  lower(ctx) {
    const node = ctx.node;
    const input = ctx.shape(node.inputs[0]);
    const shape = { rows: leadingRows(input), d: input[input.length - 1], eps: numberAttr(node, "eps") };
    const gamma = checkedWeight(ctx, "gamma", shape.d, `[${shape.d}]`);
    const beta = checkedWeight(ctx, "beta", shape.d, `[${shape.d}]`);
    ctx.step(flavourSpec(ctx, LAYER_NORM_FLAVOURS), layerNormLaunch(shape, ctx.device.limits), [
      node.inputs[0],
      gamma,
      beta,
      node.output,
    ]);
  },
};
