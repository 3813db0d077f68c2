/**
 * Whole-model figures of any model the registry loads, through the engine's own runtime
 * (`createEmbedder`):
 * - weight load time from a safetensors file on disk (with the model's weight transforms);
 * - first forward (plan build, pipelines, run) and forward wall time with image decode (median of repeats);
 * - throughput per batch with the input on the GPU: the runtime's plan for that batch (the same lowering,
 *   weights and forced variants as `Embedder.embed`), all its steps in one pass per repeat, GPU timestamps;
 * - per-layer GPU time (timestamp profile, one pass per step) summed per stage, per kernel and per distinct
 *   node shape (labels and FLOP from `op_table.ts`), and peak GPU bytes of our own allocations;
 * - the whole graph on ONNX Runtime Web and TF.js (`onnx_export.ts`, `peers_tfjs.ts`) on the weights the
 *   engine computes (`cpu_weights.ts`), each checked against our embedding before it is timed, each under a
 *   deadline (`peerTimeoutMs`): a peer still running then is abandoned and the later peers skipped.
 * Timings count only after the output was checked to be finite.
 * @module
 */
import type { Gpu } from "../engine/device.ts";
import type { Embedder } from "../engine/embedder.ts";
import type { Graph } from "../engine/graph.ts";
import { lowerGraph } from "../engine/lowering.ts";
import { PipelineCache, type Plan } from "../engine/plan.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { createEmbedder, defineModel, openWeights } from "../models/registry.ts";
import { cpuResidentWeights } from "./cpu_weights.ts";
import { errorText, TOLERANCE } from "./kernel_table.ts";
import { fromNchw, toNchw } from "./layouts.ts";
import { OP_BENCH } from "./op_table.ts";
import { graphToOnnx } from "./onnx_export.ts";
import { encodeOnnxModel } from "./onnx_writer.ts";
import { median, relativeMaxError, timeOnGpu, type Timing, type TimingOptions } from "./_timing.ts";

type OrtModule = typeof import("./peers_ort.ts");
type TfjsModule = typeof import("./peers_tfjs.ts");

/** Options of {@linkcode modelFigures}. */
export interface ModelBenchOptions {
  /** A safetensors path (or anything `openWeights` takes). */
  readonly weights: string;
  /** The model's preset (default: the family's, from the file). */
  readonly preset?: string;
  /** Input size (default: the model's). */
  readonly size?: number;
  /** Images per `embed` call for the wall-time figures. */
  readonly batch: number;
  readonly repeats: number;
  /** Batches of the throughput table. */
  readonly batches: readonly number[];
  readonly profile: boolean;
  /** Variants forced by name. */
  readonly kernels: readonly string[];
  readonly timing: TimingOptions;
  /** Deadline of each whole-model peer (export, session, check and timing). */
  readonly peerTimeoutMs: number;
  readonly log: (line: string) => void;
  readonly ort?: OrtModule;
  readonly tfjs?: TfjsModule;
}

/** One profiled step. */
export interface LayerFigure {
  label: string;
  ms: number;
  gflops?: number;
}

/** The runtime's plan for `batch` (what `Embedder.embed` builds), for timing with the input on the GPU. */
function modelPlan(embedder: Embedder, batch: number, kernels: readonly string[], cache: PipelineCache) {
  const graph = embedder.graph(batch);
  const gpu = embedder.gpu;
  return {
    graph,
    plan: lowerGraph(
      graph,
      LOWERINGS,
      embedder.weights.buffers,
      { limits: gpu.limits, features: gpu.features },
      { label: `bench-b${batch}`, forcedKernels: new Set(kernels) },
    ).build({ device: gpu.device, limits: gpu.limits, lostError: gpu.lostError }, cache),
  };
}

function timePlan(gpu: Gpu, plan: Plan, timing: TimingOptions): Promise<Timing> {
  return timeOnGpu(gpu.device, (enc, ts) => plan.encode(enc, 0, plan.stats.steps, ts), {
    ...timing,
    trials: 3,
    maxRepeats: 3,
  });
}

