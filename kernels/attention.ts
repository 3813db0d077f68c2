/**
 * Multi-head self-attention in one fused kernel: the wrapper that describes each variant, validates a
 * shape into a launch, and lowers a graph node of op `attention`. It never allocates, submits or reads
 * back.
 *
 * ```
 * y[n,t,h*hd:(h+1)*hd] = softmax_j(q[n,t,h] . k[n,j,h] / sqrt(hd)) @ v[n,:,h]   (max subtracted)
 * qkv: f32 [N,T,3D] (the qkv linear's output: q = columns [0,D), k = [D,2D), v = [2D,3D); head h =
 *   columns h*hd..(h+1)*hd of each) · y: f32 [N,T,D], heads concatenated; D = heads * hd, hd % 4 == 0
 * bindings: 0 qkv r · 1 y rw · 2 uniforms {n,t,d,heads,qblocks,units: u32; scale_log2e: f32; _pad0: u32}
 * overrides: WG (workgroup size) · dispatch: ceil(N*heads*ceil(T/BQ) / WG) workgroups, folded over x,y
 * numerics: f32; online softmax in base 2 (q scaled by log2(e)/sqrt(hd) once), y = acc / l
 * ```
 *
 * Variants, one shader per head dimension in {@linkcode ATTENTION_HEAD_DIMS} (16, 32, 64):
 * `attention_query_tiled_hd<hd>` (8 queries of one head per invocation: the default, 6.6x the streaming
 * variant on llvmpipe) and `attention_streaming_hd<hd>` (one query per invocation, for GPUs); see
 * `attention.wgsl.ts` for what was measured. Each in two storage flavours (`kernels/_precision.ts`): f32,
 * and f16 (`attention_query_tiled_hd64_f16`: qkv and y f16; scores, softmax and sums f32).
 *
 * This module is browser compatible.
 * @module
 */
import {
  DEFAULT_LAUNCH_LIMITS,
  foldWorkgroups,
  type KernelLaunch,
  type KernelSpec,
  type LaunchLimits,
  packUniforms,
} from "../engine/kernel.ts";
import { expectInputs, type GraphNode, numberAttr } from "../engine/graph.ts";
import type { OpLowering } from "../engine/lowering.ts";
import { nodeError } from "./_lowering.ts";
import { COMMON_FLAVOURS, type Flavour, flavourName, FLAVOURS, flavourSpec } from "./_precision.ts";
import {
  ATTENTION_HEAD_DIMS,
  ATTENTION_KEYS_PER_STEP,
  ATTENTION_STREAMING_QUERIES,
  ATTENTION_TILED_QUERIES,
  attentionWgsl,
} from "./attention.wgsl.ts";

export { ATTENTION_HEAD_DIMS };

/** One attention: images, tokens, heads and the head dimension. */
export interface AttentionShape {
  /** Images N. */
  readonly n: number;
  /** Tokens T (queries and keys). */
  readonly tokens: number;
  /** Heads. */
  readonly heads: number;
  /** Head dimension hd (D / heads). */
  readonly headDim: number;
}

/** Workgroup size of `attention_query_tiled_*`: ViT-S at batch 1 has 150 invocations, 5 workgroups. */
export const ATTENTION_TILED_WORKGROUP_SIZE = 32;
/** Workgroup size of `attention_streaming_*`. */
export const ATTENTION_STREAMING_WORKGROUP_SIZE = 64;

const bindings = [
  { name: "qkv", type: "read-only-storage" },
  { name: "y", type: "storage" },
] as const;

/** Per variant name: its head dimension and queries per invocation. */
const tiling = new Map<string, { headDim: number; queries: number }>();

function variant(
  strategy: string,
  headDim: number,
  queries: number,
  wg: number,
  flavour: Flavour = "f32",
): KernelSpec {
  const name = flavourName(`attention_${strategy}_hd${headDim}`, flavour);
  tiling.set(name, { headDim, queries });
  return {
    name,
    wgsl: attentionWgsl(name, headDim, queries, ATTENTION_KEYS_PER_STEP, FLAVOURS[flavour]),
    bindings,
    overrides: { WG: wg },
  };
}

/** Both strategies for every head dimension in one flavour, most preferred first for each. */
function flavoured(flavour: Flavour): KernelSpec[] {
  return ATTENTION_HEAD_DIMS.flatMap((hd) => [
    variant("query_tiled", hd, ATTENTION_TILED_QUERIES, ATTENTION_TILED_WORKGROUP_SIZE, flavour),
    variant("streaming", hd, ATTENTION_STREAMING_QUERIES, ATTENTION_STREAMING_WORKGROUP_SIZE, flavour),
  ]);
}

/** Every variant of each flavour (f32, f16), most preferred first for each head dimension. */
export const attentionFlavours: Readonly<Partial<Record<Flavour, readonly KernelSpec[]>>> = Object
  .fromEntries(
    COMMON_FLAVOURS.map((f) => [f, flavoured(f)]),
  );

/** Every f32 variant, most preferred first for each head dimension, for the lowering, tests and benchmarks. */
export const attentionVariants: readonly KernelSpec[] = attentionFlavours.f32!;

/** `attention_query_tiled_hd<hd>` by head dimension: 8 queries per invocation. */
export const attentionQueryTiled: ReadonlyMap<number, KernelSpec> = new Map(
  ATTENTION_HEAD_DIMS.map((hd, i) => [hd, attentionVariants[2 * i]]),
);

