/**
 * Any of our graphs as an ONNX model (NCHW, ONNX Runtime's native layout), written node by node through a
 * table keyed by op, with the weights as the engine holds them (`cpu_weights.ts`: convolution kernels HWIO
 * after the model's own transform, vectors [C]):
 * - conv2d → Conv (kernel OIHW, bias as its B input when the node has one); an in-place node → Add of the
 *   output's prior value; `relu` → Relu after both (the engine's order: bias, residual, ReLU);
 * - group_norm → Reshape [N, G, -1] → InstanceNormalization (scale 1, bias 0, the node's eps: the
 *   per-group mean and biased variance) → Reshape [N, C, H, W] → Mul γ → Add β (→ Relu);
 * - max_pool → MaxPool (`-inf` padding: ONNX's own) or Pad 0 + MaxPool (`zero`);
 * - global_mean_pool → GlobalAveragePool → Flatten, [N, C].
 * Inputs are the graph's (rank 4 as NCHW; the fourth, zero, channel of the model input included, so the
 * stem's padded kernel applies unchanged); the output is `output`.
 * @module
 */
import type { Graph, GraphNode } from "../engine/graph.ts";
import type { Shape } from "../engine/kernel.ts";
import { flagAttr, numberAttr } from "../engine/graph.ts";
import { convAttrs, poolShape } from "./op_table.ts";
import { hwioToOihw, nchwDims } from "./layouts.ts";
import type { OnnxAttribute, OnnxInitializer, OnnxModel, OnnxNode } from "./onnx_writer.ts";

/** What an op's exporter sees while writing one node. */
export interface OnnxExportContext {
  /** The node. */
  readonly node: GraphNode;
  /** Our (NHWC) shape of a graph tensor. */
  shape(tensor: string): Shape;
  /** The ONNX value holding node input `i`. */
  input(i: number): string;
  /** The ONNX value holding the output's value before this node (in-place nodes). */
  prior(): string;
  /** The node's weight for `role`, as the engine holds it. */
  weight(role: string): Float32Array;
  /** Adds a constant named after the node and returns its name. */
  constant(suffix: string, dims: readonly number[], data: Float32Array | BigInt64Array): string;
  /** Appends an ONNX node and returns its (fresh) output value. */
  emit(op: string, inputs: readonly string[], attributes?: Record<string, OnnxAttribute>): string;
}

/** The exporter of one op: writes the node and returns the ONNX value of its output. */
export type OnnxOpExport = (ctx: OnnxExportContext) => string;

const ints = (...v: number[]): OnnxAttribute => ({ ints: v });

/** The exporters, by op. */
export const ONNX_OPS: ReadonlyMap<string, OnnxOpExport> = new Map<string, OnnxOpExport>([
  ["conv2d", (ctx) => {
    const a = convAttrs(ctx.node);
    const cin = ctx.shape(ctx.node.inputs[0])[3];
    const w = ctx.constant(
      "weight",
      [a.cout, cin, a.kh, a.kw],
      hwioToOihw(ctx.weight("weight"), a.kh, a.kw, cin, a.cout),
    );
    const inputs = [ctx.input(0), w];
    if (a.bias) inputs.push(ctx.constant("bias", [a.cout], ctx.weight("bias")));
    let y = ctx.emit("Conv", inputs, {
      kernel_shape: ints(a.kh, a.kw),
      strides: ints(a.stride, a.stride),
      pads: ints(a.pad, a.pad, a.pad, a.pad),
    });
    if (ctx.node.inPlace) y = ctx.emit("Add", [y, ctx.prior()]);
    return a.relu ? ctx.emit("Relu", [y]) : y;
  }],
  ["group_norm", (ctx) => {
    const [n, h, w, c] = ctx.shape(ctx.node.inputs[0]);
    const g = numberAttr(ctx.node, "groups");
    const grouped = ctx.emit("Reshape", [
      ctx.input(0),
      ctx.constant("shape1", [3], BigInt64Array.from([n, g, -1].map(BigInt))),
    ]);
    const ones = ctx.constant("ones", [g], new Float32Array(g).fill(1));
    const zeros = ctx.constant("zeros", [g], new Float32Array(g));
    const normed = ctx.emit("InstanceNormalization", [grouped, ones, zeros], {
      epsilon: { float: numberAttr(ctx.node, "eps") },
    });
    const back = ctx.emit("Reshape", [
      normed,
      ctx.constant("shape2", [4], BigInt64Array.from([n, c, h, w].map(BigInt))),
    ]);
    const scaled = ctx.emit("Mul", [back, ctx.constant("gamma", [c, 1, 1], ctx.weight("gamma"))]);
    const y = ctx.emit("Add", [scaled, ctx.constant("beta", [c, 1, 1], ctx.weight("beta"))]);
    return flagAttr(ctx.node, "relu") ? ctx.emit("Relu", [y]) : y;
  }],
  ["max_pool", (ctx) => {
    const s = poolShape({ node: ctx.node, inputs: [ctx.shape(ctx.node.inputs[0])] });
    const p = s.pad;
    let x = ctx.input(0);
    let pads = [p, p, p, p];
    if (s.padValue === "zero" && p > 0) {
      x = ctx.emit("Pad", [
        x,
        ctx.constant("pads", [8], BigInt64Array.from([0, 0, p, p, 0, 0, p, p].map(BigInt))),
      ]);
      pads = [0, 0, 0, 0];
    }
    return ctx.emit("MaxPool", [x], {
      kernel_shape: ints(s.k, s.k),
      strides: ints(s.stride, s.stride),
      pads: ints(...pads),
    });
  }],
  ["global_mean_pool", (ctx) => {
    const pooled = ctx.emit("GlobalAveragePool", [ctx.input(0)]);
    return ctx.emit("Flatten", [pooled], { axis: { int: 1 } });
  }],
]);

