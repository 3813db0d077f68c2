/**
 * Our kernels on every distinct node shape of a model's graph, each run through a one-node graph lowered
 * with the engine's own table (`LOWERINGS`), so the variants and launches are exactly the model's.
 *
 * A node is renamed to read `x0` (further inputs `bench.x1`, ...) and write `y`; an in-place node (the
 * residual add) writes `bench.y`, which holds its prior value. `lowerGraph` declares one graph input, so
 * the other tensors a node reads come from a bench-only entry, `bench_input`, that records no step and only
 * declares them; the plan then takes them as inputs too. Figures and references come from `op_table.ts`.
 * @module
 */
import type { Graph, GraphNode } from "../engine/graph.ts";
import { numel, type Shape } from "../engine/kernel.ts";
import { lowerGraph, type LoweringTable, type OpLowering, type WeightBinding } from "../engine/lowering.ts";
import type { PipelineCache, Plan, PlanDevice } from "../engine/plan.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { type CaseData, type NodeCase, OP_BENCH, type OpBench } from "./op_table.ts";
import { timeOnGpu, type Timing, type TimingOptions } from "./_timing.ts";

/** One distinct node shape of a graph. */
export interface NodeShape extends NodeCase {
  /** The op. */
  readonly op: string;
  /** Readable shape (from the op's entry), with ` (N=n)` for batches over 1. */
  readonly label: string;
  /** The `--quick` group. */
  readonly group: string;
  /** Occurrences in the graph. */
  readonly count: number;
  /** FLOP of one run. */
  readonly flop: number;
  /** Compulsory bytes of one run. */
  readonly bytes: number;
  /** The one-node graph (without the `bench_input` node). */
  readonly graph: Graph;
  /** Tensors the one-node plan takes besides `x0`: `bench.x1`, ..., and `bench.y` for an in-place node. */
  readonly extraInputs: readonly string[];
}

/** The node of a one-node graph: inputs `x0`, `bench.x1`, ...; output `y` (in place: `bench.y`). */
function renamed(node: GraphNode): GraphNode {
  return {
    ...node,
    name: "node",
    inputs: node.inputs.map((_, i) => (i === 0 ? "x0" : `bench.x${i}`)),
    output: node.inPlace ? "bench.y" : "y",
    weights: Object.fromEntries(Object.keys(node.weights).map((role) => [role, `w.${role}`])),
  };
}

/**
 * The distinct node shapes of `graph`, in first-occurrence order, and the ops the bench has no entry for
 * (with their node counts).
 *
 * @param graph The model's graph.
 * @param ops The bench's op entries.
 */
export function distinctShapes(
  graph: Graph,
  ops: ReadonlyMap<string, OpBench> = OP_BENCH,
): { shapes: NodeShape[]; unsupported: Record<string, number> } {
  const byLabel = new Map<string, NodeShape>();
  const unsupported: Record<string, number> = {};
  for (const original of graph.nodes) {
    const entry = ops.get(original.op);
    if (!entry) {
      unsupported[original.op] = (unsupported[original.op] ?? 0) + 1;
      continue;
    }
    const node = renamed(original);
    const inputs = original.inputs.map((t) => graph.tensors.get(t)!);
    const output = graph.tensors.get(original.output)!;
    const c: NodeCase = { node, inputs, output };
    let label = entry.label(c);
    if (inputs[0][0] > 1) label += ` (N=${inputs[0][0]})`;
    const old = byLabel.get(label);
    if (old) {
      byLabel.set(label, { ...old, count: old.count + 1 });
      continue;
    }
    const tensors = new Map<string, Shape>(node.inputs.map((t, i) => [t, inputs[i]]));
    tensors.set(node.output, output);
    const extraInputs = [...node.inputs.slice(1), ...(node.inPlace ? [node.output] : [])];
    byLabel.set(label, {
      ...c,
      op: original.op,
      label,
      group: entry.group(c),
      count: 1,
      flop: entry.flop(c),
      bytes: entry.bytes(c),
      graph: { tensors, nodes: [node], input: "x0", output: node.output, checkpoints: {} },
      extraInputs,
    });
  }
  return { shapes: [...byLabel.values()], unsupported };
}

