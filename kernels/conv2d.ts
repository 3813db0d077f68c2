/**
 * 2-D convolution kernels (implicit GEMM, no im2col buffer): the wrapper that describes each variant and
 * validates a shape into a launch. It never allocates, submits or reads back.
 *
 * ```
 * conv2d: y[n,oy,ox,co] = act(sum_{ky,kx,ci} x[n, oy*S-P+ky, ox*S-P+kx, ci] * w[ky,kx,ci,co]
 *   (+ bias[co] if bias) (+ y if accumulate)), act = ReLU if relu else identity
 * x: f32 NHWC [N,H,W,Cin] · w: f32 HWIO [KH,KW,Cin,Cout] · bias: f32 [Cout] · y: f32 NHWC [N,OH,OW,Cout];
 *   zero padding P
 * bindings: 0 x r · 1 w r · 2 bias r · 3 y rw · 4 uniforms {n,h,w,cin,cout,kh,kw,stride,pad,oh,ow,accumulate,
 *   m,units,cout_tiles,has_bias,relu,_pad0,_pad1,_pad2: u32}
 * overrides: WG (workgroup size), CK (Cin chunk summed apart) · dispatch folded over x,y (foldWorkgroups):
 *   ceil(units / WG) when a unit is an invocation's tile, units when it is a workgroup's (conv2d_pixel_lanes)
 * numerics: f32; partial sums per (ky,kx,CK channels) added to the total; then bias, residual, ReLU in
 *   that order (ResNet's relu(bn(conv) + identity) with the BatchNorm folded into w and bias)
 * ```
 *
 * The epilogue serves both families: BiT's residual add (accumulate into the residual stream) and
 * torchvision ResNet's folded BatchNorm (bias) with ReLU, after the residual add in the block's last conv.
 *
 * Variants: `conv2d_direct` (one output per invocation, any Cin/Cout: the baseline), `conv2d_tiled` (8 pixels
 * x 8 channels per invocation, lanes along channels: the fastest on llvmpipe/lavapipe, the default) and
 * `conv2d_pixel_lanes` (8 pixels x 16 channels per invocation, lanes along pixels, one channel block per
 * workgroup). The register-tiled ones need Cin % 4 == 0 and Cout % 4 == 0. The GPU-oriented variants
 * (workgroup-memory block tiles, split-K, subgroups) live in `conv2d_block.ts`; they share this op's
 * bindings, are candidates of this op's lowering, and {@linkcode conv2dLaunch} delegates to them.
 *
 * Default order: on CPU rasterisers (`LoweringDevice.cpuAdapter` true or unset) the measured one above,
 * the block variants last (`gpuOnly`: chosen there only when forced by `--kernels`); on GPUs the block variants
 * first, ordered per shape by `conv2dBlockGpuOrder`.
 *
 * Each variant comes in three storage flavours (`kernels/_precision.ts`): f32 (`conv2d_tiled`), f16
 * (`conv2d_tiled_f16`: x, w, bias, y in f16) and f32to16 (`conv2d_tiled_f32to16`: x, w, bias f32, y f16:
 * an f16 plan's first convolution, reading the f32 model input); the lowering picks the node's.
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
  type UniformField,
} from "../engine/kernel.ts";
import { expectInputs, flagAttr, type GraphNode, numberAttr } from "../engine/graph.ts";
import type { LoweringDevice, OpLowering } from "../engine/lowering.ts";
import {
  conv2dBlockFits,
  conv2dBlockGpuOrder,
  conv2dBlockLaunch,
  conv2dBlockVariants,
  isConv2dBlock,
  lowerConv2dBlock,
} from "./conv2d_block.ts";
import {
  conv2dDirectSource,
  PIXEL_LANES_COLUMNS4,
  PIXEL_LANES_PIXELS,
  registerTileWgsl,
  TILED_COLUMNS4,
  TILED_PIXELS,
} from "./conv2d.wgsl.ts";
import { type Flavour, flavourName, FLAVOURS, flavourSpec, type StorageTypes } from "./_precision.ts";

/** A convolution: input size, channels, square-or-not kernel, stride and symmetric zero padding. */
export interface Conv2dShape {
  /** Batch N. */
  readonly n: number;
  /** Input height H. */
  readonly h: number;
  /** Input width W. */
  readonly w: number;
  /** Input channels Cin. */
  readonly cin: number;
  /** Output channels Cout. */
  readonly cout: number;
  /** Kernel height KH. */
  readonly kh: number;
  /** Kernel width KW. */
  readonly kw: number;
  /** Stride, the same along H and W. */
  readonly stride: number;
  /** Zero padding on all four sides. */
  readonly pad: number;
  /** When true, y = conv(x) + y: y holds the residual on entry (the fused residual add). */
  readonly accumulate: boolean;
  /** Add `bias[co]` (a folded BatchNorm); the bias binding is read only then. */
  readonly bias?: boolean;
  /** Apply ReLU last (after bias and residual). */
  readonly relu?: boolean;
}

