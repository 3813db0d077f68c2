/**
 * `deno task bench`: kernels and a whole model on this machine's WebGPU adapter, beside ONNX Runtime Web and
 * TF.js, for any model of the registry (`models/registry.ts`).
 *
 * - Roofline (`roofline.ts`): attainable FMA throughput and copy bandwidth of the adapter.
 * - Kernel table (`kernel_table.ts`): every distinct node shape of the chosen model's graph, each through a
 *   one-node graph lowered with `LOWERINGS` (`kernels_bench.ts`), checked against its float64 reference,
 *   timed, then the same node on the peers; FLOP and byte formulas in `op_table.ts`.
 * - Whole model (`model_bench.ts`): load, forward, throughput per batch, per-layer profile, and the whole
 *   graph on the peers.
 * Tables print as each part is measured; `--json` prints everything as JSON at the end instead.
 * @module
 */
import { parseArgs } from "node:util";
import { acquireGpu } from "../engine/device.ts";
import { PipelineCache } from "../engine/plan.ts";
import { KERNELS } from "../kernels/registry.ts";
import { defineModel, openWeights, PROCEDURAL_MODELS, proceduralWeights } from "../models/registry.ts";
import { writeSafetensorsFile } from "../weights/safetensors_write_deno.ts";
import { distinctShapes, type NodeShape, reducedSet } from "./kernels_bench.ts";
import { errorText, type KernelRow, kernelTable } from "./kernel_table.ts";
import { type LayerFigure, modelFigures } from "./model_bench.ts";
import { printHeader, printKernelTables, printModelTables } from "./report.ts";
import { measureRoofline } from "./roofline.ts";
import { benchSvg } from "./svg.ts";

const HELP = `deno task bench: time kernels and a model on this machine's WebGPU adapter, beside peers

Options:
  --model NAME      procedural model (${Object.keys(PROCEDURAL_MODELS).join(", ")});
                    default r101x3 (--quick: r50x1, --tiny: tiny-derm)
  --weights FILE    time this safetensors file (any family the registry knows) instead of procedural weights
  --preset P        the model's preset (BiT: derm or bit; default: the file's)
  --size N          input size (default: the model's, 448 for Derm Foundation's R101x3, 224 for ResNet-50)
  --batch N         images per forward pass for the wall-time figures (default 1)
  --batches LIST    batches for the throughput table (default 1,2,4,8,16; --quick 1,2)
  --repeats K       timed forward passes after the warm-up (default 3)
  --kernel-model M  procedural model whose node shapes the kernel table uses (default: --model, else the
                    --weights file's, else r101x3)
  --kernel-size N   input size of the kernel shapes (default: the kernel model's; --quick 224, --tiny 64)
  --kernel-batch N  batch of the kernel shapes (default 1)
  --shapes LIST     only kernel shapes whose label contains one of these (comma-separated) substrings
  --kernels LIST    force these kernel variants wherever they apply (--list-kernels names them)
  --list-kernels    print every kernel variant name and exit
  --budget MS       wall-clock budget per timed figure (default 3000; --quick 800; --tiny 150)
  --peer-timeout S  deadline of each whole-model peer (default 900; --quick 300; --tiny 120)
  --quick           r50x1 at 224, a reduced kernel set (one shape per op and conv kernel/stride) at 224
  --tiny            tiny-derm at 64, reduced kernel set at 64: the JSON schema test's mode
  --no-kernels      skip the kernel table
  --no-peers        skip ONNX Runtime Web and TF.js
  --no-profile      skip the per-layer timestamp profile
  --no-model        skip the whole model (kernel table only)
  --svg FILE        write the chart there (default $TMPDIR/derm-webgpu-bench/bench.svg)
  --json            print the figures as JSON on stdout instead of tables
  --json-out FILE   also write the JSON to FILE (with the tables on stdout)
  --help            show this help`;

/** Full float64 references up to this many FLOP per shape; sampled output rows beyond. */
const REFERENCE_BUDGET_FLOP = 4e8;

