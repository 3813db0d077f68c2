/**
 * Compiles a {@linkcode BitGraph} into an execution {@linkcode Plan}: picks kernel variants, validates
 * every shape against the device limits, declares tensors (sizes from the graph) and records dispatches.
 *
 * This module is browser compatible.
 * @module
 */
import type { BitGraph } from "./bit.ts";
import { GROUP_NORM_EPS, GROUP_NORM_GROUPS } from "./bit.ts";
import { type PipelineCache, type Plan, PlanBuilder, type PlanDevice } from "../engine/plan.ts";
import type { KernelSpec, LaunchLimits } from "../engine/kernel.ts";
import { numel } from "../engine/kernel.ts";
import { conv2dLaunch, conv2dTiled } from "../kernels/conv2d.ts";
import { groupNormStatsSteps } from "../kernels/group_norm_stats.ts";
import {
  GROUP_NORM_APPLY_SPECS,
  groupNormApplyLaunch,
  groupNormApplyVariant,
} from "../kernels/group_norm_apply.ts";
import { maxPoolLaunch, maxPoolSpec } from "../kernels/max_pool.ts";
import { globalMeanPoolLaunch, globalMeanPoolSpec } from "../kernels/global_mean_pool.ts";
import { nonfiniteCheckLaunch, nonfiniteCheckSpec } from "../kernels/nonfinite_check.ts";

/** Options of {@linkcode buildBitPlan}. */
export interface BitPlanOptions {
  /** Plan label (default `bit`). */
  label?: string;
  /** Keep these tensors (e.g. the graph's checkpoints) so they can be read after a run. */
  keep?: readonly string[];
  /** Convolution variant (default `conv2d_tiled`). */
  conv?: KernelSpec;
  /** Shared pipeline cache. */
  cache?: PipelineCache;
  /**
   * Diagnostics: after node k, flag each image whose output holds a NaN or infinity, as a u32 at
   * `flags.buffer[k * flags.stride + 4 * n]` (stride a multiple of the storage offset alignment; zeroed).
   */
  nonfiniteFlags?: { buffer: GPUBuffer; stride: number };
}

const F32 = 4;

/**
 * Records the graph as plan steps without creating GPU objects (for inspection and tests), returning the
 * builder to build.
 */
