/**
 * Where a BiT fixture case's f16 error comes from: the network run in float64 on the CPU (the kernels'
 * float64 references, node by node over the model's own graph), with chosen weights and activations
 * rounded to f16 (to nearest even) where an f16 plan would store them, against the case's float64
 * reference, with the parity tests' measure (max|e - ref| / max|ref|). Rounding is the only difference
 * between such a run and the GPU's f16 plan (which adds f32 arithmetic), so it says which layers' storage
 * sets the error, in seconds per run rather than minutes.
 *
 * Each row is one storage choice; `plan` is the engine's own (`graphDtypes` with the model's
 * `keepF32AtF16`, and `f32Weights`), which `tests/f16_parity_test.ts` measures on the GPU.
 *
 * ```
 * deno run -A --config deno.dev.json bench/f16_sensitivity.ts r50x1-bit-224 [ROW,ROW...]
 * ```
 * Rows (default all): control, weights, weights-but-stem, activations, first-layer-only, plan,
 * stem-block1, stem-stages12. Ops simulated: conv2d, max_pool, group_norm, global_mean_pool (BiT's graph).
 * @module
 */
import type { Graph } from "../engine/graph.ts";
import { f32Weights, float16BitsToFloat32, float32ToFloat16Bits, graphDtypes } from "../engine/precision.ts";
import { conv2dRef } from "../kernels/conv2d_ref.ts";
import { globalMeanPoolRef } from "../kernels/global_mean_pool_ref.ts";
import { groupNormApplyRef } from "../kernels/group_norm_apply_ref.ts";
import { groupNormStatsRef } from "../kernels/group_norm_stats_ref.ts";
import { maxPoolRef } from "../kernels/max_pool_ref.ts";
import { defineModel } from "../models/registry.ts";
import { caseWeights, fixtureCases, readReference } from "../tests/_fixtures.ts";
import { relativeMaxError } from "./_timing.ts";
import { cpuResidentWeights } from "./cpu_weights.ts";

/** Which tensors a row stores as f16: weights by resident name, activations by graph tensor name. */
interface Storage {
  readonly weight: (name: string) => boolean;
  readonly activation: (name: string) => boolean;
}

const [name, rowList] = Deno.args;
const c = fixtureCases().find((x) => x.name === name);
if (!c) {
  throw new TypeError(`Cannot find case "${name}": expected one of ${fixtureCases().map((x) => x.name)}`);
}
const ref = readReference(c.name);
const want = ref.tensors.get("embedding_f64")!.data;
const source = caseWeights(c);
const model = defineModel(source, { preset: c.preset, size: c.size });
const resident = await cpuResidentWeights(source, model.weights);
const graph = model.graph(c.size, 1);

const planDtypes = graphDtypes(graph, "f16", model.keepF32AtF16);
const planF32Weights = f32Weights(graph, planDtypes);
const allF16 = graphDtypes(graph, "f16");
const firstLayerF32Weights = f32Weights(graph, allF16);
const isStem = (t: string) => t === "stem" || t.startsWith("stem.");
const ROWS: Readonly<Record<string, readonly [string, Storage]>> = {
  control: ["nothing rounded (the f32 path, in float64)", { weight: () => false, activation: () => false }],
  weights: ["every weight f16, activations f32", { weight: () => true, activation: () => false }],
  "weights-but-stem": ["every weight f16 but the stem's, activations f32", {
    weight: (t) => !isStem(t),
    activation: () => false,
  }],
  activations: ["every activation f16, weights f32", { weight: () => false, activation: () => true }],
  "first-layer-only": ["everything f16 but the first layer's weights (no keepF32AtF16)", {
    weight: (t) => !firstLayerF32Weights.has(t),
    activation: (t) => allF16.get(t) === "f16",
  }],
  plan: ["the f16 plan: keepF32AtF16 activations and f32Weights f32", {
    weight: (t) => !planF32Weights.has(t),
    activation: (t) => planDtypes.get(t) === "f16",
  }],
  "stem-block1": [
    "the stem and stage 1's first unit f32, the rest f16",
    keptF32((t) => isStem(t) || t.startsWith("stage1.unit01.")),
  ],
  "stem-stages12": [
    "the stem and stages 1 and 2 f32, the rest f16",
    keptF32((t) => isStem(t) || /^stage[12]\./.test(t)),
  ],
};

