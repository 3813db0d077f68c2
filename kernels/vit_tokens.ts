/**
 * vit_tokens: the token sequence of a vision transformer from its patch embedding, with the class token
 * in front and the learned position embedding added. The wrapper describes the kernel, validates a shape
 * into a launch, and lowers a graph node of op `vit_tokens`. It never allocates, submits or reads back.
 *
 * ```
 * y[n,0,:] = cls[:] + pos[0,:] · y[n,1+p,:] = patches[n,p,:] + pos[1+p,:], patches row-major (p = gy*gw + gx)
 * patches: f32 NHWC [N,gh,gw,D] · cls: f32 [D] (timm [1,1,D]) · pos: f32 [T,D] (timm [1,T,D]) ·
 *   y: f32 [N,T,D], T = 1 + gh*gw
 * bindings: 0 patches r · 1 cls r · 2 pos r · 3 y rw · 4 uniforms {n,tokens,d,total: u32}
 * overrides: WG (workgroup size) · dispatch: ceil(N*T*D / WG) workgroups, folded over x,y (foldWorkgroups)
 * ```
 *
 * The position embedding is used as stored: its grid must match the patch grid (no interpolation).
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
import { expectInputs } from "../engine/graph.ts";
import type { OpLowering } from "../engine/lowering.ts";
import { checkedWeight } from "./_lowering.ts";
import { vitTokensWgsl } from "./vit_tokens.wgsl.ts";
import { COMMON_FLAVOURS, type Flavour, flavourName, FLAVOURS, flavourSpec } from "./_precision.ts";

/** Threads per workgroup: the WGSL override `WG`. */
export const VIT_TOKENS_WORKGROUP_SIZE = 256;

/** Shape of one token assembly. */
export interface VitTokensShape {
  /** Images N. */
  readonly n: number;
  /** Patches per image gh*gw (T - 1). */
  readonly patches: number;
  /** Embedding width D. */
  readonly d: number;
}

/** The kernel in each flavour (f32; f16: patches, cls, pos and y f16): one thread per output element. */
export const VIT_TOKENS_FLAVOURS: Readonly<Partial<Record<Flavour, KernelSpec>>> = Object.fromEntries(
  COMMON_FLAVOURS.map((f) => {
    const name = flavourName("vit_tokens", f);
    return [f, {
      name,
      wgsl: vitTokensWgsl(name, FLAVOURS[f]),
      bindings: [
        { name: "patches", type: "read-only-storage" },
        { name: "cls", type: "read-only-storage" },
        { name: "pos", type: "read-only-storage" },
        { name: "y", type: "storage" },
      ],
      overrides: { WG: VIT_TOKENS_WORKGROUP_SIZE },
    }];
  }),
);

/** The f32 kernel: one thread per output element. */
export const vitTokensSpec: KernelSpec = VIT_TOKENS_FLAVOURS.f32!;

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode vitTokensSpec}.
 *
 * @param shape Images, patches per image and width.
 * @param limits The device's limits.
 * @returns ceil(N*T*D / WG) workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When a dimension is not a positive integer.
 * @throws {RangeError} When the output has 2^32 elements or more.
 * @example
 * ```ts
 * vitTokensLaunch({ n: 1, patches: 196, d: 384 }).workgroups; // [296, 1, 1]
 * ```
 */
export function vitTokensLaunch(
  shape: VitTokensShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const what = vitTokensSpec.name;
  for (const key of ["n", "patches", "d"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${v}`);
    }
  }
  const total = shape.n * (shape.patches + 1) * shape.d;
  if (total > 0xffffffff) {
    throw new RangeError(`Cannot launch ${what}: expected fewer than 2^32 elements, got ${total}`);
  }
  return {
    workgroups: foldWorkgroups(Math.ceil(total / VIT_TOKENS_WORKGROUP_SIZE), limits, what),
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["tokens", "u32", shape.patches + 1],
      ["d", "u32", shape.d],
      ["total", "u32", total],
    ]),
  };
}

/**
 * The lowering entry of op `vit_tokens`.
 *
 * Contract: inputs `[patches]`, f32 NHWC [N, gh, gw, D] (the patch-embedding conv's output, bias
 * included); output [N, 1 + gh*gw, D]. Weights by role: `cls` f32 [D] (timm `cls_token` [1, 1, D]),
 * `pos` f32 [1 + gh*gw, D] (timm `pos_embed` [1, T, D], its grid the patch grid). No attributes.
 * FLOPs: 0 (one add per element, not counted).
 */
export const vitTokensLowering: OpLowering = {
  op: "vit_tokens",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1, 4);
    const [n, gh, gw, d] = inputs[0];
    return [n, 1 + gh * gw, d];
  },
  flops() {
    return 0;
  },
  lower(ctx) {
    const node = ctx.node;
    const [n, gh, gw, d] = ctx.shape(node.inputs[0]);
    const tokens = 1 + gh * gw;
    const cls = checkedWeight(ctx, "cls", d, `[${d}]`);
    const pos = checkedWeight(ctx, "pos", tokens * d, `[${tokens}, ${d}]`);
    const launch = vitTokensLaunch({ n, patches: gh * gw, d }, ctx.device.limits);
    ctx.step(flavourSpec(ctx, VIT_TOKENS_FLAVOURS), launch, [node.inputs[0], cls, pos, node.output]);
  },
};
