/**
 * The GPU-oriented linear variants (the ViT's matmuls): workgroup-memory block tiles, split-K for small M
 * (197 tokens at batch 1), and subgroup shuffles, from the generators the conv2d ones use. The wrapper
 * describes each variant, validates a shape into a launch and lowers a node to its step(s); it never
 * allocates.
 *
 * ```
 * linear: y[r,o] = act(sum_i x[r,i] * w[i,o] + b[o]) (+ res[r,o] if accumulate), act = identity or GELU (erf),
 *   GELU and accumulate not both
 * x: f32 [M,Din] · w: f32 [Din,Dout] (Dout contiguous) · b: f32 [Dout] · res: f32 [M,Dout] · y: f32 [M,Dout]
 *   (the [S,M,Dout] scratch of a split step)
 * bindings: 0 x r · 1 w r · 2 b r · 3 res r · 4 y rw · 5 uniforms {gm,gn,gk,tiles_n,tiles,k_tiles,splits,
 *   tiles_per_split,has_bias,accumulate,relu,gelu: u32} - the bindings of linear_tiled
 * overrides: WG (the tile's invocations) · dispatch: ceil(M/BM) * ceil(Dout/BN) workgroups folded over x,y,
 *   z = splits
 * numerics: f32 fma, partials of 64 K terms added to the total; + b, then GELU or + res
 * ```
 *
 * Variants (Din % 4 == 0 and Dout % 4 == 0 for all; Din, Dout and M need not be multiples of the tile):
 * - `linear_block128`: 128 x 128 per workgroup, 8 x 8 per invocation, K step 8: big M (batch > 1).
 * - `linear_block64`: 64 x 64, 4 x 4, K step 16.
 * - `linear_block64_splitk`: linear_block64 with K split into S ranges (a z index each) into a scratch
 *   [S, M, Dout], then `splitk_reduce` applies bias, GELU or residual. Fits only where the 64 x 64 grid is
 *   smaller than `GPU_FILL_WORKGROUPS` and K is long enough (ViT-S at batch 1: M = 197).
 * - `linear_subgroup8`, `linear_subgroup32`: B in workgroup memory, A by subgroup shuffles over groups of
 *   8 / 32 lanes; need the `subgroups` feature and an adapter subgroup of at least 8 / 32 lanes.
 * Weight layout: B is read as rows of BN consecutive Dout, which [Din, Dout] (torch's [out, in] transposed
 * once at load by the weight-upload path, as for the register-tiled variants) already is.
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
import type { LoweringContext, LoweringDevice } from "../engine/lowering.ts";
import type { StepBinding } from "../engine/plan.ts";
import type { LinearShape } from "./linear.ts";
import { blockGemmWgsl, blockThreads, type BlockTile } from "./_gemm_block.wgsl.ts";
import {
  type GemmGeometry,
  gemmGrid,
  gemmUniformFields,
  gemmVariantSpecs,
  gpuOrder,
  runsOn,
  splitKCount,
  storageLimit,
} from "./_gemm_plan.ts";
import { SUBGROUP_GEMM_BK, SUBGROUP_GEMM_LANES, SUBGROUP_GEMM_THREADS } from "./_gemm_subgroup.wgsl.ts";
import { splitkReduceLaunch, splitkReduceSpec } from "./splitk_reduce.ts";
import {
  LINEAR_BLOCK128_TILE,
  LINEAR_BLOCK64_TILE,
  LINEAR_SUBGROUP_ROWS,
  linearBlock128Wgsl,
  linearBlock64Wgsl,
  linearSubgroup32Wgsl,
  linearSubgroup8Wgsl,
} from "./linear_block.wgsl.ts";

const bindings = [
  { name: "x", type: "read-only-storage" },
  { name: "w", type: "read-only-storage" },
  { name: "b", type: "read-only-storage" },
  { name: "res", type: "read-only-storage" },
  { name: "y", type: "storage" },
] as const;

const specs = gemmVariantSpecs({
  op: "linear",
  bindings,
  block128: { wgsl: linearBlock128Wgsl, tile: LINEAR_BLOCK128_TILE },
  block64: { wgsl: linearBlock64Wgsl, tile: LINEAR_BLOCK64_TILE },
  subgroup8: linearSubgroup8Wgsl,
  subgroup32: linearSubgroup32Wgsl,
});

/** Block tile 128 x 128, 8 x 8 per invocation, K step 8. */
export const linearBlock128: KernelSpec = specs.block128;
/** Block tile 64 x 64, 4 x 4 per invocation, K step 16. */
export const linearBlock64: KernelSpec = specs.block64;
/** linear_block64 over K splits into a scratch tensor, then `splitk_reduce`. */
export const linearBlock64SplitK: KernelSpec = specs.block64SplitK;
/** B in workgroup memory, A by subgroup shuffles over groups of 8 lanes; needs `subgroups`. */
export const linearSubgroup8: KernelSpec = specs.subgroup8;
/** As linear_subgroup8 over groups of 32 lanes; needs `subgroups` and subgroups of 32 lanes or more. */
export const linearSubgroup32: KernelSpec = specs.subgroup32;

