/**
 * max_pool: the stem's 3x3 stride-2 max-pool (generic k, stride and padding in uniforms), NHWC.
 *
 * ```
 * y[n,oy,ox,c] = max of x over the k x k window at (oy*stride - pad, ox*stride - pad)
 * padValue "-inf": taps outside the image are skipped (derm preset, PyTorch MaxPool2d(3, 2, padding=1))
 * padValue "zero": taps outside the image are 0 (bit preset: zero-pad, then VALID pool)
 * OH = floor((H + 2*pad - k) / stride) + 1, likewise OW
 * bindings: 0 x r (f32 NHWC [N,H,W,C]) · 1 y rw (f32 NHWC [N,OH,OW,C]) · 2 uniforms {n,h,w,c,k,stride,pad,oh,ow,padZero: u32}
 * flavours: f32 (`max_pool`) and f16 (`max_pool_f16`: x and y f16; the max is exact either way)
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
  type Shape,
} from "../engine/kernel.ts";
import { expectInputs, type GraphNode, numberAttr, stringAttr } from "../engine/graph.ts";
import type { OpLowering } from "../engine/lowering.ts";
import { maxPoolWgsl } from "./max_pool.wgsl.ts";
import { COMMON_FLAVOURS, type Flavour, flavourName, flavourSpec } from "./_precision.ts";

/** Threads per workgroup: the WGSL override `WG`. */
export const MAX_POOL_WORKGROUP_SIZE = 256;

/** Shape of one max-pool. */
export interface MaxPoolShape {
  /** Images (N). */
  readonly n: number;
  /** Input height (H). */
  readonly h: number;
  /** Input width (W). */
  readonly w: number;
  /** Channels (C). */
  readonly c: number;
  /** Window size (k x k). */
  readonly k: number;
  /** Stride, both axes. */
  readonly stride: number;
  /** Symmetric padding, both axes, at most floor(k / 2) (as PyTorch requires). */
  readonly pad: number;
  /** What padding holds: "-inf" (skipped) or "zero". */
  readonly padValue: "-inf" | "zero";
}

/** The kernel in each flavour (f32, f16): one thread per output element. */
export const MAX_POOL_FLAVOURS: Readonly<Partial<Record<Flavour, KernelSpec>>> = Object.fromEntries(
  COMMON_FLAVOURS.map((f) => {
    const name = flavourName("max_pool", f);
    return [f, {
      name,
      wgsl: maxPoolWgsl(name, f === "f16" ? "f16" : "f32"),
      bindings: [
        { name: "x", type: "read-only-storage" },
        { name: "y", type: "storage" },
      ],
      overrides: { WG: MAX_POOL_WORKGROUP_SIZE },
    }];
  }),
);

/** The f32 kernel: one thread per output element. */
export const maxPoolSpec: KernelSpec = MAX_POOL_FLAVOURS.f32!;

/**
 * Output height and width of a max-pool.
 *
 * @param shape The pool's shape.
 * @returns `[OH, OW]`, each `floor((in + 2*pad - k) / stride) + 1`.
 * @example
 * ```ts
 * maxPoolOutput({ n: 1, h: 224, w: 224, c: 192, k: 3, stride: 2, pad: 1, padValue: "-inf" }); // [112, 112]
 * ```
 */
export function maxPoolOutput(shape: MaxPoolShape): [number, number] {
  const { h, w, k, stride, pad } = shape;
  return [Math.floor((h + 2 * pad - k) / stride) + 1, Math.floor((w + 2 * pad - k) / stride) + 1];
}

/**
 * Validates a shape and returns the dispatch and uniforms of {@linkcode maxPoolSpec}.
 *
 * @param shape The pool's shape.
 * @param limits The device's limits.
 * @returns ceil(N*OH*OW*C / WG) workgroups, folded, and the uniform bytes.
 * @throws {TypeError} When a dimension is not an integer in range, pad > k / 2, the window is larger than
 *   the padded input, or padValue is unknown.
 * @throws {RangeError} When the output has 2^32 elements or more.
 * @example
 * ```ts
 * maxPoolLaunch({ n: 1, h: 224, w: 224, c: 192, k: 3, stride: 2, pad: 1, padValue: "zero" }).workgroups;
 * // [9408, 1, 1]
 * ```
 */
export function maxPoolLaunch(
  shape: MaxPoolShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const fail = (message: string, error: typeof TypeError = TypeError): never => {
    throw new error(`Cannot launch max_pool: ${message}`);
  };
  for (const key of ["n", "h", "w", "c", "k", "stride"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) fail(`expected ${key} to be a positive integer, got ${v}`);
  }
  const { pad, k } = shape;
  if (!Number.isInteger(pad) || pad < 0 || pad > Math.floor(k / 2)) {
    fail(`expected pad to be an integer in [0, floor(k / 2)], got pad ${pad}, k ${k}`);
  }
  if (shape.padValue !== "-inf" && shape.padValue !== "zero") {
    fail(`expected padValue "-inf" or "zero", got "${shape.padValue}"`);
  }
  if (Math.min(shape.h, shape.w) + 2 * pad < k) {
    fail(`expected the window to fit the padded input, got H ${shape.h}, W ${shape.w}, pad ${pad}, k ${k}`);
  }
  const [oh, ow] = maxPoolOutput(shape);
  const outputs = shape.n * oh * ow * shape.c;
  const inputs = shape.n * shape.h * shape.w * shape.c;
  if (Math.max(outputs, inputs) > 0xffffffff) {
    fail(`expected at most 2^32 - 1 elements, got ${Math.max(outputs, inputs)}`, RangeError);
  }
  return {
    workgroups: foldWorkgroups(Math.ceil(outputs / MAX_POOL_WORKGROUP_SIZE), limits, "max_pool"),
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["h", "u32", shape.h],
      ["w", "u32", shape.w],
      ["c", "u32", shape.c],
      ["k", "u32", k],
      ["stride", "u32", shape.stride],
      ["pad", "u32", pad],
      ["oh", "u32", oh],
      ["ow", "u32", ow],
      ["padZero", "u32", shape.padValue === "zero" ? 1 : 0],
    ]),
  };
}

/**
 * The `max_pool` op: x NHWC [N,H,W,C] → [N,OH,OW,C]; attrs `kernel`, `stride`, `pad`, `padValue`
 * (`-inf` or `zero`).
 */
export const maxPoolLowering: OpLowering = {
  op: "max_pool",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1, 4);
    const [n, h, w, c] = inputs[0];
    const [oh, ow] = maxPoolOutput(nodeShape(node, [n, h, w, c]));
    return [n, oh, ow, c];
  },
  flops(node, shape) {
    const k = numberAttr(node, "kernel");
    return numel(shape(node.output)) * k * k;
  },
  lower(ctx) {
    const node = ctx.node;
    const launch = maxPoolLaunch(nodeShape(node, ctx.shape(node.inputs[0])), ctx.device.limits);
    ctx.step(flavourSpec(ctx, MAX_POOL_FLAVOURS), launch, [node.inputs[0], node.output]);
  },
};

function nodeShape(node: GraphNode, [n, h, w, c]: Shape): MaxPoolShape {
  const padValue = stringAttr(node, "padValue");
  if (padValue !== "-inf" && padValue !== "zero") {
    throw new TypeError(`Cannot build "${node.name}": padValue must be "-inf" or "zero", got "${padValue}"`);
  }
  return {
    n,
    h,
    w,
    c,
    k: numberAttr(node, "kernel"),
    stride: numberAttr(node, "stride"),
    pad: numberAttr(node, "pad", 0),
    padValue,
  };
}
