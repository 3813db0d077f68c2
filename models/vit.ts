/**
 * The vision transformers of Gröger et al. (DINO, iBOT and MAE ViT-T/16, ViT-S/16; timm's
 * `VisionTransformer`): names, the architecture inferred from the tensors, the weight transform (linear
 * weights transposed to [in, out] once at load, the patch kernel to HWIO), the graph and the embedding: the
 * class token of each of the last `vitBlocks` blocks, each through the final LayerNorm, concatenated.
 *
 * Tokens are f32 [N, T, D], T = 1 + (S / P)^2. Block i (pre-norm):
 *   x = x + proj(attention(qkv(norm1(x))))       heads of D / heads dimensions, scale 1/sqrt(D / heads)
 *   x = x + fc2(gelu(fc1(norm2(x))))              GELU exact (erf); every LayerNorm eps 1e-6
 * Tokens: patch conv P x P / P with bias on the NHWC input, the class token first, then the patches
 * row-major, plus the position embedding (no interpolation: S must match its grid).
 *
 * Heads: `vitHeads` when given; else from the checkpoint's `args` (`num_heads`, or the size in `arch` /
 * `model`: vit_tiny 3, vit_small 6, vit_base 12, vit_large 16, vit_huge 16); else D / 64 (ViT-T 3, ViT-S 6,
 * ViT-B 12), refused with a message asking for `--vit-heads` when D is not a multiple of 64.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { type Graph, GraphBuilder } from "../engine/graph.ts";
import type { ModelDefinition, WeightRecipe, WeightsInventory } from "../engine/model.ts";
import type { TensorEntry, TensorSource } from "../engine/tensor_source.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { decodeToFloat32 } from "../weights/dtypes.ts";
import { proceduralSource, type ProceduralTensor } from "../weights/procedural.ts";
import { groegerValueRule, IMAGENET_PRESET, imagenetPreprocessing } from "./imagenet.ts";

/** A ViT: width D, depth, heads, patch P, position grid (S / P), MLP width. */
export interface VitArchitecture {
  readonly dim: number;
  readonly depth: number;
  readonly heads: number;
  readonly patch: number;
  /** Side of the position embedding's patch grid: the model runs at S = patch * grid. */
  readonly grid: number;
  /** Hidden features of the MLP (4 D in every released model). */
  readonly mlp: number;
}

/** LayerNorm eps of every ViT norm. */
export const VIT_LAYER_NORM_EPS = 1e-6;
/** Class tokens of the last blocks concatenated, by default (Gröger et al.'s protocol). */
export const DEFAULT_VIT_BLOCKS = 4;
/** Channels of the model input tensor: RGB plus a zero channel, so the patch conv reads vec4. */
const INPUT_CHANNELS = 4;

/** ViT-T/16, ViT-S/16 and ViT-B/16 at 224 (14 x 14 patches). */
export const VIT_T16: VitArchitecture = { dim: 192, depth: 12, heads: 3, patch: 16, grid: 14, mlp: 768 };
/** ViT-S/16. */
export const VIT_S16: VitArchitecture = { dim: 384, depth: 12, heads: 6, patch: 16, grid: 14, mlp: 1536 };
/** ViT-B/16. */
export const VIT_B16: VitArchitecture = { dim: 768, depth: 12, heads: 12, patch: 16, grid: 14, mlp: 3072 };

/** Heads of DINO / iBOT / MAE's model names (`args.arch`, `args.model`). */
const HEADS_BY_SIZE: Readonly<Record<string, number>> = { tiny: 3, small: 6, base: 12, large: 16, huge: 16 };