export function recordBitPlan(
  graph: BitGraph,
  weights: ReadonlyMap<string, GPUBuffer>,
  limits: LaunchLimits,
  options: BitPlanOptions = {},
): PlanBuilder {
  const builder = new PlanBuilder(options.label ?? "bit");
  const conv = options.conv ?? conv2dTiled;
  const shapeOf = (name: string) => {
    const s = graph.tensors.get(name);
    if (!s) throw new TypeError(`Cannot plan: tensor "${name}" has no shape`);
    return s;
  };
  const keep = new Set(options.keep ?? []);
  const declare = (name: string) =>
    builder.tensor(name, { bytes: numel(shapeOf(name)) * F32, keep: keep.has(name) });
  const weight = (name: string) => {
    const buffer = weights.get(name);
    if (!buffer) throw new TypeError(`Cannot plan: weight "${name}" is not loaded`);
    return { buffer, label: name };
  };
  builder.input(graph.input, numel(shapeOf(graph.input)) * F32);
  for (const [k, node] of graph.nodes.entries()) {
    if (k > 0 && options.nonfiniteFlags) {
      recordNonfiniteCheck(builder, graph, k - 1, options.nonfiniteFlags, limits);
    }
    switch (node.op) {
      case "conv2d": {
        const [n, h, w, cin] = shapeOf(node.input);
        const cout = shapeOf(node.output)[3];
        const launch = conv2dLaunch(conv, {
          n,
          h,
          w,
          cin,
          cout,
          kh: node.kernel,
          kw: node.kernel,
          stride: node.stride,
          pad: node.pad,
          accumulate: node.accumulate,
        }, limits);
        const expected = shapeOf(node.output);
        if (launch.outShape.some((d, i) => d !== expected[i])) {
          throw new TypeError(
            `Cannot plan "${node.name}": conv gives [${launch.outShape}], graph expects [${expected}]`,
          );
        }
        declare(node.output);
        builder.step({
          label: `${node.name}/${conv.name}`,
          spec: conv,
          launch,
          bindings: [node.input, weight(node.weight), node.output],
        });
        break;
      }
      case "group_norm": {
        const [n, h, w, c] = shapeOf(node.input);
        const shape = { n, hw: h * w, c, groups: GROUP_NORM_GROUPS, eps: GROUP_NORM_EPS };
        const stats = `${node.name}.stats`;
        const partials = `${node.name}.partials`;
        const statSteps = groupNormStatsSteps(shape, limits);
        builder.tensor(partials, { bytes: statSteps.partialsBytes });
        builder.tensor(stats, { bytes: statSteps.statsBytes });
        const names: Record<string, string> = { x: node.input, partials, stats };
        for (const s of statSteps.steps) {
          builder.step({
            label: `${node.name}/${s.spec.name}`,
            spec: s.spec,
            launch: s.launch,
            bindings: s.buffers.map((b) => names[b]),
          });
        }
        declare(node.output);
        const applyShape = { n, hw: h * w, c, groups: GROUP_NORM_GROUPS, relu: node.relu };
        const apply = GROUP_NORM_APPLY_SPECS[groupNormApplyVariant(applyShape)];
        builder.step({
          label: `${node.name}/${apply.name}`,
          spec: apply,
          launch: groupNormApplyLaunch(applyShape, limits),
          bindings: [node.input, stats, weight(node.gamma), weight(node.beta), node.output],
        });
        break;
      }
      case "max_pool": {
        const [n, h, w, c] = shapeOf(node.input);
        declare(node.output);
        builder.step({
          label: `${node.name}/${maxPoolSpec.name}`,
          spec: maxPoolSpec,
          launch: maxPoolLaunch(
            { n, h, w, c, k: node.kernel, stride: node.stride, pad: node.pad, padValue: node.padValue },
            limits,
          ),
          bindings: [node.input, node.output],
        });
        break;
      }
      case "global_mean_pool": {
        const [n, h, w, c] = shapeOf(node.input);
        declare(node.output);
        builder.step({
          label: `${node.name}/${globalMeanPoolSpec.name}`,
          spec: globalMeanPoolSpec,
          launch: globalMeanPoolLaunch({ n, hw: h * w, c }, limits),
          bindings: [node.input, node.output],
        });
        break;
      }
    }
  }
  if (options.nonfiniteFlags) {
    recordNonfiniteCheck(builder, graph, graph.nodes.length - 1, options.nonfiniteFlags, limits);
  }
  builder.output(graph.output);
  return builder;
}

function recordNonfiniteCheck(
  builder: PlanBuilder,
  graph: BitGraph,
  k: number,
  flags: { buffer: GPUBuffer; stride: number },
  limits: LaunchLimits,
): void {
  const node = graph.nodes[k];
  const shape = graph.tensors.get(node.output)!;
  const n = shape[0];
  builder.step({
    label: `${node.name}/${nonfiniteCheckSpec.name}`,
    spec: nonfiniteCheckSpec,
    launch: nonfiniteCheckLaunch({ n, perImage: numel(shape) / n }, limits),
    bindings: [node.output, {
      buffer: flags.buffer,
      label: "nonfinite flags",
      offset: k * flags.stride,
      size: 4 * n,
    }],
  });
}

/**
 * Builds the plan of `graph` on a device, with weights already resident.
 *
 * @param gpu The device and its limits.
 * @param graph The network for one input size and batch.
 * @param weights GPU buffers by timm name.
 * @param options Tensors to keep, variant, cache.
 */
export function buildBitPlan(
  gpu: PlanDevice,
  graph: BitGraph,
  weights: ReadonlyMap<string, GPUBuffer>,
  options: BitPlanOptions = {},
): Promise<Plan> {
  return recordBitPlan(graph, weights, gpu.limits, options).build(gpu, options.cache);
}
