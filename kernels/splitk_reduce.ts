/**
 * The reduction step of the split-K GEMM variants (`conv2d_block64_splitk`, `linear_block64_splitk`): sums
 * the S partial products a GEMM step wrote to its scratch tensor and applies the op's epilogue. The
 * wrapper describes the kernel and validates a shape into a launch; it never allocates.
 *
 * ```
 * splitk_reduce: y[m,n] = act(sum_s part[s,m,n] + bias[n]) (+ y[m,n] if accumulate) (+ res[m,n] if residual),
 *   then ReLU if relu; act = GELU (erf) if gelu else identity
 * part: f32 [S,M,N] · bias: f32 [N] · res: f32 [M,N] · y: f32 [M,N]; N % 4 == 0
 * bindings: 0 part r · 1 bias r (read only when bias) · 2 res r (read only when residual) · 3 y rw ·
 *   4 uniforms {count4,n4,splits,plane4,has_bias,gelu,accumulate,residual,relu,_pad0,_pad1,_pad2: u32}
 * overrides: WG · dispatch: ceil(M*N/4 / WG) folded over x,y, tail guarded
 * numerics: f32, partials summed in split order
 * ```
 *
 * conv2d uses bias, accumulate (the residual stream is y itself) and ReLU; linear uses bias and GELU or a
 * residual from its own binding (`res`).
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
import { splitkReduceWgsl } from "./splitk_reduce.wgsl.ts";

/** One reduction: the GEMM's output size, the splits and the epilogue. */
export interface SplitkReduceShape {
  /** Rows M. */
  readonly rows: number;
  /** Columns N (a multiple of 4). */
  readonly cols: number;
  /** Partial planes S. */
  readonly splits: number;
  /** Add `bias[n]`. */
  readonly bias: boolean;
  /** GELU after the bias. */
  readonly gelu: boolean;
  /** Add y's previous value (in-place residual). */
  readonly accumulate: boolean;
  /** Add `res` (a residual from its own binding). */
  readonly residual: boolean;
  /** ReLU last. */
  readonly relu: boolean;
}

/** Workgroup size of `splitk_reduce`. */
export const SPLITK_REDUCE_WORKGROUP_SIZE = 64;

/** The reduction kernel. */
export const splitkReduceSpec: KernelSpec = {
  name: "splitk_reduce",
  wgsl: splitkReduceWgsl,
  bindings: [
    { name: "part", type: "read-only-storage" },
    { name: "bias", type: "read-only-storage" },
    { name: "res", type: "read-only-storage" },
    { name: "y", type: "storage" },
  ],
  overrides: { WG: SPLITK_REDUCE_WORKGROUP_SIZE },
};

/**
 * Validates a reduction and returns its dispatch and uniforms.
 *
 * @param shape Sizes and epilogue.
 * @param limits Device limits (default the WebGPU defaults).
 * @returns Workgroups and uniforms.
 * @throws {TypeError} For a size that is not a positive integer, N % 4 != 0, or GELU with a residual.
 * @throws {RangeError} When the partials hold 2^32 elements or more.
 * @example
 * ```ts
 * const shape = { rows: 196, cols: 1536, splits: 3, bias: false, gelu: false, accumulate: false, residual: false, relu: true };
 * splitkReduceLaunch(shape).workgroups; // [1176, 1, 1]
 * ```
 */
export function splitkReduceLaunch(
  shape: SplitkReduceShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch {
  const what = splitkReduceSpec.name;
  for (const key of ["rows", "cols", "splits"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${v}`);
    }
  }
  if (shape.cols % 4 !== 0) {
    throw new TypeError(`Cannot launch ${what}: expected N % 4 == 0, got ${shape.cols}`);
  }
  if (shape.gelu && (shape.accumulate || shape.residual)) {
    throw new TypeError(`Cannot launch ${what}: expected GELU or a residual, got both`);
  }
  const count = shape.rows * shape.cols;
  if (count * shape.splits > 0xffffffff) {
    throw new RangeError(
      `Cannot launch ${what}: expected fewer than 2^32 partials, got ${count * shape.splits}`,
    );
  }
  const count4 = count / 4;
  return {
    workgroups: foldWorkgroups(Math.ceil(count4 / SPLITK_REDUCE_WORKGROUP_SIZE), limits, what),
    uniforms: packUniforms([
      ["count4", "u32", count4],
      ["n4", "u32", shape.cols / 4],
      ["splits", "u32", shape.splits],
      ["plane4", "u32", count4],
      ["has_bias", "u32", shape.bias ? 1 : 0],
      ["gelu", "u32", shape.gelu ? 1 : 0],
      ["accumulate", "u32", shape.accumulate ? 1 : 0],
      ["residual", "u32", shape.residual ? 1 : 0],
      ["relu", "u32", shape.relu ? 1 : 0],
      ["_pad0", "u32", 0],
      ["_pad1", "u32", 0],
      ["_pad2", "u32", 0],
    ]),
  };
}
