/**
 * BiT's names: map a file's tensors (timm or Derm/flax naming) onto the timm names the graph uses, infer
 * the architecture from them, and check that every tensor is there with the right shape; and the
 * procedural weights of the fixtures under either naming.
 *
 * timm: `stem.conv.weight` [O,I,7,7] (OIHW), `stages.{s}.blocks.{b}.{norm1,conv1,norm2,conv2,norm3,conv3}.*`,
 * `stages.{s}.blocks.0.downsample.conv.weight`, `norm.{weight,bias}`; norms [C]. Head: `head.*`.
 * Derm: `params.feature_extractor.root_block.conv_root.kernel` [7,7,I,O] (HWIO),
 * `params.feature_extractor.block{s+1}.unit{b+1, two digits}.{conv1,conv2,conv3,conv_proj}.kernel` (HWIO),
 * `...gn{1,2,3}.{scale,bias}` and `params.feature_extractor.norm-pre-head.{scale,bias}` [1,1,1,C]; everything
 * outside `params.feature_extractor` (the head) is ignored.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { type BitArchitecture, bitArchitecture, bitTensorShapes } from "./bit_arch.ts";
import type { TensorEntry, TensorSource } from "../engine/tensor_source.ts";
import { proceduralSource, type ProceduralTensor, type ValueRule } from "../weights/procedural.ts";

/** Tensor naming scheme of a file. */
export type BitNaming = "timm" | "derm";

/** Memory layout of a stored tensor: convs OIHW (timm) or HWIO (Derm); norms are vectors. */
export type TensorLayout = "OIHW" | "HWIO" | "vector";

/** A stored tensor mapped onto a timm name. */
export interface AdaptedTensor {
  /** The tensor in the file (its own name, dtype, stored shape and offsets). */
  readonly source: TensorEntry;
  /** How its data is laid out. */
  readonly layout: TensorLayout;
  /** The timm shape (OIHW for convs, [C] for norms). */
  readonly shape: number[];
}

/** A file's tensors checked against the architecture they describe. */
export interface AdaptedWeights {
  /** Naming scheme detected. */
  readonly naming: BitNaming;
  /** Architecture inferred from the tensors. */
  readonly architecture: BitArchitecture;
  /** Every tensor of the architecture by timm name, in canonical order (see `bitTensorShapes`). */
  readonly tensors: Map<string, AdaptedTensor>;
  /** Names in the file that were skipped (classifier head). */
  readonly ignored: string[];
}

/** What {@linkcode adaptBitWeights} reads: a header or a `TensorSource`. */
export interface TensorListing {
  /** File name for messages. */
  readonly file: string;
  /** Tensors by stored name. */
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  /** The `__metadata__` map. */
  readonly metadata?: Readonly<Record<string, string>>;
}

const DERM_PREFIX = "params.feature_extractor.";
const DERM_STEM = `${DERM_PREFIX}root_block.conv_root.kernel`;
const TIMM_STEM = "stem.conv.weight";

const DERM_PARTS: Record<string, string> = {
  "downsample.conv.weight": "conv_proj.kernel",
  "conv1.weight": "conv1.kernel",
  "conv2.weight": "conv2.kernel",
  "conv3.weight": "conv3.kernel",
  "norm1.weight": "gn1.scale",
  "norm1.bias": "gn1.bias",
  "norm2.weight": "gn2.scale",
  "norm2.bias": "gn2.bias",
  "norm3.weight": "gn3.scale",
  "norm3.bias": "gn3.bias",
};

/** Unit name in Derm/flax checkpoints: `unit01`, `unit02`, ... (1-based, at least two digits). */
function dermUnit(b: number): string {
  return `unit${String(b + 1).padStart(2, "0")}`;
}

/**
 * The Derm/flax name of a timm tensor name.
 *
 * @param name A timm name from `bitTensorShapes`.
 * @returns E.g. `stages.2.blocks.9.norm1.weight` -> `params.feature_extractor.block3.unit10.gn1.scale`.
 * @throws {TypeError} for a name outside the BiT feature extractor.
 */
