/**
 * The GPU-oriented conv2d variants: implicit GEMM (M = N*OH*OW output pixels, N = Cout, K = KH*KW*Cin)
 * with workgroup-memory block tiles, split-K for small M, and subgroup shuffles. The wrapper describes each
 * variant, validates a shape into a launch and lowers a node to its step(s); it never allocates.
 *
 * ```
 * conv2d: y[n,oy,ox,co] = act(sum_{ky,kx,ci} x[n, oy*S-P+ky, ox*S-P+kx, ci] * w[ky,kx,ci,co]
 *   (+ bias[co] if bias) (+ y if accumulate)), act = ReLU if relu else identity
 * x: f32 NHWC [N,H,W,Cin] · w: f32 HWIO [KH,KW,Cin,Cout] · bias: f32 [Cout] · y: f32 NHWC [N,OH,OW,Cout]
 * bindings: 0 x r · 1 w r · 2 bias r · 3 y rw (the [S,M,Cout] scratch of a split step) · 4 uniforms
 *   {n,h,w,cin,kh,kw,stride,pad,oh,ow,_c0,_c1, gm,gn,gk,tiles_n,tiles,k_tiles,splits,tiles_per_split,
 *   has_bias,accumulate,relu,gelu: u32} - the bindings of conv2d_tiled, so the lowering swaps them freely
 * overrides: WG (the tile's invocations) · dispatch: ceil(M/BM) * ceil(Cout/BN) workgroups folded over x,y,
 *   z = splits
 * numerics: f32 fma, partials of 64 K terms added to the total; bias, residual, ReLU in that order
 * ```
 *
 * Variants (Cin % 4 == 0 and Cout % 4 == 0 for all):
 * - `conv2d_block128`: 128 x 128 per workgroup, 8 x 8 per invocation, K step 8 (the layout of the best
 *   published fp32 WGSL GEMMs): big convolutions at batch > 1.
 * - `conv2d_block64`: 64 x 64, 4 x 4, K step 16: more workgroups for mid-size M (stage 3 at batch 1).
 * - `conv2d_block64_splitk`: conv2d_block64 with K split into S ranges (a z index each) into a scratch
 *   [S, M, Cout], then `splitk_reduce` sums them with the epilogue. Fits only where the 64 x 64 grid is
 *   smaller than {@linkcode GPU_FILL_WORKGROUPS} and K is long enough (stage 4 at batch 1: M = 196).
 * - `conv2d_subgroup8`, `conv2d_subgroup32`: B in workgroup memory, A shared by subgroup shuffles over
 *   groups of 8 / 32 lanes; need the `subgroups` feature, an adapter subgroup of at least 8 / 32 lanes, and
 *   Cin % 32 == 0.
 * None of them wants another weight layout: B is read as rows of BN consecutive Cout, which HWIO already is,
 * so the weights stay as the register-tiled kernels read them.
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
import type { Conv2dShape } from "./conv2d.ts";
import { blockGemmWgsl, blockThreads, type BlockTile } from "./_gemm_block.wgsl.ts";
import {
  type GemmGeometry,
  gemmGrid,
  gemmUniformFields,
  gemmVariantSpecs,
  GPU_FILL_WORKGROUPS,
  gpuOrder,
  runsOn,
  splitKCount,
  storageLimit,
} from "./_gemm_plan.ts";
import { SUBGROUP_GEMM_BK, SUBGROUP_GEMM_LANES, SUBGROUP_GEMM_THREADS } from "./_gemm_subgroup.wgsl.ts";
import { splitkReduceLaunch, splitkReduceSpec } from "./splitk_reduce.ts";
import {
  CONV2D_BLOCK128_TILE,
  CONV2D_BLOCK64_TILE,
  CONV2D_SUBGROUP_ROWS,
  conv2dBlock128Wgsl,
  conv2dBlock64Wgsl,
  conv2dSubgroup32Wgsl,
  conv2dSubgroup8Wgsl,
} from "./conv2d_block.wgsl.ts";

export { GPU_FILL_WORKGROUPS };

const bindings = [
  { name: "x", type: "read-only-storage" },
  { name: "w", type: "read-only-storage" },
  { name: "bias", type: "read-only-storage" },
  { name: "y", type: "storage" },
] as const;

const specs = gemmVariantSpecs({
  op: "conv2d",
  bindings,
  block128: { wgsl: conv2dBlock128Wgsl, tile: CONV2D_BLOCK128_TILE },
  block64: { wgsl: conv2dBlock64Wgsl, tile: CONV2D_BLOCK64_TILE },
  subgroup8: conv2dSubgroup8Wgsl,
  subgroup32: conv2dSubgroup32Wgsl,
});

/** Block tile 128 x 128, 8 x 8 per invocation, K step 8. */
export const conv2dBlock128: KernelSpec = specs.block128;
/** Block tile 64 x 64, 4 x 4 per invocation, K step 16. */
export const conv2dBlock64: KernelSpec = specs.block64;
/** conv2d_block64 over K splits into a scratch tensor, then `splitk_reduce`. */
export const conv2dBlock64SplitK: KernelSpec = specs.block64SplitK;
/** B in workgroup memory, A by subgroup shuffles over groups of 8 lanes; needs `subgroups`. */
export const conv2dSubgroup8: KernelSpec = specs.subgroup8;
/** As conv2d_subgroup8 over groups of 32 lanes; needs `subgroups` and subgroups of 32 lanes or more. */
export const conv2dSubgroup32: KernelSpec = specs.subgroup32;

