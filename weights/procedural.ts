/**
 * Procedural weights (testdata/FIXTURES_README.md, testdata/groeger/README.md): weights too large to store,
 * rebuilt exactly from a seed string and each tensor's name. A procedural source streams them like a
 * safetensors file. Which tensors exist and how each value derives from the hash stream is the model
 * family's business (`models/`); this module only runs the stream.
 *
 * For a tensor hashed under NAME with n elements and seed SEED:
 * h = FNV-1a 32 over UTF-8 (SEED + "/" + NAME); x_i = h + i * 0x9E3779B9 (mod 2^32), then the murmur3
 * finaliser; v_i = x_i / 2^32 * 2 - 1 in double; value = float32(a + b * v_i) with the tensor's (a, b)
 * (BiT gamma 1 + 0.25 v; a conv kernel v; Gröger et al.'s linear layers v * sqrt(3 / fan_in)).
 * A tensor may be stored transposed (Derm Foundation's HWIO kernels): its values are generated in place
 * in the stored order, element (o,i,h,w) of the hashed OIHW shape keeping its counter.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import type { TensorChunk, TensorEntry, TensorSource } from "../engine/tensor_source.ts";

/** FNV-1a 32-bit hash of the UTF-8 bytes of `text`. */
function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 0x01000193);
  return h >>> 0;
}

/** Golden-ratio step between consecutive elements' counters. */
const STEP = 0x9e3779b9;

/** The murmur3 32-bit finaliser of counter x, mapped to v = x / 2^31 - 1 in [-1, 1) (exact in double). */
function streamValue(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return (x >>> 0) * 2 ** -31 - 1;
}

/** How a tensor's values derive from v in [-1, 1): float32(a + b * v). */
export interface ValueRule {
  /** Offset a. */
  readonly a: number;
  /** Scale b. */
  readonly b: number;
}

/**
 * The values of one procedural tensor, in row-major order of its hashed shape.
 *
 * @param seed The case seed (e.g. "fixture/r101x3").
 * @param name The name hashed (the canonical name: timm / torchvision).
 * @param n Element count.
 * @param rule The value rule.
 * @returns n float32 values.
 * @throws {RangeError} when n is not a non-negative safe integer.
 *
 * @example
 * ```ts
 * const gamma = proceduralValues("fixture/tiny-bit", "norm.weight", 1024, { a: 1, b: 0.25 });
 * ```
 */
export function proceduralValues(
  seed: string,
  name: string,
  n: number,
  rule: ValueRule,
): Float32Array<ArrayBuffer> {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Cannot generate "${name}": expected a count, got ${n}`);
  }
  const out = new Float32Array(n);
  const { a, b } = rule;
  let x = fnv1a32(`${seed}/${name}`) | 0;
  for (let i = 0; i < n; i++) {
    out[i] = a + b * streamValue(x);
    x = (x + STEP) | 0;
  }
  return out;
}

/**
 * The values of a procedural kernel hashed as [O,I,H,W], laid out HWIO [H,W,I,O]. Element (o,i,h,w) has
 * OIHW index j, so its counter is h0 + j * STEP (mod 2^32): generated in place, no transpose.
 */
function proceduralHwio(
  seed: string,
  name: string,
  shape: readonly number[],
  rule: ValueRule,
): Float32Array<ArrayBuffer> {
  const [o, i, h, w] = shape;
  const out = new Float32Array(o * i * h * w);
  const h0 = fnv1a32(`${seed}/${name}`) | 0;
  const oStep = Math.imul(i * h * w, STEP);
  let at = 0;
  for (let hh = 0; hh < h; hh++) {
    for (let ww = 0; ww < w; ww++) {
      for (let ii = 0; ii < i; ii++) {
        let x = (h0 + Math.imul((ii * h + hh) * w + ww, STEP)) | 0;
        for (let oo = 0; oo < o; oo++) {
          out[at++] = rule.a + rule.b * streamValue(x);
          x = (x + oStep) | 0;
        }
      }
    }
  }
  return out;
}

/** One tensor of a procedural source. */
export interface ProceduralTensor {
  /** Name in the source (the file's naming). */
  readonly name: string;
  /** Name hashed (default `name`): the canonical name, whatever the naming. */
  readonly hashName?: string;
  /** Hashed shape, row-major order of the stream (OIHW for convolutions). */
  readonly shape: readonly number[];
  /** Stored shape (default `shape`). With `layout` "HWIO" a [O,I,H,W] hashed shape is stored [H,W,I,O]. */
  readonly storedShape?: readonly number[];
  /** Store a 4-D kernel hashed OIHW as HWIO. */
  readonly layout?: "HWIO";
  /** How values derive from the stream; absent for an I64 tensor of zeros (`num_batches_tracked`). */
  readonly rule?: ValueRule;
}

/**
 * A source of procedural tensors, behaving like a safetensors file with the tensors in the order given:
 * `stream()` generates each tensor when it is reached, so one tensor at a time is in memory.
 *
 * @param tensors The tensors, in file order.
 * @param seed The seed.
 * @param metadata Put into the source's metadata (with `seed`).
 * @returns The source; file `procedural:<seed>`, streamable any number of times until closed.
 *
 * @example
 * ```ts
 * const source = proceduralSource([{ name: "w", shape: [4], rule: { a: 0, b: 1 } }], "s");
 * ```
 */
export function proceduralSource(
  tensors: readonly ProceduralTensor[],
  seed: string,
  metadata: Readonly<Record<string, string>> = {},
): TensorSource {
  const file = `procedural:${seed}`;
  const entries = new Map<string, TensorEntry>();
  const specs = new Map<string, ProceduralTensor>();
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const dtype = t.rule ? "F32" : "I64";
    const bytes = (t.rule ? 4 : 8) * n;
    const shape = t.storedShape ??
      (t.layout === "HWIO" ? [t.shape[2], t.shape[3], t.shape[1], t.shape[0]] : t.shape);
    if (entries.has(t.name)) throw new TypeError(`Cannot generate "${t.name}" twice`);
    entries.set(t.name, { name: t.name, dtype, shape: [...shape], begin: offset, end: offset + bytes });
    specs.set(t.name, t);
    offset += bytes;
  }
  let closed = false;
  return {
    file,
    metadata: { ...metadata, seed },
    tensors: entries,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (closed) throw new WeightsError(file, "", `Cannot read "${file}": the source is closed`);
      for (const name of wanted ?? []) {
        if (!entries.has(name)) {
          throw new WeightsError(
            file,
            name,
            `Cannot load "${name}" from "${file}": no such tensor in the file`,
          );
        }
      }
      const list = [...entries.values()].filter((e) => !wanted || wanted.has(e.name));
      return (async function* () {
        for (const entry of list) {
          const t = specs.get(entry.name)!;
          const hashed = t.hashName ?? t.name;
          const n = t.shape.reduce((a, b) => a * b, 1);
          const values = !t.rule
            ? new BigInt64Array(n)
            : t.layout === "HWIO"
            ? proceduralHwio(seed, hashed, t.shape, t.rule)
            : proceduralValues(seed, hashed, n, t.rule);
          yield { entry, bytes: new Uint8Array(values.buffer) };
        }
      })();
    },
    close() {
      closed = true;
    },
  };
}
