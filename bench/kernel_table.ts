/**
 * The kernel table: for each distinct node shape of a model, our one-node plan checked against the float64
 * reference and then timed, and the same node on ONNX Runtime Web and TF.js (the one-node graph exported
 * through the same op tables as the whole model), each peer counted only when its output matches ours.
 * Convolutions 1x1/1 without padding also get a row as MatMul (M = N·H·W, K = Cin, N = Cout, with the
 * node's bias, residual and ReLU), the form in which the peers' GEMMs are usually quoted.
 * @module
 */
import { numel } from "../engine/kernel.ts";
import type { PipelineCache, PlanDevice } from "../engine/plan.ts";
import type { NodeShape } from "./kernels_bench.ts";
import { buildNodePlan } from "./kernels_bench.ts";
import { type CaseData, caseData, convAttrs, labelSeed, OP_BENCH } from "./op_table.ts";
import { graphToOnnx } from "./onnx_export.ts";
import { encodeOnnxModel, type OnnxNode } from "./onnx_writer.ts";
import { fromNchw, toNchw } from "./layouts.ts";
import type { Roofline } from "./roofline.ts";
import { relativeMaxError, type Timing, type TimingOptions } from "./_timing.ts";

type OrtModule = typeof import("./peers_ort.ts");
type TfjsModule = typeof import("./peers_tfjs.ts");

/** Max relative error (max |a - b| / max |b|) for a figure to count: ours vs float64, a peer vs ours. */
export const TOLERANCE = 1e-4;

/** One engine's figures on one shape. */
export interface EngineFigure {
  ms: number;
  gpuMs?: number;
  wallMs: number;
  gflops: number;
  gbps: number;
  /** Share of the measured FMA roof and of the copy bandwidth roof. */
  flopShare: number;
  byteShare: number;
  timing: "gpu-timestamps" | "wall-amortised";
  /** Ours: against the float64 reference; a peer: against ours. */
  maxRelError: number;
  /** Our wall ms over this engine's wall ms (> 1: this engine is faster). */
  oursOverThis?: number;
}

/** One row of the table. */
export interface KernelRow {
  label: string;
  /** The op (`matmul` for the MatMul rows). */
  kind: string;
  count: number;
  flop: number;
  bytes: number;
  /** Our kernel variants on this node, in step order. */
  variants?: string[];
  /** What of our output was compared with the float64 reference. */
  checked?: string;
  engines: Record<string, EngineFigure>;
  skipped?: Record<string, string>;
}

/** Options of {@linkcode kernelTable}. */
export interface KernelTableOptions {
  readonly roof: Roofline;
  readonly timing: TimingOptions;
  readonly forcedKernels: ReadonlySet<string>;
  /** The whole float64 reference is computed up to this many FLOP, a sample of the output beyond. */
  readonly referenceBudgetFlop: number;
  readonly cache?: PipelineCache;
  readonly ort?: OrtModule;
  readonly tfjs?: TfjsModule;
  readonly log: (line: string) => void;
  /** Called with each row once measured. */
  readonly onRow?: (row: KernelRow) => void;
}

/** A figure from a timing. */
export function figure(t: Timing, flop: number, bytes: number, roof: Roofline, error: number): EngineFigure {
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

/** The first line of an error's message, at most 300 characters. */
export function errorText(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0].slice(0, 300);
}

/** Our output at the reference's positions. */
function at(ours: Float32Array, index: Int32Array | undefined): ArrayLike<number> {
  if (!index) return ours;
  const out = new Float64Array(index.length);
  for (let i = 0; i < index.length; i++) out[i] = ours[index[i]];
  return out;
}

/**
 * Measures every shape: ours (after the reference check), then the peers on the same data.
 *
 * @returns The rows and the MatMul rows.
 */
