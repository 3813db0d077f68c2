/**
 * `deno task inspect MODEL.safetensors`: what a weights file holds, read from its header only: architecture,
 * preset, parameter count, dtypes, naming, ignored head tensors and the converter's metadata.
 * @module
 */
import { parseArgs } from "node:util";
import { adaptBitWeights, presetFromMetadata } from "../models/bit_names.ts";
import { type BitArchitecture, bitParameterCount } from "../models/bit_arch.ts";
import { openSafetensorsFile } from "../weights/safetensors_deno.ts";
import { openNpzFile } from "../weights/npz_deno.ts";
import type { TensorSource } from "../weights/safetensors.ts";
import { reportError } from "./errors.ts";

const HELP = `deno task inspect: describe a Derm Foundation / BiT weights file

Usage:
  deno task inspect [--json] MODEL.safetensors
  deno task inspect [--json] BiT-M-R101x3.npz

Reads the header only (no tensor data) and prints the architecture (stem, units and widths per stage),
preset, parameter count, dtypes, tensor naming (timm or derm), ignored head tensors and the file's
metadata (source, converter).

Options:
  --json   print one JSON object instead of text (fields: file, bytes, naming, preset, presetFrom,
           architecture {name, depth, width, stemChannels, stages[]}, tensors, parameters, dtypes,
           ignored[], metadata)
  --help   show this help

Exit codes: 0 success, 1 the file could not be read or is not a BiT model, 2 bad command line.`;

/** What {@linkcode inspectWeights} finds in a file. */
export interface WeightsReport {
  /** The path. */
  file: string;
  /** File size in bytes. */
  bytes: number;
  /** Tensor naming: "timm" or "derm". */
  naming: string;
  /** Numeric preset: "derm" or "bit". */
  preset: "derm" | "bit";
  /** Where the preset came from: the metadata's `preset`, or the naming. */
  presetFrom: "metadata" | "naming";
  /** The architecture inferred from the tensors. */
  architecture: {
    /** Conventional name (`R101x3`) when the stages follow BiT's pattern, else "custom". */
    name: string;
    /** 3 x total units + 2. */
    depth: number;
    /** Stem channels / 64. */
    width: number;
    /** Stem conv output channels. */
    stemChannels: number;
    /** Per stage: units, output channels, bottleneck width, stride. */
    stages: { units: number; channels: number; midChannels: number; stride: number }[];
  };
  /** Feature-extractor tensors used by the engine. */
  tensors: number;
  /** Their parameter count. */
  parameters: number;
  /** Tensor count per stored dtype (used tensors). */
  dtypes: Record<string, number>;
  /** Tensors the engine ignores (classifier head), with their shapes. */
  ignored: { name: string; dtype: string; shape: number[] }[];
  /** The file's metadata (preset, source, converter...). */
  metadata: Record<string, string>;
}

/** `R{depth}x{width}` when the channels are BiT's 256·w, 512·w, 1024·w, 2048·w and the stem 64·w. */
function architectureName(arch: BitArchitecture, depth: number): string {
  const width = arch.stemChannels / 64;
  const standard = Number.isInteger(width) && arch.stages.length === 4 &&
    arch.stages.every((s, i) => s.channels === 256 * width * 2 ** i);
  return standard ? `R${depth}x${width}` : "custom";
}

/**
 * Describes the weights of `source` (its header only).
 *
 * @param source An open file.
 * @param bytes The file size, for the report.
 * @returns The report.
 * @throws {WeightsError} when the tensors are not a BiT model.
 */
export function inspectWeights(source: TensorSource, bytes: number): WeightsReport {
  const adapted = adaptBitWeights(source);
  const arch = adapted.architecture;
  const units = arch.stages.reduce((a, s) => a + s.units, 0);
  const depth = 3 * units + 2;
  const dtypes: Record<string, number> = {};
  for (const t of adapted.tensors.values()) dtypes[t.source.dtype] = (dtypes[t.source.dtype] ?? 0) + 1;
  const metadata = { ...source.metadata };
  const fromMetadata = metadata.preset === "derm" || metadata.preset === "bit";
  return {
    file: source.file,
    bytes,
    naming: adapted.naming,
    preset: presetFromMetadata(metadata, adapted.naming),
    presetFrom: fromMetadata ? "metadata" : "naming",
    architecture: {
      name: architectureName(arch, depth),
      depth,
      width: arch.stemChannels / 64,
      stemChannels: arch.stemChannels,
      stages: arch.stages.map((s) => ({ ...s })),
    },
    tensors: adapted.tensors.size,
    parameters: bitParameterCount(arch),
    dtypes,
    ignored: adapted.ignored.map((name) => {
      const e = source.tensors.get(name)!;
      return { name, dtype: e.dtype, shape: [...e.shape] };
    }),
    metadata,
  };
}

function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/**
 * The text form of a report.
 *
 * @param r The report.
 * @returns Lines for a terminal.
 */
export function formatReport(r: WeightsReport): string {
  const a = r.architecture;
  const lines = [
    `file          ${r.file} (${formatCount(r.bytes)} bytes)`,
    `architecture  BiT ResNetV2 ${a.name} (depth ${a.depth}, width ${a.width}): stem 7x7/2 conv -> ${a.stemChannels}`,
    ...a.stages.map((s, i) =>
      `  stage ${i + 1}     ${String(s.units).padStart(2)} units, ${s.channels} channels ` +
      `(bottleneck ${s.midChannels}, stride ${s.stride})`
    ),
    `embedding     ${a.stages[a.stages.length - 1].channels} floats`,
    `preset        ${r.preset} (from ${r.presetFrom === "metadata" ? "the metadata" : `${r.naming} naming`})`,
    `parameters    ${formatCount(r.parameters)} in ${r.tensors} tensors`,
    `dtypes        ${Object.entries(r.dtypes).map(([d, n]) => `${d} (${n})`).join(", ")}`,
    `naming        ${r.naming}`,
    `ignored       ${r.ignored.length === 0 ? "none" : `${r.ignored.length} (classifier head)`}`,
    ...r.ignored.map((t) => `  ${t.name} ${t.dtype} [${t.shape.join(",")}]`),
  ];
  const meta = Object.entries(r.metadata);
  lines.push(`metadata      ${meta.length === 0 ? "none" : ""}`.trimEnd());
  for (const [k, v] of meta) lines.push(`  ${k}: ${v}`);
  return lines.join("\n");
}

/**
 * Runs the command with `args`.
 *
 * @param args Command-line arguments.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { json: { type: "boolean", default: false }, help: { type: "boolean", default: false } },
    });
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\nRun with --help for usage.`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(
      `error: expected one weights file, got ${positionals.length}\n\nRun with --help for usage.`,
    );
    return 2;
  }
  const path = positionals[0];
  let source: TensorSource | undefined;
  try {
    source = path.toLowerCase().endsWith(".npz") ? await openNpzFile(path) : await openSafetensorsFile(path);
    const report = inspectWeights(source, (await Deno.stat(path)).size);
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return 0;
  } catch (e) {
    return reportError(e, false);
  } finally {
    await source?.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