/** Every tensor of `arch` in timm names and shapes, in timm's order. */
export function vitTensorShapes(arch: VitArchitecture): { name: string; shape: number[] }[] {
  const { dim: d, patch: p, grid, mlp } = arch;
  const out = [
    { name: "cls_token", shape: [1, 1, d] },
    { name: "pos_embed", shape: [1, 1 + grid * grid, d] },
    { name: "patch_embed.proj.weight", shape: [d, 3, p, p] },
    { name: "patch_embed.proj.bias", shape: [d] },
  ];
  for (let i = 0; i < arch.depth; i++) {
    const b = `blocks.${i}`;
    out.push(
      { name: `${b}.norm1.weight`, shape: [d] },
      { name: `${b}.norm1.bias`, shape: [d] },
      { name: `${b}.attn.qkv.weight`, shape: [3 * d, d] },
      { name: `${b}.attn.qkv.bias`, shape: [3 * d] },
      { name: `${b}.attn.proj.weight`, shape: [d, d] },
      { name: `${b}.attn.proj.bias`, shape: [d] },
      { name: `${b}.norm2.weight`, shape: [d] },
      { name: `${b}.norm2.bias`, shape: [d] },
      { name: `${b}.mlp.fc1.weight`, shape: [mlp, d] },
      { name: `${b}.mlp.fc1.bias`, shape: [mlp] },
      { name: `${b}.mlp.fc2.weight`, shape: [d, mlp] },
      { name: `${b}.mlp.fc2.bias`, shape: [d] },
    );
  }
  out.push({ name: "norm.weight", shape: [d] }, { name: "norm.bias", shape: [d] });
  return out;
}

/** Whether a listing holds a timm ViT (class token, position embedding, patch conv). */
export function isVit(tensors: ReadonlyMap<string, TensorEntry>): boolean {
  return tensors.has("cls_token") && tensors.has("pos_embed") && tensors.has("patch_embed.proj.weight");
}

/** Names of a ViT checkpoint the embedding does not use, and why. */
function ignoredReason(name: string): string | undefined {
  if (name.startsWith("head.") || name === "head") return "classifier head";
  if (name.startsWith("decoder") || name === "mask_token") return "MAE decoder";
  if (name.startsWith("fc_norm.")) return "pooling norm (unused: the class tokens go through norm)";
  return undefined;
}

/**
 * The heads a file states, if any: its `vit_heads` metadata (our converter and procedural weights write
 * it), else the checkpoint's `args` (an argparse Namespace, as JSON in the metadata): `num_heads`, or the
 * model size in `arch` / `model`.
 */
export function headsFromMetadata(metadata: Readonly<Record<string, string>>): number | undefined {
  const stated = Number(metadata.vit_heads);
  if (metadata.vit_heads !== undefined && Number.isInteger(stated) && stated > 0) return stated;
  if (!metadata.args) return undefined;
  let args: Record<string, unknown>;
  try {
    args = JSON.parse(metadata.args);
  } catch {
    return undefined;
  }
  if (typeof args.num_heads === "number" && Number.isInteger(args.num_heads)) return args.num_heads;
  for (const key of ["arch", "model"]) {
    const m = typeof args[key] === "string"
      ? /vit_(tiny|small|base|large|huge)/.exec(args[key] as string)
      : null;
    if (m) return HEADS_BY_SIZE[m[1]];
  }
  return undefined;
}

/** Stage indices above this are refused, so a hostile name cannot make a huge model. */
const MAX_DEPTH = 1024;

/**
 * The architecture and the tensors of a ViT listing.
 *
 * @throws {WeightsError} For a missing, misshapen or unexpected tensor, or heads that do not divide D.
 */
