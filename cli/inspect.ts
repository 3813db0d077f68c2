/**
 * `deno task inspect MODEL`: what a weights file holds, read from its header only: the model family,
 * architecture, preset, parameter count, dtypes, naming, the tensors the engine ignores and the file's
 * metadata. Any family of `models/registry.ts`.
 * @module
 */
import { parseArgs } from "node:util";
import { detectFamily, isPytorchPath, openWeights } from "../models/registry.ts";
import { openSafetensorsFile } from "../weights/safetensors_deno.ts";
import { openNpzFile } from "../weights/npz_deno.ts";
import type { TensorSource } from "../engine/tensor_source.ts";
import { reportError } from "./errors.ts";

const HELP = `deno task inspect: describe a weights file (Derm Foundation / BiT, ResNet, ViT)

Usage:
  deno task inspect [--json] MODEL.safetensors
  deno task inspect [--json] CHECKPOINT.pth        (PyTorch: DINO, iBOT, MAE, BYOL, SimCLR, state dict)
  deno task inspect [--json] BiT-M-R101x3.npz

Reads the header only (no tensor data) and prints the model family, its architecture, the embedding size,
preset, parameter count, dtypes, tensor naming, the tensors the engine ignores (classifier head, training
state) and the file's metadata (source, converter).

Options:
  --vit-heads H  ViT: the attention heads when the file does not state them (D / 64 otherwise)
  --json   print one JSON object instead of text (fields: file, bytes, family, naming, preset, presetFrom,
           architecture {name, summary, and the family's own: BiT depth, width, stemChannels, stages[];
           ResNet depth, layers, widthPerGroup, stemChannels}, embeddingSize, tensors, parameters, dtypes,
           ignored[] {name, dtype, shape, reason}, metadata)
  --help   show this help

Exit codes: 0 success, 1 the file could not be read or is no known model, 2 bad command line.`;

/** What {@linkcode inspectWeights} finds in a file. */
export interface WeightsReport {
  /** The path. */
  file: string;
  /** File size in bytes. */
  bytes: number;
  /** Model family (`bit`, `resnet`). */
  family: string;
  /** Tensor naming (`timm`, `derm`, `torchvision`, `simclr`). */
  naming: string;
  /** The preset the model runs with. */
  preset: string;
  /** Where the preset came from: the metadata's `preset`, the naming, or the family's only one. */
  presetFrom: "metadata" | "naming" | "family";
  /** The architecture inferred from the tensors (its `name`, `summary` and the family's own fields). */
  architecture: { name: string; summary: string } & Record<string, unknown>;
  /** Floats per embedding. */
  embeddingSize: number;
  /** Tensors used by the engine. */
  tensors: number;
  /** Their parameter count. */
  parameters: number;
  /** Tensor count per stored dtype (used tensors). */
  dtypes: Record<string, number>;
  /** Tensors the engine ignores, with their shapes and why. */
  ignored: { name: string; dtype: string; shape: number[]; reason: string }[];
  /** The file's metadata (preset, source, converter...). */
  metadata: Record<string, string>;
  /** Architecture lines for the text form. */
  lines: string[];
}

/**
 * Describes the weights of `source` (its header only).
 *
 * @param source An open file.
 * @param bytes The file size, for the report.
 * @returns The report.
 * @throws {WeightsError} when the tensors are no known model.
 */
export function inspectWeights(
  source: TensorSource,
  bytes: number,
  options: { vitHeads?: number } = {},
): WeightsReport {
  const inv = detectFamily(source).inventory(source, options);
  const dtypes: Record<string, number> = {};
  let parameters = 0;
  for (const e of inv.tensors.values()) {
    dtypes[e.dtype] = (dtypes[e.dtype] ?? 0) + 1;
    parameters += e.shape.reduce((a, b) => a * b, 1);
  }
  return {
    file: source.file,
    bytes,
    family: inv.family,
    naming: inv.naming,
    preset: inv.preset,
    presetFrom: inv.presetFrom,
    architecture: { ...inv.architecture },
    embeddingSize: inv.embeddingSize,
    tensors: inv.tensors.size,
    parameters,
    dtypes,
    // The classifier head first: it is what a reader looks for; BatchNorm counters after.
    ignored: [...inv.ignored].sort((a, b) =>
      Number(a.reason !== "classifier head") - Number(b.reason !== "classifier head")
    ).map(({ name, reason }) => {
      const e = source.tensors.get(name)!;
      return { name, dtype: e.dtype, shape: [...e.shape], reason };
    }),
    metadata: { ...source.metadata },
    lines: [...inv.lines],
  };
}

/** Ignored tensors the text form lists one by one. */
const IGNORED_SHOWN = 8;

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
  const reasons = [...new Set(r.ignored.map((t) => t.reason))].join(", ");
  const from = r.presetFrom === "metadata"
    ? "the metadata"
    : r.presetFrom === "naming"
    ? `${r.naming} naming`
    : `the ${r.family} family`;
  const lines = [
    `file          ${r.file} (${formatCount(r.bytes)} bytes)`,
    `family        ${r.family}`,
    `architecture  ${r.lines[0] ?? r.architecture.summary}`,
    ...r.lines.slice(1),
    `embedding     ${r.embeddingSize} floats`,
    `preset        ${r.preset} (from ${from})`,
    `parameters    ${formatCount(r.parameters)} in ${r.tensors} tensors`,
    `dtypes        ${Object.entries(r.dtypes).map(([d, n]) => `${d} (${n})`).join(", ")}`,
    `naming        ${r.naming}`,
    `ignored       ${r.ignored.length === 0 ? "none" : `${r.ignored.length} (${reasons})`}`,
    // The classifier head in full; long lists (BatchNorm counters) cut short.
    ...r.ignored.slice(0, IGNORED_SHOWN).map((t) =>
      `  ${t.name} ${t.dtype} [${t.shape.join(",")}] (${t.reason})`
    ),
    ...(r.ignored.length > IGNORED_SHOWN
      ? [`  ... and ${r.ignored.length - IGNORED_SHOWN} more (--json lists all)`]
      : []),
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
      options: {
        json: { type: "boolean", default: false },
        "vit-heads": { type: "string" },
        help: { type: "boolean", default: false },
      },
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
    source = path.toLowerCase().endsWith(".npz")
      ? await openNpzFile(path)
      : isPytorchPath(path)
      ? await openWeights(path)
      : await openSafetensorsFile(path);
    const vitHeads = values["vit-heads"] === undefined ? undefined : Number(values["vit-heads"]);
    const report = inspectWeights(source, (await Deno.stat(path)).size, { vitHeads });
    const { lines: _, ...json } = report;
    console.log(values.json ? JSON.stringify(json, null, 2) : formatReport(report));
    return 0;
  } catch (e) {
    return reportError(e, false);
  } finally {
    await source?.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