/** The GPU-oriented variants, in no particular order (the lowering orders them per adapter). */
export const conv2dBlockVariants: readonly KernelSpec[] = [
  conv2dBlock128,
  conv2dBlock64,
  conv2dBlock64SplitK,
  conv2dSubgroup8,
  conv2dSubgroup32,
];

/** Tile, Cin alignment and split-K of each variant. */
interface Variant {
  readonly geometry: GemmGeometry;
  readonly cinAlign: number;
  readonly split: boolean;
}

const subgroupGeometry: GemmGeometry = {
  bm: (SUBGROUP_GEMM_THREADS / SUBGROUP_GEMM_LANES) * CONV2D_SUBGROUP_ROWS,
  bn: 4 * SUBGROUP_GEMM_LANES,
  bk: SUBGROUP_GEMM_BK,
};

const VARIANTS = new Map<string, Variant>([
  ["conv2d_block128", { geometry: CONV2D_BLOCK128_TILE, cinAlign: 4, split: false }],
  ["conv2d_block64", { geometry: CONV2D_BLOCK64_TILE, cinAlign: 4, split: false }],
  ["conv2d_block64_splitk", { geometry: CONV2D_BLOCK64_TILE, cinAlign: 4, split: true }],
  ["conv2d_subgroup8", { geometry: subgroupGeometry, cinAlign: SUBGROUP_GEMM_BK, split: false }],
  ["conv2d_subgroup32", { geometry: subgroupGeometry, cinAlign: SUBGROUP_GEMM_BK, split: false }],
]);

/**
 * A block variant with another tile, from the same generator: `conv2d_block_<BM>x<BN>k<BK>_<TM>x<TN>`
 * (`_splitk` when split). Not offered to the lowering; for tests on adapters where the full tiles compile
 * slowly (llvmpipe's GL takes tens of seconds per big unrolled kernel) and for tile experiments in a bench.
 * Launch it with {@linkcode conv2dBlockLaunch}.
 *
 * @param tile The tile (powers of two; see `blockGemmWgsl`).
 * @param split Whether it runs split-K (then a `splitk_reduce` step follows).
 * @returns Its spec (the same object for the same tile).
 */
export function conv2dBlockTileVariant(tile: BlockTile, split = false): KernelSpec {
  const name = `conv2d_block_${tile.bm}x${tile.bn}k${tile.bk}_${tile.tm}x${tile.tn}${split ? "_splitk" : ""}`;
  const known = TILE_SPECS.get(name);
  if (known) return known;
  const spec: KernelSpec = {
    name,
    wgsl: blockGemmWgsl({ name, op: "conv2d", tile }),
    bindings,
    gpuOnly: true,
    overrides: { WG: blockThreads(tile) },
  };
  VARIANTS.set(name, { geometry: tile, cinAlign: 4, split });
  TILE_SPECS.set(name, spec);
  return spec;
}

const TILE_SPECS = new Map<string, KernelSpec>();

/** Whether the block variant `spec` runs split-K (a `splitk_reduce` step after it). */
export function isConv2dSplitK(spec: KernelSpec): boolean {
  return VARIANTS.get(spec.name)?.split === true;
}

/** Whether `spec` is one of {@linkcode conv2dBlockVariants} (by name). */
export function isConv2dBlock(spec: KernelSpec): boolean {
  return VARIANTS.has(spec.name);
}

