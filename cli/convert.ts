/**
 * `deno task convert`: weights from a TensorFlow SavedModel (Derm Foundation as published), a safetensors
 * file or a BiT .npz into the safetensors file the engine loads, with no Python or TensorFlow.
 *
 * One tensor is in memory at a time: each is read from its byte range, CRC-checked (SavedModel), re-typed
 * when asked, and appended to a temporary file renamed to OUT at the end, so a failure leaves no output.
 * @module
 */
import { parseArgs } from "node:util";
import { WeightsError } from "../engine/errors.ts";
import { FAMILIES, isPytorchPath, openWeights, PYTORCH_EXTENSIONS } from "../models/registry.ts";
import {
  decodeToFloat32,
  entriesInFileOrder,
  type SafetensorsDtype,
  type TensorChunk,
  type TensorEntry,
  type TensorSource,
} from "../weights/safetensors.ts";
import { openSafetensorsFile } from "../weights/safetensors_deno.ts";
import { openNpzFile } from "../weights/npz_deno.ts";
import { writeSafetensorsFile } from "../weights/safetensors_write_deno.ts";
import { openSavedModel, type SavedModelSource } from "../weights/savedmodel_deno.ts";
import { reportError } from "./errors.ts";

/** Written to the `converter` metadata key. */
export const CONVERTER_VERSION = "derm-webgpu convert 0.1.0";

const HELP = `deno task convert: SavedModel / PyTorch checkpoint / safetensors / BiT .npz -> safetensors

Usage:
  deno task convert SRC --out OUT.safetensors [--dtype f32|f16] [--preset derm|bit|imagenet] [--vit-heads H]

SRC is one of:
  a TensorFlow 2 SavedModel directory (saved_model.pb + variables/), e.g. Derm Foundation as published:
      variables are named by SavedVariable.name (params.feature_extractor...), each tensor's CRC32C is
      checked, and training state (optimizer slots and counters, metrics, RNG state) is dropped
  a PyTorch checkpoint (.pth, .pt, .ckpt, .bin; torch.save's zip or legacy format), read without running
      anything: DINO / iBOT (the teacher), MAE (the encoder), BYOL, SimCLR or a plain state dict; written
      under the model's canonical names (timm for ViTs, torchvision for ResNets)
  a .safetensors file: re-typed (--dtype) and stripped of a classifier head
  a BiT .npz (big_transfer / Derm-style names)

Options:
  --out FILE          the safetensors file to write (required); written through a temporary file, so a
                      failed conversion leaves nothing behind
  --dtype f32|f16     element type of the output (default f32); f16 rounds to nearest even
  --preset P          preset recorded in the metadata (default: the family's: derm for Derm names, bit
                      for timm BiT names, imagenet for ResNets and ViTs)
  --vit-heads H       ViT: the attention heads to record (default: the checkpoint's args, else D / 64)
  --verbose           list every dropped variable and print stack traces
  --help              show this help

BiT names and layouts are kept (Derm kernels stay HWIO; the engine reads either naming); a checkpoint's
tensors get their model's names. What the model does not read is dropped (classifier head, BatchNorm
counters, an MAE decoder). Metadata written: family, architecture, preset, source, converter and, for
ViTs, vit_heads.
Exit codes: 0 success, 1 the source could not be converted, 2 bad command line.`;

/** Output element type. */
export type OutputDtype = "F32" | "F16";

function usage(message: string): number {
  console.error(`error: ${message}\n\nRun with --help for usage.`);
  return 2;
}

/** Opens SRC by what it is; returns the source and a short description of its format. */
async function openSource(src: string): Promise<{ source: TensorSource; format: string }> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(src);
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
    throw new WeightsError(src, "", `Cannot open "${src}": ${reason}`, { cause: e });
  }
  if (info.isDirectory) return { source: await openSavedModel(src), format: "tensorflow-savedmodel" };
  const lower = src.toLowerCase();
  if (lower.endsWith("saved_model.pb")) {
    const dir = src.slice(0, -"saved_model.pb".length).replace(/\/$/, "") || ".";
    return { source: await openSavedModel(dir), format: "tensorflow-savedmodel" };
  }
  if (lower.endsWith(".safetensors")) {
    return { source: await openSafetensorsFile(src), format: "safetensors" };
  }
  if (lower.endsWith(".npz")) return { source: await openNpzFile(src, { dropHead: true }), format: "npz" };
  if (isPytorchPath(src)) {
    const source = await openWeights(src);
    return { source, format: `pytorch-${source.metadata.layout}` };
  }
  throw new WeightsError(
    src,
    "",
    `Cannot convert "${src}": expected a SavedModel directory, a .safetensors, a .npz or a PyTorch checkpoint ` +
      `(${PYTORCH_EXTENSIONS.join(", ")})`,
  );
}

