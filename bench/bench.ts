/**
 * `deno task bench`: whole-model figures on this machine's adapter.
 *
 * - weight load time from a safetensors file on disk (procedural weights of the chosen architecture are
 *   written once to a cache file when no --weights is given), with GPU standardisation;
 * - forward wall time per batch (median of repeats after a warm-up; plan building excluded and reported);
 * - per-layer GPU time with timestamp queries where the adapter has them, summed per stage and per kernel,
 *   with GFLOP/s of every distinct convolution shape (FLOP = 2 x N x OH x OW x Cout x KH x KW x Cin);
 * - peak resident memory of the process and GPU bytes of our own allocations.
 *
 * Timings are only reported after the model's output was checked to be finite.
 *
 * Issue 4 extends it (see bench/README.md): roofline calibration (`roofline.ts`), every distinct
 * convolution, GroupNorm and pooling shape of R101x3 (`kernels_bench.ts`, FLOP and byte formulas there),
 * throughput per batch, and the same convolution / MatMul shapes and the whole graph on ONNX Runtime Web
 * (WebGPU EP) and TF.js (WebGPU backend), each checked against our output before it is timed.
 * Batch throughput: ms per forward = median GPU time of the whole plan in one pass (timestamps), images/s
 * = batch / s. Peer ratios compare amortised wall times measured the same way for every engine.
 * @module
 */
import { parseArgs } from "node:util";
import { createBitEmbedder } from "../models/bit_embedder.ts";
import { bitGraph, type BitNode, type BitPreset, PRESETS } from "../models/bit.ts";
import { acquireGpu, type Gpu } from "../engine/device.ts";
import { proceduralSource } from "../weights/procedural.ts";
import { writeSafetensorsFile } from "../weights/safetensors_write_deno.ts";
import { PROCEDURAL_ARCHITECTURES } from "../cli/weights_arg.ts";
import { buildBitPlan } from "../models/bit_plan.ts";
import type { BitArchitecture } from "../models/bit_arch.ts";
import { median, relativeMaxError, timeOnGpu, type Timing } from "./_timing.ts";
import { measureRoofline, type Roofline } from "./roofline.ts";
import {
  buildOpPlan,
  checkOurKernels,
  distinctShapes,
  opInputs,
  type OpShape,
  runOp,
  timeOp,
} from "./kernels_bench.ts";
import { benchSvg } from "./svg.ts";
import { encodeOnnxModel } from "./onnx_writer.ts";
import { bitOnnxModel, standardizeOihw } from "./bit_onnx.ts";

const HELP = `deno task bench: time kernels and the model on this machine's WebGPU adapter, beside peers

Options:
  --model ARCH     procedural architecture when no --weights: r101x3 (default), r50x1, r152x4, tiny-derm
  --weights FILE   time this safetensors file instead of procedural weights (no whole-model peers)
  --preset P       derm (default) or bit
  --size N         input size (default 448 for derm, 224 for bit)
  --batch N        images per forward pass for the latency figures (default 1)
  --batches LIST   batches for the throughput table (default 1,2,4,8,16; --quick 1,2)
  --repeats K      timed forward passes after the warm-up (default 3)
  --kernel-size N  input size whose R101x3 shapes the kernel table uses (default 448; --quick 224)
  --kernel-batch N batch of the kernel shapes (default 1)
  --budget MS      wall-clock budget per timed figure (default 3000; --quick 800; --tiny 150)
  --quick          r50x1 at 224, a reduced R101x3 kernel set at 224, 2 repeats: under 5 minutes
  --tiny           tiny-derm at 64, reduced R101x3 kernel set at 64: the JSON schema test's mode
  --no-kernels     skip the kernel table
  --no-peers       skip ONNX Runtime Web and TF.js
  --no-profile     skip the per-layer timestamp profile
  --svg FILE       write the chart there (default $TMPDIR/derm-webgpu-bench/bench.svg)
  --json           print the figures as JSON on stdout instead of tables
  --help           show this help`;

interface LayerFigure {
  label: string;
  ms: number;
  gflops?: number;
}

/** One engine's figures on one shape. */
interface EngineFigure {
  ms: number;
  gpuMs?: number;
  wallMs: number;
  gflops: number;
  gbps: number;
  /** Share of the measured FMA roof and of the copy bandwidth roof. */
  flopShare: number;
  byteShare: number;
  timing: "gpu-timestamps" | "wall-amortised";
  maxRelError: number;
  /** Our wall ms over this engine's wall ms (> 1: this engine is faster). */
  oursOverThis?: number;
}

interface KernelRow {
  label: string;
  kind: string;
  count: number;
  flop: number;
  bytes: number;
  engines: Record<string, EngineFigure>;
  skipped?: Record<string, string>;
}

const TOLERANCE = 1e-4;