/** `attention_streaming_hd<hd>` by head dimension: one query per invocation. */
export const attentionStreaming: ReadonlyMap<number, KernelSpec> = new Map(
  ATTENTION_HEAD_DIMS.map((hd, i) => [hd, attentionVariants[2 * i + 1]]),
);

/** Every variant in every flavour, for the registry. */
export const attentionAllVariants: readonly KernelSpec[] = COMMON_FLAVOURS.flatMap((f) =>
  attentionFlavours[f]!
);

/** Whether `spec` runs `shape` (its head dimension). */
export function attentionFits(spec: KernelSpec, shape: Pick<AttentionShape, "headDim">): boolean {
  return tiling.get(spec.name)?.headDim === shape.headDim;
}

/**
 * Validates a shape for `spec` and returns its dispatch, uniform bytes and output shape.
 *
 * @param spec One of {@linkcode attentionVariants}, generated for `shape.headDim`.
 * @param shape Images, tokens, heads and head dimension.
 * @param limits Device limits (default the WebGPU defaults).
 * @returns Workgroups (folded over x and y), uniforms and `outShape` = [N, T, heads * hd].
 * @throws {TypeError} When a dimension is not a positive integer or the variant is for another head
 *   dimension.
 * @throws {RangeError} When qkv has 2^32 elements or more, or even a folded dispatch does not fit.
 * @example
 * ```ts
 * const shape = { n: 1, tokens: 197, heads: 6, headDim: 64 };
 * attentionLaunch(attentionQueryTiled.get(64)!, shape).outShape; // [1, 197, 384]
 * ```
 */
export function attentionLaunch(
  spec: KernelSpec,
  shape: AttentionShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch & { outShape: [number, number, number] } {
  const what = spec.name;
  const t = tiling.get(spec.name);
  if (!t) throw new TypeError(`Cannot launch ${what}: expected an attention variant, got "${spec.name}"`);
  for (const key of ["n", "tokens", "heads", "headDim"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${v}`);
    }
  }
  if (shape.headDim !== t.headDim) {
    throw new TypeError(`Cannot launch ${what}: expected head dimension ${t.headDim}, got ${shape.headDim}`);
  }
  const d = shape.heads * shape.headDim;
  const qkvElems = shape.n * shape.tokens * 3 * d;
  if (qkvElems > 0xffffffff) {
    throw new RangeError(`Cannot launch ${what}: expected fewer than 2^32 elements of qkv, got ${qkvElems}`);
  }
  const qblocks = Math.ceil(shape.tokens / t.queries);
  const units = shape.n * shape.heads * qblocks;
  return {
    workgroups: foldWorkgroups(Math.ceil(units / spec.overrides.WG), limits, what),
    uniforms: packUniforms([
      ["n", "u32", shape.n],
      ["t", "u32", shape.tokens],
      ["d", "u32", d],
      ["heads", "u32", shape.heads],
      ["qblocks", "u32", qblocks],
      ["units", "u32", units],
      ["scale_log2e", "f32", Math.LOG2E / Math.sqrt(shape.headDim)],
      ["_pad0", "u32", 0],
    ]),
    outShape: [shape.n, shape.tokens, d],
  };
}

/** Reads a node's heads and checks them against qkv [N, T, 3D]. */
function nodeShape(node: GraphNode, qkv: readonly number[]): AttentionShape {
  const [n, tokens, d3] = qkv;
  const heads = numberAttr(node, "heads");
  if (!Number.isInteger(heads) || heads < 1) {
    throw nodeError(node, `expected attribute "heads" to be a positive integer, got ${heads}`);
  }
  if (d3 % (3 * heads) !== 0) {
    throw nodeError(node, `expected qkv's last dimension ${d3} to be 3 * heads (${heads}) * head dim`);
  }
  return { n, tokens, heads, headDim: d3 / 3 / heads };
}

/**
 * The lowering entry of op `attention`.
 *
 * Contract: inputs `[qkv]`, f32 [N, T, 3D] (the output of the `qkv` linear, torch's column order: q, k,
 * v, each with heads consecutive); output [N, T, D], heads concatenated (the input of `proj`). Attributes:
 * `heads` (required). No weights. Head dimensions D / heads of 16, 32 or 64. FLOPs: 4 * N * T^2 * D.
 */
export const attentionLowering: OpLowering = {
  op: "attention",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1, 3);
    const s = nodeShape(node, inputs[0]);
    if (!ATTENTION_HEAD_DIMS.includes(s.headDim)) {
      throw nodeError(
        node,
        `expected a head dimension in ${ATTENTION_HEAD_DIMS.join(", ")}, got ${s.headDim}`,
      );
    }
    return [s.n, s.tokens, s.heads * s.headDim];
  },
  flops(node, shape) {
    const [n, tokens, d3] = shape(node.inputs[0]);
    return (4 * n * tokens * tokens * d3) / 3;
  },
  lower(ctx) {
    const node = ctx.node;
    const s = nodeShape(node, ctx.shape(node.inputs[0]));
    const spec = ctx.choose(flavourSpec(ctx, attentionFlavours), (v) => attentionFits(v, s));
    ctx.step(spec, attentionLaunch(spec, s, ctx.device.limits), [node.inputs[0], node.output]);
  },
};