/**
 * Converts float32 bytes to float16 bytes, rounding to nearest even (overflow to infinity, NaN kept NaN);
 * the same results as `numberToFloat16Bits`, without a call per element.
 *
 * @param bytes Little-endian float32 values (any alignment).
 * @returns Little-endian float16 values.
 */
export function float32BytesToFloat16(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const count = bytes.length >>> 2;
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const bits = new Uint32Array(aligned.buffer, aligned.byteOffset, count);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exponent = (x >>> 23) & 0xff;
    const mantissa = x & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa ? 0x200 : 0);
      continue;
    }
    const e = exponent - 112; // rebias 127 -> 15
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const significand = mantissa | 0x800000;
      const shift = 14 - e;
      let half = significand >>> shift;
      const rest = significand & ((1 << shift) - 1);
      const midpoint = 1 << (shift - 1);
      if (rest > midpoint || (rest === midpoint && (half & 1))) half++;
      out[i] = sign | half;
    } else {
      let h = (e << 10) | (mantissa >>> 13);
      const rest = mantissa & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
      out[i] = sign | h;
    }
  }
  return new Uint8Array(out.buffer);
}

function retype(
  entry: TensorEntry,
  bytes: Uint8Array<ArrayBuffer>,
  dtype: SafetensorsDtype,
): Uint8Array<ArrayBuffer> {
  if (entry.dtype === dtype) return bytes;
  const f32 = entry.dtype === "F32"
    ? bytes
    : new Uint8Array(decodeToFloat32(entry, bytes).buffer as ArrayBuffer);
  return dtype === "F32" ? f32 : float32BytesToFloat16(f32);
}

/**
 * A view of `source` holding only the tensors of `keep` (output name to stored tensor name), every tensor
 * in `dtype`, renamed and converted as it streams.
 *
 * @param source The source.
 * @param keep Output names and the stored tensors they come from.
 * @param dtype Output element type.
 * @returns A source (offsets are those of the output's data section, in the stored file order).
 */
export function convertedSource(
  source: TensorSource,
  keep: ReadonlyMap<string, string>,
  dtype: OutputDtype,
): TensorSource {
  const outOf = new Map([...keep].map(([out, stored]) => [stored, out]));
  const tensors = new Map<string, TensorEntry>();
  const original = new Map<string, TensorEntry>();
  let offset = 0;
  const size = dtype === "F32" ? 4 : 2;
  for (const entry of entriesInFileOrder(source.tensors.values())) {
    const name = outOf.get(entry.name);
    if (name === undefined) continue;
    const bytes = entry.shape.reduce((a, b) => a * b, 1) * size;
    tensors.set(name, { name, dtype, shape: [...entry.shape], begin: offset, end: offset + bytes });
    original.set(entry.name, entry);
    offset += bytes;
  }
  return {
    file: source.file,
    metadata: source.metadata,
    tensors,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      const names = new Set([...(wanted ?? tensors.keys())].map((n) => keep.get(n) ?? n));
      const inner = source.stream(names);
      return (async function* () {
        for await (const { entry, bytes } of inner) {
          yield {
            entry: tensors.get(outOf.get(entry.name)!)!,
            bytes: retype(original.get(entry.name)!, bytes, dtype),
          };
        }
      })();
    },
    close: () => source.close(),
  };
}

/** What {@linkcode convert} did. */
export interface ConvertResult {
  /** Tensors written. */
  tensors: number;
  /** Elements written. */
  parameters: number;
  /** Bytes of the output file. */
  bytes: number;
  /** Names left out: classifier head, and (SavedModel) training state by kind. */
  dropped: { name: string; reason: string }[];
  /** The metadata written. */
  metadata: Record<string, string>;
  /** Wall time, seconds. */
  seconds: number;
}

/** Options of {@linkcode convert}. */
export interface ConvertOptions {
  /** Output element type (default F32). */
  dtype?: OutputDtype;
  /** Preset to record (default: the family's, from the file's metadata or naming). */
  preset?: string;
  /** ViT: attention heads to record (default: the checkpoint's args, else D / 64). */
  vitHeads?: number;
}