/** Workgroup size of every conv2d variant (invocations; llvmpipe runs 8 per SIMD step). */
export const CONV2D_WORKGROUP_SIZE = 64;
/** Input channels summed into one partial before it joins the total (accuracy over long K). */
export const CONV2D_CHUNK = 64;
/** Output pixels per invocation of `conv2d_tiled` (the generated WGSL's register tile). */
export const CONV2D_TILED_PIXELS = TILED_PIXELS;
/** Output channels per invocation of `conv2d_tiled` (vec4 groups along Cout x 4). */
export const CONV2D_TILED_CHANNELS = 4 * TILED_COLUMNS4;

const bindings = [
  { name: "x", type: "read-only-storage" },
  { name: "w", type: "read-only-storage" },
  { name: "bias", type: "read-only-storage" },
  { name: "y", type: "storage" },
] as const;

/** The storage flavours of every conv2d variant: f32, f16, and f32 input to f16 output (the first conv). */
export const CONV2D_FLAVOURS: readonly Flavour[] = ["f32", "f16", "f32to16"];

/** Output pixels per invocation of `conv2d_pixel_lanes` (a workgroup owns WG times as many). */
export const CONV2D_PIXEL_LANES_PIXELS = PIXEL_LANES_PIXELS;
/** Output channels per invocation (and per workgroup) of `conv2d_pixel_lanes`. */
export const CONV2D_PIXEL_LANES_CHANNELS = 4 * PIXEL_LANES_COLUMNS4;

/** Workgroup size of `conv2d_pixel_lanes`: a workgroup owns this x 8 pixels, so smaller wastes less at 14x14. */
export const CONV2D_PIXEL_LANES_WORKGROUP_SIZE = 32;

/** How a variant splits the output into invocations: pixels and channels per unit, and channel alignment. */
interface Tiling {
  pixels: number;
  channels: number;
  align: number;
  unit: "invocation" | "workgroup";
}

/** Each variant (by strategy name): its tiling, workgroup size and generator. */
const STRATEGIES: readonly {
  name: string;
  tiling: Tiling;
  wg: number;
  wgsl: (name: string, t: StorageTypes) => string;
}[] = [
  {
    name: "conv2d_direct",
    tiling: { pixels: 1, channels: 1, align: 1, unit: "invocation" },
    wg: CONV2D_WORKGROUP_SIZE,
    wgsl: conv2dDirectSource,
  },
  {
    name: "conv2d_tiled",
    tiling: { pixels: CONV2D_TILED_PIXELS, channels: CONV2D_TILED_CHANNELS, align: 4, unit: "invocation" },
    wg: CONV2D_WORKGROUP_SIZE,
    wgsl: (name, t) => registerTileWgsl(name, TILED_PIXELS, TILED_COLUMNS4, "channels", t),
  },
  {
    name: "conv2d_pixel_lanes",
    tiling: {
      pixels: CONV2D_PIXEL_LANES_PIXELS,
      channels: CONV2D_PIXEL_LANES_CHANNELS,
      align: 4,
      unit: "workgroup",
    },
    wg: CONV2D_PIXEL_LANES_WORKGROUP_SIZE,
    wgsl: (name, t) => registerTileWgsl(name, PIXEL_LANES_PIXELS, PIXEL_LANES_COLUMNS4, "pixels", t),
  },
];

/** Tiling of every variant in every flavour, by spec name. */
const tiling = new Map<string, Tiling>();

