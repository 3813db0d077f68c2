/**
 * Access to ../shared/fixtures: the cases, their reference tensors (read here with F64 support, which the
 * engine's reader rightly refuses), and the weights each case uses.
 * @module
 */
import { type BitArchitecture, bitArchitecture } from "../models/bit_arch.ts";
import type { WeightsInput } from "../models/bit_embedder.ts";
import type { BitPreset } from "../models/bit.ts";

/** The fixtures folder, beside the checkout. */
export const FIXTURES_DIR = new URL("../../shared/fixtures/", import.meta.url);

/** Whether ../shared/fixtures is present; tests that need it skip with this reason otherwise. */
export function fixturesMissing(): string | undefined {
  try {
    Deno.statSync(new URL("bit/cases.json", FIXTURES_DIR));
    return undefined;
  } catch {
    return `fixtures not found at ${FIXTURES_DIR.pathname} (../shared beside the checkout)`;
  }
}

/** One entry of bit/cases.json. */
export interface FixtureCase {
  name: string;
  layers: number[];
  channels: number[];
  stem_chs: number;
  seed: string;
  preset: BitPreset;
  image: string;
  size: number;
  naming?: "timm" | "derm";
  store_weights?: boolean;
  intermediates?: boolean;
}

/** Reads bit/cases.json. */
export function fixtureCases(): FixtureCase[] {
  return JSON.parse(Deno.readTextFileSync(new URL("bit/cases.json", FIXTURES_DIR)));
}

/** The architecture of a case. */
export function caseArchitecture(c: FixtureCase): BitArchitecture {
  return bitArchitecture(c.layers, c.channels, c.stem_chs);
}

/** Path of the stored weights a case uses (its own, or those of the case with the same seed), if any. */
export function caseWeightsPath(c: FixtureCase, all = fixtureCases()): string | undefined {
  const stored = all.find((o) => o.seed === c.seed && o.store_weights);
  return stored ? new URL(`bit/${stored.name}.safetensors`, FIXTURES_DIR).pathname : undefined;
}

/** What the embedder loads for a case: the stored file, else its procedural weights. */
export function caseWeights(c: FixtureCase): WeightsInput {
  return caseWeightsPath(c) ?? { procedural: caseArchitecture(c), seed: c.seed };
}

/** The image file of a case. */
export function caseImagePath(c: FixtureCase): string {
  return new URL(`bit/${c.image}`, FIXTURES_DIR).pathname;
}

/** A reference tensor. */
export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

/** Reads a case's `.ref.safetensors`: every tensor as float64, and the metadata. */
export function readReference(
  name: string,
): { tensors: Map<string, RefTensor>; metadata: Record<string, string> } {
  const bytes = Deno.readFileSync(new URL(`bit/${name}.ref.safetensors`, FIXTURES_DIR));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const start = 8 + headerLength;
  const tensors = new Map<string, RefTensor>();
  let metadata: Record<string, string> = {};
  for (const [key, entry] of Object.entries(header)) {
    if (key === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: [b, e] } = entry as {
      dtype: string;
      shape: number[];
      data_offsets: number[];
    };
    const raw = bytes.slice(start + b, start + e).buffer;
    const data = dtype === "F64"
      ? new Float64Array(raw)
      : dtype === "F32"
      ? Float64Array.from(new Float32Array(raw))
      : null;
    if (!data) throw new Error(`Unexpected dtype ${dtype} for "${key}" in ${name}.ref.safetensors`);
    tensors.set(key, { shape, data });
  }
  return { tensors, metadata };
}

/** The fixtures' bound: min(2 x PyTorch float32's own error, 5e-5). */
export function embeddingBound(metadata: Record<string, string>): number {
  return Math.min(2 * Number(metadata.torch_f32_max_rel_err), 5e-5);
}