/**
 * Converts `src` to the safetensors file `out`.
 *
 * @param src A SavedModel directory (or its saved_model.pb), a .safetensors or a .npz file.
 * @param out The file to write.
 * @param options Output dtype and preset.
 * @returns Counts, what was dropped and the metadata written.
 * @throws {WeightsError} when SRC cannot be opened or read (with file and tensor), a CRC does not match,
 * a BiT model is incomplete, or OUT cannot be written; no output file is left behind.
 */
export async function convert(
  src: string,
  out: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const started = performance.now();
  const dtype = options.dtype ?? "F32";
  const { source, format } = await openSource(src);
  try {
    const dropped: ConvertResult["dropped"] = [];
    for (const d of (source as Partial<SavedModelSource>).dropped ?? []) {
      dropped.push({ name: d.variable.name || d.variable.key, reason: d.reason });
    }
    // A model family decides what the engine reads and under which names, and the rest is dropped;
    // tensors of no known family (another SavedModel) are all kept, as they are.
    const family = FAMILIES.find((f) => f.detect(source));
    const inventory = family?.inventory(source, { vitHeads: options.vitHeads });
    const keep = new Map(
      inventory
        ? [...inventory.tensors].map(([name, entry]) => [name, entry.name])
        : [...source.tensors.keys()].map((name) => [name, name]),
    );
    dropped.push(...inventory?.ignored ?? []);
    if (keep.size === 0) throw new WeightsError(src, "", `Cannot convert "${src}": no tensors to write`);
    const metadata: Record<string, string> = {};
    if (inventory) {
      metadata.family = inventory.family;
      metadata.architecture = inventory.architecture.summary;
      if (typeof inventory.architecture.heads === "number") {
        metadata.vit_heads = String(inventory.architecture.heads);
      }
    }
    const preset = options.preset ?? inventory?.preset;
    if (preset) metadata.preset = preset;
    metadata.source = `${format}:${src}`;
    metadata.converter = CONVERTER_VERSION;
    const converted = convertedSource(source, keep, dtype);
    const bytes = await writeSafetensorsFile(out, converted, { metadata });
    let parameters = 0;
    for (const e of converted.tensors.values()) parameters += e.shape.reduce((a, b) => a * b, 1);
    return {
      tensors: converted.tensors.size,
      parameters,
      bytes,
      dropped,
      metadata,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await source.close();
  }
}

function summariseDropped(dropped: ConvertResult["dropped"]): string {
  const counts = new Map<string, number>();
  for (const d of dropped) counts.set(d.reason, (counts.get(d.reason) ?? 0) + 1);
  return [...counts].map(([reason, n]) => `${n} ${reason}`).join(", ");
}

/** Runs the command with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        dtype: { type: "string" },
        preset: { type: "string" },
        "vit-heads": { type: "string" },
        verbose: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) return usage(`expected one SRC, got ${positionals.length}`);
  if (!values.out) return usage("--out is required");
  const dtype = (values.dtype ?? "f32").toLowerCase();
  if (dtype !== "f32" && dtype !== "f16") return usage(`--dtype must be f32 or f16, got "${values.dtype}"`);
  const preset = values.preset;
  if (preset !== undefined && !["derm", "bit", "imagenet"].includes(preset)) {
    return usage(`--preset must be derm, bit or imagenet, got "${preset}"`);
  }
  const [src] = positionals;
  if (src.replace(/\/+$/, "") === values.out) return usage("--out must differ from SRC");
  try {
    const heads = values["vit-heads"] === undefined ? undefined : Number(values["vit-heads"]);
    if (heads !== undefined && (!Number.isInteger(heads) || heads < 1)) {
      return usage(`--vit-heads must be a positive integer, got "${values["vit-heads"]}"`);
    }
    const result = await convert(src, values.out, {
      dtype: dtype === "f16" ? "F16" : "F32",
      preset,
      vitHeads: heads,
    });
    const mb = result.bytes / 1e6;
    console.error(
      `converted ${result.tensors} tensors (${result.parameters.toLocaleString("en-US")} parameters, ` +
        `${dtype}) from "${src}" to "${values.out}" (${mb.toFixed(1)} MB) in ${
          result.seconds.toFixed(2)
        } s ` +
        `(${(mb / Math.max(result.seconds, 1e-6)).toFixed(0)} MB/s)`,
    );
    if (result.metadata.architecture) console.error(`architecture: ${result.metadata.architecture}`);
    if (result.dropped.length > 0) console.error(`dropped: ${summariseDropped(result.dropped)}`);
    if (values.verbose) {
      for (const d of result.dropped) console.error(`  dropped "${d.name}" (${d.reason})`);
    }
    return 0;
  } catch (e) {
    return reportError(e, values.verbose);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
