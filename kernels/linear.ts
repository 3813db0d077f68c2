/**
 * Linear (fully connected) kernels over the rows of a token tensor, with fused epilogues: the wrapper that
 * describes each variant, validates a shape into a launch, and lowers a graph node of op `linear`. It never
 * allocates, submits or reads back.
 *
 * ```
 * linear: y[r,o] = act(sum_i x[r,i] * w[i,o] + b[o]) (+ res[r,o] if accumulate), act = identity or GELU (erf),
 *   GELU and accumulate not both
 * x: f32 [M,Din] (M = N*T: the rows of [N,T,Din]) · w: f32 [Din,Dout] (Dout contiguous: torch's [out,in]
 *   transposed once at load) · b: f32 [Dout] · res: f32 [M,Dout] (the residual stream) · y: f32 [M,Dout]
 * bindings: 0 x r · 1 w r · 2 b r (read only when bias) · 3 res r (read only when accumulate) · 4 y rw ·
 *   5 uniforms {m,din,dout,units,col_tiles,bias,gelu,accumulate: u32}
 * overrides: WG (workgroup size), CK (Din chunk summed apart) · dispatch folded over x,y (foldWorkgroups):
 *   ceil(units / WG), a unit being one output (linear_direct) or one register tile (linear_tiled)
 * numerics: f32 fma, partial sums per CK terms added to the total; epilogue + b, then + res or GELU
 *
 * The residual add writes a new tensor rather than updating the stream in place, so that every block's
 * output stays a tensor of its own (a checkpoint the parity tests read); liveness frees the one before.
 * ```
 *
 * Variants (all but the baseline need Din % 4 == 0 and Dout % 4 == 0; rows M need not be a multiple of the
 * tile, ViT: 197 tokens):
 * - `linear_big_tile`: 16 rows x 32 features per invocation, lanes along features, WG 16. The default.
 *   On llvmpipe/lavapipe (Mesa 22.3) every storage-buffer load is a loop over the 8 lanes that costs the
 *   same per float whatever its address, so speed follows FMAs per loaded float, TM*TN/(TM+TN): 10.7 here
 *   against 4 for 8x8. Measured (GFLOP/s per 2 CPU cores, ViT-S shapes): 8x8 2.1, 16x16 3.7, 16x32 5.0,
 *   32x32 6.2; 40x32 did not finish compiling in 8 CPU minutes. The first compile on the GL path grows
 *   quadratically with the tile (8x8 0.6 s, 16x32 15 s, 32x32 57 s; Mesa caches it on disk afterwards;
 *   lavapipe 0.1 to 0.5 s), which is why 16x32 and not 32x32. On a discrete GPU its 256 live vec4 would
 *   spill: prefer `linear_tiled` there.
 * - `linear_tiled`: 8 rows x 8 features per invocation, lanes along features, WG 64 (conv2d_tiled's tile).
 * - `linear_direct`: one output per invocation, any Din and Dout: the baseline.
 *
 * Each in two storage flavours (`kernels/_precision.ts`): f32, and f16 (`linear_big_tile_f16`: x, w, b,
 * res and y f16, f32 arithmetic and GELU); the lowering picks the node's.
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
  type Shape,
} from "../engine/kernel.ts";
import { type GraphNode, numberAttr, stringAttr } from "../engine/graph.ts";
import type { LoweringContext, LoweringDevice, OpLowering } from "../engine/lowering.ts";
import {
  isLinearBlock,
  linearBlockFits,
  linearBlockGpuOrder,
  linearBlockVariants,
  lowerLinearBlock,
} from "./linear_block.ts";
import { checkedWeight, leadingRows, nodeError } from "./_lowering.ts";
import {
  LINEAR_BIG_TILE_COLUMNS4,
  LINEAR_BIG_TILE_ROWS,
  LINEAR_TILED_COLUMNS4,
  LINEAR_TILED_ROWS,
  linearDirectSource,
  linearTiledWgsl,
} from "./linear.wgsl.ts";
import {
  COMMON_FLAVOURS,
  type Flavour,
  flavourName,
  FLAVOURS,
  flavourSpec,
  type StorageTypes,
} from "./_precision.ts";

/** The epilogue's activation. */
export type LinearActivation = "none" | "gelu";

/** One linear layer over M rows. */
export interface LinearShape {
  /** Rows M (N*T for a token tensor). */
  readonly rows: number;
  /** Input features Din. */
  readonly din: number;
  /** Output features Dout. */
  readonly dout: number;
  /** Whether b is added. */
  readonly bias: boolean;
  /** Activation after the bias. */
  readonly activation: LinearActivation;
  /**
   * When true, y = x w + b + res (the fused residual add). Not combined with GELU: the tiled kernels apply
   * the GELU to their stored tile, which would then hold the residual too.
   */
  readonly accumulate: boolean;
}