/** The GPU-oriented variants, in no particular order (the lowering orders them per adapter). */
export const linearBlockVariants: readonly KernelSpec[] = [
  linearBlock128,
  linearBlock64,
  linearBlock64SplitK,
  linearSubgroup8,
  linearSubgroup32,
];

/** Tile and split-K of each variant. */
interface Variant {
  readonly geometry: GemmGeometry;
  readonly split: boolean;
}

const subgroupGeometry: GemmGeometry = {
  bm: (SUBGROUP_GEMM_THREADS / SUBGROUP_GEMM_LANES) * LINEAR_SUBGROUP_ROWS,
  bn: 4 * SUBGROUP_GEMM_LANES,
  bk: SUBGROUP_GEMM_BK,
};

const VARIANTS = new Map<string, Variant>([
  ["linear_block128", { geometry: LINEAR_BLOCK128_TILE, split: false }],
  ["linear_block64", { geometry: LINEAR_BLOCK64_TILE, split: false }],
  ["linear_block64_splitk", { geometry: LINEAR_BLOCK64_TILE, split: true }],
  ["linear_subgroup8", { geometry: subgroupGeometry, split: false }],
  ["linear_subgroup32", { geometry: subgroupGeometry, split: false }],
]);
const TILE_SPECS = new Map<string, KernelSpec>();

/**
 * A block variant with another tile, from the same generator: `linear_block_<BM>x<BN>k<BK>_<TM>x<TN>`
 * (`_splitk` when split). Not offered to the lowering; for tests on adapters where the full tiles compile
 * slowly (llvmpipe's GL) and for tile experiments. Launch it with {@linkcode linearBlockLaunch}.
 *
 * @param tile The tile (powers of two; see `blockGemmWgsl`).
 * @param split Whether it runs split-K (then a `splitk_reduce` step follows).
 * @returns Its spec (the same object for the same tile).
 */
export function linearBlockTileVariant(tile: BlockTile, split = false): KernelSpec {
  const name = `linear_block_${tile.bm}x${tile.bn}k${tile.bk}_${tile.tm}x${tile.tn}${split ? "_splitk" : ""}`;
  const known = TILE_SPECS.get(name);
  if (known) return known;
  const spec: KernelSpec = {
    name,
    wgsl: blockGemmWgsl({ name, op: "linear", tile }),
    bindings,
    gpuOnly: true,
    overrides: { WG: blockThreads(tile) },
  };
  VARIANTS.set(name, { geometry: tile, split });
  TILE_SPECS.set(name, spec);
  return spec;
}

/** Whether `spec` is a block linear variant (one of {@linkcode linearBlockVariants} or a tile variant). */
export function isLinearBlock(spec: KernelSpec): boolean {
  return VARIANTS.has(spec.name);
}

/** Whether the block variant `spec` runs split-K (a `splitk_reduce` step after it). */
export function isLinearSplitK(spec: KernelSpec): boolean {
  return VARIANTS.get(spec.name)?.split === true;
}

/** A block variant's launch: one GEMM step, and the scratch it writes when split. */
export interface LinearBlockLaunch extends KernelLaunch {
  /** [M, Dout]. */
  readonly outShape: [number, number];
  /** K splits of this launch (1: the kernel applies the epilogue itself). */
  readonly splits: number;
  /** Bytes of the [S, M, Dout] f32 partials when split, else 0. */
  readonly scratchBytes: number;
}

/**
 * Validates a shape for a block variant and returns its dispatch, uniforms and output shape.
 *
 * @param spec A block linear variant.
 * @param shape The layer.
 * @param options `limits` (default the WebGPU defaults); `splits` for a split-K variant (default 1: one
 *   dispatch that applies the epilogue; the lowering asks {@linkcode linearSplitCount}).
 * @returns The launch, its splits and scratch size.
 * @throws {TypeError} For a bad dimension, Din or Dout not a multiple of 4, or GELU with a residual.
 * @throws {RangeError} When a tensor reaches 2^32 elements or even a folded dispatch does not fit.
 * @example
 * ```ts
 * const shape = { rows: 197, din: 384, dout: 1536, bias: true, activation: "gelu", accumulate: false } as const;
 * linearBlockLaunch(linearBlock64SplitK, shape, { splits: 3 }).splits; // 3
 * ```
 */