/** A seeded model input, f32 NHWC [N, S, S, C] with the last channel (the zero pad) left 0 when C is 4. */
function seededInput(shape: readonly number[]): Float32Array<ArrayBuffer> {
  const [n, s, , c] = shape;
  const input = new Float32Array(n * s * s * c);
  let state = 12345;
  for (let i = 0; i < input.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    input[i] = c === 4 && i % c === 3 ? 0 : state / 2 ** 32;
  }
  return input;
}

/**
 * Loads the model and measures it; figures go into `result`.
 *
 * @param gpu The device (with timestamps where offered).
 * @param result The bench's JSON, extended here.
 * @param o What to measure.
 */
export async function modelFigures(
  gpu: Gpu,
  result: Record<string, unknown>,
  o: ModelBenchOptions,
): Promise<void> {
  const { batch, repeats, log } = o;
  const fileBytes = await Deno.stat(o.weights).then((s) => s.size, () => undefined);
  const t0 = performance.now();
  const embedder = await createEmbedder(o.weights, {
    gpu,
    preset: o.preset,
    size: o.size,
    maxBatch: batch,
    kernels: o.kernels,
  });
  const loadMs = performance.now() - t0;
  try {
    log(`model ${embedder.describe()}`);
    const image = await Deno.readFile(new URL("../samples/ISIC_0000101.jpg", import.meta.url));
    const images = Array.from({ length: batch }, () => image);
    const tWarm = performance.now();
    await embedder.embed(images);
    const warmMs = performance.now() - tWarm;
    const runs: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t = performance.now();
      await embedder.embed(images);
      runs.push(performance.now() - t);
    }
    const forwardMs = median(runs);
    Object.assign(result, {
      model: embedder.describe(),
      facts: embedder.facts,
      weightsFile: o.weights,
      ...(fileBytes ? { weightsFileBytes: fileBytes, loadMBps: fileBytes / 1e6 / (loadMs / 1000) } : {}),
      loadSeconds: loadMs / 1000,
      batch,
      size: embedder.size,
      warmupSeconds: warmMs / 1000,
      forwardSeconds: forwardMs / 1000,
      forwardRuns: runs.map((r) => r / 1000),
      imagesPerSecond: batch / (forwardMs / 1000),
      gmacPerImage: embedder.flopsPerImage / 2e9,
      modelGflops: (embedder.flopsPerImage * batch) / (forwardMs / 1000) / 1e9,
      gpuWeightBytes: embedder.weights.bytes,
    });
    log(`load ${(loadMs / 1000).toFixed(2)} s, forward ${(forwardMs / 1000).toFixed(2)} s (batch ${batch})`);
    await planFigures(gpu, embedder, result, o);
  } finally {
    embedder.dispose();
  }
}