export function adaptVitWeights(
  listing: {
    file: string;
    tensors: ReadonlyMap<string, TensorEntry>;
    metadata?: Readonly<Record<string, string>>;
  },
  heads?: number,
): {
  architecture: VitArchitecture;
  tensors: Map<string, TensorEntry>;
  ignored: { name: string; reason: string }[];
  headsFrom: "option" | "file" | "D / 64";
} {
  const file = listing.file;
  const fail = (tensor: string, message: string) =>
    new WeightsError(file, tensor, `Cannot load "${tensor}" from "${file}": ${message}`);
  const need = (name: string) => {
    const e = listing.tensors.get(name);
    if (!e) throw fail(name, "missing from the file");
    return e;
  };
  const patchW = need("patch_embed.proj.weight");
  if (patchW.shape.length !== 4 || patchW.shape[1] !== 3 || patchW.shape[2] !== patchW.shape[3]) {
    throw fail(patchW.name, `expected a square RGB patch kernel [D, 3, P, P], got [${patchW.shape}]`);
  }
  const [dim, , patch] = patchW.shape;
  const pos = need("pos_embed");
  const tokens = pos.shape[pos.shape.length - 2];
  const grid = Math.round(Math.sqrt(tokens - 1));
  if (pos.shape.length !== 3 || grid * grid !== tokens - 1 || pos.shape[2] !== dim) {
    throw fail(pos.name, `expected [1, 1 + G^2, ${dim}] (a square grid of patches), got [${pos.shape}]`);
  }
  let depth = 0;
  for (const name of listing.tensors.keys()) {
    const m = /^blocks\.(\d+)\./.exec(name);
    if (!m) continue;
    const i = Number(m[1]);
    if (i > MAX_DEPTH) throw fail(name, "unexpected tensor for a ViT");
    depth = Math.max(depth, i + 1);
  }
  if (depth === 0) throw fail("blocks.0.attn.qkv.weight", "missing from the file (no blocks found)");
  const mlp = need("blocks.0.mlp.fc1.weight").shape[0];
  const stated = headsFromMetadata(listing.metadata ?? {});
  const h = heads ?? stated ?? (dim % 64 === 0 ? dim / 64 : undefined);
  const headsFrom = heads !== undefined ? "option" : stated !== undefined ? "file" : "D / 64";
  if (h === undefined) {
    throw fail(
      "blocks.0.attn.qkv.weight",
      `cannot tell the attention heads: D = ${dim} is not a multiple of 64 and the checkpoint states none; pass --vit-heads`,
    );
  }
  if (!Number.isInteger(h) || h < 1 || dim % h !== 0 || (dim / h) % 4 !== 0) {
    throw fail(
      "blocks.0.attn.qkv.weight",
      `expected heads that divide D = ${dim} into multiples of 4, got ${h}`,
    );
  }
  const architecture: VitArchitecture = { dim, depth, heads: h, patch, grid, mlp };
  const tensors = new Map<string, TensorEntry>();
  for (const { name, shape } of vitTensorShapes(architecture)) {
    const e = need(name);
    // A class token or position embedding may be stored without its leading 1.
    const got = e.shape.length === shape.length - 1 && shape[0] === 1 ? [1, ...e.shape] : e.shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw fail(name, `expected [${shape}], got [${e.shape}]`);
    }
    tensors.set(name, e);
  }
  const ignored: { name: string; reason: string }[] = [];
  for (const name of listing.tensors.keys()) {
    if (tensors.has(name)) continue;
    const reason = ignoredReason(name);
    if (!reason) throw fail(name, "unexpected tensor for a ViT");
    ignored.push({ name, reason });
  }
  return { architecture, tensors, ignored, headsFrom };
}

/** [out, in] row-major to [in, out] row-major (what the linear kernel reads). */
function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
  return out;
}

/** OIHW [D, 3, P, P] to HWIO [P, P, 4, D], the fourth input channel zero. */
function patchKernel(w: Float32Array, d: number, p: number): Float32Array {
  const out = new Float32Array(p * p * INPUT_CHANNELS * d);
  for (let o = 0; o < d; o++) {
    for (let i = 0; i < 3; i++) {
      for (let y = 0; y < p; y++) {
        for (let x = 0; x < p; x++) {
          out[((y * p + x) * INPUT_CHANNELS + i) * d + o] = w[((o * 3 + i) * p + y) * p + x];
        }
      }
    }
  }
  return out;
}

/** The recipes: linear weights transposed, the patch kernel to HWIO, the rest decoded as they are. */
function vitRecipes(arch: VitArchitecture, tensors: ReadonlyMap<string, TensorEntry>): WeightRecipe[] {
  return vitTensorShapes(arch).map(({ name, shape }) => {
    const stored = tensors.get(name)!.name;
    const decode = (c: { entry: TensorEntry; bytes: Uint8Array }) => decodeToFloat32(c.entry, c.bytes);
    let run: (v: Float32Array) => Float32Array = (v) => v;
    if (name === "patch_embed.proj.weight") run = (v) => patchKernel(v, arch.dim, arch.patch);
    else if (shape.length === 2) run = (v) => transpose(v, shape[0], shape[1]);
    return {
      sources: [stored],
      outputs: [name],
      transform: { kind: "cpu", run: ([chunk]) => [run(decode(chunk))] },
    };
  });
}