/** `--quick`: per group (op, and kernel size / stride for convolutions) the node with the fewest FLOP. */
export function reducedSet(shapes: readonly NodeShape[]): NodeShape[] {
  const best = new Map<string, NodeShape>();
  for (const s of shapes) {
    const old = best.get(s.group);
    if (!old || s.flop < old.flop) best.set(s.group, s);
  }
  const kept = new Set(best.values());
  return shapes.filter((s) => kept.has(s));
}

const BENCH_INPUT_OP = "bench_input";

/** Declares the tensors named in `attrs.tensors` (comma-separated, `<node>.<suffix>`); records no step. */
const benchInputLowering: OpLowering = {
  op: BENCH_INPUT_OP,
  outputShape: (_node, inputs) => inputs[0],
  flops: () => 0,
  lower(ctx) {
    for (const name of String(ctx.node.attrs.tensors).split(",")) {
      ctx.scratch(name.slice(ctx.node.name.length + 1), numel(ctx.shape(name)) * 4);
    }
  },
};

const TABLE: LoweringTable = new Map([...LOWERINGS, [BENCH_INPUT_OP, benchInputLowering]]);

/** A built one-node plan with its weights. */
export interface NodePlan {
  readonly plan: Plan;
  /** Kernel variants of its steps, in order, without repeats. */
  readonly variants: readonly string[];
  /** Runs once on `data` and returns the output. */
  run(data: CaseData): Promise<Float32Array>;
  /** Times every step, in one compute pass per repeat. */
  time(options: TimingOptions): Promise<Timing>;
  /** Frees the plan and its weight buffers. */
  dispose(): void;
}

/**
 * Builds the one-node plan of `shape`, with `data`'s weights uploaded.
 *
 * @param gpu The device (limits, features).
 * @param shape The node shape.
 * @param data Its weights (by role) are uploaded here; inputs are written by `run`.
 * @param options Variants to force by name, and a pipeline cache to share.
 */
export async function buildNodePlan(
  gpu: PlanDevice & { features: ReadonlySet<string> },
  shape: NodeShape,
  data: CaseData,
  options: { forcedKernels?: ReadonlySet<string>; cache?: PipelineCache } = {},
): Promise<NodePlan> {
  const device = gpu.device;
  const buffers: GPUBuffer[] = [];
  const weights = new Map<string, WeightBinding>();
  for (const [role, values] of Object.entries(data.weights)) {
    const buffer = device.createBuffer({
      label: `bench/w.${role}`,
      size: Math.max(16, Math.ceil(values.byteLength / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    buffers.push(buffer);
    device.queue.writeBuffer(buffer, 0, values);
    weights.set(`w.${role}`, { buffer });
  }
  try {
    const nodes = shape.extraInputs.length === 0 ? shape.graph.nodes : [
      {
        op: BENCH_INPUT_OP,
        name: "bench",
        inputs: [],
        output: "x0",
        weights: {},
        attrs: { tensors: shape.extraInputs.join(",") },
        inPlace: true,
      },
      ...shape.graph.nodes,
    ];
    const builder = lowerGraph(
      { ...shape.graph, nodes },
      TABLE,
      weights,
      { limits: gpu.limits, features: gpu.features },
      { label: `bench/${shape.op}`, forcedKernels: options.forcedKernels },
    );
    for (const name of shape.extraInputs) builder.input(name, builder.bytesOf(name));
    const plan = await builder.build(gpu, options.cache);
    const variants = [...new Set(plan.stepLabels.map((l) => l.split("/")[1]))];
    return {
      plan,
      variants,
      async run(d) {
        const inputs: Record<string, Float32Array<ArrayBuffer>> = { x0: d.inputs[0] };
        d.inputs.slice(1).forEach((x, i) => inputs[`bench.x${i + 1}`] = x);
        if (shape.node.inPlace) inputs["bench.y"] = d.prior!;
        const out = await plan.run(inputs);
        return new Float32Array(out.get(shape.graph.output)!);
      },
      time(timing) {
        const steps = plan.stats.steps;
        return timeOnGpu(device, (encoder, ts) => plan.encode(encoder, 0, steps, ts), timing);
      },
      dispose() {
        plan.dispose();
        for (const b of buffers) b.destroy();
      },
    };
  } catch (e) {
    for (const b of buffers) b.destroy();
    throw e;
  }
}