/** The GEMM sizes of a convolution (m <= 0 when the kernel does not fit the padded input). */
function gemmOf(s: Conv2dShape): { m: number; n: number; k: number; oh: number; ow: number } {
  const oh = Math.floor((s.h + 2 * s.pad - s.kh) / s.stride) + 1;
  const ow = Math.floor((s.w + 2 * s.pad - s.kw) / s.stride) + 1;
  return { m: s.n * Math.max(oh, 0) * Math.max(ow, 0), n: s.cout, k: s.kh * s.kw * s.cin, oh, ow };
}

/** A block variant's launch: one GEMM step, and the scratch it writes when split. */
export interface Conv2dBlockLaunch extends KernelLaunch {
  /** [N, OH, OW, Cout]. */
  readonly outShape: [number, number, number, number];
  /** K splits of this launch (1: the kernel applies the epilogue itself). */
  readonly splits: number;
  /** Bytes of the [S, M, Cout] f32 partials when split, else 0. */
  readonly scratchBytes: number;
}

/**
 * Validates a shape for a block variant and returns its dispatch, uniforms and output shape.
 *
 * @param spec One of {@linkcode conv2dBlockVariants}.
 * @param shape The convolution.
 * @param options `limits` (default the WebGPU defaults); `splits` for `conv2d_block64_splitk` (default 1:
 *   one dispatch that applies the epilogue; the lowering asks {@linkcode conv2dSplitCount}).
 * @returns The launch, its splits and scratch size.
 * @throws {TypeError} For a bad dimension, a kernel that does not fit the padded input, or channels the
 *   variant cannot take.
 * @throws {RangeError} When a tensor reaches 2^32 elements or even a folded dispatch does not fit.
 * @example
 * ```ts
 * const shape = { n: 1, h: 14, w: 14, cin: 1536, cout: 1536, kh: 3, kw: 3, stride: 1, pad: 1, accumulate: false };
 * conv2dBlockLaunch(conv2dBlock64SplitK, shape, { splits: 3 }).splits; // 3
 * ```
 */
export function conv2dBlockLaunch(
  spec: KernelSpec,
  shape: Conv2dShape,
  options: { limits?: LaunchLimits; splits?: number } = {},
): Conv2dBlockLaunch {
  const what = spec.name;
  const v = VARIANTS.get(spec.name);
  if (!v) throw new TypeError(`Cannot launch ${what}: expected a block conv2d variant, got "${spec.name}"`);
  for (const key of ["n", "h", "w", "cin", "cout", "kh", "kw", "stride"] as const) {
    const x = shape[key];
    if (!Number.isInteger(x) || x < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${x}`);
    }
  }
  if (!Number.isInteger(shape.pad) || shape.pad < 0) {
    throw new TypeError(`Cannot launch ${what}: expected pad to be a non-negative integer, got ${shape.pad}`);
  }
  for (const key of ["accumulate", "bias", "relu"] as const) {
    const x = shape[key];
    if (typeof x !== "boolean" && !(key !== "accumulate" && x === undefined)) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a boolean, got ${x}`);
    }
  }
  if (shape.cin % v.cinAlign !== 0) {
    throw new TypeError(`Cannot launch ${what}: expected Cin % ${v.cinAlign} == 0, got ${shape.cin}`);
  }
  if (shape.cout % 4 !== 0) {
    throw new TypeError(`Cannot launch ${what}: expected Cout % 4 == 0, got ${shape.cout}`);
  }
  const g = gemmOf(shape);
  if (g.oh < 1 || g.ow < 1) {
    throw new TypeError(
      `Cannot launch ${what}: expected the ${shape.kh}x${shape.kw} kernel to fit the padded ${shape.h}x${shape.w} ` +
        `input (pad ${shape.pad}), got output ${g.oh}x${g.ow}`,
    );
  }
  const limits = options.limits ?? DEFAULT_LAUNCH_LIMITS;
  const grid = gemmGrid(v.geometry, g, v.split ? (options.splits ?? 1) : 1);
  const largest = Math.max(g.m * g.n * grid.splits, shape.n * shape.h * shape.w * shape.cin, g.k * g.n);
  if (largest > 0xffffffff) {
    throw new RangeError(
      `Cannot launch ${what}: expected fewer than 2^32 elements per tensor, got ${largest}`,
    );
  }
  const [x, y] = foldWorkgroups(grid.tiles, limits, what);
  return {
    workgroups: [x, y, grid.splits],
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["h", "u32", shape.h],
      ["w", "u32", shape.w],
      ["cin", "u32", shape.cin],
      ["kh", "u32", shape.kh],
      ["kw", "u32", shape.kw],
      ["stride", "u32", shape.stride],
      ["pad", "u32", shape.pad],
      ["oh", "u32", g.oh],
      ["ow", "u32", g.ow],
      ["_c0", "u32", 0],
      ["_c1", "u32", 0],
      ...gemmUniformFields(g, grid, {
        bias: shape.bias ?? false,
        accumulate: shape.accumulate,
        relu: shape.relu ?? false,
        gelu: false,
      }),
    ]),
    outShape: [shape.n, g.oh, g.ow, shape.cout],
    splits: grid.splits,
    scratchBytes: grid.splits > 1 ? 4 * grid.splits * g.m * g.n : 0,
  };
}

