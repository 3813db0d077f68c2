/**
 * Our kernels on every distinct convolution, GroupNorm and pooling shape of a BiT graph, each run through a
 * one-node plan built by the model's own planner (`recordBitPlan`), so the variants and launches are exactly
 * the model's.
 *
 * Figures (per shape; N, H, W, C from the node's input, OH, OW from its output):
 * - conv2d: FLOP = 2·N·OH·OW·Cout·KH·KW·Cin; bytes = 4·(N·H·W·Cin + KH·KW·Cin·Cout + N·OH·OW·Cout)
 *   (each tensor once: the compulsory traffic). Timed without the residual accumulate.
 * - group_norm (statistics + apply + ReLU): FLOP = 6·N·H·W·C (3 for the sums, 3 to apply); bytes =
 *   12·N·H·W·C (x read twice, y written once).
 * - max_pool: FLOP = N·OH·OW·C·K² comparisons; bytes = 4·(N·H·W·C + N·OH·OW·C).
 * - global_mean_pool: FLOP = N·H·W·C; bytes = 4·(N·H·W·C + N·C).
 * GFLOP/s = FLOP / s, GB/s = bytes / s. Before any timing, each op kind runs on small shapes and is compared
 * with its float64 reference in `kernels/*_ref.ts`.
 * @module
 */
import {
  type BitGraph,
  bitGraph,
  type BitNode,
  type BitPreset,
  GROUP_NORM_EPS,
  GROUP_NORM_GROUPS,
} from "../models/bit.ts";
import type { BitArchitecture } from "../models/bit_arch.ts";
import { recordBitPlan } from "../models/bit_plan.ts";
import type { Plan, PlanDevice } from "../engine/plan.ts";
import { conv2dRef } from "../kernels/conv2d_ref.ts";
import { groupNormStatsRef } from "../kernels/group_norm_stats_ref.ts";
import { groupNormApplyRef } from "../kernels/group_norm_apply_ref.ts";
import { maxPoolRef } from "../kernels/max_pool_ref.ts";
import { globalMeanPoolRef } from "../kernels/global_mean_pool_ref.ts";
import { relativeMaxError, timeOnGpu, type Timing, type TimingOptions } from "./_timing.ts";
import { randomFloats } from "../tests/_random.ts";

/** One distinct op shape of the graph. */
export interface OpShape {
  /** The op. */
  readonly kind: BitNode["op"];
  /** Readable shape, e.g. `conv 3x3/1 28x28x768 -> 28x28x768`. */
  readonly label: string;
  /** Occurrences in the graph. */
  readonly count: number;
  /** A node of this shape, renamed to read `x` and write `y`, accumulate off. */
  readonly node: BitNode;
  /** Input NHWC. */
  readonly input: readonly number[];
  /** Output NHWC (or [N, C]). */
  readonly output: readonly number[];
  /** FLOP per run (formula in the module doc). */
  readonly flop: number;
  /** Compulsory bytes per run (formula in the module doc). */
  readonly bytes: number;
}

