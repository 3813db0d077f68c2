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
 * - global_mean_pool → `tf.mean` over H and W.
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
import { convAttrs, poolShape } from "./op_table.ts";
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
