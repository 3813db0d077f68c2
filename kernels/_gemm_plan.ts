/**
 * Dispatch maths shared by the block-tiled and subgroup GEMM variants of conv2d and linear: the grid of
 * output tiles and K splits, the split-K heuristic, the GEMM fields of the uniform struct, whether a
 * variant may run on a device, and the default order of the variants on a GPU.
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelBinding, KernelSpec, LaunchLimits, UniformField } from "../engine/kernel.ts";
import { deviceRefusal, type LoweringDevice } from "../engine/lowering.ts";
import { blockThreads, type BlockTile } from "./_gemm_block.wgsl.ts";
import { SUBGROUP_GEMM_THREADS } from "./_gemm_subgroup.wgsl.ts";

/** What a variant's dispatch maths needs of its tile. */
export interface GemmGeometry {
  /** Rows per workgroup. */
  readonly bm: number;
  /** Columns per workgroup. */
  readonly bn: number;
  /** K per step. */
  readonly bk: number;
}

/**
 * Workgroups that fill a big GPU: 2 per SM of a 132-SM H100/H200. Below it, split-K is worth trying.
 * Not measured yet (no GPU in the task that wrote this): the autotuner has the last word on a GPU.
 */
export const GPU_FILL_WORKGROUPS = 264;
/**
 * Fewest K steps a split gets: its fixed cost (loads before the first FMA) must stay small against its
 * FMAs; 4 steps of the 64 x 64 tile are 64 K terms, one accuracy chunk.
 */
export const SPLITK_MIN_STEPS = 4;
/** Most splits: the reduction reads S partials per output. */
export const SPLITK_MAX_SPLITS = 16;

/** The grid of a GEMM launch. */
export interface GemmGrid {
  /** Output tiles along N. */
  readonly tilesN: number;
  /** Output tiles. */
  readonly tiles: number;
  /** K steps. */
  readonly kTiles: number;
  /** Splits actually used (every split gets at least one K step). */
  readonly splits: number;
  /** K steps per split (the last may get fewer). */
  readonly tilesPerSplit: number;
}

/**
 * The tile grid of an M x N x K GEMM, with `splits` normalised so that no split is empty.
 *
 * @param g The variant's tile.
 * @param mnk GEMM sizes.
 * @param splits Splits asked for (1: none).
 * @returns The grid.
 */
export function gemmGrid(g: GemmGeometry, mnk: { m: number; n: number; k: number }, splits = 1): GemmGrid {
  const tilesN = Math.ceil(mnk.n / g.bn);
  const tiles = Math.ceil(mnk.m / g.bm) * tilesN;
  const kTiles = Math.ceil(mnk.k / g.bk);
  const asked = Math.max(1, Math.min(Math.floor(splits), kTiles));
  const tilesPerSplit = Math.ceil(kTiles / asked);
  return { tilesN, tiles, kTiles, splits: Math.ceil(kTiles / tilesPerSplit), tilesPerSplit };
}

/**
 * How many K splits a small-M GEMM gets: enough that tiles x splits reaches {@linkcode GPU_FILL_WORKGROUPS},
 * with at least {@linkcode SPLITK_MIN_STEPS} K steps each, at most {@linkcode SPLITK_MAX_SPLITS}, and a
 * scratch ([S, M, N] f32) under `maxScratchBytes`. 1 means "do not split" (the grid is full already, or
 * K is too short).
 */
export function splitKCount(
  g: GemmGeometry,
  mnk: { m: number; n: number; k: number },
  maxScratchBytes: number,
): number {
  const { tiles, kTiles } = gemmGrid(g, mnk);
  if (tiles >= GPU_FILL_WORKGROUPS) return 1;
  let s = Math.min(
    Math.ceil(GPU_FILL_WORKGROUPS / tiles),
    Math.floor(kTiles / SPLITK_MIN_STEPS),
    SPLITK_MAX_SPLITS,
    Math.floor(maxScratchBytes / (4 * mnk.m * mnk.n)),
  );
  if (s < 2) return 1;
  s = gemmGrid(g, mnk, s).splits;
  return s >= 2 ? s : 1;
}

/** The epilogue flags of the GEMM uniform struct. */
export interface GemmEpilogue {
  readonly bias: boolean;
  readonly accumulate: boolean;
  readonly relu: boolean;
  readonly gelu: boolean;
}