/** Workgroup size of `linear_direct` and `linear_tiled` (invocations; llvmpipe runs 8 per SIMD step). */
export const LINEAR_WORKGROUP_SIZE = 64;
/** Workgroup size of `linear_big_tile`: its units are 16 times larger, so smaller groups keep both cores busy. */
export const LINEAR_BIG_TILE_WORKGROUP_SIZE = 16;
/** Input features summed into one partial before it joins the total (accuracy over long Din). */
export const LINEAR_CHUNK = 64;
/** Rows per invocation of `linear_tiled`. */
export const LINEAR_TILED_TILE_ROWS = LINEAR_TILED_ROWS;
/** Output features per invocation of `linear_tiled` (vec4 groups along Dout x 4). */
export const LINEAR_TILED_TILE_FEATURES = 4 * LINEAR_TILED_COLUMNS4;
/** Rows per invocation of `linear_big_tile`. */
export const LINEAR_BIG_TILE_TILE_ROWS = LINEAR_BIG_TILE_ROWS;
/** Output features per invocation of `linear_big_tile`. */
export const LINEAR_BIG_TILE_TILE_FEATURES = 4 * LINEAR_BIG_TILE_COLUMNS4;

const bindings = [
  { name: "x", type: "read-only-storage" },
  { name: "w", type: "read-only-storage" },
  { name: "b", type: "read-only-storage" },
  { name: "res", type: "read-only-storage" },
  { name: "y", type: "storage" },
] as const;

/** How a variant splits the output: rows and features per invocation, feature alignment, GELU or not. */
interface Tiling {
  rows: number;
  features: number;
  align: number;
  gelu: boolean;
}

/**
 * Each variant (by strategy name, most preferred first): its tiling, workgroup size and generator. The big
 * tile's f16 flavour has no GELU: keeping its 128-vec4 tile exact for the GELU (an f16 y would round the
 * pre-activation twice) took 10 to 15 s to compile on lavapipe, so GELU layers of f16 plans take
 * `linear_tiled_f16`.
 */
const STRATEGIES: readonly {
  name: string;
  tiling: (t: StorageTypes) => Tiling;
  wg: number;
  wgsl: (name: string, t: StorageTypes) => string;
}[] = [
  {
    name: "linear_big_tile",
    tiling: (t) => ({
      rows: LINEAR_BIG_TILE_TILE_ROWS,
      features: LINEAR_BIG_TILE_TILE_FEATURES,
      align: 4,
      gelu: t.output === "f32",
    }),
    wg: LINEAR_BIG_TILE_WORKGROUP_SIZE,
    wgsl: (name, t) =>
      linearTiledWgsl(name, LINEAR_BIG_TILE_ROWS, LINEAR_BIG_TILE_COLUMNS4, t, t.output === "f32"),
  },
  {
    name: "linear_tiled",
    tiling: () => ({
      rows: LINEAR_TILED_TILE_ROWS,
      features: LINEAR_TILED_TILE_FEATURES,
      align: 4,
      gelu: true,
    }),
    wg: LINEAR_WORKGROUP_SIZE,
    wgsl: (name, t) => linearTiledWgsl(name, LINEAR_TILED_ROWS, LINEAR_TILED_COLUMNS4, t),
  },
  {
    name: "linear_direct",
    tiling: () => ({ rows: 1, features: 1, align: 1, gelu: true }),
    wg: LINEAR_WORKGROUP_SIZE,
    wgsl: linearDirectSource,
  },
];

/** Tiling of every variant in every flavour, by spec name. */
const tiling = new Map<string, Tiling>();

/** Every variant of each flavour (f32, f16), most preferred first: big tile, tiled, direct. */
export const linearFlavours: Readonly<Partial<Record<Flavour, readonly KernelSpec[]>>> = Object.fromEntries(
  COMMON_FLAVOURS.map((f) => [
    f,
    STRATEGIES.map((v): KernelSpec => {
      const name = flavourName(v.name, f);
      tiling.set(name, v.tiling(FLAVOURS[f]));
      return { name, wgsl: v.wgsl(name, FLAVOURS[f]), bindings, overrides: { WG: v.wg, CK: LINEAR_CHUNK } };
    }),
  ]),
);

/** Register-tiled: 16 rows x 32 output features per invocation; Din % 4 == 0, Dout % 4 == 0. */
export const linearBigTile: KernelSpec = linearFlavours.f32![0];

/** Register-tiled: 8 rows x 8 output features per invocation; Din % 4 == 0, Dout % 4 == 0. */
export const linearTiled: KernelSpec = linearFlavours.f32![1];

/** Baseline: one output per invocation; any Din and Dout. */
export const linearDirect: KernelSpec = linearFlavours.f32![2];