export function dermName(name: string): string {
  if (name === TIMM_STEM) return DERM_STEM;
  if (name === "norm.weight") return `${DERM_PREFIX}norm-pre-head.scale`;
  if (name === "norm.bias") return `${DERM_PREFIX}norm-pre-head.bias`;
  const m = /^stages\.(\d+)\.blocks\.(\d+)\.(.+)$/.exec(name);
  const part = m && Object.hasOwn(DERM_PARTS, m[3]) ? DERM_PARTS[m[3]] : undefined;
  if (!m || !part) {
    throw new TypeError(`Cannot map "${name}" to a Derm name: not a BiT feature-extractor tensor`);
  }
  return `${DERM_PREFIX}block${Number(m[1]) + 1}.${dermUnit(Number(m[2]))}.${part}`;
}

/**
 * The shape a tensor is stored with under a naming: timm as is; Derm convs OIHW -> HWIO, norms [C] -> [1,1,1,C].
 *
 * @param shape The timm shape.
 * @param naming The scheme.
 * @returns The stored shape.
 */
export function storedShape(shape: readonly number[], naming: BitNaming): number[] {
  if (naming === "timm") return [...shape];
  if (shape.length === 1) return [1, 1, 1, shape[0]];
  const [o, i, h, w] = shape;
  return [h, w, i, o];
}

function fail(file: string, tensor: string, message: string): WeightsError {
  return new WeightsError(file, tensor, `Cannot load "${tensor}" from "${file}": ${message}`);
}

function detectNaming(listing: TensorListing): BitNaming {
  if (listing.tensors.has(TIMM_STEM)) return "timm";
  if (listing.tensors.has(DERM_STEM)) return "derm";
  throw new WeightsError(
    listing.file,
    "",
    `Cannot load weights from "${listing.file}": unrecognised tensor names: expected "${TIMM_STEM}" (timm) or "${DERM_STEM}" (Derm)`,
  );
}

/** Reads the dimension `index` of `name`'s stored shape, checking its rank. */
function dimension(listing: TensorListing, name: string, rank: number, index: number): number {
  const entry = listing.tensors.get(name)!;
  if (entry.shape.length !== rank) {
    throw fail(listing.file, name, `expected a ${rank}-D tensor, got [${entry.shape.join(",")}]`);
  }
  return entry.shape[index];
}

/** Stage and unit indices above this are refused, so a hostile name cannot make a huge architecture. */
const MAX_INDEX = 1024;