/**
 * The graph of a ViT for `size` x `size` inputs and `batch` images, embedding the class tokens of the last
 * `blocks` blocks.
 *
 * @returns The graph; checkpoints `tokens`, `block0`.. and, with `checkpoints`, `final_norm` (the norm
 *   over every token of the last block, which the embedding does not need).
 */
export function vitGraph(
  arch: VitArchitecture,
  options: { size: number; batch: number; blocks: number; checkpoints?: boolean },
): Graph {
  const { size, batch, blocks } = options;
  const { dim: d, patch: p } = arch;
  const g = new GraphBuilder(LOWERINGS);
  const norm = (name: string, x: string, param: string, output?: string) =>
    g.node("layer_norm", name, {
      inputs: [x],
      output,
      weights: { gamma: `${param}.weight`, beta: `${param}.bias` },
      attrs: { eps: VIT_LAYER_NORM_EPS },
    });
  const linear = (
    name: string,
    inputs: string[],
    param: string,
    out: number,
    extra: Record<string, string> = {},
  ) =>
    g.node("linear", name, {
      inputs,
      weights: { weight: `${param}.weight`, bias: `${param}.bias` },
      attrs: { outFeatures: out, ...extra },
    });
  const input = g.input("input", [batch, size, size, INPUT_CHANNELS]);
  // The fourth input channel is zero padding: FLOPs count the three real ones.
  const patches = g.node("conv2d", "patch_embed", {
    inputs: [input],
    weights: { weight: "patch_embed.proj.weight", bias: "patch_embed.proj.bias" },
    attrs: { cout: d, kernel: p, stride: p, pad: 0, flopsCin: 3 },
  });
  let x = g.node("vit_tokens", "tokens", {
    inputs: [patches],
    weights: { cls: "cls_token", pos: "pos_embed" },
  });
  g.checkpoint("tokens", x);
  const collector = "class_tokens";
  for (let i = 0; i < arch.depth; i++) {
    const b = `blocks.${i}`;
    const h = norm(`${b}.norm1`, x, `${b}.norm1`);
    const qkv = linear(`${b}.attn.qkv`, [h], `${b}.attn.qkv`, 3 * d);
    const a = g.node("attention", `${b}.attn`, { inputs: [qkv], attrs: { heads: arch.heads } });
    const mid = linear(`${b}.attn.proj`, [a, x], `${b}.attn.proj`, d);
    const h2 = norm(`${b}.norm2`, mid, `${b}.norm2`);
    const m = linear(`${b}.mlp.fc1`, [h2], `${b}.mlp.fc1`, arch.mlp, { activation: "gelu" });
    x = linear(`${b}.mlp.fc2`, [m, mid], `${b}.mlp.fc2`, d);
    g.checkpoint(`block${i}`, x);
    const slot = i - (arch.depth - blocks);
    if (slot >= 0) {
      g.node("token_gather", `class_token${i}`, {
        inputs: [x],
        output: collector,
        inPlace: slot > 0,
        attrs: { token: 0, slot, slots: blocks },
      });
    }
  }
  if (options.checkpoints) g.checkpoint("final_norm", norm("final_norm", x, "norm"));
  return g.build(norm("norm", collector, "norm", "embedding"));
}

/** One-line summary, as output files record it. */
export function vitArchitectureSummary(arch: VitArchitecture, blocks: number): string {
  return `ViT dim ${arch.dim} depth ${arch.depth} heads ${arch.heads} patch ${arch.patch} grid ${arch.grid} ` +
    `embedding CLS of the last ${blocks} blocks`;
}

/** Options a ViT model reads. */
export interface VitModelOptions {
  /** The preset: only `imagenet`. */
  readonly preset?: string;
  /** The Pillow resize side R before the crop (default round(S * 8 / 7)). */
  readonly resize?: number;
  /** Attention heads (default: the checkpoint's args, else D / 64). */
  readonly vitHeads?: number;
  /** Class tokens of the last N blocks in the embedding (default 4). */
  readonly vitBlocks?: number;
}

