/**
 * TF.js's WebGPU backend (`@tensorflow/tfjs-backend-webgpu`) as a peer: any of our graphs (a one-node graph
 * for the kernel table, the whole model) run op by op through a table keyed by op, on the same weights as
 * the engine holds them (NHWC activations and HWIO kernels are TF.js's native layouts: no transposes), and
 * matMul for the 1x1 convolutions.
 * - conv2d → `tf.fused.conv2d` (bias and, without a residual, ReLU fused: TF.js's fastest path), then the
 *   residual add and ReLU for in-place nodes;
 * - group_norm → reshape [N, HW, G, C/G], `tf.moments` over pixels and channels of a group, scale, shift
 *   (ReLU);
 * - max_pool → `tf.maxPool` with the node's padding (`-inf`: TF.js's own; `zero`: `tf.pad` first);
 * - global_mean_pool → `tf.mean` over H and W;
 * - linear → `tf.fused.matMul` over the rows [M, Din] (bias fused), then GELU written out
 *   (0.5·x·(1 + erf(x/√2)), exact) or the residual add, reshaped back to [..., Dout];
 * - layer_norm → `tf.moments` over the last axis, normalise, scale, shift;
 * - attention → reshape [N, T, 3, H, hd], transpose to [3, N, H, T, hd], q, k, v, batched `tf.matMul`
 *   (q·scale, kᵀ), `tf.softmax`, `tf.matMul` v, back to [N, T, D];
 * - vit_tokens → reshape the NHWC patches [N, P, D], concat after the class token, add the position
 *   embedding;
 * - token_gather → `tf.slice` of the token, `tf.pad` to the collector (the node creating it) or concat
 *   between slices of its prior value (in place).
 *
 * Timing: a repeat calls the op (or the forward pass) and disposes the previous result without reading it;
 * each trial ends by reading the last result back (`data()`), the completion signal TF.js honours.
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-webgpu";
import type { Graph, GraphNode } from "../engine/graph.ts";
import { flagAttr, numberAttr } from "../engine/graph.ts";
import type { Shape } from "../engine/kernel.ts";
import { attentionShape, convAttrs, linearShape, poolShape, tokenGatherShape } from "./op_table.ts";
import { timeByWall, type Timing, type TimingOptions } from "./_timing.ts";

/** TF.js's version string. */
export const TFJS_VERSION: string = tf.version_core;

interface WebGpuBackendLike {
  device: GPUDevice;
}

/** Selects the WebGPU backend; throws with TF.js's reason when it cannot. */
export async function initTfjs(): Promise<void> {
  const ok = await tf.setBackend("webgpu");
  await tf.ready();
  if (!ok || tf.getBackend() !== "webgpu") {
    throw new Error(`Cannot select TF.js backend "webgpu": got "${tf.getBackend()}"`);
  }
}

function backend(): WebGpuBackendLike {
  return tf.backend() as unknown as WebGpuBackendLike;
}

/** Runs `forward` once and reads the result back. */
export async function runTfjs(forward: () => tf.Tensor): Promise<Float32Array> {
  const first = forward();
  try {
    return new Float32Array(await first.data());
  } finally {
    first.dispose();
  }
}

/** Times `forward` (no readback in the timed repeats; one per trial, amortised). */
export async function timeTfjs(forward: () => tf.Tensor, options: TimingOptions): Promise<Timing> {
  let last: tf.Tensor | undefined;
  const timing = await timeByWall(
    () => {
      const y = forward();
      last?.dispose();
      last = y;
    },
    async () => {
      // Reading the last result back is the one completion signal TF.js honours for every op (a bare
      // submitQueue + onSubmittedWorkDone gave implausibly short times); one readback per trial, amortised.
      if (last) await last.data();
      else await backend().device.queue.onSubmittedWorkDone();
    },
    options,
  );
  last?.dispose();
  return timing;
}

/** A tensor from float32 data. */
export function tfTensor(data: Float32Array, dims: readonly number[]): tf.Tensor {
  return tf.tensor(data, [...dims], "float32");
}

/** Matrix product with our conv epilogue: (a @ b + bias + prior), then ReLU. */
export function tfMatMul(
  a: tf.Tensor,
  b: tf.Tensor,
  epilogue: { bias?: tf.Tensor; prior?: tf.Tensor; relu: boolean },
): tf.Tensor {
  return tf.tidy(() => {
    let y = tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D) as tf.Tensor;
    if (epilogue.bias) y = tf.add(y, epilogue.bias);
    if (epilogue.prior) y = tf.add(y, epilogue.prior);
    return epilogue.relu ? tf.relu(y) : y;
  });
}

