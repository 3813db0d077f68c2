/**
 * TF.js's WebGPU backend (`@tensorflow/tfjs-backend-webgpu`) as a peer: conv2d and matMul on the same
 * shapes (NHWC and HWIO, TF.js's native layouts, so no transposes), and the whole BiT graph from the same
 * weights through TF.js ops (conv2d, moments for GroupNorm, relu, add, maxPool, mean).
 *
 * Timing: a repeat calls the op (or the forward pass) and disposes the previous result without reading it;
 * each trial ends by reading the last result back (`data()`), the completion signal TF.js honours.
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-webgpu";
import { type BitGraph, GROUP_NORM_EPS, GROUP_NORM_GROUPS } from "../models/bit.ts";
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

/** Runs `forward` once, reads the result back, and times it (no readback in the timed repeats). */
export async function runAndTimeTfjs(
  forward: () => tf.Tensor,
  options: TimingOptions,
): Promise<{ output: Float32Array; timing: Timing }> {
  const first = forward();
  const output = new Float32Array(await first.data());
  first.dispose();
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
  return { output, timing };
}

/** A tensor from float32 data. */
export function tfTensor(data: Float32Array, dims: readonly number[]): tf.Tensor {
  return tf.tensor(data, [...dims], "float32");
}

/** NHWC conv with explicit symmetric padding. */
export function tfConv(x: tf.Tensor, w: tf.Tensor, stride: number, pad: number): tf.Tensor {
  return tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, [[0, 0], [pad, pad], [pad, pad], [0, 0]]);
}

/** Matrix product. */
export function tfMatMul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
}

/**
 * Uploads the weights of `graph` (standardised HWIO kernels, γ and β) and returns the forward pass.
 *
 * @param graph The graph (NHWC).
 * @param hwio timm name → standardised HWIO kernel (stem: 3 input channels) or [C] vector.
 * @returns The forward pass on an NHWC [N, S, S, 3] input, and a dispose function.
 */
export function tfjsBitForward(
  graph: BitGraph,
  hwio: ReadonlyMap<string, { data: Float32Array; dims: number[] }>,
): { forward: (x: tf.Tensor) => tf.Tensor; dispose(): void } {
  const w = new Map<string, tf.Tensor>();
  for (const [name, t] of hwio) w.set(name, tf.tensor(t.data, t.dims, "float32"));
  const forward = (input: tf.Tensor) =>
    tf.tidy(() => {
      const current = new Map<string, tf.Tensor>([[graph.input, input]]);
      for (const node of graph.nodes) {
        const x = current.get(node.input)!;
        switch (node.op) {
          case "conv2d": {
            const y = tfConv(x, w.get(node.weight)!, node.stride, node.pad);
            current.set(node.output, node.accumulate ? tf.add(current.get(node.output)!, y) : y);
            break;
          }
          case "group_norm": {
            const [n, h, wd, c] = x.shape;
            const g = tf.reshape(x, [n, h * wd, GROUP_NORM_GROUPS, c / GROUP_NORM_GROUPS]);
            const { mean, variance } = tf.moments(g, [1, 3], true);
            const normed = tf.reshape(tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, GROUP_NORM_EPS))), [
              n,
              h,
              wd,
              c,
            ]);
            const y = tf.add(tf.mul(normed, w.get(node.gamma)!), w.get(node.beta)!);
            current.set(node.output, node.relu ? tf.relu(y) : y);
            break;
          }
          case "max_pool": {
            if (node.padValue !== "-inf") throw new TypeError("Cannot run TF.js max_pool: only -inf padding");
            current.set(node.output, tf.maxPool(x as tf.Tensor4D, node.kernel, node.stride, node.pad));
            break;
          }
          case "global_mean_pool":
            current.set(node.output, tf.mean(x, [1, 2]));
            break;
        }
      }
      return current.get(graph.output)!;
    });
  return {
    forward,
    dispose() {
      for (const t of w.values()) t.dispose();
    },
  };
}
