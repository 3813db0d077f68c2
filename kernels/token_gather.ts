/**
 * token_gather: copies one token row of each image of a token tensor into one slot of a collector, so that
 * a ViT embedding ("the class token of each of the last k blocks, through the final LayerNorm,
 * concatenated") is k gathers into [N, k, D], one layer_norm over D, and the result read as [N, k*D]. The
 * wrapper describes the kernel, validates a shape into a launch, and lowers a graph node of op
 * `token_gather`. It never allocates, submits or reads back.
 *
 * ```
 * y[n,slot,:] = x[n,token,:]; the other slots of y keep their contents
 * x: f32 [N,T,D] · y: f32 [N,slots,D]
 * bindings: 0 x r · 1 y rw · 2 uniforms {n,tokens,d,token,slots,slot: u32}
 * overrides: WG (workgroup size) · dispatch: ceil(N*D / WG) workgroups, folded over x,y (foldWorkgroups)
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
  type Shape,
} from "../engine/kernel.ts";
import { expectInputs, type GraphNode, numberAttr } from "../engine/graph.ts";
import type { OpLowering } from "../engine/lowering.ts";
import { nodeError } from "./_lowering.ts";
import { tokenGatherWgsl } from "./token_gather.wgsl.ts";
import { COMMON_FLAVOURS, type Flavour, flavourName, flavourSpec } from "./_precision.ts";

/** Threads per workgroup: the WGSL override `WG`. */
export const TOKEN_GATHER_WORKGROUP_SIZE = 256;

/** Shape of one gather. */
export interface TokenGatherShape {
  /** Images N. */
  readonly n: number;
  /** Tokens per image in x (T). */
  readonly tokens: number;
  /** Width D. */
  readonly d: number;
  /** The token copied (0 = the class token). */
  readonly token: number;
  /** Slots per image in y. */
  readonly slots: number;
  /** The slot written. */
  readonly slot: number;
}

/** The kernel in each flavour (f32; f16: x and y f16, an exact copy): one thread per copied element. */
export const TOKEN_GATHER_FLAVOURS: Readonly<Partial<Record<Flavour, KernelSpec>>> = Object.fromEntries(
  COMMON_FLAVOURS.map((f) => {
    const name = flavourName("token_gather", f);
    return [f, {
      name,
      wgsl: tokenGatherWgsl(name, f === "f16" ? "f16" : "f32"),
      bindings: [
        { name: "x", type: "read-only-storage" },
        { name: "y", type: "storage" },
      ],
      overrides: { WG: TOKEN_GATHER_WORKGROUP_SIZE },
    }];
  }),
);

/** The f32 kernel: one thread per copied element. */
export const tokenGatherSpec: KernelSpec = TOKEN_GATHER_FLAVOURS.f32!;

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode tokenGatherSpec}.
 *
 * @param shape Images, tokens, width, the token and the slot.
 * @param limits The device's limits.
 * @returns ceil(N*D / WG) workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When a dimension is not a positive integer or an index not a non-negative integer.
 * @throws {RangeError} When `token` >= T or `slot` >= slots, or a tensor has 2^32 elements or more.
 * @example
 * ```ts
 * tokenGatherLaunch({ n: 1, tokens: 197, d: 384, token: 0, slots: 4, slot: 3 }).workgroups; // [2, 1, 1]
 * ```
 */
export function tokenGatherLaunch(
  shape: TokenGatherShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const what = tokenGatherSpec.name;
  for (const key of ["n", "tokens", "d", "slots"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${v}`);
    }
  }
  for (const key of ["token", "slot"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 0) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a non-negative integer, got ${v}`);
    }
  }
  if (shape.token >= shape.tokens) {
    throw new RangeError(`Cannot launch ${what}: expected token < ${shape.tokens}, got ${shape.token}`);
  }
  if (shape.slot >= shape.slots) {
    throw new RangeError(`Cannot launch ${what}: expected slot < ${shape.slots}, got ${shape.slot}`);
  }
  const largest = shape.n * Math.max(shape.tokens, shape.slots) * shape.d;
  if (largest > 0xffffffff) {
    throw new RangeError(`Cannot launch ${what}: expected fewer than 2^32 elements, got ${largest}`);
  }
  return {
    workgroups: foldWorkgroups(Math.ceil((shape.n * shape.d) / TOKEN_GATHER_WORKGROUP_SIZE), limits, what),
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["tokens", "u32", shape.tokens],
      ["d", "u32", shape.d],
      ["token", "u32", shape.token],
      ["slots", "u32", shape.slots],
      ["slot", "u32", shape.slot],
    ]),
  };
}

/** Reads and checks a node's token, slot and slots against its input shape. */
function nodeShape(node: GraphNode, input: Shape): TokenGatherShape {
  const [n, tokens, d] = input;
  const token = numberAttr(node, "token", 0);
  const slots = numberAttr(node, "slots");
  const slot = numberAttr(node, "slot");
  if (!Number.isInteger(slots) || slots < 1) {
    throw nodeError(node, `expected attribute "slots" to be a positive integer, got ${slots}`);
  }
  if (!Number.isInteger(slot) || slot < 0 || slot >= slots) {
    throw nodeError(node, `expected attribute "slot" in [0, ${slots}), got ${slot}`);
  }
  if (!Number.isInteger(token) || token < 0 || token >= tokens) {
    throw nodeError(node, `expected attribute "token" in [0, ${tokens}), got ${token}`);
  }
  if (slot > 0 && !node.inPlace) {
    throw nodeError(
      node,
      `expected slot ${slot} to be written in place into the collector that slot 0 created (inPlace)`,
    );
  }
  return { n, tokens, d, token, slots, slot };
}

/**
 * The lowering entry of op `token_gather`.
 *
 * Contract: inputs `[x]`, f32 [N, T, D]; output the collector f32 [N, slots, D]. Attributes: `slots`
 * (required), `slot` (required, in [0, slots)), `token` (default 0, the class token). The node writing
 * slot 0 may create the collector; every other slot must be written `inPlace` into it. No weights.
 * FLOPs: 0.
 */
export const tokenGatherLowering: OpLowering = {
  op: "token_gather",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1, 3);
    const s = nodeShape(node, inputs[0]);
    return [s.n, s.slots, s.d];
  },
  flops() {
    return 0;
  },
  lower(ctx) {
    const node = ctx.node;
    const s = nodeShape(node, ctx.shape(node.inputs[0]));
    const spec = flavourSpec(ctx, TOKEN_GATHER_FLAVOURS);
    ctx.step(spec, tokenGatherLaunch(s, ctx.device.limits), [node.inputs[0], node.output]);
  },
};