/** Every variant in one flavour, in the order of {@linkcode STRATEGIES} (direct, tiled, pixel lanes). */
function flavoured(flavour: Flavour): KernelSpec[] {
  return STRATEGIES.map((v) => {
    const name = flavourName(v.name, flavour);
    tiling.set(name, v.tiling);
    return {
      name,
      wgsl: v.wgsl(name, FLAVOURS[flavour]),
      bindings,
      overrides: { WG: v.wg, CK: CONV2D_CHUNK },
    };
  });
}

/** The variants of each flavour: direct, tiled, pixel lanes. */
export const conv2dFlavours: Readonly<Record<string, readonly KernelSpec[]>> = Object.fromEntries(
  CONV2D_FLAVOURS.map((f) => [f, flavoured(f)]),
);

/** Baseline: one output element per invocation; any Cin and Cout. */
export const conv2dDirect: KernelSpec = conv2dFlavours.f32[0];

/** Register-tiled: 8 output pixels x 8 output channels per invocation; Cin % 4 == 0, Cout % 4 == 0. */
export const conv2dTiled: KernelSpec = conv2dFlavours.f32[1];

/**
 * Lanes on pixels, a channel block per workgroup: 8 pixels x 16 channels per invocation, weights loaded at
 * workgroup-uniform addresses; Cin % 4 == 0, Cout % 4 == 0.
 */
export const conv2dPixelLanes: KernelSpec = conv2dFlavours.f32[2];

/**
 * The register-tiled f32 variants (tested in conv2d_test.ts, with their f16 flavours); the block variants are
 * `conv2dBlockVariants` (conv2d_block.ts, tested in conv2d_block_test.ts, f32 only). All are in the registry.
 */
export const conv2dVariants: readonly KernelSpec[] = conv2dFlavours.f32;

/** Every variant in every flavour, for the registry. */
export const conv2dAllVariants: readonly KernelSpec[] = CONV2D_FLAVOURS.flatMap((f) => conv2dFlavours[f]);

/**
 * Output size along one dimension: floor((h + 2*pad - k) / stride) + 1.
 *
 * @param h Input size.
 * @param k Kernel size.
 * @param stride Stride.
 * @param pad Zero padding on each side.
 * @returns The output size (may be < 1 for a kernel larger than the padded input).
 * @example
 * ```ts
 * conv2dOutputSize(448, 7, 2, 3); // 224
 * ```
 */
export function conv2dOutputSize(h: number, k: number, stride: number, pad: number): number {
  return Math.floor((h + 2 * pad - k) / stride) + 1;
}

/**
 * Validates a shape for `spec` and returns its dispatch, uniform bytes and output shape.
 *
 * @param spec One of {@linkcode conv2dVariants}.
 * @param shape The convolution.
 * @param limits Device limits (default the WebGPU defaults).
 * @returns Workgroups (folded over x and y), uniforms and `outShape` = [N, OH, OW, Cout].
 * @throws {TypeError} When a dimension is not a positive integer, the kernel does not fit the padded input,
 *   or the variant needs Cin % 4 == 0 / Cout % 4 == 0.
 * @throws {RangeError} When even a folded dispatch exceeds the limits.
 * @example
 * ```ts
 * const shape = { n: 1, h: 448, w: 448, cin: 4, cout: 192, kh: 7, kw: 7, stride: 2, pad: 3, accumulate: false };
 * conv2dLaunch(conv2dTiled, shape).outShape; // [1, 224, 224, 192]
 * ```
 */