function inferArchitecture(listing: TensorListing, naming: BitNaming): BitArchitecture {
  const derm = naming === "derm";
  const stemChannels = dimension(listing, derm ? DERM_STEM : TIMM_STEM, 4, derm ? 3 : 0);
  // Units per stage: one more than the largest unit index named in that stage (1-based in Derm names).
  const pattern = derm
    ? /^params\.feature_extractor\.block(\d+)\.unit(\d+)\./
    : /^stages\.(\d+)\.blocks\.(\d+)\./;
  const base = derm ? 1 : 0;
  const layers: number[] = [];
  for (const name of listing.tensors.keys()) {
    const m = pattern.exec(name);
    if (!m) continue;
    const s = Number(m[1]) - base, b = Number(m[2]) - base;
    if (s < 0 || b < 0 || s > MAX_INDEX || b > MAX_INDEX) {
      throw fail(listing.file, name, "unexpected tensor for a BiT feature extractor");
    }
    while (layers.length <= s) layers.push(0);
    layers[s] = Math.max(layers[s], b + 1);
  }
  // The first unit's conv3 gives each stage's output channels.
  const channels = layers.map((_, s) => {
    const conv3 = derm
      ? `${DERM_PREFIX}block${s + 1}.${dermUnit(0)}.conv3.kernel`
      : `stages.${s}.blocks.0.conv3.weight`;
    if (!listing.tensors.has(conv3)) throw fail(listing.file, conv3, "missing from the file");
    return dimension(listing, conv3, 4, derm ? 3 : 0);
  });
  if (layers.length === 0) {
    const first = derm
      ? `${DERM_PREFIX}block1.${dermUnit(0)}.conv3.kernel`
      : "stages.0.blocks.0.conv3.weight";
    throw fail(listing.file, first, "missing from the file (no stages found)");
  }
  try {
    return bitArchitecture(layers, channels, stemChannels);
  } catch (e) {
    throw new WeightsError(
      listing.file,
      "",
      `Cannot load weights from "${listing.file}": inferred an invalid architecture: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

function isHead(name: string, naming: BitNaming): boolean {
  return naming === "timm" ? name.startsWith("head.") : !name.startsWith(DERM_PREFIX);
}

/**
 * Maps a file's tensors onto timm names and checks them against the architecture inferred from them
 * (any BiT depth and width: R50x1, R101x3, R152x4...).
 *
 * @param listing The file name, tensors and metadata (a `TensorSource` or header will do).
 * @returns The naming, architecture, tensors by timm name (canonical order) and ignored head tensors.
 * @throws {WeightsError} naming the file and the stored tensor for an unrecognised naming, a missing,
 * unexpected or wrongly shaped tensor (expected vs got).
 *
 * @example
 * ```ts
 * const adapted = adaptBitWeights(await openSafetensorsFile("derm.safetensors"));
 * adapted.architecture.stages.map((s) => s.units); // [3, 4, 23, 3]
 * ```
 */
export function adaptBitWeights(listing: TensorListing): AdaptedWeights {
  const naming = detectNaming(listing);
  const architecture = inferArchitecture(listing, naming);
  const tensors = new Map<string, AdaptedTensor>();
  const used = new Set<string>();
  for (const { name, shape } of bitTensorShapes(architecture)) {
    const stored = naming === "timm" ? name : dermName(name);
    const source = listing.tensors.get(stored);
    if (!source) throw fail(listing.file, stored, "missing from the file");
    const want = storedShape(shape, naming);
    const got = source.shape;
    if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
      throw fail(listing.file, stored, `expected [${want.join(",")}], got [${got.join(",")}]`);
    }
    const layout: TensorLayout = shape.length === 1 ? "vector" : naming === "timm" ? "OIHW" : "HWIO";
    tensors.set(name, { source, layout, shape });
    used.add(stored);
  }
  const ignored: string[] = [];
  for (const name of listing.tensors.keys()) {
    if (used.has(name)) continue;
    if (!isHead(name, naming)) {
      throw fail(listing.file, name, "unexpected tensor for a BiT feature extractor");
    }
    ignored.push(name);
  }
  return { naming, architecture, tensors, ignored };
}

/**
 * The numeric preset of a file: metadata `preset` when it is "derm" or "bit", else by naming (Derm naming
 * means Derm Foundation, timm naming means a timm/big_transfer port).
 *
 * @param metadata The `__metadata__` map.
 * @param naming The detected naming.
 * @returns "derm" or "bit".
 */
export function presetFromMetadata(
  metadata: Readonly<Record<string, string>> | undefined,
  naming: BitNaming,
): "derm" | "bit" {
  const preset = metadata && Object.hasOwn(metadata, "preset") ? metadata.preset : undefined;
  if (preset === "derm" || preset === "bit") return preset;
  return naming === "derm" ? "derm" : "bit";
}

/**
 * The value rule of a BiT tensor (testdata/FIXTURES_README.md): 1-D names ending in "weight" are GroupNorm
 * gammas (1 + 0.25 v), names ending in "bias" betas (0.25 v), the rest convolution kernels (v).
 */
export function bitValueRule(name: string, shape: readonly number[]): ValueRule {
  if (shape.length === 1 && name.endsWith("weight")) return { a: 1, b: 0.25 };
  if (name.endsWith("bias")) return { a: 0, b: 0.25 };
  return { a: 0, b: 1 };
}

/**
 * A source of the procedural weights of `arch` (the fixtures' formula over timm names), as a float32
 * safetensors file would hold them under `naming` (timm: OIHW and [C]; derm: HWIO and [1,1,1,C]).
 *
 * @param arch The architecture.
 * @param seed The case seed.
 * @param options Naming (default timm) and the `preset` to record in the metadata.
 * @returns The source; file `procedural:<seed>`, metadata `{ seed, preset? }`.
 * @example
 * ```ts
 * const source = bitProceduralSource(BIT_R101X3, "fixture/r101x3", { naming: "derm", preset: "derm" });
 * ```
 */
export function bitProceduralSource(
  arch: BitArchitecture,
  seed: string,
  options: { naming?: BitNaming; preset?: string } = {},
): TensorSource {
  const naming = options.naming ?? "timm";
  const tensors: ProceduralTensor[] = bitTensorShapes(arch).map(({ name, shape }) => ({
    name: naming === "timm" ? name : dermName(name),
    hashName: name,
    shape,
    storedShape: storedShape(shape, naming),
    layout: naming === "derm" && shape.length === 4 ? "HWIO" : undefined,
    rule: bitValueRule(name, shape),
  }));
  return proceduralSource(tensors, seed, options.preset === undefined ? {} : { preset: options.preset });
}