async function planFigures(
  gpu: Gpu,
  embedder: Embedder,
  result: Record<string, unknown>,
  o: ModelBenchOptions,
) {
  const cache = new PipelineCache(gpu.device);
  const throughput: { batch: number; ms: number; imagesPerSecond: number; activationBytes: number }[] = [];
  const throughputSkipped: Record<string, string> = {};
  let peakActivations = 0;
  let one: { graph: Graph; plan: Plan; timing?: Timing } | undefined;
  try {
    for (const b of o.batches) {
      let built: { graph: Graph; plan: Plan } | undefined;
      try {
        const { graph, plan } = modelPlan(embedder, b, o.kernels, cache);
        built = { graph, plan: await plan };
        const out = await built.plan.run({});
        if (!new Float32Array(out.get(graph.output)!).every(Number.isFinite)) {
          throw new Error("non-finite output");
        }
        const t = await timePlan(gpu, built.plan, o.timing);
        const ms = t.gpuMs ?? t.wallMs;
        const activationBytes = built.plan.stats.activationBytes;
        throughput.push({ batch: b, ms, imagesPerSecond: b / (ms / 1000), activationBytes });
        peakActivations = Math.max(peakActivations, activationBytes);
        o.log(`batch ${b}: ${ms.toFixed(1)} ms`);
        if (b === 1 && !one) {
          one = { ...built, timing: t };
          built = undefined;
        }
      } catch (e) {
        throughputSkipped[String(b)] = errorText(e);
      } finally {
        built?.plan.dispose();
      }
    }
    result.throughput = throughput;
    if (throughput.length) {
      const best = throughput.reduce((a, t) => (t.imagesPerSecond > a.imagesPerSecond ? t : a));
      result.bestBatch = { batch: best.batch, imagesPerSecond: best.imagesPerSecond };
    }
    if (Object.keys(throughputSkipped).length) result.throughputSkipped = throughputSkipped;
    if (!one) {
      const { graph, plan } = modelPlan(embedder, 1, o.kernels, cache);
      one = { graph, plan: await plan };
    }
    const { graph, plan } = one;
    peakActivations = Math.max(peakActivations, plan.stats.activationBytes);
    result.gpuActivationBytes = plan.stats.activationBytes;
    result.peakGpuBytes = embedder.weights.bytes + peakActivations;
    const input = seededInput(graph.tensors.get(graph.input)!);
    const ours = new Float32Array((await plan.run({ [graph.input]: input })).get(graph.output)!);
    const latency = one.timing ?? await timePlan(gpu, plan, o.timing);
    result.latencyBatch1 = {
      ms: latency.gpuMs ?? latency.wallMs,
      wallMs: latency.wallMs,
      timing: latency.gpuMs !== undefined ? "gpu-timestamps" : "wall-amortised",
    };
    if (o.profile && gpu.features.has("timestamp-query")) {
      Object.assign(result, profileFigures(graph, await plan.profile()));
    }
    if (o.ort || o.tfjs) {
      result.modelPeers = await modelPeers(graph, input, ours, result.latencyBatch1 as { wallMs: number }, o);
    }
  } finally {
    one?.plan.dispose();
  }
}

/** Per-layer, per-stage, per-kernel and per-shape sums of a profile. */
function profileFigures(graph: Graph, steps: { label: string; ms: number }[]): Record<string, unknown> {
  const stepsOf = new Map<string, { label: string; ms: number }[]>();
  for (const s of steps) {
    const node = s.label.split("/")[0];
    stepsOf.set(node, [...(stepsOf.get(node) ?? []), s]);
  }
  const layers: LayerFigure[] = [];
  const shapes = new Map<string, { op: string; count: number; ms: number; flop: number }>();
  let convMs = 0, convFlop = 0;
  for (const node of graph.nodes) {
    const mine = stepsOf.get(node.name) ?? [];
    const ms = mine.reduce((a, s) => a + s.ms, 0);
    const entry = OP_BENCH.get(node.op);
    const c = {
      node,
      inputs: node.inputs.map((t) => graph.tensors.get(t)!),
      output: graph.tensors.get(node.output)!,
    };
    const flop = entry?.flop(c);
    for (const s of mine) {
      layers.push({
        ...s,
        ...(flop && mine.length === 1 && s.ms > 0 ? { gflops: flop / (s.ms * 1e6) } : {}),
      });
    }
    if (!entry || flop === undefined) continue;
    const label = entry.label(c);
    const g = shapes.get(label) ?? { op: node.op, count: 0, ms: 0, flop: 0 };
    g.count++;
    g.ms += ms;
    g.flop += flop;
    shapes.set(label, g);
    if (node.op === "conv2d") {
      convMs += ms;
      convFlop += flop;
    }
  }
  const sumBy = (key: (l: LayerFigure) => string) => {
    const out: Record<string, number> = {};
    for (const l of layers) out[key(l)] = (out[key(l)] ?? 0) + l.ms;
    return out;
  };
  return {
    layers,
    byStage: sumBy((l) => l.label.split(".")[0].split("/")[0]),
    byKernel: sumBy((l) => l.label.split("/")[1]),
    ...(convMs > 0 ? { convGflops: convFlop / (convMs * 1e6) } : {}),
    shapeProfile: [...shapes].map(([shape, g]) => ({
      shape,
      op: g.op,
      count: g.count,
      msEach: g.ms / g.count,
      ...(g.ms > 0 ? { gflops: g.flop / (g.ms * 1e6) } : {}),
    })),
    profiledTotalSeconds: layers.reduce((a, l) => a + l.ms, 0) / 1000,
  };
}

