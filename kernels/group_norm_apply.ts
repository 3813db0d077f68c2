/**
 * group_norm_apply: normalises an NHWC activation with per-(image, group) statistics, scales and shifts
 * per channel, and optionally applies ReLU.
 *
 * ```
 * y = (x - mean[n,g]) * rstd[n,g] * gamma[c] + beta[c], then max(y, 0) when relu
 * x, y: f32 NHWC [N,H*W,C] · stats: f32 [N,G,2] (mean, rstd) from group_norm_stats · gamma, beta: f32 [C]
 * bindings: 0 x r · 1 stats r · 2 gamma r · 3 beta r · 4 y rw · 5 uniforms {n,hw,c,groups,relu: u32}
 * variants: group_norm_apply_vec4 (C % 4 == 0, one thread per 4 channels x PIX pixels),
 *   group_norm_apply_scalar (any C, one thread per element)
 * flavours: f32, f16 (`group_norm_apply_vec4_f16`: x, gamma, beta, y f16; stats f32), and f32to16 (x, gamma,
 * beta f32, y f16: where an f16 plan leaves the layers it keeps in f32)
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
import { expectInputs, flagAttr, numberAttr } from "../engine/graph.ts";
import type { OpLowering } from "../engine/lowering.ts";
import { groupNormStatsSteps } from "./group_norm_stats.ts";
import { groupNormApplyScalarWgsl, groupNormApplyVec4Wgsl } from "./group_norm_apply.wgsl.ts";
import { type Flavour, flavourName, FLAVOURS, flavourSpec } from "./_precision.ts";

/** Threads per workgroup of both variants: the WGSL override `WG`. */
export const GROUP_NORM_APPLY_WORKGROUP_SIZE = 256;

/**
 * Pixels per thread of the vec4 variant (the WGSL override `PIX`): a thread loads its 4 channels' statistics,
 * gamma and beta once and reuses them down a column of pixels. 4 measured best on llvmpipe (1: 2x slower,
 * 16: no better, 32: 2x slower) and keeps N*H*W*C/16 threads for a large GPU.
 */
export const GROUP_NORM_APPLY_PIXELS_PER_THREAD = 4;

/** Variant names. */
export type GroupNormApplyVariant = "vec4" | "scalar";

/** Shape of one GroupNorm application. */
export interface GroupNormApplyShape {
  /** Images (N). */
  readonly n: number;
  /** Pixels per image (H*W). */
  readonly hw: number;
  /** Channels (C), a multiple of `groups`. */
  readonly c: number;
  /** Groups (G). */
  readonly groups: number;
  /** Whether ReLU follows. */
  readonly relu: boolean;
  /** Variant to launch (default {@linkcode groupNormApplyVariant} of the shape). */
  readonly variant?: GroupNormApplyVariant;
}

const BINDINGS = [
  { name: "x", type: "read-only-storage" },
  { name: "stats", type: "read-only-storage" },
  { name: "gamma", type: "read-only-storage" },
  { name: "beta", type: "read-only-storage" },
  { name: "y", type: "storage" },
] as const;

function specs(flavour: Flavour): Record<GroupNormApplyVariant, KernelSpec> {
  const vec4 = flavourName("group_norm_apply_vec4", flavour);
  const scalar = flavourName("group_norm_apply_scalar", flavour);
  return {
    vec4: {
      name: vec4,
      wgsl: groupNormApplyVec4Wgsl(vec4, FLAVOURS[flavour]),
      bindings: BINDINGS,
      overrides: { WG: GROUP_NORM_APPLY_WORKGROUP_SIZE, PIX: GROUP_NORM_APPLY_PIXELS_PER_THREAD },
    },
    scalar: {
      name: scalar,
      wgsl: groupNormApplyScalarWgsl(scalar, FLAVOURS[flavour]),
      bindings: BINDINGS,
      overrides: { WG: GROUP_NORM_APPLY_WORKGROUP_SIZE },
    },
  };
}

/** The storage flavours: f32, f16, and f32 input to f16 output (the end of an f16 plan's f32 layers). */
export const GROUP_NORM_APPLY_FLAVOUR_KEYS: readonly Flavour[] = ["f32", "f16", "f32to16"];

/** Both variants of each flavour. */
export const GROUP_NORM_APPLY_FLAVOURS: Readonly<
  Partial<Record<Flavour, Readonly<Record<GroupNormApplyVariant, KernelSpec>>>>
> = Object.fromEntries(GROUP_NORM_APPLY_FLAVOUR_KEYS.map((f) => [f, specs(f)]));

/** Every f32 variant by name, for tests and benchmarks. */
export const GROUP_NORM_APPLY_SPECS: Readonly<Record<GroupNormApplyVariant, KernelSpec>> =
  GROUP_NORM_APPLY_FLAVOURS.f32!;

/** vec4 variant (C % 4 == 0). */
export const groupNormApplySpec: KernelSpec = GROUP_NORM_APPLY_SPECS.vec4;

/** Scalar variant (any C). */
export const groupNormApplyScalarSpec: KernelSpec = GROUP_NORM_APPLY_SPECS.scalar;

/** Every variant in every flavour, for the registry. */
export const groupNormApplyAllVariants: readonly KernelSpec[] = Object.values(GROUP_NORM_APPLY_FLAVOURS)
  .flatMap((v) => Object.values(v!));

