/**
 * The lowering devices the GEMM variant tests (conv2d_block, linear_block) choose variants for: one without
 * `subgroups`, a CPU adapter with subgroups of 8 lanes (lavapipe's), and a discrete GPU with subgroups of 32
 * (NVIDIA's) and a 2 GiB storage binding.
 * @module
 */
import type { LoweringDevice } from "../engine/lowering.ts";

/** No `subgroups` feature. */
export const noSubgroups: LoweringDevice = {
  limits: { maxComputeWorkgroupsPerDimension: 65535 },
  features: new Set(),
};

/** A CPU adapter with subgroups of 8 lanes. */
export const lavapipeLike: LoweringDevice = {
  ...noSubgroups,
  features: new Set(["subgroups"]),
  subgroupSizes: { min: 8, max: 8 },
  cpuAdapter: true,
};

/** A discrete GPU with subgroups of 32 lanes. */
export const nvidiaLike: LoweringDevice = {
  limits: { maxComputeWorkgroupsPerDimension: 65535, maxStorageBufferBindingSize: 2 ** 31 },
  features: new Set(["subgroups"]),
  subgroupSizes: { min: 32, max: 32 },
  cpuAdapter: false,
};