function figure(t: Timing, flop: number, bytes: number, roof: Roofline, error: number): EngineFigure {
  const ms = t.gpuMs ?? t.wallMs;
  return {
    ms,
    ...(t.gpuMs !== undefined ? { gpuMs: t.gpuMs } : {}),
    wallMs: t.wallMs,
    gflops: flop / (ms * 1e6),
    gbps: bytes / (ms * 1e6),
    flopShare: flop / (ms * 1e6) / roof.gflops,
    byteShare: bytes / (ms * 1e6) / roof.gbps,
    timing: t.gpuMs !== undefined ? "gpu-timestamps" : "wall-amortised",
    maxRelError: error,
  };
}

function errorText(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0].slice(0, 300);
}

/** The reduced kernel set of --quick: per op kind (and conv kernel/stride) the cheapest shape. */
function reducedSet(shapes: OpShape[]): OpShape[] {
  const best = new Map<string, OpShape>();
  for (const s of shapes) {
    const key = s.node.op === "conv2d" ? `conv${s.node.kernel}/${s.node.stride}` : s.kind;
    const old = best.get(key);
    if (!old || s.flop < old.flop) best.set(key, s);
  }
  return shapes.filter((s) => [...best.values()].includes(s));
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      weights: { type: "string" },
      preset: { type: "string", default: "derm" },
      size: { type: "string" },
      batch: { type: "string", default: "1" },
      batches: { type: "string" },
      repeats: { type: "string" },
      "kernel-size": { type: "string" },
      "kernel-batch": { type: "string", default: "1" },
      budget: { type: "string" },
      quick: { type: "boolean", default: false },
      tiny: { type: "boolean", default: false },
      "no-kernels": { type: "boolean", default: false },
      "no-peers": { type: "boolean", default: false },
      "no-profile": { type: "boolean", default: false },
      svg: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const quick = values.quick;
  const tiny = values.tiny;
  const preset = values.preset as BitPreset;
  const model = values.model ?? (tiny ? "tiny-derm" : quick ? "r50x1" : "r101x3");
  const size = Number(values.size ?? (tiny ? 64 : quick ? 224 : preset === "derm" ? 448 : 224));
  const batch = Number(values.batch);
  const repeats = Number(values.repeats ?? (quick || tiny ? 2 : 3));
  const budgetMs = Number(values.budget ?? (tiny ? 150 : quick ? 800 : 3000));
  const batches = (values.batches ?? (quick || tiny ? "1,2" : "1,2,4,8,16")).split(",").map(Number);
  const kernelSize = Number(values["kernel-size"] ?? (tiny ? 64 : quick ? 224 : 448));
  const kernelBatch = Number(values["kernel-batch"]);
  const withPeers = !values["no-peers"];
  const log = (line: string) => !values.json && console.error(line);
  const timing = { budgetMs };

  let peakRss = Deno.memoryUsage().rss;
  const sampler = setInterval(() => peakRss = Math.max(peakRss, Deno.memoryUsage().rss), 50);
  const gpu = await acquireGpu({ timestamps: true });
  const result: Record<string, unknown> = {
    adapter: gpu.adapterInfo.description,
    backend: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default",
    date: new Date().toISOString().slice(0, 10),
    command: `deno task bench ${args.join(" ")}`.trim(),
    mode: tiny ? "tiny" : quick ? "quick" : "full",
    timestampQuery: gpu.features.has("timestamp-query"),
  };
  const peers: Record<string, { version?: string; status: string; reason?: string }> = {};
  result.peers = peers;
  try {
    // Peers first load lazily, so that a missing package only disables that peer.
    const ort = withPeers
      ? await import("./peers_ort.ts").then((m) => {
        peers.ort = { version: m.ORT_VERSION, status: "ok" };
        return m;
      }, (e) => {
        peers.ort = { status: "unavailable", reason: errorText(e) };
        return undefined;
      })
      : undefined;
    const tfjs = withPeers
      ? await import("./peers_tfjs.ts").then(async (m) => {
        await m.initTfjs();
        peers.tfjs = { version: m.TFJS_VERSION, status: "ok" };
        return m;
      }).catch((e) => {
        peers.tfjs = { status: "unavailable", reason: errorText(e) };
        return undefined;
      })
      : undefined;

    log(`adapter: ${result.adapter} (backend ${result.backend})`);
    const roof = await measureRoofline(gpu.device, timing);
    result.roofline = roof;
    log(`roofline: ${roof.gflops.toFixed(1)} GFLOP/s FMA, ${roof.gbps.toFixed(2)} GB/s copy`);

    // ---- kernels ----
    const kernelRows: KernelRow[] = [];
    const matmulRows: KernelRow[] = [];
    if (!values["no-kernels"]) {
      const checks = await checkOurKernels(gpu);
      result.kernelChecks = checks.map((c) => ({ label: c.label, maxRelError: c.error }));
      const badKinds = new Set(
        checks.filter((c) => !(c.error <= TOLERANCE)).map((c) => c.label.split(" ")[0]),
      );
      const kernelArch = PROCEDURAL_ARCHITECTURES["r101x3"];
      let shapes = distinctShapes(kernelArch, { preset, size: kernelSize, batch: kernelBatch });
      if (quick || tiny) shapes = reducedSet(shapes);
      result.kernelShapes = { architecture: "r101x3", size: kernelSize, batch: kernelBatch };
      for (const op of shapes) {
        log(`kernel ${op.label}`);
        const row: KernelRow = {
          label: op.label,
          kind: op.kind,
          count: op.count,
          flop: op.flop,
          bytes: op.bytes,
          engines: {},
        };
        const skipped: Record<string, string> = {};
        kernelRows.push(row);
        if (badKinds.has(op.label.split(" ")[0])) {
          skipped.ours = "did not match its float64 reference on the small cases";
          row.skipped = skipped;
          continue;
        }
        const p = await buildOpPlan(gpu, op);
        let ours: Float32Array;
        try {
          const inputs = opInputs(op);
          ours = await runOp(gpu.device, p, inputs);
          row.engines.ours = figure(
            await timeOp(gpu.device, p, timing),
            op.flop,
            op.bytes,
            roof,
            checks.reduce((a, c) => c.label.startsWith(op.kind.split("_")[0]) ? Math.max(a, c.error) : a, 0),
          );
          if (op.node.op === "conv2d" && (ort || tfjs)) {
            await peerConv(op, inputs, ours, row, skipped, roof, timing, ort, tfjs);
            if (op.node.kernel === 1 && op.node.stride === 1) {
              const mm: KernelRow = {
                ...row,
                label: `matmul ${op.input[0] * op.input[1] * op.input[2]}x${op.input[3]} @ ${op.input[3]}x${
                  op.output[3]
                }`,
                kind: "matmul",
                engines: { ours: row.engines.ours },
              };
              const mmSkipped: Record<string, string> = {};
              await peerMatMul(op, inputs, ours, mm, mmSkipped, roof, timing, ort, tfjs);
              if (Object.keys(mmSkipped).length) mm.skipped = mmSkipped;
              matmulRows.push(mm);
            }
          }
        } finally {
          p.dispose();
        }
        if (Object.keys(skipped).length) row.skipped = skipped;
      }
      result.kernels = kernelRows;
      result.matmul = matmulRows;
    }

    // ---- whole model ----
    await modelFigures(gpu, result, {
      model,
      weights: values.weights,
      preset,
      size,
      batch,
      repeats,
      batches,
      profile: !values["no-profile"],
      timing,
      log,
      ort,
      tfjs,
    });

    result.peakRssBytes = peakRss;
    const svgPath = values.svg ?? `${Deno.env.get("TMPDIR") ?? "/tmp"}/derm-webgpu-bench/bench.svg`;
    const engines = ["ours", "ort", "tfjs"];
    const svg = benchSvg(
      `derm-webgpu bench: ${result.adapter} (${result.backend}), ${result.date}`,
      (result.layers as LayerFigure[] | undefined) ?? [],
      ["ours", "ONNX Runtime Web", "TF.js"],
      kernelRows.filter((r) => r.kind === "conv2d").map((r) => ({
        label: r.label,
        values: engines.map((e) => r.engines[e]?.gflops),
      })),
    );
    await Deno.mkdir(svgPath.replace(/\/[^/]*$/, "") || ".", { recursive: true });
    await Deno.writeTextFile(svgPath, svg);
    result.svg = svgPath;
    if (values.json) console.log(JSON.stringify(result, null, 2));
    else printTables(result);
  } finally {
    clearInterval(sampler);
    gpu.destroy();
  }
  return 0;
}

