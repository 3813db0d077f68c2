/**
 * group_norm_stats: per-(image, group) mean and 1/sqrt(var + eps) of an NHWC activation, in two steps.
 *
 * A group holds up to 301,056 elements (112*112*24 in R101x3 stage 1), and one workgroup per group would give
 * only 32 workgroups per image, so the work is split:
 *
 * 1. `group_norm_partials`: one thread per (image, chunk of `rows` pixels, channel) computes the chunk's
 *    mean and M2 (sum of squared deviations) by two passes; consecutive threads read consecutive channels.
 * 2. `group_norm_stats`: one workgroup per (image, group) merges its chunks' partials exactly:
 *    `mean = Σ count·mean_k / total`, `M2 = Σ (M2_k + count·(mean_k − mean)²)`, tree reductions.
 *
 * ```
 * partials: bindings 0 x r · 1 partials rw · 2 uniforms {n,hw,c,rows,chunks: u32}
 * stats:    bindings 0 partials r · 1 stats rw · 2 uniforms {n,hw,c,groups,rows,chunks: u32; eps: f32}
 * x: f32 or f16 NHWC [N,H*W,C] · partials (scratch): f32 [N,chunks,C,2] · stats: f32 [N,G,2] (mean, rstd)
 * ```
 *
 * Step 1 has an f16 flavour, `group_norm_partials_f16`, for f16 x; the statistics are f32 in every plan, so
 * step 2 has one flavour.
 *
 * The planner runs {@linkcode groupNormStatsSteps} in order, with a scratch buffer of `partialsBytes`.
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
import type { Dtype } from "../engine/precision.ts";
import { GROUP_NORM_STATS_WGSL, groupNormPartialsWgsl } from "./group_norm_stats.wgsl.ts";
import { flavourName } from "./_precision.ts";

/** Threads per workgroup of `group_norm_partials`: the WGSL override `WG`. */
export const GROUP_NORM_PARTIALS_WORKGROUP_SIZE = 256;

/** Threads per workgroup of `group_norm_stats` (a power of two, for the tree reduction). */
export const GROUP_NORM_STATS_WORKGROUP_SIZE = 256;

/**
 * Pixels per chunk of step 1 when the shape does not say: long enough that the partials stay small
 * (1/32 of x), short enough that stage 4 (14x14) still gives 7 chunks per image.
 */
export const GROUP_NORM_DEFAULT_ROWS = 32;

/** Shape of one GroupNorm statistics computation. */
export interface GroupNormStatsShape {
  /** Images (N). */
  readonly n: number;
  /** Pixels per image (H*W). */
  readonly hw: number;
  /** Channels (C), a multiple of `groups`. */
  readonly c: number;
  /** Groups (G); group g holds channels [g*C/G, (g+1)*C/G). */
  readonly groups: number;
  /** Added to the variance before the square root (1e-5 for BiT). */
  readonly eps: number;
  /** Pixels per chunk of step 1 (default {@linkcode GROUP_NORM_DEFAULT_ROWS}). */
  readonly rows?: number;
  /** Storage dtype of x (default f32): which flavour of step 1 runs. */
  readonly dtype?: Dtype;
}

function partialsSpec(dtype: Dtype): KernelSpec {
  const name = flavourName("group_norm_partials", dtype);
  return {
    name,
    wgsl: groupNormPartialsWgsl(name, dtype),
    bindings: [
      { name: "x", type: "read-only-storage" },
      { name: "partials", type: "storage" },
    ],
    overrides: { WG: GROUP_NORM_PARTIALS_WORKGROUP_SIZE },
  };
}

/** Step 1 by the storage dtype of x: `group_norm_partials`, `group_norm_partials_f16`. */
export const GROUP_NORM_PARTIALS_SPECS: Readonly<Record<Dtype, KernelSpec>> = {
  f32: partialsSpec("f32"),
  f16: partialsSpec("f16"),
};

/** Step 1: chunk partials (f32 x). */
export const groupNormPartialsSpec: KernelSpec = GROUP_NORM_PARTIALS_SPECS.f32;

/** Step 2: per-group merge into (mean, rstd). */
export const groupNormStatsSpec: KernelSpec = {
  name: "group_norm_stats",
  wgsl: GROUP_NORM_STATS_WGSL,
  bindings: [
    { name: "partials", type: "read-only-storage" },
    { name: "stats", type: "storage" },
  ],
  overrides: { WG: GROUP_NORM_STATS_WORKGROUP_SIZE },
};