export async function kernelTable(
  gpu: PlanDevice & { features: ReadonlySet<string> },
  shapes: readonly NodeShape[],
  o: KernelTableOptions,
): Promise<{ kernels: KernelRow[]; matmul: KernelRow[] }> {
  const kernels: KernelRow[] = [];
  const matmul: KernelRow[] = [];
  for (const shape of shapes) {
    o.log(`kernel ${shape.label}`);
    const entry = OP_BENCH.get(shape.op)!;
    const row: KernelRow = {
      label: shape.label,
      kind: shape.op,
      count: shape.count,
      flop: shape.flop,
      bytes: shape.bytes,
      engines: {},
    };
    const skipped: Record<string, string> = {};
    kernels.push(row);
    const data = caseData(entry, shape, labelSeed(shape.label));
    let ours: Float32Array | undefined;
    try {
      const p = await buildNodePlan(gpu, shape, data, { forcedKernels: o.forcedKernels, cache: o.cache });
      try {
        row.variants = [...p.variants];
        ours = await p.run(data);
        const ref = entry.reference(shape, data, o.referenceBudgetFlop);
        row.checked = ref.coverage;
        const error = relativeMaxError(at(ours, ref.index), ref.values);
        if (!(error <= TOLERANCE)) {
          skipped.ours = `differs from the float64 reference: max rel error ${error}`;
          ours = undefined;
        } else {
          row.engines.ours = figure(await p.time(o.timing), shape.flop, shape.bytes, o.roof, error);
        }
      } finally {
        p.dispose();
      }
    } catch (e) {
      skipped.ours = errorText(e);
      ours = undefined;
    }
    if (ours) {
      await peersOnNode(shape, data, ours, row, skipped, o);
      const a = shape.op === "conv2d" ? convAttrs(shape.node) : undefined;
      if (a && a.kh === 1 && a.kw === 1 && a.stride === 1 && a.pad === 0 && (o.ort || o.tfjs)) {
        const [n, h, w, cin] = shape.inputs[0];
        const mm: KernelRow = {
          ...row,
          label: `matmul ${n * h * w}x${cin} @ ${cin}x${a.cout}${
            shape.label.replace(/^conv [^>]*> \S+/, "")
          }`,
          kind: "matmul",
          engines: { ours: row.engines.ours },
          skipped: undefined,
        };
        const mmSkipped: Record<string, string> = {};
        await peersOnMatMul(shape, data, ours, mm, mmSkipped, o);
        if (Object.keys(mmSkipped).length) mm.skipped = mmSkipped;
        matmul.push(mm);
      }
    }
    if (Object.keys(skipped).length) row.skipped = skipped;
    o.onRow?.(row);
  }
  return { kernels, matmul };
}

/** Counts a peer's figure only when its output agrees with ours (timing it only then). */
async function recordPeer(
  engine: "ort" | "tfjs",
  output: ArrayLike<number>,
  ours: Float32Array,
  time: () => Promise<Timing>,
  at: { row: KernelRow; skipped: Record<string, string>; roof: Roofline },
): Promise<void> {
  const error = relativeMaxError(output, ours);
  if (!(error <= TOLERANCE)) {
    at.skipped[engine] = `output differs from ours: max rel error ${error}`;
    return;
  }
  const f = figure(await time(), at.row.flop, at.row.bytes, at.roof, error);
  const mine = at.row.engines.ours;
  at.row.engines[engine] = mine ? { ...f, oursOverThis: mine.wallMs / f.wallMs } : f;
}

function weightMap(data: CaseData): Map<string, Float32Array> {
  return new Map(Object.entries(data.weights).map(([role, v]) => [`w.${role}`, v]));
}

function inputValues(shape: NodeShape, data: CaseData): Float32Array[] {
  return [...data.inputs, ...(shape.node.inPlace ? [data.prior!] : [])];
}