/**
 * The register-tiled f32 variants, most preferred first on CPU rasterisers (tested in linear_test.ts, with
 * their f16 flavours); the block variants are `linearBlockVariants` (linear_block.ts, tested in
 * linear_block_test.ts, f32 only).
 */
export const linearVariants: readonly KernelSpec[] = linearFlavours.f32!;

/** Every register-tiled variant in every flavour, for the registry. */
export const linearAllVariants: readonly KernelSpec[] = COMMON_FLAVOURS.flatMap((f) => linearFlavours[f]!);

/**
 * The f32 variants in the order the planner prefers them for `shape` on `device`: on CPU rasterisers
 * (`cpuAdapter` true or unset) {@linkcode linearVariants} and the block variants last (chosen only when
 * forced: `gpuOnly`); on a GPU the block variants first (`linearBlockGpuOrder`), then linear_tiled (whose
 * register tile does not spill), linear_big_tile, linear_direct.
 */
export function linearPreferred(shape: LinearShape, device?: LoweringDevice): readonly KernelSpec[] {
  if (device?.cpuAdapter !== false) return CPU_PREFERRED;
  return [...linearBlockGpuOrder(shape), linearTiled, linearBigTile, linearDirect];
}

const CPU_PREFERRED: readonly KernelSpec[] = [...linearVariants, ...linearBlockVariants];

/**
 * Whether `spec` can run `shape`: its Din/Dout alignment, and GELU where the shape asks for it; for the
 * block variants also the device and, for split-K, whether splitting pays (which needs the whole shape).
 */
export function linearFits(
  spec: KernelSpec,
  shape: (Pick<LinearShape, "din" | "dout"> & Partial<Pick<LinearShape, "activation">>) | LinearShape,
  device?: LoweringDevice,
): boolean {
  if (isLinearBlock(spec)) return "rows" in shape && linearBlockFits(spec, shape, device);
  const t = tiling.get(spec.name);
  return t !== undefined && shape.din % t.align === 0 && shape.dout % t.align === 0 &&
    (shape.activation !== "gelu" || t.gelu);
}

/**
 * Validates a shape for `spec` and returns its dispatch, uniform bytes and output shape.
 *
 * @param spec One of {@linkcode linearVariants}.
 * @param shape Rows, features and epilogue.
 * @param limits Device limits (default the WebGPU defaults).
 * @returns Workgroups (folded over x and y), uniforms and `outShape` = [M, Dout].
 * @throws {TypeError} When a dimension is not a positive integer, the activation is unknown, GELU and
 *   accumulate are both asked for, or the variant needs Din % 4 == 0 / Dout % 4 == 0.
 * @throws {RangeError} When the output has 2^32 elements or more, or even a folded dispatch does not fit.
 * @example
 * ```ts
 * const shape = { rows: 197, din: 384, dout: 1152, bias: true, activation: "none", accumulate: false } as const;
 * linearLaunch(linearTiled, shape).outShape; // [197, 1152]
 * ```
 */
export function linearLaunch(
  spec: KernelSpec,
  shape: LinearShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch & { outShape: [number, number] } {
  const what = spec.name;
  const t = tiling.get(spec.name);
  if (!t) throw new TypeError(`Cannot launch ${what}: expected a linear variant, got "${spec.name}"`);
  for (const key of ["rows", "din", "dout"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${v}`);
    }
  }
  for (const key of ["bias", "accumulate"] as const) {
    if (typeof shape[key] !== "boolean") {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a boolean, got ${shape[key]}`);
    }
  }
  if (shape.activation !== "none" && shape.activation !== "gelu") {
    throw new TypeError(
      `Cannot launch ${what}: expected activation "none" or "gelu", got "${shape.activation}"`,
    );
  }
  if (shape.activation === "gelu" && shape.accumulate) {
    throw new TypeError(`Cannot launch ${what}: expected GELU or accumulate, got both`);
  }
  if (shape.activation === "gelu" && !t.gelu) {
    throw new TypeError(
      `Cannot launch ${what}: expected activation "none" (this variant has no GELU), got "gelu"`,
    );
  }
  if (shape.din % t.align !== 0) {
    throw new TypeError(`Cannot launch ${what}: expected Din % ${t.align} == 0, got ${shape.din}`);
  }
  if (shape.dout % t.align !== 0) {
    throw new TypeError(`Cannot launch ${what}: expected Dout % ${t.align} == 0, got ${shape.dout}`);
  }
  const outElems = shape.rows * shape.dout;
  const inElems = Math.max(shape.rows * shape.din, shape.din * shape.dout);
  if (outElems > 0xffffffff || inElems > 0xffffffff) {
    throw new RangeError(
      `Cannot launch ${what}: expected fewer than 2^32 elements per tensor, got ${
        Math.max(outElems, inElems)
      }`,
    );
  }
  const colTiles = Math.ceil(shape.dout / t.features);
  const units = Math.ceil(shape.rows / t.rows) * colTiles;
  const wg = spec.overrides.WG;
  return {
    workgroups: foldWorkgroups(Math.ceil(units / wg), limits, what),
    uniforms: packUniforms([
      ["m", "u32", shape.rows],
      ["din", "u32", shape.din],
      ["dout", "u32", shape.dout],
      ["units", "u32", units],
      ["col_tiles", "u32", colTiles],
      ["bias", "u32", shape.bias ? 1 : 0],
      ["gelu", "u32", shape.activation === "gelu" ? 1 : 0],
      ["accumulate", "u32", shape.accumulate ? 1 : 0],
    ]),
    outShape: [shape.rows, shape.dout],
  };
}