function checked(shape: GroupNormStatsShape, kernel: string): { rows: number; chunks: number } {
  const fail = (message: string, error: typeof TypeError = TypeError): never => {
    throw new error(`Cannot launch ${kernel}: ${message}`);
  };
  for (const key of ["n", "hw", "c", "groups"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) fail(`expected ${key} to be a positive integer, got ${v}`);
  }
  if (shape.c % shape.groups !== 0) fail(`expected C % G == 0, got C ${shape.c}, G ${shape.groups}`);
  if (!Number.isFinite(shape.eps) || shape.eps < 0) {
    fail(`expected eps to be finite and >= 0, got ${shape.eps}`, RangeError);
  }
  const rows = shape.rows ?? GROUP_NORM_DEFAULT_ROWS;
  if (!Number.isInteger(rows) || rows < 1) fail(`expected rows to be a positive integer, got ${rows}`);
  const elements = shape.n * shape.hw * shape.c;
  if (elements > 0xffffffff) fail(`expected at most 2^32 - 1 elements, got ${elements}`, RangeError);
  // Counts are exact in f32 only below 2^24.
  const perGroup = shape.hw * (shape.c / shape.groups);
  if (perGroup > 2 ** 24) fail(`expected at most 2^24 elements per group, got ${perGroup}`, RangeError);
  return { rows, chunks: Math.ceil(shape.hw / rows) };
}

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode groupNormPartialsSpec}.
 *
 * @param shape Activation shape, groups and eps (`rows` optional).
 * @param limits The device's limits.
 * @returns ceil(N*chunks*C / WG) workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When a dimension is not a positive integer or C % G != 0.
 * @throws {RangeError} When eps is negative, or the tensor is too large for u32 indices.
 */
export function groupNormPartialsLaunch(
  shape: GroupNormStatsShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const { rows, chunks } = checked(shape, "group_norm_partials");
  const threads = shape.n * chunks * shape.c;
  return {
    workgroups: foldWorkgroups(
      Math.ceil(threads / GROUP_NORM_PARTIALS_WORKGROUP_SIZE),
      limits,
      "group_norm_partials",
    ),
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["hw", "u32", shape.hw],
      ["c", "u32", shape.c],
      ["rows", "u32", rows],
      ["chunks", "u32", chunks],
    ]),
  };
}

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode groupNormStatsSpec}.
 *
 * @param shape Activation shape, groups and eps (`rows` must match step 1's).
 * @param limits The device's limits.
 * @returns N*G workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When a dimension is not a positive integer or C % G != 0.
 * @throws {RangeError} When eps is negative, or the tensor is too large.
 * @example
 * ```ts
 * groupNormStatsLaunch({ n: 1, hw: 112 * 112, c: 768, groups: 32, eps: 1e-5 }).workgroups; // [32, 1, 1]
 * ```
 */
export function groupNormStatsLaunch(
  shape: GroupNormStatsShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const { rows, chunks } = checked(shape, "group_norm_stats");
  return {
    workgroups: foldWorkgroups(shape.n * shape.groups, limits, "group_norm_stats"),
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["hw", "u32", shape.hw],
      ["c", "u32", shape.c],
      ["groups", "u32", shape.groups],
      ["rows", "u32", rows],
      ["chunks", "u32", chunks],
      ["eps", "f32", shape.eps],
    ]),
  };
}

/** One dispatch of a multi-step kernel: which spec, its launch, and the buffer names bound in order. */
export interface KernelStep {
  /** The kernel variant. */
  readonly spec: KernelSpec;
  /** Its dispatch and uniforms. */
  readonly launch: KernelLaunch;
  /** Names of the buffers bound at `@binding(0..)`, in the order of `spec.bindings`. */
  readonly buffers: readonly string[];
}

/**
 * The sequence that computes GroupNorm statistics, for the planner to record in order.
 *
 * Buffers: `x` (input, NHWC in `shape.dtype`), `partials` (scratch of `partialsBytes`, no initial contents needed,
 * free after step 2), `stats` (output, f32 [N,G,2] = `statsBytes`).
 *
 * @param shape Activation shape, groups and eps.
 * @param limits The device's limits.
 * @returns The two steps and the byte sizes of the scratch and output buffers.
 * @example
 * ```ts
 * const { steps, partialsBytes } = groupNormStatsSteps({ n: 1, hw: 12544, c: 768, groups: 32, eps: 1e-5 });
 * // steps[0].buffers: ["x", "partials"], steps[1].buffers: ["partials", "stats"]; partialsBytes: 2408448
 * ```
 */
export function groupNormStatsSteps(
  shape: GroupNormStatsShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): { steps: KernelStep[]; partialsBytes: number; statsBytes: number } {
  const { chunks } = checked(shape, "group_norm_stats");
  return {
    steps: [
      {
        spec: GROUP_NORM_PARTIALS_SPECS[shape.dtype ?? "f32"],
        launch: groupNormPartialsLaunch(shape, limits),
        buffers: ["x", "partials"],
      },
      {
        spec: groupNormStatsSpec,
        launch: groupNormStatsLaunch(shape, limits),
        buffers: ["partials", "stats"],
      },
    ],
    partialsBytes: shape.n * chunks * shape.c * 8,
    statsBytes: shape.n * shape.groups * 8,
  };
}
