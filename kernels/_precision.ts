/**
 * Storage flavours of the kernels: one WGSL generator per kernel, parametrised by what it reads and writes
 * (f32, or f16 on adapters with `shader-f16`), with f32 arithmetic in every flavour: each f16 load is
 * widened to f32 before any arithmetic, each f16 store narrowed from f32 at the end.
 *
 * ```
 * flavour   activations read   weights   activation written   name
 * f32       f32                f32       f32                  <kernel>
 * f16       f16                f16       f16                  <kernel>_f16
 * f16to32   f16                f16       f32                  <kernel>_f16to32   (the embedding of an f16 plan)
 * f32to16   f32                f32       f16                  <kernel>_f32to16   (the f32 input or layers of an
 *                                                                                  f16 plan into its f16 ones)
 * ```
 *
 * The f32to16 flavour reads f32 weights: an f16 plan keeps the weights of every node reading an f32
 * activation in f32 (`f32Weights` in `engine/precision.ts`), the first layer's among them, whose f16
 * rounding would cost a weight-standardised network (BiT) most of its f16 error.
 *
 * A kernel's wrapper generates the flavours it has and its lowering entry picks the one matching the
 * node's tensors ({@linkcode nodeFlavour}, {@linkcode flavourSpec}). Scratch tensors (GroupNorm partials and
 * statistics) are f32 in every flavour.
 *
 * f16 in storage: `array<f16>` (2-byte stride) or `array<vec4<f16>>` (8 bytes); buffers are padded to a
 * multiple of 4 bytes by the planner (`storageBytes` in `engine/precision.ts`).
 *
 * This module is browser compatible.
 * @module
 */
import type { Dtype } from "../engine/precision.ts";
import type { LoweringContext } from "../engine/lowering.ts";
import { nodeError } from "./_lowering.ts";

/** What one flavour of a kernel reads and writes. */
export interface StorageTypes {
  /** Activations read (x, the residual, qkv, ...). */
  readonly input: Dtype;
  /** Resident weights read (w, bias, gamma, beta, cls, pos). */
  readonly weights: Dtype;
  /** The activation written. */
  readonly output: Dtype;
}

/** A flavour's key. */
export type Flavour = "f32" | "f16" | "f16to32" | "f32to16";

/** Every flavour's storage types. */
export const FLAVOURS: Readonly<Record<Flavour, StorageTypes>> = {
  f32: { input: "f32", weights: "f32", output: "f32" },
  f16: { input: "f16", weights: "f16", output: "f16" },
  f16to32: { input: "f16", weights: "f16", output: "f32" },
  f32to16: { input: "f32", weights: "f32", output: "f16" },
};

/** The flavours every kernel with activations in and out has. */
export const COMMON_FLAVOURS: readonly Flavour[] = ["f32", "f16"];

/**
 * A variant's name in a flavour: the f32 name as it is, else with the flavour appended.
 *
 * @example
 * ```ts
 * flavourName("conv2d_tiled", "f16"); // "conv2d_tiled_f16"
 * ```
 */
export function flavourName(base: string, flavour: Flavour): string {
  return flavour === "f32" ? base : `${base}_${flavour}`;
}

/** The flavour whose storage types are `t`, if there is one. */
export function flavourOf(t: StorageTypes): Flavour | undefined {
  return (Object.keys(FLAVOURS) as Flavour[]).find((f) =>
    FLAVOURS[f].input === t.input && FLAVOURS[f].weights === t.weights && FLAVOURS[f].output === t.output
  );
}

/**
 * `enable f16;` when any storage type is f16, else nothing. Templated because no override can express an
 * enable directive; it goes right after the header comment, before any declaration, as WGSL requires.
 */
export function wgslEnable(...dtypes: readonly Dtype[]): string {
  return dtypes.includes("f16") ? "enable f16;\n" : "";
}

/** For a WGSL header's numerics line: what an f16 flavour adds to its f32 arithmetic. */
export function storageNote(...dtypes: readonly Dtype[]): string {
  return dtypes.includes("f16") ? " (f16 loads widened to f32 first, stores narrowed last)" : "";
}