type OrtModule = typeof import("./peers_ort.ts");
type TfjsModule = typeof import("./peers_tfjs.ts");

async function peerConv(
  op: OpShape,
  inputs: ReturnType<typeof opInputs>,
  ours: Float32Array,
  row: KernelRow,
  skipped: Record<string, string>,
  roof: Roofline,
  timing: { budgetMs: number },
  ort: OrtModule | undefined,
  tfjs: TfjsModule | undefined,
): Promise<void> {
  const node = op.node as Extract<BitNode, { op: "conv2d" }>;
  const [n, h, w, cin] = op.input;
  const [, oh, ow, cout] = op.output;
  const k = node.kernel;
  if (ort) {
    try {
      const bytes = encodeOnnxModel({
        nodes: [{
          op: "Conv",
          inputs: ["x", "w"],
          outputs: ["y"],
          attributes: {
            kernel_shape: { ints: [k, k] },
            strides: { ints: [node.stride, node.stride] },
            pads: { ints: [node.pad, node.pad, node.pad, node.pad] },
          },
        }],
        initializers: [{
          name: "w",
          dims: [cout, cin, k, k],
          data: ort.hwioToOihw(inputs.w!, k, k, cin, cout),
        }],
        inputs: [{ name: "x", dims: [n, cin, h, w] }],
        outputs: [{ name: "y", dims: [n, cout, oh, ow] }],
      });
      const m = await ort.OrtModel.create(bytes, [{
        name: "x",
        dims: [n, cin, h, w],
        data: ort.nhwcToNchw(inputs.x, n, h, w, cin),
      }], "y");
      try {
        const output = ort.nchwToNhwc(await m.run(), n, oh, ow, cout);
        await recordPeer("ort", output, ours, () => m.time(timing), { op, row, skipped, roof });
      } finally {
        await m.dispose();
      }
    } catch (e) {
      skipped.ort = errorText(e);
    }
  }
  if (tfjs) {
    try {
      const x = tfjs.tfTensor(inputs.x, op.input);
      const wt = tfjs.tfTensor(inputs.w!, [k, k, cin, cout]);
      try {
        const { output, timing: t } = await tfjs.runAndTimeTfjs(
          () => tfjs.tfConv(x, wt, node.stride, node.pad),
          timing,
        );
        await recordPeer("tfjs", output, ours, () => Promise.resolve(t), { op, row, skipped, roof });
      } finally {
        x.dispose();
        wt.dispose();
      }
    } catch (e) {
      skipped.tfjs = errorText(e);
    }
  }
}