/** The cached safetensors file of a procedural model (written on first use). */
async function proceduralFile(name: string, log: (line: string) => void): Promise<string> {
  const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/derm-webgpu-bench`;
  await Deno.mkdir(dir, { recursive: true });
  const seed = `bench/${name}`;
  const path = `${dir}/${name}.safetensors`;
  if (!(await Deno.stat(path).then(() => true, () => false))) {
    const t = performance.now();
    const bytes = await writeSafetensorsFile(`${path}.partial`, proceduralWeights(name, seed));
    await Deno.rename(`${path}.partial`, path);
    log(
      `wrote ${path} (${(bytes / 1e9).toFixed(2)} GB, seed "${seed}") in ${
        ((performance.now() - t) / 1000).toFixed(1)
      } s`,
    );
  }
  return path;
}

function list(value: string | undefined): string[] {
  return (value ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      weights: { type: "string" },
      preset: { type: "string" },
      size: { type: "string" },
      batch: { type: "string", default: "1" },
      batches: { type: "string" },
      repeats: { type: "string" },
      "kernel-model": { type: "string" },
      "kernel-size": { type: "string" },
      "kernel-batch": { type: "string", default: "1" },
      shapes: { type: "string" },
      kernels: { type: "string" },
      "list-kernels": { type: "boolean", default: false },
      budget: { type: "string" },
      "peer-timeout": { type: "string" },
      quick: { type: "boolean", default: false },
      tiny: { type: "boolean", default: false },
      "no-kernels": { type: "boolean", default: false },
      "no-peers": { type: "boolean", default: false },
      "no-profile": { type: "boolean", default: false },
      "no-model": { type: "boolean", default: false },
      svg: { type: "string" },
      json: { type: "boolean", default: false },
      "json-out": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values["list-kernels"]) {
    for (const name of KERNELS.keys()) console.log(name);
    return 0;
  }
  const { quick, tiny } = values;
  const log = (line: string) => console.error(line);
  const forced = list(values.kernels);
  for (const name of forced) {
    if (!KERNELS.has(name)) {
      throw new TypeError(`Cannot force kernel "${name}": expected one of ${[...KERNELS.keys()].join(", ")}`);
    }
  }
  for (const [flag, name] of [["--model", values.model], ["--kernel-model", values["kernel-model"]]]) {
    if (name !== undefined && !Object.hasOwn(PROCEDURAL_MODELS, name)) {
      throw new TypeError(
        `Cannot bench ${flag} "${name}": expected one of ${Object.keys(PROCEDURAL_MODELS).join(", ")}`,
      );
    }
  }
  const model = values.model ?? (tiny ? "tiny-derm" : quick ? "r50x1" : "r101x3");
  const kernelModel = values["kernel-model"] ?? values.model ?? (values.weights ? undefined : "r101x3");
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const size = num(values.size) ?? (tiny ? 64 : quick ? 224 : undefined);
  const repeats = Number(values.repeats ?? (quick || tiny ? 2 : 3));
  const budgetMs = Number(values.budget ?? (tiny ? 150 : quick ? 800 : 3000));
  const peerTimeoutMs = 1000 * Number(values["peer-timeout"] ?? (tiny ? 120 : quick ? 300 : 900));
  const batches = list(values.batches ?? (quick || tiny ? "1,2" : "1,2,4,8,16")).map(Number);
  const kernelBatch = Number(values["kernel-batch"]);
  const withPeers = !values["no-peers"];
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
    ...(forced.length ? { forcedKernels: forced } : {}),
  };
  const peers: Record<string, { version?: string; status: string; reason?: string }> = {};
  result.peers = peers;
  try {
    // Peers load lazily, so that a missing package only disables that peer.
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
    if (!values.json) printHeader(result);

    // ---- kernels ----
    let kernelRows: KernelRow[] = [];
    if (!values["no-kernels"]) {
      const source = kernelModel ? proceduralWeights(kernelModel) : await openWeights(values.weights!);
      let definition;
      try {
        definition = defineModel(source, { preset: values.preset });
      } finally {
        await source.close();
      }
      const kernelSize = num(values["kernel-size"]) ?? (tiny ? 64 : quick ? 224 : definition.defaultSize);
      const graph = definition.graph(kernelSize, kernelBatch);
      const { shapes: all, unsupported } = distinctShapes(graph);
      let shapes: NodeShape[] = quick || tiny ? reducedSet(all) : all;
      const only = list(values.shapes);
      if (only.length) shapes = shapes.filter((s) => only.some((o) => s.label.includes(o)));
      result.kernelShapes = {
        model: kernelModel ?? values.weights,
        architecture: definition.architecture,
        size: kernelSize,
        batch: kernelBatch,
        distinct: all.length,
      };
      if (Object.keys(unsupported).length) result.kernelOpsWithoutEntry = unsupported;
      const table = await kernelTable(gpu, shapes, {
        roof,
        timing,
        forcedKernels: new Set(forced),
        referenceBudgetFlop: REFERENCE_BUDGET_FLOP,
        cache: new PipelineCache(gpu.device),
        ort,
        tfjs,
        log,
      });
      kernelRows = table.kernels;
      result.kernels = table.kernels;
      result.matmul = table.matmul;
      if (!values.json) printKernelTables(result);
    }

    // ---- whole model ----
    if (!values["no-model"]) {
      const weights = values.weights ?? await proceduralFile(model, log);
      await modelFigures(gpu, result, {
        weights,
        preset: values.preset,
        size,
        batch: Number(values.batch),
        repeats,
        batches,
        profile: !values["no-profile"],
        kernels: forced,
        timing,
        peerTimeoutMs,
        log,
        ort,
        tfjs,
      });
    }

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
    if (values["json-out"]) await Deno.writeTextFile(values["json-out"], JSON.stringify(result, null, 2));
    if (values.json) console.log(JSON.stringify(result, null, 2));
    else if (!values["no-model"]) printModelTables(result);
  } finally {
    clearInterval(sampler);
    gpu.destroy();
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
