/**
 * The BiT graph as ONNX (NCHW, ONNX Runtime's native layout), written node by node from the same
 * {@linkcode BitGraph} our planner compiles, with the same weights:
 * - conv2d → Conv with the kernel standardised on the CPU in float64 (`(w - mean) / sqrt(var + eps)` per
 *   output channel over KH·KW·Cin, the preset's eps), rounded to float32; an accumulating conv → Conv + Add;
 * - group_norm → Reshape [N, G, -1] → InstanceNormalization (scale 1, bias 0, eps 1e-5: the per-group mean
 *   and biased variance) → Reshape [N, C, H, W] → Mul γ → Add β → Relu;
 * - max_pool → MaxPool (padding never wins: the derm preset's -inf padding) or Pad 0 + MaxPool (bit);
 * - global_mean_pool → ReduceMean over H, W.
 * The stem reads the three real channels: input `x` is [N, 3, S, S].
 * @module
 */
import { type BitGraph, GROUP_NORM_EPS, GROUP_NORM_GROUPS } from "../models/bit.ts";
import type { OnnxInitializer, OnnxModel, OnnxNode } from "./onnx_writer.ts";

/**
 * Standardises an OIHW kernel per output channel in float64.
 *
 * @param w OIHW [O, I, KH, KW] values.
 * @param cout Output channels O.
 * @param eps Added to the biased variance.
 */
export function standardizeOihw(w: Float32Array, cout: number, eps: number): Float32Array<ArrayBuffer> {
  const fan = w.length / cout;
  const out = new Float32Array(w.length);
  for (let o = 0; o < cout; o++) {
    let sum = 0;
    for (let i = 0; i < fan; i++) sum += w[o * fan + i];
    const mean = sum / fan;
    let ss = 0;
    for (let i = 0; i < fan; i++) ss += (w[o * fan + i] - mean) ** 2;
    const d = Math.sqrt(ss / fan + eps);
    for (let i = 0; i < fan; i++) out[o * fan + i] = (w[o * fan + i] - mean) / d;
  }
  return out;
}

/**
 * Builds the ONNX model of `graph`.
 *
 * @param graph The graph (batch and size fixed).
 * @param weights timm name → OIHW / [C] float32 values (raw, unstandardised).
 * @param eps Weight standardisation eps of the preset.
 * @returns The model; input `x` [N, 3, S, S], output `embedding` [N, C].
 */
export function bitOnnxModel(
  graph: BitGraph,
  weights: ReadonlyMap<string, Float32Array>,
  eps: number,
): OnnxModel {
  const nodes: OnnxNode[] = [];
  const initializers: OnnxInitializer[] = [];
  const current = new Map<string, string>([[graph.input, "x"]]);
  let version = 0;
  const fresh = (name: string) => `${name}#${version++}`;
  const ints = (...v: number[]) => ({ ints: v });
  const int64 = (name: string, v: number[]) => {
    initializers.push({ name, dims: [v.length], data: BigInt64Array.from(v.map(BigInt)) });
    return name;
  };
  const get = (name: string) => {
    const w = weights.get(name);
    if (!w) throw new TypeError(`Cannot build ONNX graph: weight "${name}" is missing`);
    return w;
  };
  const [n] = graph.tensors.get(graph.input)!;
  for (const node of graph.nodes) {
    const x = current.get(node.input)!;
    const outShape = graph.tensors.get(node.output)!;
    switch (node.op) {
      case "conv2d": {
        const cout = outShape[3];
        const raw = get(node.weight);
        const cin = raw.length / (cout * node.kernel * node.kernel);
        initializers.push({
          name: node.weight,
          dims: [cout, cin, node.kernel, node.kernel],
          data: standardizeOihw(raw, cout, eps),
        });
        const p = node.pad;
        const y = fresh(node.name);
        nodes.push({
          op: "Conv",
          name: node.name,
          inputs: [x, node.weight],
          outputs: [y],
          attributes: {
            kernel_shape: ints(node.kernel, node.kernel),
            strides: ints(node.stride, node.stride),
            pads: ints(p, p, p, p),
          },
        });
        if (node.accumulate) {
          const sum = fresh(node.output);
          nodes.push({ op: "Add", inputs: [y, current.get(node.output)!], outputs: [sum] });
          current.set(node.output, sum);
        } else current.set(node.output, y);
        break;
      }
      case "group_norm": {
        const [, h, w, c] = outShape;
        const g = GROUP_NORM_GROUPS;
        const grouped = fresh(`${node.name}.grouped`);
        nodes.push({
          op: "Reshape",
          inputs: [x, int64(`${node.name}.shape1`, [n, g, -1])],
          outputs: [grouped],
        });
        initializers.push({ name: `${node.name}.ones`, dims: [g], data: new Float32Array(g).fill(1) });
        initializers.push({ name: `${node.name}.zeros`, dims: [g], data: new Float32Array(g) });
        const normed = fresh(`${node.name}.normed`);
        nodes.push({
          op: "InstanceNormalization",
          inputs: [grouped, `${node.name}.ones`, `${node.name}.zeros`],
          outputs: [normed],
          attributes: { epsilon: { float: GROUP_NORM_EPS } },
        });
        const back = fresh(`${node.name}.nchw`);
        nodes.push({
          op: "Reshape",
          inputs: [normed, int64(`${node.name}.shape2`, [n, c, h, w])],
          outputs: [back],
        });
        initializers.push({ name: node.gamma, dims: [c, 1, 1], data: get(node.gamma) });
        initializers.push({ name: node.beta, dims: [c, 1, 1], data: get(node.beta) });
        const scaled = fresh(`${node.name}.scaled`);
        nodes.push({ op: "Mul", inputs: [back, node.gamma], outputs: [scaled] });
        const shifted = fresh(`${node.name}.shifted`);
        nodes.push({ op: "Add", inputs: [scaled, node.beta], outputs: [shifted] });
        let y = shifted;
        if (node.relu) {
          y = fresh(node.output);
          nodes.push({ op: "Relu", inputs: [shifted], outputs: [y] });
        }
        current.set(node.output, y);
        break;
      }
      case "max_pool": {
        const p = node.pad;
        let input = x;
        let pads = [p, p, p, p];
        if (node.padValue === "zero" && p > 0) {
          input = fresh(`${node.name}.padded`);
          nodes.push({
            op: "Pad",
            inputs: [x, int64(`${node.name}.pads`, [0, 0, p, p, 0, 0, p, p])],
            outputs: [input],
          });
          pads = [0, 0, 0, 0];
        }
        const y = fresh(node.output);
        nodes.push({
          op: "MaxPool",
          inputs: [input],
          outputs: [y],
          attributes: {
            kernel_shape: ints(node.kernel, node.kernel),
            strides: ints(node.stride, node.stride),
            pads: ints(...pads),
          },
        });
        current.set(node.output, y);
        break;
      }
      case "global_mean_pool": {
        const y = fresh(node.output);
        nodes.push({
          op: "ReduceMean",
          inputs: [x],
          outputs: [y],
          attributes: { axes: ints(2, 3), keepdims: { int: 0 } },
        });
        current.set(node.output, y);
        break;
      }
    }
  }
  const s = graph.tensors.get(graph.input)![1];
  const outName = current.get(graph.output)!;
  nodes.push({ op: "Identity", inputs: [outName], outputs: ["embedding"] });
  return {
    nodes,
    initializers,
    inputs: [{ name: "x", dims: [n, 3, s, s] }],
    outputs: [{ name: "embedding", dims: [...graph.tensors.get(graph.output)!] }],
  };
}
