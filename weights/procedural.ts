/**
 * Procedural weights (testdata/FIXTURES_README.md): weights too large to store, rebuilt exactly from a seed
 * string and each tensor's timm name. A procedural source streams them like a safetensors file.
 *
 * For a tensor with timm name NAME, timm shape (OIHW) of n elements and seed SEED:
 * h = FNV-1a 32 over UTF-8 (SEED + "/" + NAME); x_i = h + i * 0x9E3779B9 (mod 2^32), then the murmur3
 * finaliser; v_i = x_i / 2^32 * 2 - 1 in double; GroupNorm gamma 1 + 0.25 v, beta 0.25 v, kernels v;
 * rounded to float32. Derm naming stores the same values as HWIO and [1,1,1,C].
 *
 * This module is browser compatible.
 * @module
 */
import { type BitArchitecture, bitTensorShapes } from "../models/bit_arch.ts";
import { type BitNaming, dermName, storedShape } from "./bit_names.ts";
import { WeightsError } from "../engine/errors.ts";
import type { TensorChunk, TensorEntry, TensorSource } from "./safetensors.ts";

/** How a tensor's values derive from v in [-1, 1): GroupNorm gamma, GroupNorm beta, or a conv kernel. */
export type ProceduralKind = "weight" | "bias" | "kernel";

/** FNV-1a 32-bit hash of the UTF-8 bytes of `text`. */
function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 0x01000193);
  return h >>> 0;
}

/** Golden-ratio step between consecutive elements' counters. */
const STEP = 0x9e3779b9;

/** The murmur3 32-bit finaliser, mapped to the tensor's value: `(finalised x as u32) * scale + offset`. */
function valueOf(x: number, scale: number, offset: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return (x >>> 0) * scale + offset;
}

/**
 * Scale and offset that turn the finalised u32 x into the value: v = x / 2^31 - 1; gamma 1 + v / 4 =
 * x / 2^33 + 0.75; beta v / 4 = x / 2^33 - 0.25. Every step is exact in double (x has 32 bits), so the only
 * rounding is the final one to float32, as in the formula computed literally.
 */
function valueMap(kind: ProceduralKind): [scale: number, offset: number] {
  if (kind === "kernel") return [2 ** -31, -1];
  return [2 ** -33, kind === "bias" ? -0.25 : 0.75];
}

/**
 * The values of one procedural tensor, in row-major order of its timm shape.
 *
 * @param seed The case seed (e.g. "fixture/r101x3").
 * @param name The timm name.
 * @param n Element count.
 * @param kind "weight" (1-D name ending in weight), "bias" (ending in bias) or "kernel" (anything else).
 * @returns n float32 values.
 * @throws {RangeError} when n is not a non-negative safe integer.
 *
 * @example
 * ```ts
 * const gamma = proceduralValues("fixture/tiny-bit", "norm.weight", 1024, "weight");
 * ```
 */