/**
 * The variant a shape runs by default: vec4 when C % 4 == 0, else scalar.
 *
 * @param shape The shape (only `c` and `variant` are read).
 * @returns `shape.variant` when given, else the fastest variant that applies.
 */
export function groupNormApplyVariant(
  shape: Pick<GroupNormApplyShape, "c" | "variant">,
): GroupNormApplyVariant {
  return shape.variant ?? (shape.c % 4 === 0 ? "vec4" : "scalar");
}

/**
 * Validates a shape and returns the dispatch and uniforms of the variant
 * {@linkcode groupNormApplyVariant} picks; bind that variant's spec, `GROUP_NORM_APPLY_SPECS[variant]` (or
 * its f16 flavour, which takes the same launch).
 *
 * @param shape Activation shape, groups, ReLU flag and optional variant.
 * @param limits The device's limits.
 * @returns Folded workgroups over N*ceil(H*W/PIX)*C/4 (vec4) or N*H*W*C (scalar) threads, and the uniform
 *   bytes.
 * @throws {TypeError} When a dimension is not a positive integer, C % G != 0, or vec4 is asked with C % 4 != 0.
 * @throws {RangeError} When the tensor has 2^32 elements or more.
 * @example
 * ```ts
 * const launch = groupNormApplyLaunch({ n: 1, hw: 12544, c: 768, groups: 32, relu: true });
 * // launch.workgroups: [2352, 1, 1] (vec4: 12544/4 pixel chunks x 192 vec4 / 256)
 * ```
 */
export function groupNormApplyLaunch(
  shape: GroupNormApplyShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const variant = groupNormApplyVariant(shape);
  const name = GROUP_NORM_APPLY_SPECS[variant]?.name;
  const fail = (message: string, error: typeof TypeError = TypeError): never => {
    throw new error(`Cannot launch ${name ?? "group_norm_apply"}: ${message}`);
  };
  if (!name) fail(`expected variant vec4 or scalar, got "${variant}"`);
  for (const key of ["n", "hw", "c", "groups"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) fail(`expected ${key} to be a positive integer, got ${v}`);
  }
  if (shape.c % shape.groups !== 0) fail(`expected C % G == 0, got C ${shape.c}, G ${shape.groups}`);
  if (variant === "vec4" && shape.c % 4 !== 0) fail(`expected C % 4 == 0, got C ${shape.c}`);
  const elements = shape.n * shape.hw * shape.c;
  if (elements > 0xffffffff) fail(`expected at most 2^32 - 1 elements, got ${elements}`, RangeError);
  const threads = variant === "vec4"
    ? shape.n * Math.ceil(shape.hw / GROUP_NORM_APPLY_PIXELS_PER_THREAD) * shape.c / 4
    : elements;
  return {
    workgroups: foldWorkgroups(Math.ceil(threads / GROUP_NORM_APPLY_WORKGROUP_SIZE), limits, name),
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["hw", "u32", shape.hw],
      ["c", "u32", shape.c],
      ["groups", "u32", shape.groups],
      ["relu", "u32", shape.relu ? 1 : 0],
    ]),
  };
}

/**
 * The `group_norm` op (statistics then apply): x NHWC [N,H,W,C] → y of the same shape; attrs `groups`,
 * `eps`, `relu` (false); weights `gamma`, `beta` ([C]). Lowers to the two statistics steps of
 * `group_norm_stats.ts` (with a node-private partials scratch and the [N,G,2] stats, both f32) and one apply
 * step, in the node's flavour (f32, f16 or f32to16).
 */
export const groupNormLowering: OpLowering = {
  op: "group_norm",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1, 4);
    const c = inputs[0][3];
    const groups = numberAttr(node, "groups");
    if (c % groups !== 0) {
      throw new TypeError(`Cannot build "${node.name}": C ${c} is not a multiple of ${groups} groups`);
    }
    return inputs[0];
  },
  flops(node, shape) {
    // Statistics (two reads) and the affine apply: about 8 operations per element.
    return 8 * numel(shape(node.inputs[0]));
  },
  lower(ctx) {
    const node = ctx.node;
    const [n, h, w, c] = ctx.shape(node.inputs[0]);
    const groups = numberAttr(node, "groups");
    const apply = flavourSpec(ctx, GROUP_NORM_APPLY_FLAVOURS);
    const stats = groupNormStatsSteps(
      { n, hw: h * w, c, groups, eps: numberAttr(node, "eps"), dtype: ctx.dtype(node.inputs[0]) },
      ctx.device.limits,
    );
    const names: Record<string, string> = {
      x: node.inputs[0],
      partials: ctx.scratch("partials", stats.partialsBytes),
      stats: ctx.scratch("stats", stats.statsBytes),
    };
    for (const s of stats.steps) ctx.step(s.spec, s.launch, s.buffers.map((b) => names[b]));
    const shape = { n, hw: h * w, c, groups, relu: flagAttr(node, "relu") };
    ctx.step(
      apply[groupNormApplyVariant(shape)],
      groupNormApplyLaunch(shape, ctx.device.limits),
      [node.inputs[0], names.stats, ctx.weight("gamma"), ctx.weight("beta"), node.output],
    );
  },
};