/** Resolves with `work`'s value, or "timeout" after `ms` (the work is then left running). */
async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), ms));
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function modelPeers(
  graph: Graph,
  input: Float32Array<ArrayBuffer>,
  ours: Float32Array,
  oursLatency: { wallMs: number },
  o: ModelBenchOptions,
): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  o.log("whole model on the peers: computing the resident weights on the CPU");
  const tw = performance.now();
  const source = await openWeights(o.weights);
  let weights: Map<string, Float32Array>;
  try {
    weights = await cpuResidentWeights(source, defineModel(source, { preset: o.preset }).weights);
  } finally {
    await source.close();
  }
  out.cpuWeightsSeconds = (performance.now() - tw) / 1000;
  const inputShape = graph.tensors.get(graph.input)!;
  const timing = { ...o.timing, trials: 3, maxRepeats: 3 };
  const ort = o.ort, tfjs = o.tfjs;
  let abandoned: string | undefined;
  const run = async (name: string, work: () => Promise<Record<string, unknown>>) => {
    if (abandoned) {
      out[name] = { status: "skipped", reason: `${abandoned} was still running after its deadline` };
      return;
    }
    o.log(`whole model on ${name}`);
    try {
      const r = await withDeadline(work(), o.peerTimeoutMs);
      if (r === "timeout") {
        abandoned = name;
        out[name] = {
          status: "timeout",
          reason: `no result within ${(o.peerTimeoutMs / 1000).toFixed(0)} s`,
        };
      } else out[name] = r;
    } catch (e) {
      out[name] = { status: "failed", reason: errorText(e) };
    }
  };
  if (ort) {
    await run("ort", async () => {
      const t = performance.now();
      const exported = graphToOnnx(graph, weights);
      const bytes = encodeOnnxModel(exported.model);
      const m = await ort.OrtModel.create(bytes, [{
        name: graph.input,
        dims: exported.model.inputs[0].dims,
        data: toNchw(input, inputShape),
      }], exported.output);
      const loadSeconds = (performance.now() - t) / 1000;
      try {
        const error = relativeMaxError(fromNchw(await m.run(), graph.tensors.get(graph.output)!), ours);
        if (!(error <= TOLERANCE)) return { status: "mismatch", maxRelError: error, onnxBytes: bytes.length };
        const tm = await m.time(timing);
        return {
          status: "ok",
          maxRelError: error,
          ms: tm.wallMs,
          loadSeconds,
          onnxBytes: bytes.length,
          oursOverThis: oursLatency.wallMs / tm.wallMs,
        };
      } finally {
        await m.dispose();
      }
    });
  }
  if (tfjs) {
    await run("tfjs", async () => {
      const g = tfjs.tfjsGraph(graph, weights);
      const x = tfjs.tfTensor(input, inputShape);
      try {
        const forward = () => g.forward([x]);
        const error = relativeMaxError(await tfjs.runTfjs(forward), ours);
        if (!(error <= TOLERANCE)) return { status: "mismatch", maxRelError: error };
        const tm = await tfjs.timeTfjs(forward, timing);
        return {
          status: "ok",
          maxRelError: error,
          ms: tm.wallMs,
          oursOverThis: oursLatency.wallMs / tm.wallMs,
        };
      } finally {
        x.dispose();
        g.dispose();
      }
    });
  }
  return out;
}