export function proceduralValues(
  seed: string,
  name: string,
  n: number,
  kind: ProceduralKind,
): Float32Array<ArrayBuffer> {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Cannot generate "${name}": expected a count, got ${n}`);
  }
  const out = new Float32Array(n);
  const [scale, offset] = valueMap(kind);
  let x = fnv1a32(`${seed}/${name}`) | 0;
  for (let i = 0; i < n; i++) {
    out[i] = valueOf(x, scale, offset);
    x = (x + STEP) | 0;
  }
  return out;
}

/**
 * The values of a procedural conv kernel with timm shape [O,I,H,W], laid out HWIO [H,W,I,O] (Derm naming).
 * Element (o,i,h,w) has OIHW index j, so its counter is h0 + j * STEP (mod 2^32): generated in place, no
 * transpose.
 */
function proceduralHwio(seed: string, name: string, shape: readonly number[]): Float32Array<ArrayBuffer> {
  const [o, i, h, w] = shape;
  const out = new Float32Array(o * i * h * w);
  const [scale, offset] = valueMap("kernel");
  const h0 = fnv1a32(`${seed}/${name}`) | 0;
  const oStep = Math.imul(i * h * w, STEP);
  let at = 0;
  for (let hh = 0; hh < h; hh++) {
    for (let ww = 0; ww < w; ww++) {
      for (let ii = 0; ii < i; ii++) {
        let x = (h0 + Math.imul((ii * h + hh) * w + ww, STEP)) | 0;
        for (let oo = 0; oo < o; oo++) {
          out[at++] = valueOf(x, scale, offset);
          x = (x + oStep) | 0;
        }
      }
    }
  }
  return out;
}

/**
 * The kind of a timm tensor: 1-D names ending in "weight" are gammas, in "bias" betas, the rest kernels.
 *
 * @param name The timm name.
 * @param shape The timm shape.
 * @returns The kind.
 */
export function proceduralKind(name: string, shape: readonly number[]): ProceduralKind {
  if (shape.length === 1 && name.endsWith("weight")) return "weight";
  if (name.endsWith("bias")) return "bias";
  return "kernel";
}

/** Options of {@linkcode proceduralSource}. */
export interface ProceduralSourceOptions {
  /** Tensor names and layouts: timm (OIHW, [C]; the default) or derm (HWIO, [1,1,1,C]). */
  naming?: BitNaming;
  /** Put into the metadata as `preset` ("derm" or "bit"). */
  preset?: string;
}

/**
 * A source of the procedural weights of `arch`, behaving like a float32 safetensors file with the tensors in
 * canonical order: `stream()` generates each tensor when it is reached, so one tensor at a time is in memory.
 *
 * @param arch The architecture.
 * @param seed The case seed.
 * @param options Naming (timm or derm) and preset.
 * @returns The source; file `procedural:<seed>`, metadata `{ seed, preset? }`, streamable any number of times.
 *
 * @example
 * ```ts
 * const source = proceduralSource(BIT_R101X3, "fixture/r101x3", { naming: "derm", preset: "derm" });
 * ```
 */
export function proceduralSource(
  arch: BitArchitecture,
  seed: string,
  options: ProceduralSourceOptions = {},
): TensorSource {
  const naming = options.naming ?? "timm";
  const file = `procedural:${seed}`;
  const tensors = new Map<string, TensorEntry>();
  const timmOf = new Map<string, { name: string; shape: number[] }>();
  let offset = 0;
  for (const t of bitTensorShapes(arch)) {
    const name = naming === "timm" ? t.name : dermName(t.name);
    const shape = storedShape(t.shape, naming);
    const bytes = 4 * t.shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { name, dtype: "F32", shape, begin: offset, end: offset + bytes });
    timmOf.set(name, t);
    offset += bytes;
  }
  const metadata: Record<string, string> = { seed };
  if (options.preset !== undefined) metadata.preset = options.preset;
  let closed = false;
  return {
    file,
    metadata,
    tensors,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (closed) throw new WeightsError(file, "", `Cannot read "${file}": the source is closed`);
      for (const name of wanted ?? []) {
        if (!tensors.has(name)) {
          throw new WeightsError(
            file,
            name,
            `Cannot load "${name}" from "${file}": no such tensor in the file`,
          );
        }
      }
      const entries = [...tensors.values()].filter((e) => !wanted || wanted.has(e.name));
      return (async function* () {
        for (const entry of entries) {
          const t = timmOf.get(entry.name)!;
          const values = naming === "derm" && t.shape.length === 4
            ? proceduralHwio(seed, t.name, t.shape)
            : proceduralValues(seed, t.name, (entry.end - entry.begin) / 4, proceduralKind(t.name, t.shape));
          yield { entry, bytes: new Uint8Array(values.buffer) };
        }
      })();
    },
    close() {
      closed = true;
    },
  };
}