export function linearBlockLaunch(
  spec: KernelSpec,
  shape: LinearShape,
  options: { limits?: LaunchLimits; splits?: number } = {},
): LinearBlockLaunch {
  const what = spec.name;
  const v = VARIANTS.get(spec.name);
  if (!v) throw new TypeError(`Cannot launch ${what}: expected a block linear variant, got "${spec.name}"`);
  for (const key of ["rows", "din", "dout"] as const) {
    const x = shape[key];
    if (!Number.isInteger(x) || x < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${x}`);
    }
  }
  for (const key of ["bias", "accumulate"] as const) {
    if (typeof shape[key] !== "boolean") {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a boolean, got ${shape[key]}`);
    }
  }
  if (shape.activation !== "none" && shape.activation !== "gelu") {
    throw new TypeError(
      `Cannot launch ${what}: expected activation "none" or "gelu", got "${shape.activation}"`,
    );
  }
  if (shape.activation === "gelu" && shape.accumulate) {
    throw new TypeError(`Cannot launch ${what}: expected GELU or accumulate, got both`);
  }
  for (const key of ["din", "dout"] as const) {
    if (shape[key] % 4 !== 0) {
      const label = key === "din" ? "Din" : "Dout";
      throw new TypeError(`Cannot launch ${what}: expected ${label} % 4 == 0, got ${shape[key]}`);
    }
  }
  const mnk = { m: shape.rows, n: shape.dout, k: shape.din };
  const grid = gemmGrid(v.geometry, mnk, v.split ? (options.splits ?? 1) : 1);
  const largest = Math.max(mnk.m * mnk.n * grid.splits, mnk.m * mnk.k, mnk.k * mnk.n);
  if (largest > 0xffffffff) {
    throw new RangeError(
      `Cannot launch ${what}: expected fewer than 2^32 elements per tensor, got ${largest}`,
    );
  }
  const [x, y] = foldWorkgroups(grid.tiles, options.limits ?? DEFAULT_LAUNCH_LIMITS, what);
  return {
    workgroups: [x, y, grid.splits],
    uniforms: packUniforms(gemmUniformFields(mnk, grid, {
      bias: shape.bias,
      accumulate: shape.accumulate,
      relu: false,
      gelu: shape.activation === "gelu",
    })),
    outShape: [shape.rows, shape.dout],
    splits: grid.splits,
    scratchBytes: grid.splits > 1 ? 4 * grid.splits * mnk.m * mnk.n : 0,
  };
}

/**
 * The K splits the lowering gives a split-K variant for `shape` (1: not worth splitting).
 *
 * @param shape The layer.
 * @param limits For the scratch's binding size (default 128 MiB).
 * @param spec The split-K variant (default `linear_block64_splitk`), for its tile.
 */
export function linearSplitCount(
  shape: LinearShape,
  limits: LaunchLimits & Partial<GPUSupportedLimits> = DEFAULT_LAUNCH_LIMITS,
  spec: KernelSpec = linearBlock64SplitK,
): number {
  const mnk = { m: shape.rows, n: shape.dout, k: shape.din };
  return splitKCount(VARIANTS.get(spec.name)?.geometry ?? LINEAR_BLOCK64_TILE, mnk, storageLimit(limits));
}

/**
 * Whether a block variant can run `shape` on `device`: Din, Dout % 4; the `subgroups` feature and subgroup
 * size for the subgroup kernels; for split-K, that splitting is worth it (at least 2 splits).
 */
export function linearBlockFits(spec: KernelSpec, shape: LinearShape, device?: LoweringDevice): boolean {
  const v = VARIANTS.get(spec.name);
  if (!v || shape.din % 4 !== 0 || shape.dout % 4 !== 0) return false;
  if ((spec.features || spec.minSubgroupSize) && !runsOn(spec, device)) return false;
  if (v.split) return linearSplitCount(shape, device?.limits, spec) >= 2;
  return true;
}

/** The block variants in the order a GPU prefers them for `shape` (see `gpuOrder` in `_gemm_plan.ts`). */
export function linearBlockGpuOrder(shape: LinearShape): KernelSpec[] {
  return gpuOrder(
    {
      bigTile: LINEAR_BLOCK128_TILE,
      block128: linearBlock128,
      block64: linearBlock64,
      splitK: linearBlock64SplitK,
      subgroup: [linearSubgroup32, linearSubgroup8],
    },
    { m: shape.rows, n: shape.dout },
  );
}

/**
 * Records a block variant's step(s) for the node being lowered: one GEMM step, or (split-K) the partial
 * GEMM into the scratch tensor `<node>.splitk` and `splitk_reduce` with the epilogue. Bindings as
 * linear_tiled's: x, w, b (w when no bias), res (x when none).
 */
export function lowerLinearBlock(
  ctx: LoweringContext,
  spec: KernelSpec,
  shape: LinearShape,
  b: { weight: StepBinding; bias: StepBinding; residual: StepBinding },
): void {
  const node = ctx.node;
  const limits = ctx.device.limits;
  const launch = linearBlockLaunch(spec, shape, {
    limits,
    splits: isLinearSplitK(spec) ? linearSplitCount(shape, limits, spec) : 1,
  });
  if (launch.splits === 1) {
    ctx.step(spec, launch, [node.inputs[0], b.weight, b.bias, b.residual, node.output]);
    return;
  }
  const part = ctx.scratch("splitk", launch.scratchBytes);
  ctx.step(spec, launch, [node.inputs[0], b.weight, b.bias, b.residual, part]);
  const reduce = splitkReduceLaunch({
    rows: shape.rows,
    cols: shape.dout,
    splits: launch.splits,
    bias: shape.bias,
    gelu: shape.activation === "gelu",
    accumulate: false,
    residual: shape.accumulate,
    relu: false,
  }, limits);
  ctx.step(splitkReduceSpec, reduce, [part, b.bias, b.residual, node.output]);
}