function prod(xs: readonly number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

/**
 * Lists the distinct op shapes of `arch` at `size` and `batch`, in first-occurrence order.
 *
 * @param arch The architecture.
 * @param options Preset, input size, batch.
 */
export function distinctShapes(
  arch: BitArchitecture,
  options: { preset: BitPreset; size: number; batch: number },
): OpShape[] {
  const graph = bitGraph(arch, options);
  const byKey = new Map<string, OpShape>();
  for (const node of graph.nodes) {
    const input = graph.tensors.get(node.input)!;
    const output = graph.tensors.get(node.output)!;
    const [n, h, w, c] = input;
    let label: string;
    let flop: number;
    let bytes: number;
    const renamed = { ...node, input: "x", output: "y" } as BitNode;
    switch (node.op) {
      case "conv2d": {
        const [, oh, ow, cout] = output;
        const k = node.kernel;
        label = `conv ${k}x${k}/${node.stride} ${h}x${w}x${c} -> ${oh}x${ow}x${cout}`;
        flop = 2 * n * oh * ow * cout * k * k * c;
        bytes = 4 * (n * h * w * c + k * k * c * cout + n * oh * ow * cout);
        (renamed as { accumulate: boolean }).accumulate = false;
        (renamed as { weight: string }).weight = "w";
        break;
      }
      case "group_norm":
        label = `group_norm ${h}x${w}x${c}`;
        flop = 6 * n * h * w * c;
        bytes = 12 * n * h * w * c;
        (renamed as { gamma: string }).gamma = "gamma";
        (renamed as { beta: string }).beta = "beta";
        break;
      case "max_pool": {
        const [, oh, ow] = output;
        label = `max_pool ${node.kernel}x${node.kernel}/${node.stride} ${h}x${w}x${c}`;
        flop = n * oh * ow * c * node.kernel * node.kernel;
        bytes = 4 * (n * h * w * c + prod(output));
        break;
      }
      case "global_mean_pool":
        label = `global_mean_pool ${h}x${w}x${c}`;
        flop = n * h * w * c;
        bytes = 4 * (n * h * w * c + n * c);
        break;
    }
    if (n > 1) label += ` (N=${n})`;
    const old = byKey.get(label);
    byKey.set(
      label,
      old
        ? { ...old, count: old.count + 1 }
        : { kind: node.op, label, count: 1, node: renamed, input, output, flop, bytes },
    );
  }
  return [...byKey.values()];
}

/** A one-node plan for `op`, with its weight buffers. */
export interface OpPlan {
  readonly plan: Plan;
  /** Weight buffers by name (`w`, `gamma`, `beta`), to fill before running. */
  readonly weights: ReadonlyMap<string, GPUBuffer>;
  /** Frees the plan and the weights. */
  dispose(): void;
}

/**
 * Builds a one-node plan of `op` on `gpu` (uninitialised weights; write them with `queue.writeBuffer`).
 */
export async function buildOpPlan(gpu: PlanDevice, op: OpShape): Promise<OpPlan> {
  const device = gpu.device;
  const weights = new Map<string, GPUBuffer>();
  const make = (name: string, floats: number) =>
    weights.set(
      name,
      device.createBuffer({
        label: `bench/${name}`,
        size: Math.max(16, floats * 4),
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      }),
    );
  const node = op.node;
  if (node.op === "conv2d") make("w", node.kernel * node.kernel * op.input[3] * op.output[3]);
  if (node.op === "group_norm") {
    make("gamma", op.input[3]);
    make("beta", op.input[3]);
  }
  const graph: BitGraph = {
    tensors: new Map([["x", op.input], ["y", op.output]]),
    nodes: [node],
    input: "x",
    output: "y",
    checkpoints: {},
  };
  try {
    const plan = await recordBitPlan(graph, weights, gpu.limits, { label: `bench/${op.kind}` }).build(gpu);
    return {
      plan,
      weights,
      dispose() {
        plan.dispose();
        for (const b of weights.values()) b.destroy();
      },
    };
  } catch (e) {
    for (const b of weights.values()) b.destroy();
    throw e;
  }
}

/** Seeded uniform floats in [lo, hi), as float32. */
export function randomF32(n: number, seed: number, lo = -1, hi = 1): Float32Array<ArrayBuffer> {
  return Float32Array.from(randomFloats(n, seed, lo, hi));
}

/** Inputs of one op: x, and w or gamma/beta, seeded from the op's label. */
export function opInputs(
  op: OpShape,
): {
  x: Float32Array<ArrayBuffer>;
  w?: Float32Array<ArrayBuffer>;
  gamma?: Float32Array<ArrayBuffer>;
  beta?: Float32Array<ArrayBuffer>;
} {
  const seed = [...op.label].reduce((h, ch) => Math.imul(h ^ ch.charCodeAt(0), 16777619), 2166136261);
  const x = randomF32(prod(op.input), seed, -1, 1);
  if (op.node.op === "conv2d") {
    const fan = op.node.kernel * op.node.kernel * op.input[3];
    const a = Math.sqrt(3 / fan); // unit-variance outputs
    return { x, w: randomF32(fan * op.output[3], seed + 1, -a, a) };
  }
  if (op.node.op === "group_norm") {
    return {
      x,
      gamma: randomF32(op.input[3], seed + 2, 0.75, 1.25),
      beta: randomF32(op.input[3], seed + 3, -0.25, 0.25),
    };
  }
  return { x };
}

/** Runs `op` once on `inputs` and returns its output. */
export async function runOp(
  device: GPUDevice,
  opPlan: OpPlan,
  inputs: ReturnType<typeof opInputs>,
): Promise<Float32Array> {
  for (const [name, data] of [["w", inputs.w], ["gamma", inputs.gamma], ["beta", inputs.beta]] as const) {
    if (data) device.queue.writeBuffer(opPlan.weights.get(name)!, 0, data);
  }
  const out = await opPlan.plan.run({ x: inputs.x });
  return new Float32Array(out.get("y")!);
}

/** The float64 reference of `op` on `inputs`. */
export function opReference(op: OpShape, inputs: ReturnType<typeof opInputs>): Float64Array {
  const [n, h, w, c] = op.input;
  const x = Float64Array.from(inputs.x);
  const node = op.node;
  switch (node.op) {
    case "conv2d":
      return conv2dRef(x, Float64Array.from(inputs.w!), {
        n,
        h,
        w,
        cin: c,
        cout: op.output[3],
        kh: node.kernel,
        kw: node.kernel,
        stride: node.stride,
        pad: node.pad,
        accumulate: false,
      });
    case "group_norm": {
      const shape = { n, hw: h * w, c, groups: GROUP_NORM_GROUPS, eps: GROUP_NORM_EPS };
      const stats = groupNormStatsRef(x, shape);
      return groupNormApplyRef(x, stats, Float64Array.from(inputs.gamma!), Float64Array.from(inputs.beta!), {
        ...shape,
        relu: node.relu,
      });
    }
    case "max_pool":
      return maxPoolRef(x, {
        n,
        h,
        w,
        c,
        k: node.kernel,
        stride: node.stride,
        pad: node.pad,
        padValue: node.padValue,
      });
    case "global_mean_pool":
      return globalMeanPoolRef(x, { n, hw: h * w, c });
  }
}

/** Small shapes, one per op kind and conv kind, checked against the references before any timing. */
export function checkShapes(): OpShape[] {
  const arch: BitArchitecture = {
    stemChannels: 32,
    stages: [{ units: 1, channels: 64, midChannels: 32, stride: 1 }, {
      units: 1,
      channels: 64,
      midChannels: 32,
      stride: 2,
    }],
  };
  return distinctShapes(arch, { preset: "derm", size: 36, batch: 2 });
}

/** Relative max error of every small check shape (op label → error); throws nothing. */
export async function checkOurKernels(gpu: PlanDevice): Promise<{ label: string; error: number }[]> {
  const out: { label: string; error: number }[] = [];
  for (const op of checkShapes()) {
    const p = await buildOpPlan(gpu, op);
    try {
      const inputs = opInputs(op);
      out.push({
        label: op.label,
        error: relativeMaxError(await runOp(gpu.device, p, inputs), opReference(op, inputs)),
      });
    } finally {
      p.dispose();
    }
  }
  return out;
}

/** Times `op` with its plan: every step of the one-node plan in one compute pass per repeat. */
export function timeOp(device: GPUDevice, opPlan: OpPlan, options: TimingOptions): Promise<Timing> {
  const steps = opPlan.plan.stats.steps;
  return timeOnGpu(device, (encoder, ts) => opPlan.plan.encode(encoder, 0, steps, ts), options);
}
