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
 * @module
 */
import { parseArgs } from "node:util";
import { createBitEmbedder } from "../models/bit_embedder.ts";
import { bitGraph, type BitNode, type BitPreset } from "../models/bit.ts";
import { acquireGpu } from "../engine/device.ts";
import { proceduralSource } from "../weights/procedural.ts";
import { writeSafetensorsFile } from "../weights/safetensors_write_deno.ts";
import { PROCEDURAL_ARCHITECTURES } from "../cli/weights_arg.ts";
import { buildBitPlan } from "../models/bit_plan.ts";

const HELP = `deno task bench: time the model on this machine's WebGPU adapter

Options:
  --model ARCH     procedural architecture when no --weights: r101x3 (default), r50x1, r152x4, tiny-derm
  --weights FILE   time this safetensors file instead of procedural weights
  --preset P       derm (default) or bit
  --size N         input size (default 448 for derm, 224 for bit)
  --batch N        images per forward pass (default 1)
  --repeats K      timed forward passes after the warm-up (default 3)
  --quick          r50x1 at 224, 2 repeats: a fast sanity run
  --no-profile     skip the per-layer timestamp profile
  --json           print the figures as JSON on stdout instead of tables
  --help           show this help`;

interface LayerFigure {
  label: string;
  ms: number;
  gflops?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
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
      repeats: { type: "string" },
      quick: { type: "boolean", default: false },
      "no-profile": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const preset = values.preset as BitPreset;
  const model = values.model ?? (values.quick ? "r50x1" : "r101x3");
  const size = Number(values.size ?? (values.quick ? 224 : preset === "derm" ? 448 : 224));
  const batch = Number(values.batch);
  const repeats = Number(values.repeats ?? (values.quick ? 2 : 3));
  const log = (line: string) => !values.json && console.log(line);

  let peakRss = Deno.memoryUsage().rss;
  const sampler = setInterval(() => peakRss = Math.max(peakRss, Deno.memoryUsage().rss), 50);
  const gpu = await acquireGpu({ timestamps: true });
  try {
    let weightsPath = values.weights;
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
          proceduralSource(arch, `bench/${model}`, { naming: "derm", preset }),
        );
        log(
          `wrote ${weightsPath} (${(bytes / 1e9).toFixed(2)} GB) in ${
            ((performance.now() - t) / 1000).toFixed(1)
          } s`,
        );
      }
    }
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
      const result: Record<string, unknown> = {
        adapter: gpu.adapterInfo.description,
        backend: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default",
        date: new Date().toISOString().slice(0, 10),
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
      };
      if (!values["no-profile"] && gpu.features.has("timestamp-query")) {
        const graph = bitGraph(embedder.weights.architecture, { preset, size, batch });
        const plan = await buildBitPlan(gpu, graph, embedder.weights.buffers, { label: "profile" });
        try {
          await plan.run({});
          result.gpuActivationBytes = plan.stats.activationBytes;
          const layers = await plan.profile();
          const flopsOf = convFlops(graph.nodes, graph.tensors);
          const figures: LayerFigure[] = layers.map((l) => {
            const flops = flopsOf.get(l.label.split("/")[0]);
            return { ...l, gflops: flops ? flops / (l.ms / 1000) / 1e9 : undefined };
          });
          result.layers = figures;
          result.byStage = sumBy(figures, (l) => l.label.split(".")[0].split("/")[0]);
          result.byKernel = sumBy(figures, (l) => l.label.split("/")[1]);
          const convMs = figures.filter((l) => l.gflops !== undefined).reduce((a, l) => a + l.ms, 0);
          const convFlopsTotal = [...flopsOf.values()].reduce((a, b) => a + b, 0);
          result.convGflops = convFlopsTotal / (convMs / 1000) / 1e9;
          result.convShapes = convShapeTable(graph.nodes, graph.tensors, figures);
          result.profiledTotalSeconds = figures.reduce((a, l) => a + l.ms, 0) / 1000;
        } finally {
          plan.dispose();
        }
      }
      result.peakRssBytes = peakRss;
      if (values.json) console.log(JSON.stringify(result, null, 2));
      else printTables(result);
    } finally {
      embedder.dispose();
    }
  } finally {
    clearInterval(sampler);
    gpu.destroy();
  }
  return 0;
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

function printTables(r: Record<string, unknown>): void {
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