/** What an op's TF.js function sees. */
export interface TfjsOpContext {
  readonly node: GraphNode;
  /** Our (NHWC) shape of a graph tensor. */
  shape(tensor: string): Shape;
  /** Node input `i`. */
  input(i: number): tf.Tensor;
  /** The output's value before this node (in-place nodes). */
  prior(): tf.Tensor;
  /** The node's weight for `role`, uploaded with the dims the op's `weightDims` gave. */
  weight(role: string): tf.Tensor;
}

/** The TF.js entry of one op. */
export interface TfjsOp {
  /** Dims of each weight role, from the node and the input shapes. */
  weightDims(node: GraphNode, shape: (t: string) => Shape): Record<string, number[]>;
  /** The node's output. */
  run(ctx: TfjsOpContext): tf.Tensor;
}

/** The entries, by op. */
export const TFJS_OPS: ReadonlyMap<string, TfjsOp> = new Map<string, TfjsOp>([
  ["conv2d", {
    weightDims(node, shape) {
      const a = convAttrs(node);
      const dims: Record<string, number[]> = { weight: [a.kh, a.kw, shape(node.inputs[0])[3], a.cout] };
      if (a.bias) dims.bias = [a.cout];
      return dims;
    },
    run(ctx) {
      const a = convAttrs(ctx.node);
      const fuseRelu = a.relu && !ctx.node.inPlace;
      let y = tf.fused.conv2d({
        x: ctx.input(0) as tf.Tensor4D,
        filter: ctx.weight("weight") as tf.Tensor4D,
        strides: a.stride,
        pad: [[0, 0], [a.pad, a.pad], [a.pad, a.pad], [0, 0]],
        bias: a.bias ? ctx.weight("bias") : undefined,
        activation: fuseRelu ? "relu" : "linear",
      }) as tf.Tensor;
      if (ctx.node.inPlace) y = tf.add(y, ctx.prior());
      return a.relu && !fuseRelu ? tf.relu(y) : y;
    },
  }],
  ["group_norm", {
    weightDims(node, shape) {
      const c = shape(node.inputs[0])[3];
      return { gamma: [c], beta: [c] };
    },
    run(ctx) {
      const x = ctx.input(0);
      const [n, h, w, c] = x.shape;
      const groups = numberAttr(ctx.node, "groups");
      const g = tf.reshape(x, [n, h * w, groups, c / groups]);
      const { mean, variance } = tf.moments(g, [1, 3], true);
      const rstd = tf.rsqrt(tf.add(variance, numberAttr(ctx.node, "eps")));
      const normed = tf.reshape(tf.mul(tf.sub(g, mean), rstd), [n, h, w, c]);
      const y = tf.add(tf.mul(normed, ctx.weight("gamma")), ctx.weight("beta"));
      return flagAttr(ctx.node, "relu") ? tf.relu(y) : y;
    },
  }],
  ["max_pool", {
    weightDims: () => ({}),
    run(ctx) {
      const s = poolShape({ node: ctx.node, inputs: [ctx.shape(ctx.node.inputs[0])] });
      const x = ctx.input(0) as tf.Tensor4D;
      if (s.padValue === "zero" && s.pad > 0) {
        const p = s.pad;
        return tf.maxPool(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), s.k, s.stride, "valid");
      }
      return tf.maxPool(x, s.k, s.stride, s.pad);
    },
  }],
  ["global_mean_pool", {
    weightDims: () => ({}),
    run: (ctx) => tf.mean(ctx.input(0), [1, 2]),
  }],
  ["linear", {
    weightDims(node, shape) {
      const s = linearShape({ node, inputs: node.inputs.map(shape) });
      return { weight: [s.din, s.dout], ...(s.bias ? { bias: [s.dout] } : {}) };
    },
    run(ctx) {
      const x = ctx.input(0);
      const s = linearShape({ node: ctx.node, inputs: ctx.node.inputs.map((t) => ctx.shape(t)) });
      let y = tf.fused.matMul({
        a: tf.reshape(x, [s.rows, s.din]) as tf.Tensor2D,
        b: ctx.weight("weight") as tf.Tensor2D,
        bias: s.bias ? ctx.weight("bias") : undefined,
      }) as tf.Tensor;
      if (s.activation === "gelu") y = tf.mul(tf.mul(y, 0.5), tf.add(tf.erf(tf.mul(y, Math.SQRT1_2)), 1));
      if (s.accumulate) y = tf.add(y, tf.reshape(ctx.input(1), [s.rows, s.dout]));
      return tf.reshape(y, [...x.shape.slice(0, -1), s.dout]);
    },
  }],
  ["layer_norm", {
    weightDims(node, shape) {
      const x = shape(node.inputs[0]);
      const d = x[x.length - 1];
      return { gamma: [d], beta: [d] };
    },
    run(ctx) {
      const x = ctx.input(0);
      const { mean, variance } = tf.moments(x, -1, true);
      const rstd = tf.rsqrt(tf.add(variance, numberAttr(ctx.node, "eps")));
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), rstd), ctx.weight("gamma")), ctx.weight("beta"));
    },
  }],
  ["attention", {
    weightDims: () => ({}),
    run(ctx) {
      const s = attentionShape({ node: ctx.node, inputs: [ctx.shape(ctx.node.inputs[0])] });
      const { n, tokens: t, heads: h, headDim: hd } = s;
      const heads = tf.transpose(tf.reshape(ctx.input(0), [n, t, 3, h, hd]), [2, 0, 3, 1, 4]);
      const [q, k, v] = tf.unstack(heads, 0);
      const scores = tf.matMul(tf.mul(q, 1 / Math.sqrt(hd)), k, false, true);
      const o = tf.matMul(tf.softmax(scores), v);
      return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [n, t, h * hd]);
    },
  }],
  ["vit_tokens", {
    weightDims(node, shape) {
      const [, gh, gw, d] = shape(node.inputs[0]);
      return { cls: [1, 1, d], pos: [1, 1 + gh * gw, d] };
    },
    run(ctx) {
      const [n, gh, gw, d] = ctx.shape(ctx.node.inputs[0]);
      const patches = tf.reshape(ctx.input(0), [n, gh * gw, d]);
      const cls = tf.tile(ctx.weight("cls"), [n, 1, 1]);
      return tf.add(tf.concat([cls, patches], 1), ctx.weight("pos"));
    },
  }],
  ["token_gather", {
    weightDims: () => ({}),
    run(ctx) {
      const s = tokenGatherShape({ node: ctx.node, inputs: [ctx.shape(ctx.node.inputs[0])] });
      const row = tf.slice(ctx.input(0), [0, s.token, 0], [s.n, 1, s.d]);
      if (!ctx.node.inPlace) return tf.pad(row, [[0, 0], [s.slot, s.slots - 1 - s.slot], [0, 0]]);
      const prior = ctx.prior();
      const parts = [
        ...(s.slot > 0 ? [tf.slice(prior, [0, 0, 0], [s.n, s.slot, s.d])] : []),
        row,
        ...(s.slot + 1 < s.slots
          ? [tf.slice(prior, [0, s.slot + 1, 0], [s.n, s.slots - 1 - s.slot, s.d])]
          : []),
      ];
      return parts.length === 1 ? parts[0] : tf.concat(parts, 1);
    },
  }],
]);