export function conv2dLaunch(
  spec: KernelSpec,
  shape: Conv2dShape,
  limits: LaunchLimits = DEFAULT_LAUNCH_LIMITS,
): KernelLaunch & { outShape: [number, number, number, number] } {
  if (isConv2dBlock(spec)) return conv2dBlockLaunch(spec, shape, { limits });
  const what = spec.name;
  const t = tiling.get(spec.name);
  if (!t) throw new TypeError(`Cannot launch ${what}: expected a conv2d variant, got "${spec.name}"`);
  for (const key of ["n", "h", "w", "cin", "cout", "kh", "kw", "stride"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a positive integer, got ${v}`);
    }
  }
  if (!Number.isInteger(shape.pad) || shape.pad < 0) {
    throw new TypeError(`Cannot launch ${what}: expected pad to be a non-negative integer, got ${shape.pad}`);
  }
  for (const key of ["accumulate", "bias", "relu"] as const) {
    const v = shape[key];
    if (typeof v !== "boolean" && !(key !== "accumulate" && v === undefined)) {
      throw new TypeError(`Cannot launch ${what}: expected ${key} to be a boolean, got ${v}`);
    }
  }
  if (shape.cin % t.align !== 0) {
    throw new TypeError(`Cannot launch ${what}: expected Cin % ${t.align} == 0, got ${shape.cin}`);
  }
  if (shape.cout % t.align !== 0) {
    throw new TypeError(`Cannot launch ${what}: expected Cout % ${t.align} == 0, got ${shape.cout}`);
  }
  const oh = conv2dOutputSize(shape.h, shape.kh, shape.stride, shape.pad);
  const ow = conv2dOutputSize(shape.w, shape.kw, shape.stride, shape.pad);
  if (oh < 1 || ow < 1) {
    throw new TypeError(
      `Cannot launch ${what}: expected the ${shape.kh}x${shape.kw} kernel to fit the padded ${shape.h}x${shape.w} ` +
        `input (pad ${shape.pad}), got output ${oh}x${ow}`,
    );
  }
  const m = shape.n * oh * ow;
  const wg = spec.overrides.WG;
  const coutTiles = Math.ceil(shape.cout / t.channels);
  // units: what one invocation owns, or (unit "workgroup") what one workgroup owns
  const pixelsPerUnit = t.unit === "workgroup" ? t.pixels * wg : t.pixels;
  const units = Math.ceil(m / pixelsPerUnit) * coutTiles;
  const outElems = m * shape.cout;
  if (units > 0xffffffff || outElems > 0xffffffff) {
    throw new RangeError(`Cannot launch ${what}: expected at most 2^32 outputs, got ${outElems}`);
  }
  const workgroups = foldWorkgroups(t.unit === "workgroup" ? units : Math.ceil(units / wg), limits, what);
  if (workgroups[0] * workgroups[1] * wg > 0xffffffff) {
    throw new RangeError(`Cannot launch ${what}: expected at most 2^32 invocations, got ${units}`);
  }
  return {
    workgroups,
    uniforms: conv2dUniforms(shape, oh, ow, units, coutTiles),
    outShape: [shape.n, oh, ow, shape.cout],
  };
}

/** Packs the WGSL `Uniforms` struct of `conv2d.wgsl.ts`, field by field in its order. */
function conv2dUniforms(
  s: Conv2dShape,
  oh: number,
  ow: number,
  units: number,
  coutTiles: number,
): Uint8Array<ArrayBuffer> {
  const fields: UniformField[] = [
    ["n", "u32", s.n],
    ["h", "u32", s.h],
    ["w", "u32", s.w],
    ["cin", "u32", s.cin],
    ["cout", "u32", s.cout],
    ["kh", "u32", s.kh],
    ["kw", "u32", s.kw],
    ["stride", "u32", s.stride],
    ["pad", "u32", s.pad],
    ["oh", "u32", oh],
    ["ow", "u32", ow],
    ["accumulate", "u32", s.accumulate ? 1 : 0],
    ["m", "u32", s.n * oh * ow],
    ["units", "u32", units],
    ["cout_tiles", "u32", coutTiles],
    ["has_bias", "u32", s.bias ? 1 : 0],
    ["relu", "u32", s.relu ? 1 : 0],
    ["_pad0", "u32", 0],
    ["_pad1", "u32", 0],
    ["_pad2", "u32", 0],
  ];
  return packUniforms(fields);
}

/**
 * Register-tiled variants of each flavour in the order the planner prefers them on CPU rasterisers: what
 * f16 plans choose from (the block variants exist in f32 only).
 */
const PREFERRED: Readonly<Record<string, readonly KernelSpec[]>> = Object.fromEntries(
  CONV2D_FLAVOURS.map((f) => {
    const [direct, tiled, pixelLanes] = conv2dFlavours[f];
    return [f, [tiled, pixelLanes, direct]];
  }),
);

/**
 * f32 variants in the order the planner prefers them on CPU rasterisers (fastest measured on llvmpipe and
 * lavapipe first); the GPU-oriented ones last, so they are chosen there only when forced (`gpuOnly`).
 */
const CPU_PREFERRED: readonly KernelSpec[] = [
  conv2dTiled,
  conv2dPixelLanes,
  conv2dDirect,
  ...conv2dBlockVariants,
];

/**
 * The variants in the order the planner prefers them for `shape` on `device`: the CPU order unless the
 * device says it is not a CPU rasteriser (`cpuAdapter: false`), then the block variants first.
 */
export function conv2dPreferred(shape: Conv2dShape, device?: LoweringDevice): readonly KernelSpec[] {
  if (device?.cpuAdapter !== false) return CPU_PREFERRED;
  return [...conv2dBlockGpuOrder(shape), conv2dTiled, conv2dPixelLanes, conv2dDirect];
}

/**
 * Whether `spec` can run `shape`: its channel alignment; for the block variants also the device's
 * features and, for split-K, whether splitting pays (which needs the whole shape).
 */
export function conv2dFits(
  spec: KernelSpec,
  shape: Pick<Conv2dShape, "cin" | "cout"> | Conv2dShape,
  device?: LoweringDevice,
): boolean {
  if (isConv2dBlock(spec)) return "kh" in shape && conv2dBlockFits(spec, shape, device);
  const t = tiling.get(spec.name);
  return t !== undefined && shape.cin % t.align === 0 && shape.cout % t.align === 0;
}

/** The conv2d shape of a graph node (input NHWC, attributes). */
function nodeShape(node: GraphNode, input: Shape): Conv2dShape {
  const [n, h, w, cin] = input;
  const kh = numberAttr(node, "kh", node.attrs.kernel as number | undefined);
  return {
    n,
    h,
    w,
    cin,
    cout: numberAttr(node, "cout"),
    kh,
    kw: numberAttr(node, "kw", kh),
    stride: numberAttr(node, "stride", 1),
    pad: numberAttr(node, "pad", 0),
    accumulate: node.inPlace,
    bias: node.weights.bias !== undefined,
    relu: flagAttr(node, "relu"),
  };
}

/**
 * The `conv2d` op. Input x NHWC [N,H,W,Cin]; attrs `cout`, `kernel` (or `kh`, `kw`), `stride` (1), `pad` (0),
 * `relu` (false), `flopsCin` (input channels to count in FLOPs, when some are zero padding); weights
 * `weight` (HWIO, [KH,KW,Cin,Cout]) and optional `bias` ([Cout]); `inPlace` adds into the output (the
 * residual). Output NHWC [N,OH,OW,Cout]. Flavours f32, f16 and f32to16, by the node's tensors.
 */
export const conv2dLowering: OpLowering = {
  op: "conv2d",
  outputShape(node, inputs) {
    expectInputs(node, inputs, 1, 4);
    const s = nodeShape(node, inputs[0]);
    const oh = conv2dOutputSize(s.h, s.kh, s.stride, s.pad);
    const ow = conv2dOutputSize(s.w, s.kw, s.stride, s.pad);
    if (oh < 1 || ow < 1) {
      throw new TypeError(
        `Cannot build "${node.name}": a ${s.kh}x${s.kw} kernel does not fit [${inputs[0]}]`,
      );
    }
    return [s.n, oh, ow, s.cout];
  },
  flops(node, shape) {
    const [n, oh, ow, cout] = shape(node.output);
    const s = nodeShape(node, shape(node.inputs[0]));
    const cin = numberAttr(node, "flopsCin", s.cin);
    return 2 * n * oh * ow * cout * s.kh * s.kw * cin;
  },
  lower(ctx) {
    const node = ctx.node;
    const shape = nodeShape(node, ctx.shape(node.inputs[0]));
    const flavoured: readonly KernelSpec[] = flavourSpec(ctx, PREFERRED);
    // The block, split-K and subgroup variants are f32 only: f32 plans take the device's order, f16 ones the
    // register-tiled flavours.
    const candidates = flavoured === PREFERRED.f32 ? conv2dPreferred(shape, ctx.device) : flavoured;
    const spec = ctx.choose(candidates, (c) => conv2dFits(c, shape, ctx.device));
    if (isConv2dBlock(spec)) {
      lowerConv2dBlock(ctx, spec, shape);
      return;
    }
    const launch = conv2dLaunch(spec, shape, ctx.device.limits);
    const weight = ctx.weight("weight");
    // Without a bias the binding is unread: the weights stand in (read-only aliasing is allowed).
    const bias = shape.bias ? ctx.weight("bias") : weight;
    ctx.step(spec, launch, [node.inputs[0], weight, bias, node.output]);
  },
};
