/**
 * Per-kernel GPU time of one forward pass, for `bench/web_bench.ts --profile`: the same function runs in
 * Deno and, bundled, in a Chromium page, so the two adapters are profiled by the same code. It builds the
 * model's plan the way the embedder does (timing the build: on SwiftShader most of it is shader
 * compilation), runs it twice on a constant input, then times every step with timestamp queries.
 *
 * This module is browser compatible.
 * @module
 */
import { acquireGpu } from "../engine/device.ts";
import { lowerGraph } from "../engine/lowering.ts";
import { PipelineCache } from "../engine/plan.ts";
import { RUNTIME_KERNELS } from "../kernels/registry.ts";
import { createEmbedder } from "../models/registry.ts";

/** What one profile measured. */
export interface KernelProfile {
  /** The adapter. */
  readonly adapter: string;
  /** Plan build, ms (pipelines compiled, buffers, bind groups). */
  readonly buildMs: number;
  /** Wall ms of the first and second run of the plan. */
  readonly runMs: readonly [number, number];
  /** GPU ms per kernel, summed over the plan's steps. */
  readonly byKernel: Readonly<Record<string, number>>;
}

/**
 * Profiles one forward pass of `weights` at `size` for `batch` images.
 *
 * @param weights `procedural:NAME[:SEED]` or a URL.
 * @param options Size, batch, kernels to force.
 * @returns Build time, run times and GPU time per kernel.
 * @throws {RangeError} When the adapter has no `timestamp-query`.
 */
export async function profileKernels(
  weights: string,
  options: { size: number; batch: number; kernels?: readonly string[] },
): Promise<KernelProfile> {
  const gpu = await acquireGpu({ timestamps: true });
  const kernels = options.kernels ?? [];
  const embedder = await createEmbedder(weights, { size: options.size, gpu, kernels });
  try {
    const graph = embedder.model.graph(options.size, options.batch);
    let t = performance.now();
    const plan = await lowerGraph(
      graph,
      RUNTIME_KERNELS.lowerings,
      embedder.weights.buffers,
      { limits: gpu.limits, features: gpu.features },
      { label: "profile", forcedKernels: new Set(kernels) },
    ).build(
      { device: gpu.device, limits: gpu.limits, lostError: gpu.lostError },
      new PipelineCache(gpu.device),
    );
    const buildMs = performance.now() - t;
    try {
      const [n, s, , c] = graph.tensors.get(graph.input)!;
      const input = new Float32Array(n * s * s * c).fill(0.5);
      const runMs: number[] = [];
      for (let i = 0; i < 2; i++) {
        t = performance.now();
        await plan.run({ [graph.input]: input });
        runMs.push(performance.now() - t);
      }
      const byKernel: Record<string, number> = {};
      for (const step of await plan.profile()) {
        const kernel = step.label.split("/")[1] ?? step.label;
        byKernel[kernel] = (byKernel[kernel] ?? 0) + step.ms;
      }
      return { adapter: gpu.adapterInfo.description, buildMs, runMs: [runMs[0], runMs[1]], byKernel };
    } finally {
      plan.dispose();
    }
  } finally {
    embedder.dispose();
    gpu.destroy();
  }
}