/** WGSL spellings for one storage dtype. */
export interface WgslStorage {
  /** The dtype. */
  readonly dtype: Dtype;
  /** The scalar element type (`f32` or `f16`). */
  readonly scalar: string;
  /** The 2-vector type. */
  readonly vec2: string;
  /** The 4-vector type. */
  readonly vec4: string;
  /** Expression `e`, a value of this storage type (scalar or `width`-vector), widened to f32. */
  load(e: string, width?: 1 | 2 | 4): string;
  /** Expression `e`, an f32 value (scalar or `width`-vector), narrowed to this storage type. */
  store(e: string, width?: 1 | 2 | 4): string;
}

/**
 * The WGSL types and conversions of a storage dtype.
 *
 * @example
 * ```ts
 * wgslStorage("f16").load("x[i]", 4); // "vec4f(x[i])"
 * wgslStorage("f32").store("v"); // "v"
 * ```
 */
export function wgslStorage(dtype: Dtype): WgslStorage {
  const half = dtype === "f16";
  const f32Of = (width: number) => (width === 1 ? "f32" : `vec${width}f`);
  const f16Of = (width: number) => (width === 1 ? "f16" : `vec${width}<f16>`);
  return {
    dtype,
    scalar: half ? "f16" : "f32",
    vec2: half ? "vec2<f16>" : "vec2f",
    vec4: half ? "vec4<f16>" : "vec4f",
    load: (e, width = 1) => (half ? `${f32Of(width)}(${e})` : e),
    store: (e, width = 1) => (half ? `${f16Of(width)}(${e})` : e),
  };
}

/**
 * WGSL's conversion from f32 to f16 rounds either way (the specification leaves it to the implementation),
 * so kernels that must round to nearest even (resident weights) do it on the bits: `f16_rne(v)` is v rounded
 * to nearest, ties to even, as an f16 (infinity from 65520 up, subnormals kept); the same rule as
 * `float32ToFloat16Bits` in `engine/precision.ts`. The f16 is made from its exact f32 value (through
 * `unpack2x16float`), whose conversion is exact.
 */
export const F16_RNE_WGSL = /* wgsl */ `
fn f16_rne_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a >= 0x7f800000u) { return sign | 0x7c00u | select(0u, 0x200u, a > 0x7f800000u); } // inf, NaN
  if (a >= 0x477ff000u) { return sign | 0x7c00u; } // 65520 and up: infinity
  if (a >= 0x38800000u) { // normal f16: rebias, round the 13 dropped bits to nearest even
    let r = a - 0x38000000u;
    return sign | ((r + 0x0fffu + ((r >> 13u) & 1u)) >> 13u);
  }
  // subnormal f16: units of 2^-24, exact in f32; round() is half to even
  return sign | u32(round(bitcast<f32>(a) * 16777216.0));
}

fn f16_rne(v: f32) -> f16 {
  return f16(unpack2x16float(f16_rne_bits(v)).x);
}
`;

/**
 * The flavour of the lowering node: its inputs' dtype (all alike), its weights' dtype
 * ({@linkcode LoweringContext.weightDtype}), its output's dtype.
 *
 * @throws {TypeError} Naming the node when its inputs differ in dtype or no flavour stores that mix.
 */
export function nodeFlavour(ctx: LoweringContext): Flavour {
  const node = ctx.node;
  const inputs = [...new Set(node.inputs.map((t) => ctx.dtype(t)))];
  if (inputs.length > 1) {
    throw nodeError(node, `expected inputs of one dtype, got ${node.inputs.map((t) => ctx.dtype(t))}`);
  }
  const t = { input: inputs[0] ?? "f32", weights: ctx.weightDtype, output: ctx.dtype(node.output) };
  const flavour = flavourOf(t);
  if (!flavour) {
    throw nodeError(
      node,
      `expected a storage flavour (${Object.keys(FLAVOURS).join(", ")}), got inputs ${t.input}, weights ` +
        `${t.weights}, output ${t.output}`,
    );
  }
  return flavour;
}

/**
 * The entry of `specs` for the node's flavour.
 *
 * @throws {TypeError} Naming the node, the flavour and those the kernel has, when it has not that one.
 */
export function flavourSpec<T>(ctx: LoweringContext, specs: Readonly<Partial<Record<Flavour, T>>>): T {
  const flavour = nodeFlavour(ctx);
  const spec = specs[flavour];
  if (spec === undefined) {
    const t = FLAVOURS[flavour];
    throw nodeError(
      ctx.node,
      `expected a kernel flavour for ${t.input} input and ${t.output} output (${flavour}), got only ${
        Object.keys(specs).join(", ")
      }`,
    );
  }
  return spec;
}
