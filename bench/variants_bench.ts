/**
 * Times each conv2d and linear kernel variant (the register-tiled defaults and the GPU-oriented block,
 * split-K and subgroup ones) on the distinct shapes of R101x3/448, ResNet-50/224 and ViT-S/16/224, each
 * forced in a one-node plan lowered by the engine's own table and checked against the float64 reference
 * before it is timed (the kernel table's machinery, `kernel_table.ts`). A variant that does not apply to
 * a shape (channel alignment, split-K where the grid is already full, subgroups the device lacks) is
 * reported as such. The `default` column is what the planner picks untuned on this adapter.
 *
 * ```
 * deno run --config deno.dev.json --allow-read --allow-write --allow-env --allow-sys bench/variants_bench.ts \
 *   [--models r101x3@448,resnet50@224,vit-s16@224] [--batch 1] [--ops conv2d,linear] [--max-shapes N]
 *   [--shapes SUBSTR,...] [--variants NAME,...] [--budget MS] [--json-out FILE]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { acquireGpu } from "../engine/device.ts";
import { PipelineCache } from "../engine/plan.ts";
import { conv2dVariants } from "../kernels/conv2d.ts";
import { conv2dBlockVariants } from "../kernels/conv2d_block.ts";
import { linearVariants } from "../kernels/linear.ts";
import { linearBlockVariants } from "../kernels/linear_block.ts";
import { defineModel, PROCEDURAL_MODELS, proceduralWeights } from "../models/registry.ts";
import { buildNodePlan, distinctShapes } from "./kernels_bench.ts";
import { errorText } from "./kernel_table.ts";
import { caseData, labelSeed, OP_BENCH } from "./op_table.ts";
import { relativeMaxError } from "./_timing.ts";

/** Max relative error for a figure to count. */
const TOLERANCE = 1e-4;

/** The variants of each op the bench forces, register-tiled first. */
const OP_VARIANTS: Record<string, string[]> = {
  conv2d: [...conv2dVariants, ...conv2dBlockVariants].map((s) => s.name),
  linear: [...linearVariants, ...linearBlockVariants].map((s) => s.name),
};

/** One cell: a variant on a shape. */
interface Cell {
  ms?: number;
  timing?: string;
  maxRelError?: number;
  /** Why there is no figure (does not apply, failed the reference check, error). */
  note?: string;
  /** The variants of the plan's steps (split-K: the GEMM and splitk_reduce). */
  steps?: string[];
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      models: { type: "string", default: "r101x3@448,resnet50@224,vit-s16@224" },
      batch: { type: "string", default: "1" },
      ops: { type: "string", default: "conv2d,linear" },
      "max-shapes": { type: "string" },
      shapes: { type: "string" },
      variants: { type: "string" },
      budget: { type: "string", default: "1500" },
      "json-out": { type: "string" },
    },
  });
  const list = (v?: string) => (v ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const ops = list(values.ops);
  const onlyVariants = list(values.variants);
  const onlyShapes = list(values.shapes);
  const batch = Number(values.batch);
  const timing = { budgetMs: Number(values.budget) };
  const gpu = await acquireGpu({ timestamps: true });
  const load = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
  const result: Record<string, unknown> = {
    adapter: gpu.adapterInfo.description,
    backend: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default",
    date: new Date().toISOString(),
    loadavgStart: load(),
    command: `bench/variants_bench.ts ${args.join(" ")}`.trim(),
  };
  console.error(`adapter: ${result.adapter} (backend ${result.backend}); load ${result.loadavgStart}`);
  const cache = new PipelineCache(gpu.device);
  const rows: Record<string, unknown>[] = [];
  for (const spec of list(values.models)) {
    const [name, sizeText] = spec.split("@");
    if (!Object.hasOwn(PROCEDURAL_MODELS, name)) {
      throw new TypeError(
        `Cannot bench model "${name}": expected one of ${Object.keys(PROCEDURAL_MODELS).join(", ")}`,
      );
    }
    const source = proceduralWeights(name);
    let definition;
    try {
      definition = defineModel(source, {});
    } finally {
      await source.close();
    }
    const size = sizeText ? Number(sizeText) : definition.defaultSize;
    let shapes = distinctShapes(definition.graph(size, batch), OP_BENCH).shapes.filter((s) =>
      ops.includes(s.op)
    );
    if (onlyShapes.length) shapes = shapes.filter((s) => onlyShapes.some((o) => s.label.includes(o)));
    if (values["max-shapes"]) shapes = shapes.slice(0, Number(values["max-shapes"]));
    for (const shape of shapes) {
      const cells: Record<string, Cell> = {};
      const names = [
        "default",
        ...OP_VARIANTS[shape.op].filter((n) => !onlyVariants.length || onlyVariants.includes(n)),
      ];
      for (const variant of names) {
        console.error(`${name}@${size} ${shape.label}: ${variant}`);
        const forced = new Set(variant === "default" ? [] : [variant]);
        try {
          const entry = OP_BENCH.get(shape.op)!;
          const data = caseData(entry, shape, labelSeed(shape.label));
          const p = await buildNodePlan(gpu, shape, data, { forcedKernels: forced, cache });
          try {
            const steps = [...p.variants];
            if (variant !== "default" && !steps.includes(variant)) {
              cells[variant] = { note: `does not apply (the plan runs ${steps.join(" + ")})` };
              continue;
            }
            const out = await p.run(data);
            const ref = entry.reference(shape, data, 4e8);
            const got = ref.index ? Float64Array.from(ref.index, (i) => out[i]) : out;
            const error = relativeMaxError(got, ref.values);
            if (!(error <= TOLERANCE)) {
              cells[variant] = { note: `differs from the float64 reference: ${error}`, steps };
              continue;
            }
            const t = await p.time(timing);
            cells[variant] = {
              ms: t.gpuMs ?? t.wallMs,
              timing: t.gpuMs !== undefined ? "gpu-timestamps" : "wall-amortised",
              maxRelError: error,
              steps,
            };
          } finally {
            p.dispose();
          }
        } catch (e) {
          cells[variant] = { note: errorText(e) };
        }
      }
      const timed = Object.entries(cells).filter(([k, c]) => k !== "default" && c.ms !== undefined);
      const best = timed.sort((a, b) => a[1].ms! - b[1].ms!)[0]?.[0];
      rows.push({ model: `${name}@${size}`, batch, shape: shape.label, count: shape.count, best, cells });
      const fmt = (c: Cell) => c.ms !== undefined ? c.ms.toFixed(3) : "-";
      console.log(
        `${name}@${size} | ${shape.label} | x${shape.count} | default ${cells.default.steps?.join("+")} ${
          fmt(cells.default)
        } | ${
          Object.entries(cells).filter(([k]) => k !== "default").map(([k, c]) => `${k} ${fmt(c)}`).join(" | ")
        } | best ${best}`,
      );
    }
  }
  result.loadavgEnd = load();
  result.rows = rows;
  if (values["json-out"]) {
    await Deno.writeTextFile(values["json-out"], JSON.stringify(result, null, 1) + "\n");
  }
  console.error(`load ${result.loadavgEnd}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