/** The GEMM and epilogue fields that end every GEMM uniform struct (`gemmUniformStruct`), in order. */
export function gemmUniformFields(
  mnk: { m: number; n: number; k: number },
  grid: GemmGrid,
  e: GemmEpilogue,
): UniformField[] {
  return [
    ["gm", "u32", mnk.m],
    ["gn", "u32", mnk.n],
    ["gk", "u32", mnk.k],
    ["tiles_n", "u32", grid.tilesN],
    ["tiles", "u32", grid.tiles],
    ["k_tiles", "u32", grid.kTiles],
    ["splits", "u32", grid.splits],
    ["tiles_per_split", "u32", grid.tilesPerSplit],
    ["has_bias", "u32", e.bias ? 1 : 0],
    ["accumulate", "u32", e.accumulate ? 1 : 0],
    ["relu", "u32", e.relu ? 1 : 0],
    ["gelu", "u32", e.gelu ? 1 : 0],
  ];
}

/** Storage binding limit of a device, or the WebGPU default (128 MiB) when the limits do not say. */
export function storageLimit(limits: LaunchLimits & Partial<GPUSupportedLimits>): number {
  return limits.maxStorageBufferBindingSize ?? 134217728;
}

/** What an op's GPU-oriented GEMM variants are made of: its bindings and the WGSL of each. */
export interface GemmVariantSources {
  /** The op, the prefix of the variants' names (`conv2d`, `linear`). */
  readonly op: string;
  readonly bindings: readonly KernelBinding[];
  readonly block128: { readonly wgsl: string; readonly tile: BlockTile };
  readonly block64: { readonly wgsl: string; readonly tile: BlockTile };
  readonly subgroup8: string;
  readonly subgroup32: string;
}

/** The specs of an op's GPU-oriented GEMM variants (f32 only, never chosen unforced on a CPU adapter). */
export interface GemmVariantSpecs {
  /** `<op>_block128`: block tile 128 x 128. */
  readonly block128: KernelSpec;
  /** `<op>_block64`: block tile 64 x 64. */
  readonly block64: KernelSpec;
  /** `<op>_block64_splitk`: the block64 WGSL over K splits into a scratch tensor, then `splitk_reduce`. */
  readonly block64SplitK: KernelSpec;
  /** `<op>_subgroup8`: needs `subgroups`, subgroups of 8 lanes or more. */
  readonly subgroup8: KernelSpec;
  /** `<op>_subgroup32`: needs `subgroups`, subgroups of 32 lanes or more. */
  readonly subgroup32: KernelSpec;
}

/** Builds {@linkcode GemmVariantSpecs} from an op's sources: names, workgroup sizes, device needs. */
export function gemmVariantSpecs(s: GemmVariantSources): GemmVariantSpecs {
  const block = (name: string, source: { wgsl: string; tile: BlockTile }): KernelSpec => ({
    name: `${s.op}_${name}`,
    wgsl: source.wgsl,
    bindings: s.bindings,
    gpuOnly: true,
    overrides: { WG: blockThreads(source.tile) },
  });
  const subgroup = (lanes: 8 | 32, wgsl: string): KernelSpec => ({
    name: `${s.op}_subgroup${lanes}`,
    wgsl,
    bindings: s.bindings,
    gpuOnly: true,
    overrides: { WG: SUBGROUP_GEMM_THREADS },
    features: ["subgroups"],
    minSubgroupSize: lanes,
  });
  return {
    block128: block("block128", s.block128),
    block64: block("block64", s.block64),
    block64SplitK: block("block64_splitk", s.block64),
    subgroup8: subgroup(8, s.subgroup8),
    subgroup32: subgroup(32, s.subgroup32),
  };
}

/** Whether `spec` can run on `device` at all (features, subgroup size); no device: no. */
export function runsOn(spec: KernelSpec, device: LoweringDevice | undefined): boolean {
  return device !== undefined && deviceRefusal(spec, device) === undefined;
}

/** The GPU-side variants of one op, by role, for {@linkcode gpuOrder}. */
export interface GemmFamily {
  /** The tile of `block128`, for the fill test. */
  readonly bigTile: GemmGeometry;
  readonly block128: KernelSpec;
  readonly block64: KernelSpec;
  readonly splitK: KernelSpec;
  readonly subgroup: readonly KernelSpec[];
}

/**
 * The default order of an op's GEMM variants on a GPU (no tuning, or as the tuner's tie-break): the
 * 128 x 128 tile when it alone fills the GPU, else split-K (it fits only when the grid is small), then
 * the 64 x 64 tile; the subgroup kernels after them (unmeasured). Reasoned from the published figures,
 * not measured here.
 */
export function gpuOrder(f: GemmFamily, mnk: { m: number; n: number }): KernelSpec[] {
  const big = Math.ceil(mnk.m / f.bigTile.bm) * Math.ceil(mnk.n / f.bigTile.bn) >= GPU_FILL_WORKGROUPS;
  return big
    ? [f.block128, f.block64, ...f.subgroup, f.splitK]
    : [f.splitK, f.block64, f.block128, ...f.subgroup];
}