/** Reads a node's linear attributes and checks them against its input shapes (x, and the residual). */
function nodeShape(node: GraphNode, inputs: readonly Shape[]): LinearShape {
  if (inputs.length !== 1 && inputs.length !== 2) {
    throw nodeError(node, `expected 1 input (x) or 2 (x, residual), got ${inputs.length}`);
  }
  const input = inputs[0];
  if (input.length < 2) throw nodeError(node, `expected an input of rank >= 2, got [${input}]`);
  const dout = numberAttr(node, "outFeatures");
  if (!Number.isInteger(dout) || dout < 1) {
    throw nodeError(node, `expected attribute "outFeatures" to be a positive integer, got ${dout}`);
  }
  const activation = stringAttr(node, "activation", "none");
  if (activation !== "none" && activation !== "gelu") {
    throw nodeError(node, `expected attribute "activation" to be "none" or "gelu", got "${activation}"`);
  }
  if (node.inPlace) {
    throw nodeError(node, "expected a new output tensor, got inPlace (the residual is a second input)");
  }
  const accumulate = inputs.length === 2;
  if (accumulate) {
    const want = [...input.slice(0, -1), dout];
    if (inputs[1].length !== want.length || inputs[1].some((v, i) => v !== want[i])) {
      throw nodeError(
        node,
        `expected the residual "${node.inputs[1]}" of shape [${want}], got [${inputs[1]}]`,
      );
    }
    if (activation === "gelu") throw nodeError(node, `expected "activation" "gelu" or a residual, got both`);
  }
  return {
    rows: leadingRows(input),
    din: input[input.length - 1],
    dout,
    bias: false,
    activation,
    accumulate,
  };
}

/**
 * The lowering entry of op `linear`.
 *
 * Contract: inputs `[x]` or `[x, residual]`, x [..., Din] (a token tensor [N, T, Din]), the residual
 * [..., Dout] added after the bias; output a new tensor [..., outFeatures]; all f32 or all f16 (the
 * flavour). Weights by role: `weight` [Din, Dout] row-major (Dout contiguous: torch's [out, in]
 * transposed), `bias` [Dout] (optional).
 * Attributes: `outFeatures` (Dout, required), `activation` "none" (default) or "gelu" (exact, erf; not
 * with a residual). FLOPs: 2 * M * Din * Dout.
 */
export const linearLowering: OpLowering = {
  op: "linear",
  outputShape(node, inputs) {
    const s = nodeShape(node, inputs);
    return [...inputs[0].slice(0, -1), s.dout];
  },
  flops(node, shape) {
    const input = shape(node.inputs[0]);
    return 2 * leadingRows(input) * input[input.length - 1] * numberAttr(node, "outFeatures");
  },
  lower(ctx: LoweringContext) {
    const node = ctx.node;
    const s = { ...nodeShape(node, node.inputs.map((t) => ctx.shape(t))), bias: ctx.hasWeight("bias") };
    const weight = checkedWeight(ctx, "weight", s.din * s.dout, `[${s.din}, ${s.dout}]`);
    // Without a bias the kernel never reads binding 2; the weight stands in so the layout validates.
    const bias = s.bias ? checkedWeight(ctx, "bias", s.dout, `[${s.dout}]`) : weight;
    const flavoured = flavourSpec(ctx, linearFlavours);
    // The block, split-K and subgroup variants are f32 only: f32 plans take the device's order, f16 ones the
    // register-tiled flavours.
    const candidates = flavoured === linearFlavours.f32 ? linearPreferred(s, ctx.device) : flavoured;
    const spec = ctx.choose(candidates, (v) => linearFits(v, s, ctx.device));
    // Without a residual the kernel never reads binding 3; x stands in.
    const residual = node.inputs[1] ?? node.inputs[0];
    if (isLinearBlock(spec)) {
      lowerLinearBlock(ctx, spec, s, { weight, bias, residual });
      return;
    }
    ctx.step(spec, linearLaunch(spec, s, ctx.device.limits), [
      node.inputs[0],
      weight,
      bias,
      residual,
      node.output,
    ]);
  },
};
