/**
 * The description of a compute kernel, shared by every file in `kernels/` and by the planner.
 *
 * A kernel is described, not executed: its wrapper exports a {@linkcode KernelSpec} (WGSL, bindings,
 * override constants: build-time facts only) and a launch function that validates a shape and returns a
 * {@linkcode KernelLaunch} (workgroup counts and uniform bytes). Shapes travel in the uniform buffer, so
 * one pipeline serves every shape of a variant.
 *
 * Binding convention: `@group(0)`, storage buffers at `@binding(0..n-1)` in the order of `bindings`, the
 * uniform buffer at `@binding(n)`. Entry point `main`.
 *
 * This module is browser compatible.
 * @module
 */

/** How a kernel uses one storage buffer. */
export type StorageAccess = "read-only-storage" | "storage";

/** One storage binding of a kernel. */
export interface KernelBinding {
  /** What the buffer holds, e.g. "x", "weights", "y". */
  readonly name: string;
  /** `read-only-storage` for inputs, `storage` for outputs. */
  readonly type: StorageAccess;
}

/** Build-time description of one kernel variant. */
export interface KernelSpec {
  /** Variant name, e.g. `conv2d_tiled`; used in labels and as the pipeline cache key with the overrides. */
  readonly name: string;
  /** WGSL source with entry point `main`. */
  readonly wgsl: string;
  /** Storage bindings, at `@binding(i)` in this order; the uniform buffer follows them. */
  readonly bindings: readonly KernelBinding[];
  /** Values of the WGSL `override` constants (workgroup and tile sizes). */
  readonly overrides: Readonly<Record<string, number>>;
  /**
   * Device features the WGSL needs (e.g. `subgroups`); absent: none. Lowerings do not choose the variant
   * on a device without them, and creating its pipeline there fails with a RangeError naming the feature.
   */
  readonly features?: readonly string[];
  /**
   * The fewest subgroup lanes the WGSL assumes (subgroup kernels); absent: no assumption. Lowerings do not
   * choose the variant where the adapter's `subgroupMinSize` is smaller or unknown, and forcing it there is
   * an error (`deviceRefusal` in engine/lowering.ts).
   */
  readonly minSubgroupSize?: number;
  /**
   * A variant for GPUs (workgroup-memory tiles, split-K, subgroups): on a CPU rasteriser (`cpuAdapter` not
   * false) lowerings choose it only when forced, and the autotuner does not time it there.
   */
  readonly gpuOnly?: boolean;
}

/** What one dispatch of a kernel needs. */
export interface KernelLaunch {
  /** Workgroup counts, each at most the device's `maxComputeWorkgroupsPerDimension`. */
  readonly workgroups: readonly [number, number, number];
  /** Contents of the uniform buffer, a multiple of 16 bytes. */
  readonly uniforms: Uint8Array<ArrayBuffer>;
}

/** Device limits a launch function checks against. */
export interface LaunchLimits {
  /** `GPUSupportedLimits.maxComputeWorkgroupsPerDimension` (65,535 on every adapter seen). */
  readonly maxComputeWorkgroupsPerDimension: number;
}

/** The WebGPU default, used when no device limits are at hand (pure tests). */
export const DEFAULT_LAUNCH_LIMITS: LaunchLimits = { maxComputeWorkgroupsPerDimension: 65535 };

/** One uniform field: u32 or f32 only (no vec3, whose 16-byte alignment breaks flat packing). */
export type UniformField = readonly [name: string, type: "u32" | "f32", value: number];

/**
 * Packs uniform fields in order, 4 bytes each, padded with zeros to a multiple of 16 bytes. The WGSL
 * struct must declare the same fields in the same order, all `u32` or `f32`.
 *
 * @param fields Name, type and value of each field (the name is only checked to be present).
 * @returns The uniform buffer contents.
 * @example
 * ```ts
 * const bytes = packUniforms([["n", "u32", 2], ["eps", "f32", 1e-5]]);
 * // bytes.length === 16
 * ```
 */
export function packUniforms(fields: readonly UniformField[]): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(Math.max(16, Math.ceil(fields.length / 4) * 16));
  const view = new DataView(bytes.buffer);
  fields.forEach(([name, type, value], i) => {
    if (type === "u32") {
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
        throw new RangeError(`Cannot pack uniform "${name}": expected a u32, got ${value}`);
      }
      view.setUint32(i * 4, value, true);
    } else {
      view.setFloat32(i * 4, value, true);
    }
  });
  return bytes;
}

/**
 * Spreads `count` workgroups over x and y so that neither exceeds the per-dimension limit. The shader
 * rebuilds the linear index as `wid.y * nwg.x + wid.x` (with `@builtin(num_workgroups) nwg`) and returns
 * when it is `>= count`, a workgroup-uniform test, so barriers after it stay valid.
 *
 * @param count Total workgroups wanted (at least 1).
 * @param limits The device's limits.
 * @param what Names the kernel in the error when even a folded dispatch does not fit.
 * @returns Workgroup counts `[x, y, 1]`.
 */
export function foldWorkgroups(
  count: number,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
  what = "kernel",
): [number, number, number] {
  const max = limits.maxComputeWorkgroupsPerDimension;
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`Cannot dispatch ${what}: expected a positive workgroup count, got ${count}`);
  }
  if (count <= max) return [count, 1, 1];
  const y = Math.ceil(count / max);
  if (y > max) {
    throw new RangeError(
      `Cannot dispatch ${what}: ${count} workgroups exceed maxComputeWorkgroupsPerDimension squared (${max}^2)`,
    );
  }
  return [Math.ceil(count / y), y, 1];
}

/** Shape of a tensor, outermost dimension first. */
export type Shape = readonly number[];

/** Number of elements of a shape. */
export function numel(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}