async function peerMatMul(
  op: OpShape,
  inputs: ReturnType<typeof opInputs>,
  ours: Float32Array,
  row: KernelRow,
  skipped: Record<string, string>,
  roof: Roofline,
  timing: { budgetMs: number },
  ort: OrtModule | undefined,
  tfjs: TfjsModule | undefined,
): Promise<void> {
  const m = op.input[0] * op.input[1] * op.input[2];
  const kdim = op.input[3];
  const ncol = op.output[3];
  if (ort) {
    try {
      const bytes = encodeOnnxModel({
        nodes: [{ op: "MatMul", inputs: ["a", "b"], outputs: ["y"] }],
        initializers: [{ name: "b", dims: [kdim, ncol], data: inputs.w! }],
        inputs: [{ name: "a", dims: [m, kdim] }],
        outputs: [{ name: "y", dims: [m, ncol] }],
      });
      const model = await ort.OrtModel.create(bytes, [{ name: "a", dims: [m, kdim], data: inputs.x }], "y");
      try {
        await recordPeer("ort", await model.run(), ours, () => model.time(timing), {
          op,
          row,
          skipped,
          roof,
        });
      } finally {
        await model.dispose();
      }
    } catch (e) {
      skipped.ort = errorText(e);
    }
  }
  if (tfjs) {
    try {
      const a = tfjs.tfTensor(inputs.x, [m, kdim]);
      const b = tfjs.tfTensor(inputs.w!, [kdim, ncol]);
      try {
        const { output, timing: t } = await tfjs.runAndTimeTfjs(() => tfjs.tfMatMul(a, b), timing);
        await recordPeer("tfjs", output, ours, () => Promise.resolve(t), { op, row, skipped, roof });
      } finally {
        a.dispose();
        b.dispose();
      }
    } catch (e) {
      skipped.tfjs = errorText(e);
    }
  }
}

/**
 * Counts a peer's figure only when its output agrees with ours (timing it only then), else records why
 * the peer was skipped for this shape.
 */
async function recordPeer(
  engine: "ort" | "tfjs",
  output: ArrayLike<number>,
  ours: Float32Array,
  time: () => Promise<Timing>,
  at: { op: OpShape; row: KernelRow; skipped: Record<string, string>; roof: Roofline },
): Promise<void> {
  const error = relativeMaxError(output, ours);
  if (!(error <= TOLERANCE)) {
    at.skipped[engine] = `output differs from ours: max rel error ${error}`;
    return;
  }
  at.row.engines[engine] = withRatio(
    figure(await time(), at.op.flop, at.op.bytes, at.roof, error),
    at.row.engines.ours,
  );
}

function withRatio(f: EngineFigure, ours: EngineFigure | undefined): EngineFigure {
  return ours ? { ...f, oursOverThis: ours.wallMs / f.wallMs } : f;
}