/** An exported graph: the model, its inputs (our tensor names, in order) and its output. */
export interface ExportedGraph {
  readonly model: OnnxModel;
  /** Graph tensors fed as inputs, each an ONNX input of the same name with NCHW dims. */
  readonly inputs: readonly string[];
  /** The ONNX output's name (`output`). */
  readonly output: string;
}

/**
 * Writes `graph` as ONNX.
 *
 * @param graph The graph (fixed batch and size).
 * @param weights Graph weight name → values as the engine holds them.
 * @param options `inputs`: graph tensors given as model inputs (default: the graph input); `table`: the
 *   exporters.
 * @throws {TypeError} For an op without an exporter or a missing weight, naming the node.
 */
export function graphToOnnx(
  graph: Graph,
  weights: ReadonlyMap<string, Float32Array>,
  options: { inputs?: readonly string[]; table?: ReadonlyMap<string, OnnxOpExport> } = {},
): ExportedGraph {
  const table = options.table ?? ONNX_OPS;
  const inputs = options.inputs ?? [graph.input];
  const nodes: OnnxNode[] = [];
  const initializers: OnnxInitializer[] = [];
  const current = new Map<string, string>(inputs.map((t) => [t, t]));
  let version = 0;
  const shape = (t: string) => {
    const s = graph.tensors.get(t);
    if (!s) throw new TypeError(`Cannot export tensor "${t}": it has no shape`);
    return s;
  };
  for (const node of graph.nodes) {
    const write = table.get(node.op);
    if (!write) {
      throw new TypeError(`Cannot export "${node.name}" to ONNX: no exporter for op "${node.op}"`);
    }
    const value = (t: string) => {
      const v = current.get(t);
      if (!v) throw new TypeError(`Cannot export "${node.name}": tensor "${t}" has no value yet`);
      return v;
    };
    const y = write({
      node,
      shape,
      input: (i) => value(node.inputs[i]),
      prior: () => value(node.output),
      weight(role) {
        const name = node.weights[role];
        const w = name === undefined ? undefined : weights.get(name);
        if (!w) {
          throw new TypeError(`Cannot export "${node.name}": weight "${name ?? role}" (${role}) is missing`);
        }
        return w;
      },
      constant(suffix, dims, data) {
        const name = `${node.name}.${suffix}`;
        initializers.push({ name, dims: [...dims], data });
        return name;
      },
      emit(op, ins, attributes) {
        const out = `${node.name}#${version++}`;
        nodes.push({ op, name: out, inputs: [...ins], outputs: [out], attributes });
        return out;
      },
    });
    current.set(node.output, y);
  }
  nodes.push({ op: "Identity", inputs: [current.get(graph.output)!], outputs: ["output"] });
  return {
    model: {
      nodes,
      initializers,
      inputs: inputs.map((t) => ({ name: t, dims: nchwDims(shape(t)) })),
      outputs: [{ name: "output", dims: nchwDims(shape(graph.output)) }],
    },
    inputs,
    output: "output",
  };
}