async function peersOnNode(
  shape: NodeShape,
  data: CaseData,
  ours: Float32Array,
  row: KernelRow,
  skipped: Record<string, string>,
  o: KernelTableOptions,
): Promise<void> {
  const names = ["x0", ...shape.extraInputs];
  const values = inputValues(shape, data);
  const weights = weightMap(data);
  const where = { row, skipped, roof: o.roof };
  if (o.ort) {
    try {
      const exported = graphToOnnx(shape.graph, weights, { inputs: names });
      const m = await o.ort.OrtModel.create(
        encodeOnnxModel(exported.model),
        names.map((name, i) => ({
          name,
          dims: exported.model.inputs[i].dims,
          data: toNchw(values[i], shape.graph.tensors.get(name)!),
        })),
        exported.output,
      );
      try {
        const out = fromNchw(await m.run(), shape.output);
        await recordPeer("ort", out, ours, () => m.time(o.timing), where);
      } finally {
        await m.dispose();
      }
    } catch (e) {
      skipped.ort = errorText(e);
    }
  }
  if (o.tfjs) {
    const tfjs = o.tfjs;
    try {
      const g = tfjs.tfjsGraph(shape.graph, weights, { inputs: names });
      const xs = names.map((name, i) => tfjs.tfTensor(values[i], shape.graph.tensors.get(name)!));
      try {
        const forward = () => g.forward(xs);
        await recordPeer(
          "tfjs",
          await tfjs.runTfjs(forward),
          ours,
          () => tfjs.timeTfjs(forward, o.timing),
          where,
        );
      } finally {
        for (const x of xs) x.dispose();
        g.dispose();
      }
    } catch (e) {
      skipped.tfjs = errorText(e);
    }
  }
}

async function peersOnMatMul(
  shape: NodeShape,
  data: CaseData,
  ours: Float32Array,
  row: KernelRow,
  skipped: Record<string, string>,
  o: KernelTableOptions,
): Promise<void> {
  const a = convAttrs(shape.node);
  const m = numel(shape.inputs[0]) / shape.inputs[0][3];
  const k = shape.inputs[0][3];
  const ncol = a.cout;
  const where = { row, skipped, roof: o.roof };
  const prior = shape.node.inPlace ? data.prior! : undefined;
  if (o.ort) {
    try {
      const nodes: OnnxNode[] = [{ op: "MatMul", inputs: ["a", "b"], outputs: ["ab"] }];
      let y = "ab";
      const initializers = [{ name: "b", dims: [k, ncol], data: data.weights.weight }];
      if (a.bias) {
        initializers.push({ name: "bias", dims: [ncol], data: data.weights.bias });
        nodes.push({ op: "Add", inputs: [y, "bias"], outputs: ["biased"] });
        y = "biased";
      }
      if (prior) {
        nodes.push({ op: "Add", inputs: [y, "prior"], outputs: ["summed"] });
        y = "summed";
      }
      if (a.relu) {
        nodes.push({ op: "Relu", inputs: [y], outputs: ["relu"] });
        y = "relu";
      }
      nodes.push({ op: "Identity", inputs: [y], outputs: ["y"] });
      const inputs = [{ name: "a", dims: [m, k], data: data.inputs[0] }];
      if (prior) inputs.push({ name: "prior", dims: [m, ncol], data: prior });
      const bytes = encodeOnnxModel({
        nodes,
        initializers,
        inputs: inputs.map(({ name, dims }) => ({ name, dims })),
        outputs: [{ name: "y", dims: [m, ncol] }],
      });
      const model = await o.ort.OrtModel.create(bytes, inputs, "y");
      try {
        await recordPeer("ort", await model.run(), ours, () => model.time(o.timing), where);
      } finally {
        await model.dispose();
      }
    } catch (e) {
      skipped.ort = errorText(e);
    }
  }
  if (o.tfjs) {
    const tfjs = o.tfjs;
    try {
      const ta = tfjs.tfTensor(data.inputs[0], [m, k]);
      const tb = tfjs.tfTensor(data.weights.weight, [k, ncol]);
      const bias = a.bias ? tfjs.tfTensor(data.weights.bias, [ncol]) : undefined;
      const tp = prior ? tfjs.tfTensor(prior, [m, ncol]) : undefined;
      try {
        const forward = () => tfjs.tfMatMul(ta, tb, { bias, prior: tp, relu: a.relu });
        await recordPeer(
          "tfjs",
          await tfjs.runTfjs(forward),
          ours,
          () => tfjs.timeTfjs(forward, o.timing),
          where,
        );
      } finally {
        for (const t of [ta, tb, bias, tp]) t?.dispose();
      }
    } catch (e) {
      skipped.tfjs = errorText(e);
    }
  }
}