async function modelFigures(
  gpu: Gpu,
  result: Record<string, unknown>,
  o: {
    model: string;
    weights?: string;
    preset: BitPreset;
    size: number;
    batch: number;
    repeats: number;
    batches: number[];
    profile: boolean;
    timing: { budgetMs: number };
    log: (line: string) => void;
    ort?: OrtModule;
    tfjs?: TfjsModule;
  },
): Promise<void> {
  const { model, preset, size, batch, repeats, log } = o;
  let weightsPath = o.weights;
  const seed = `bench/${model}`;
  if (!weightsPath) {
    const arch = PROCEDURAL_ARCHITECTURES[model];
    if (!arch) throw new TypeError(`Unknown --model "${model}"`);
    const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/derm-webgpu-bench`;
    await Deno.mkdir(dir, { recursive: true });
    weightsPath = `${dir}/${model}-derm-naming.safetensors`;
    const exists = await Deno.stat(weightsPath).then(() => true, () => false);
    if (!exists) {
      const t = performance.now();
      const bytes = await writeSafetensorsFile(
        weightsPath,
        proceduralSource(arch, seed, { naming: "derm", preset }),
      );
      log(
        `wrote ${weightsPath} (${(bytes / 1e9).toFixed(2)} GB) in ${
          ((performance.now() - t) / 1000).toFixed(1)
        } s`,
      );
    }
  }
  log(`model ${model} at ${size}`);
  const fileBytes = (await Deno.stat(weightsPath)).size;
  const t0 = performance.now();
  const embedder = await createBitEmbedder(weightsPath, { gpu, preset, size, maxBatch: batch });
  const loadMs = performance.now() - t0;
  try {
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
    const macs = embedder.macsPerImage * batch;
    Object.assign(result, {
      model: embedder.describe(),
      weightsFile: weightsPath,
      weightsFileBytes: fileBytes,
      loadSeconds: loadMs / 1000,
      loadMBps: fileBytes / 1e6 / (loadMs / 1000),
      batch,
      size,
      warmupSeconds: warmMs / 1000,
      forwardSeconds: forwardMs / 1000,
      forwardRuns: runs.map((r) => r / 1000),
      imagesPerSecond: batch / (forwardMs / 1000),
      gmacPerImage: embedder.macsPerImage / 1e9,
      modelGflops: (2 * macs) / (forwardMs / 1000) / 1e9,
      gpuWeightBytes: embedder.weights.bytes,
    });
    const arch = embedder.weights.architecture;
    // Throughput: the plan alone (input already on the GPU), per batch.
    const throughput: { batch: number; ms: number; imagesPerSecond: number; activationBytes: number }[] = [];
    const throughputSkipped: Record<string, string> = {};
    let peakActivations = 0;
    for (const b of o.batches) {
      try {
        const graph = bitGraph(arch, { preset, size, batch: b });
        const plan = await buildBitPlan(gpu, graph, embedder.weights.buffers, { label: `throughput${b}` });
        try {
          const out = await plan.run({});
          if (!new Float32Array(out.get(graph.output)!).every(Number.isFinite)) {
            throw new Error("non-finite output");
          }
          const t = await timeOnGpu(gpu.device, (enc, ts) => plan.encode(enc, 0, plan.stats.steps, ts), {
            ...o.timing,
            trials: 3,
            maxRepeats: 3,
          });
          const ms = t.gpuMs ?? t.wallMs;
          throughput.push({
            batch: b,
            ms,
            imagesPerSecond: b / (ms / 1000),
            activationBytes: plan.stats.activationBytes,
          });
          peakActivations = Math.max(peakActivations, plan.stats.activationBytes);
          log(`batch ${b}: ${ms.toFixed(1)} ms`);
        } finally {
          plan.dispose();
        }
      } catch (e) {
        throughputSkipped[String(b)] = errorText(e);
      }
    }
    result.throughput = throughput;
    if (Object.keys(throughputSkipped).length) result.throughputSkipped = throughputSkipped;
    const graph = bitGraph(arch, { preset, size, batch: 1 });
    const plan = await buildBitPlan(gpu, graph, embedder.weights.buffers, { label: "profile" });
    try {
      peakActivations = Math.max(peakActivations, plan.stats.activationBytes);
      result.gpuActivationBytes = plan.stats.activationBytes;
      result.peakGpuBytes = embedder.weights.bytes + peakActivations;
      // Our embedding of a seeded input, for the whole-model peers.
      const [n, s, , c] = graph.tensors.get(graph.input)!;
      const input = new Float32Array(n * s * s * c);
      let state = 12345;
      for (let i = 0; i < input.length; i++) {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        input[i] = i % c === 3 ? 0 : state / 2 ** 32;
      }
      const ours = new Float32Array((await plan.run({ [graph.input]: input })).get(graph.output)!);
      const latency = await timeOnGpu(gpu.device, (enc, ts) => plan.encode(enc, 0, plan.stats.steps, ts), {
        ...o.timing,
        trials: 3,
        maxRepeats: 3,
      });
      result.latencyBatch1 = {
        ms: latency.gpuMs ?? latency.wallMs,
        wallMs: latency.wallMs,
        timing: latency.gpuMs !== undefined ? "gpu-timestamps" : "wall-amortised",
      };
      if (o.profile && gpu.features.has("timestamp-query")) {
        const layers = await plan.profile();
        const flopsOf = convFlops(graph.nodes, graph.tensors);
        const figures: LayerFigure[] = layers.map((l) => {
          const flops = flopsOf.get(l.label.split("/")[0]);
          return { ...l, gflops: flops && l.ms > 0 ? flops / (l.ms / 1000) / 1e9 : undefined };
        });
        result.layers = figures;
        result.byStage = sumBy(figures, (l) => l.label.split(".")[0].split("/")[0]);
        result.byKernel = sumBy(figures, (l) => l.label.split("/")[1]);
        const convMs = figures.filter((l) => l.gflops !== undefined).reduce((a, l) => a + l.ms, 0);
        const convFlopsTotal = [...flopsOf.values()].reduce((a, b) => a + b, 0);
        result.convGflops = convFlopsTotal / (convMs / 1000) / 1e9;
        result.convShapes = convShapeTable(graph.nodes, graph.tensors, figures);
        result.profiledTotalSeconds = figures.reduce((a, l) => a + l.ms, 0) / 1000;
      }
      if ((o.ort || o.tfjs) && !o.weights) {
        result.modelPeers = await modelPeers(
          graph,
          arch,
          seed,
          preset,
          input,
          ours,
          result.latencyBatch1 as { wallMs: number },
          o,
        );
      }
    } finally {
      plan.dispose();
    }
  } finally {
    embedder.dispose();
  }
}

async function modelPeers(
  graph: ReturnType<typeof bitGraph>,
  arch: BitArchitecture,
  seed: string,
  preset: BitPreset,
  input: Float32Array,
  ours: Float32Array,
  oursLatency: { wallMs: number },
  o: { timing: { budgetMs: number }; log: (line: string) => void; ort?: OrtModule; tfjs?: TfjsModule },
): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const raw = new Map<string, Float32Array>();
  const source = proceduralSource(arch, seed, { naming: "timm", preset });
  for await (const chunk of source.stream()) {
    raw.set(chunk.entry.name, new Float32Array(chunk.bytes.slice().buffer));
  }
  source.close();
  const [n, s, , c] = graph.tensors.get(graph.input)!;
  const rgb = new Float32Array(n * s * s * 3); // NHWC, 3 channels
  for (let p = 0; p < n * s * s; p++) for (let ch = 0; ch < 3; ch++) rgb[p * 3 + ch] = input[p * c + ch];
  const eps = PRESETS[preset].weightStandardizationEps;
  const timing = { ...o.timing, trials: 3, maxRepeats: 3 };
  if (o.ort) {
    o.log("whole model on ONNX Runtime Web");
    try {
      const t = performance.now();
      const bytes = encodeOnnxModel(bitOnnxModel(graph, raw, eps));
      const m = await o.ort.OrtModel.create(bytes, [{
        name: "x",
        dims: [n, 3, s, s],
        data: o.ort.nhwcToNchw(rgb, n, s, s, 3),
      }], "embedding");
      const loadSeconds = (performance.now() - t) / 1000;
      try {
        const error = relativeMaxError(await m.run(), ours);
        if (!(error <= TOLERANCE)) {
          out.ort = { status: "mismatch", maxRelError: error, onnxBytes: bytes.length };
        } else {
          const tm = await m.time(timing);
          out.ort = {
            status: "ok",
            maxRelError: error,
            ms: tm.wallMs,
            loadSeconds,
            onnxBytes: bytes.length,
            oursOverThis: oursLatency.wallMs / tm.wallMs,
          };
        }
      } finally {
        await m.dispose();
      }
    } catch (e) {
      out.ort = { status: "failed", reason: errorText(e) };
    }
  }
  if (o.tfjs) {
    o.log("whole model on TF.js");
    try {
      const hwio = new Map<string, { data: Float32Array; dims: number[] }>();
      for (const [name, w] of raw) {
        const shape = source.tensors.get(name)!.shape;
        if (shape.length === 4) {
          const [co, ci, kh, kw] = shape;
          const std = standardizeOihw(w, co, eps);
          const t = new Float32Array(w.length);
          for (let oc = 0; oc < co; oc++) {
            for (let i = 0; i < ci; i++) {
              for (let y = 0; y < kh; y++) {
                for (let x = 0; x < kw; x++) {
                  t[((y * kw + x) * ci + i) * co + oc] = std[((oc * ci + i) * kh + y) * kw + x];
                }
              }
            }
          }
          hwio.set(name, { data: t, dims: [kh, kw, ci, co] });
        } else hwio.set(name, { data: w, dims: [w.length] });
      }
      const fwd = o.tfjs.tfjsBitForward({ ...graph }, hwio);
      const x = o.tfjs.tfTensor(rgb, [n, s, s, 3]);
      try {
        const { output, timing: tm } = await o.tfjs.runAndTimeTfjs(() => fwd.forward(x), timing);
        const error = relativeMaxError(output, ours);
        out.tfjs = error <= TOLERANCE
          ? { status: "ok", maxRelError: error, ms: tm.wallMs, oursOverThis: oursLatency.wallMs / tm.wallMs }
          : { status: "mismatch", maxRelError: error };
      } finally {
        x.dispose();
        fwd.dispose();
      }
    } catch (e) {
      out.tfjs = { status: "failed", reason: errorText(e) };
    }
  }
  return out;
}

function convFlops(
  nodes: readonly BitNode[],
  tensors: ReadonlyMap<string, readonly number[]>,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const node of nodes) {
    if (node.op !== "conv2d") continue;
    const [n, oh, ow, cout] = tensors.get(node.output)!;
    const cin = tensors.get(node.input)![3];
    out.set(node.name, 2 * n * oh * ow * cout * node.kernel * node.kernel * cin);
  }
  return out;
}

function sumBy(figures: LayerFigure[], key: (l: LayerFigure) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of figures) out[key(l)] = (out[key(l)] ?? 0) + l.ms;
  return out;
}

function convShapeTable(
  nodes: readonly BitNode[],
  tensors: ReadonlyMap<string, readonly number[]>,
  figures: LayerFigure[],
): { shape: string; count: number; msEach: number; gflops: number }[] {
  const byLabel = new Map(figures.map((f) => [f.label.split("/")[0], f]));
  const groups = new Map<string, { count: number; ms: number; flops: number }>();
  for (const node of nodes) {
    if (node.op !== "conv2d") continue;
    const [, h, w, cin] = tensors.get(node.input)!;
    const [n, oh, ow, cout] = tensors.get(node.output)!;
    const key = `${node.kernel}x${node.kernel}/${node.stride} ${h}x${w}x${cin} -> ${oh}x${ow}x${cout}`;
    const f = byLabel.get(node.name);
    if (!f) continue;
    const g = groups.get(key) ?? { count: 0, ms: 0, flops: 0 };
    g.count++;
    g.ms += f.ms;
    g.flops += 2 * n * oh * ow * cout * node.kernel * node.kernel * cin;
    groups.set(key, g);
  }
  return [...groups].map(([shape, g]) => ({
    shape,
    count: g.count,
    msEach: g.ms / g.count,
    gflops: g.flops / (g.ms / 1000) / 1e9,
  }));
}

function printKernelTables(r: Record<string, unknown>): void {
  const f = (x: unknown, d = 2) => (typeof x === "number" ? x.toFixed(d) : String(x));
  const roof = r.roofline as Roofline;
  console.log(`adapter: ${r.adapter} (backend ${r.backend}), ${r.date}; command: ${r.command}`);
  console.log(
    `roofline: ${f(roof.gflops, 1)} GFLOP/s (vec4 FMA loop), ${f(roof.gbps)} GB/s (copy), ` +
      `${roof.timestamps ? "GPU timestamps" : "wall time"}`,
  );
  const peers = r.peers as Record<string, { version?: string; status: string; reason?: string }>;
  for (const [k, v] of Object.entries(peers)) {
    console.log(
      `peer ${k}: ${v.status}${v.version ? ` ${v.version}` : ""}${v.reason ? ` (${v.reason})` : ""}`,
    );
  }
  const table = (title: string, rows: KernelRow[] | undefined) => {
    if (!rows?.length) return;
    console.log(
      `\n| ${title} | x | ours ms | GFLOP/s | GB/s | % FMA roof | % BW roof | ORT ms | ours/ORT | TF.js ms | ours/TF.js |`,
    );
    console.log("|---|---|---|---|---|---|---|---|---|---|---|");
    for (const row of rows) {
      const o = row.engines.ours;
      const peer = (k: string) => {
        const e = row.engines[k];
        if (e) return `${f(e.wallMs, 1)} | ${f(e.oursOverThis)}`;
        return `- | ${row.skipped?.[k] ? "n/a" : "-"}`;
      };
      const ours = o
        ? `${f(o.ms, 2)}${o.timing === "gpu-timestamps" ? "" : " (wall)"} | ${f(o.gflops)} | ${f(o.gbps)} | ${
          f(100 * o.flopShare, 1)
        } | ${f(100 * o.byteShare, 1)}`
        : `skipped | | | |`;
      console.log(`| ${row.label} | ${row.count} | ${ours} | ${peer("ort")} | ${peer("tfjs")} |`);
    }
    const notes = rows.flatMap((row) =>
      Object.entries(row.skipped ?? {}).map(([k, v]) => `${row.label}: ${k}: ${v}`)
    );
    for (const n of [...new Set(notes)].slice(0, 8)) console.log(`  skipped ${n}`);
  };
  table("kernel shape", r.kernels as KernelRow[] | undefined);
  table("matmul (= 1x1 conv)", r.matmul as KernelRow[] | undefined);
  console.log(
    "\nours ms: GPU timestamps (median); peers and the ours/peer ratios: amortised wall ms, the same method for every engine",
  );
  const tp = r.throughput as { batch: number; ms: number; imagesPerSecond: number }[] | undefined;
  if (tp?.length) {
    console.log("\n| batch | ms per forward (GPU) | images/s |\n|---|---|---|");
    for (const t of tp) console.log(`| ${t.batch} | ${f(t.ms, 1)} | ${f(t.imagesPerSecond, 3)} |`);
  }
  const mp = r.modelPeers as Record<string, Record<string, unknown>> | undefined;
  const lat = r.latencyBatch1 as { ms: number; wallMs: number } | undefined;
  if (lat) {
    console.log(
      `\nwhole model, batch 1, input on the GPU: ${f(lat.ms, 1)} ms GPU, ${f(lat.wallMs, 1)} ms wall`,
    );
  }
  if (mp) {
    for (const [k, v] of Object.entries(mp)) {
      console.log(
        `whole model on ${k}: ${v.status}${
          v.ms !== undefined ? `, ${f(v.ms, 1)} ms wall, ours/${k} ${f(v.oursOverThis)}` : ""
        }${
          v.maxRelError !== undefined
            ? `, max rel error vs ours ${(v.maxRelError as number).toExponential(2)}`
            : ""
        }${v.reason ? ` (${v.reason})` : ""}`,
      );
    }
  }
  if (r.peakGpuBytes) {
    console.log(`peak GPU memory of our allocations: ${f((r.peakGpuBytes as number) / 2 ** 20, 0)} MiB`);
  }
  console.log(`chart: ${r.svg}\n`);
}

function printTables(r: Record<string, unknown>): void {
  printKernelTables(r);
  const f = (x: unknown, d = 2) => (typeof x === "number" ? x.toFixed(d) : String(x));
  console.log(`adapter: ${r.adapter} (backend ${r.backend}), ${r.date}`);
  console.log(`model: ${r.model}`);
  console.log("");
  console.log("| figure | value |\n|---|---|");
  console.log(
    `| weight load (${((r.weightsFileBytes as number) / 1e9).toFixed(2)} GB file to GPU, standardised) | ${
      f(r.loadSeconds)
    } s (${f(r.loadMBps, 0)} MB/s) |`,
  );
  console.log(`| first forward (plan build + run), batch ${r.batch} | ${f(r.warmupSeconds)} s |`);
  console.log(
    `| forward wall time, batch ${r.batch} (median of ${(r.forwardRuns as number[]).length}) | ${
      f(r.forwardSeconds)
    } s |`,
  );
  console.log(`| images/s | ${f(r.imagesPerSecond, 3)} |`);
  console.log(`| whole model | ${f(r.gmacPerImage, 1)} GMAC/image, ${f(r.modelGflops)} GFLOP/s |`);
  if (r.convGflops !== undefined) {
    console.log(`| convolutions (GPU timestamps) | ${f(r.convGflops)} GFLOP/s |`);
  }
  console.log(
    `| GPU memory: weights + activations | ${f((r.gpuWeightBytes as number) / 2 ** 20, 0)} MiB + ${
      f(((r.gpuActivationBytes as number) ?? 0) / 2 ** 20, 0)
    } MiB |`,
  );
  console.log(`| peak resident memory (process) | ${f((r.peakRssBytes as number) / 2 ** 20, 0)} MiB |`);
  if (r.byStage) {
    console.log("\n| stage | GPU ms |\n|---|---|");
    for (const [k, v] of Object.entries(r.byStage as Record<string, number>)) {
      console.log(`| ${k} | ${f(v, 1)} |`);
    }
    console.log("\n| kernel | GPU ms |\n|---|---|");
    for (const [k, v] of Object.entries(r.byKernel as Record<string, number>)) {
      console.log(`| ${k} | ${f(v, 1)} |`);
    }
    console.log("\n| convolution shape | count | ms each | GFLOP/s |\n|---|---|---|---|");
    for (const s of r.convShapes as { shape: string; count: number; msEach: number; gflops: number }[]) {
      console.log(`| ${s.shape} | ${s.count} | ${f(s.msEach, 1)} | ${f(s.gflops)} |`);
    }
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