/** A storage where the activations `keep` names (and the weights of the nodes reading f32 ones) stay f32. */
function keptF32(keep: (t: string) => boolean): Storage {
  const dtypes = graphDtypes(graph, "f16", keep);
  const weights = f32Weights(graph, dtypes);
  return { weight: (t) => !weights.has(t), activation: (t) => dtypes.get(t) === "f16" };
}

function toF16(v: Float64Array): Float64Array {
  return v.map((x) => float16BitsToFloat32(float32ToFloat16Bits(x)));
}

/** The model input as the graph has it (channels padded with zeros, as the input stage writes it). */
function graphInput(g: Graph): Float64Array {
  const raw = ref.tensors.get("input")!.data;
  const [, h, w, channels] = g.tensors.get(g.input)!;
  const stored = raw.length / (h * w);
  const x = new Float64Array(h * w * channels);
  for (let p = 0; p < h * w; p++) for (let k = 0; k < stored; k++) x[p * channels + k] = raw[p * stored + k];
  return x;
}

/** The embedding with `storage`'s tensors rounded to f16 where they are stored. */
function simulate(storage: Storage): Float64Array {
  const weights = new Map<string, Float64Array>();
  for (const [t, v] of resident) {
    weights.set(t, storage.weight(t) ? toF16(Float64Array.from(v)) : Float64Array.from(v));
  }
  const values = new Map<string, Float64Array>([[graph.input, graphInput(graph)]]);
  const store = (t: string, v: Float64Array) =>
    values.set(t, t !== graph.output && storage.activation(t) ? toF16(v) : v);
  for (const node of graph.nodes) {
    const x = values.get(node.inputs[0])!;
    const [, h, w, channels] = graph.tensors.get(node.inputs[0])!;
    const a = node.attrs as Record<string, number & boolean & string>;
    if (node.op === "conv2d") {
      const shape = {
        n: 1,
        h,
        w,
        cin: channels,
        cout: a.cout,
        kh: a.kernel,
        kw: a.kernel,
        stride: a.stride ?? 1,
        pad: a.pad ?? 0,
        accumulate: node.inPlace === true,
        bias: node.weights.bias !== undefined,
        relu: a.relu,
      };
      const residual = node.inPlace ? values.get(node.output) : undefined;
      const bias = node.weights.bias === undefined ? undefined : weights.get(node.weights.bias);
      store(node.output, conv2dRef(x, weights.get(node.weights.weight)!, shape, residual, bias));
    } else if (node.op === "max_pool") {
      const shape = {
        n: 1,
        h,
        w,
        c: channels,
        k: a.kernel,
        stride: a.stride,
        pad: a.pad,
        padValue: a.padValue,
      };
      store(node.output, maxPoolRef(x, shape));
    } else if (node.op === "group_norm") {
      // The statistics are f32 scratch in every plan: not rounded here.
      const shape = { n: 1, hw: h * w, c: channels, groups: a.groups, eps: a.eps, relu: a.relu === true };
      const gamma = weights.get(node.weights.gamma)!, beta = weights.get(node.weights.beta)!;
      store(node.output, groupNormApplyRef(x, groupNormStatsRef(x, shape), gamma, beta, shape));
    } else if (node.op === "global_mean_pool") {
      store(node.output, globalMeanPoolRef(x, { n: 1, hw: h * w, c: channels }));
    } else {
      throw new TypeError(
        `Cannot simulate "${node.name}": op ${node.op} is not one of conv2d, max_pool, group_norm, global_mean_pool`,
      );
    }
  }
  return values.get(graph.output)!;
}

const rows = rowList?.split(",") ?? Object.keys(ROWS);
for (const row of rows) {
  if (!(row in ROWS)) throw new TypeError(`Cannot run row "${row}": expected one of ${Object.keys(ROWS)}`);
}
const f32Bytes = [...resident.values()].reduce((a, v) => a + 4 * v.length, 0);
console.log(`${c.name}: f16 storage simulated in float64 (max|e - ref| / max|ref|)`);
for (const row of rows) {
  const [what, storage] = ROWS[row];
  const t0 = performance.now();
  const error = relativeMaxError(simulate(storage), want);
  const bytes = [...resident].reduce((a, [t, v]) => a + (storage.weight(t) ? 2 : 4) * v.length, 0);
  console.log(
    `  ${row.padEnd(17)} ${error.toExponential(2)}  weights ${
      (100 * bytes / f32Bytes).toFixed(1)
    }% of f32  ${what} (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
  );
}