/**
 * The K splits the lowering gives a split-K variant for `shape` (1: not worth splitting).
 *
 * @param shape The convolution.
 * @param limits For the scratch's binding size (default 128 MiB).
 * @param spec The split-K variant (default `conv2d_block64_splitk`), for its tile.
 */
export function conv2dSplitCount(
  shape: Conv2dShape,
  limits: LaunchLimits & Partial<GPUSupportedLimits> = DEFAULT_LAUNCH_LIMITS,
  spec: KernelSpec = conv2dBlock64SplitK,
): number {
  const g = gemmOf(shape);
  if (g.m < 1) return 1;
  return splitKCount(VARIANTS.get(spec.name)?.geometry ?? CONV2D_BLOCK64_TILE, g, storageLimit(limits));
}

/**
 * Whether a block variant can run `shape` on `device`: channel alignment; the `subgroups` feature and
 * subgroup size for the subgroup kernels; for split-K, that splitting is worth it (at least 2 splits).
 */
export function conv2dBlockFits(spec: KernelSpec, shape: Conv2dShape, device?: LoweringDevice): boolean {
  const v = VARIANTS.get(spec.name);
  if (!v || shape.cin % v.cinAlign !== 0 || shape.cout % 4 !== 0) return false;
  if ((spec.features || spec.minSubgroupSize) && !runsOn(spec, device)) return false;
  if (v.split) return conv2dSplitCount(shape, device?.limits, spec) >= 2;
  return true;
}

/** The block variants in the order a GPU prefers them for `shape` (see `gpuOrder` in `_gemm_plan.ts`). */
export function conv2dBlockGpuOrder(shape: Conv2dShape): KernelSpec[] {
  return gpuOrder(
    {
      bigTile: CONV2D_BLOCK128_TILE,
      block128: conv2dBlock128,
      block64: conv2dBlock64,
      splitK: conv2dBlock64SplitK,
      subgroup: [conv2dSubgroup32, conv2dSubgroup8],
    },
    gemmOf(shape),
  );
}

/**
 * Records a block variant's step(s) for the node being lowered: one GEMM step, or (split-K) the partial
 * GEMM into the scratch tensor `<node>.splitk` and `splitk_reduce` with the epilogue.
 */
export function lowerConv2dBlock(ctx: LoweringContext, spec: KernelSpec, shape: Conv2dShape): void {
  const node = ctx.node;
  const weight = ctx.weight("weight");
  // Without a bias the binding is unread: the weights stand in (read-only aliasing is allowed).
  const bias = shape.bias ? ctx.weight("bias") : weight;
  const limits = ctx.device.limits;
  const split = VARIANTS.get(spec.name)!.split;
  const launch = conv2dBlockLaunch(spec, shape, {
    limits,
    splits: split ? conv2dSplitCount(shape, limits, spec) : 1,
  });
  if (launch.splits === 1) {
    ctx.step(spec, launch, [node.inputs[0], weight, bias, node.output]);
    return;
  }
  const part = ctx.scratch("splitk", launch.scratchBytes);
  ctx.step(spec, launch, [node.inputs[0], weight, bias, part]);
  const [n, oh, ow, cout] = launch.outShape;
  const reduce = splitkReduceLaunch({
    rows: n * oh * ow,
    cols: cout,
    splits: launch.splits,
    bias: shape.bias ?? false,
    gelu: false,
    accumulate: shape.accumulate,
    residual: false,
    relu: shape.relu ?? false,
  }, limits);
  // The residual is y itself (accumulate): binding 2 is unread, the partials stand in.
  ctx.step(splitkReduceSpec, reduce, [part, bias, part, node.output]);
}