/** A graph uploaded to TF.js. */
export interface TfjsGraph {
  /** The forward pass on the inputs, in the order given to {@linkcode tfjsGraph}. */
  forward(inputs: readonly tf.Tensor[]): tf.Tensor;
  /** Frees the weights. */
  dispose(): void;
}

/**
 * Uploads the weights of `graph` and returns its forward pass.
 *
 * @param graph The graph (NHWC).
 * @param weights Graph weight name → values as the engine holds them (HWIO kernels, [C] vectors).
 * @param options `inputs`: graph tensors given as inputs (default: the graph input).
 * @throws {TypeError} For an op without an entry or a missing weight, naming the node.
 */
export function tfjsGraph(
  graph: Graph,
  weights: ReadonlyMap<string, Float32Array>,
  options: { inputs?: readonly string[] } = {},
): TfjsGraph {
  const inputs = options.inputs ?? [graph.input];
  const shape = (t: string) => graph.tensors.get(t)!;
  const uploaded = new Map<string, tf.Tensor>();
  try {
    for (const node of graph.nodes) {
      const entry = TFJS_OPS.get(node.op);
      if (!entry) throw new TypeError(`Cannot run "${node.name}" on TF.js: no entry for op "${node.op}"`);
      for (const [role, dims] of Object.entries(entry.weightDims(node, shape))) {
        const name = node.weights[role];
        const w = name === undefined ? undefined : weights.get(name);
        if (!w) {
          throw new TypeError(`Cannot run "${node.name}" on TF.js: weight "${name ?? role}" is missing`);
        }
        if (!uploaded.has(name)) uploaded.set(name, tf.tensor(w, dims, "float32"));
      }
    }
  } catch (e) {
    for (const t of uploaded.values()) t.dispose();
    throw e;
  }
  return {
    forward(xs) {
      return tf.tidy(() => {
        const current = new Map<string, tf.Tensor>(inputs.map((t, i) => [t, xs[i]]));
        for (const node of graph.nodes) {
          const value = (t: string) => {
            const v = current.get(t);
            if (!v) throw new TypeError(`Cannot run "${node.name}" on TF.js: "${t}" has no value yet`);
            return v;
          };
          current.set(
            node.output,
            TFJS_OPS.get(node.op)!.run({
              node,
              shape,
              input: (i) => value(node.inputs[i]),
              prior: () => value(node.output),
              weight: (role) => uploaded.get(node.weights[role])!,
            }),
          );
        }
        return current.get(graph.output)!;
      });
    },
    dispose() {
      for (const t of uploaded.values()) t.dispose();
    },
  };
}