/**
 * The ViT model for opened weights.
 *
 * @throws {WeightsError} For a missing, misshapen or unexpected tensor, or unknown heads.
 * @throws {TypeError} For a preset other than `imagenet`.
 * @throws {RangeError} For a block count outside 1..depth.
 */
export function vitModel(source: TensorSource, options: VitModelOptions = {}): ModelDefinition {
  if (options.preset !== undefined && options.preset !== IMAGENET_PRESET) {
    throw new TypeError(`Cannot use preset "${options.preset}" with a ViT: expected "${IMAGENET_PRESET}"`);
  }
  const { architecture: arch, tensors } = adaptVitWeights(source, options.vitHeads);
  const blocks = options.vitBlocks ?? Math.min(DEFAULT_VIT_BLOCKS, arch.depth);
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > arch.depth) {
    throw new RangeError(`Cannot embed with the last ${blocks} blocks: the model has ${arch.depth}`);
  }
  const native = arch.patch * arch.grid;
  const parameters = [...tensors.values()].reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
  return {
    family: "vit",
    preset: IMAGENET_PRESET,
    defaultSize: native,
    embeddingSize: blocks * arch.dim,
    parameters,
    architecture: vitArchitectureSummary(arch, blocks),
    weights: vitRecipes(arch, tensors),
    checkSize(size) {
      if (size !== native) {
        throw new RangeError(
          `Cannot run this ViT at size ${size}: its position embedding is a ${arch.grid} x ${arch.grid} grid of ` +
            `${arch.patch}-pixel patches, so the input must be ${native} x ${native} (no interpolation)`,
        );
      }
      imagenetPreprocessing(size, options.resize);
    },
    preprocessing: (size) => imagenetPreprocessing(size, options.resize),
    graph: (size, batch, o) => vitGraph(arch, { size, batch, blocks, checkpoints: o?.checkpoints }),
  };
}

/** What a ViT file holds. */
export function vitInventory(source: TensorSource, options: { vitHeads?: number } = {}): WeightsInventory {
  const { architecture: arch, tensors, ignored, headsFrom } = adaptVitWeights(source, options.vitHeads);
  const size = arch.dim === 192 ? "T" : arch.dim === 384 ? "S" : arch.dim === 768 ? "B" : undefined;
  const name = size && arch.depth === 12
    ? `ViT-${size}/${arch.patch}`
    : `ViT (dim ${arch.dim}, depth ${arch.depth})`;
  return {
    family: "vit",
    architecture: {
      name,
      summary: vitArchitectureSummary(arch, Math.min(DEFAULT_VIT_BLOCKS, arch.depth)),
      dim: arch.dim,
      depth: arch.depth,
      heads: arch.heads,
      headsFrom,
      patch: arch.patch,
      grid: arch.grid,
      inputSize: arch.patch * arch.grid,
    },
    naming: "timm",
    preset: IMAGENET_PRESET,
    presetFrom: "family",
    embeddingSize: Math.min(DEFAULT_VIT_BLOCKS, arch.depth) * arch.dim,
    tensors,
    ignored,
    lines: [
      `${name}: ${arch.depth} blocks of width ${arch.dim}, ${arch.heads} heads, MLP ${arch.mlp}, ` +
      `${arch.patch}x${arch.patch} patches on a ${arch.grid}x${arch.grid} grid (input ${
        arch.patch * arch.grid
      })`,
      `  embedding   the class token of the last ${
        Math.min(DEFAULT_VIT_BLOCKS, arch.depth)
      } blocks through the final norm`,
    ],
  };
}

/** Procedural weights of a ViT (testdata/groeger/README.md's rule over timm names). */
export function vitProceduralSource(arch: VitArchitecture, seed: string): TensorSource {
  const tensors: ProceduralTensor[] = vitTensorShapes(arch).map(({ name, shape }) => ({
    name,
    shape,
    rule: groegerValueRule(name, shape),
  }));
  return proceduralSource(tensors, seed, {
    preset: IMAGENET_PRESET,
    family: "vit",
    vit_heads: String(arch.heads),
  });
}
