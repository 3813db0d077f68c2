/**
 * `deno task merge`: the outputs of a sharded `embed` run (`--shard I/N`), of any formats, into one file
 * whose rows and paths are in the whole input order: the file one unsharded run writes, byte for byte.
 *
 * The shards must state the same model facts (model, architecture, preset, input size, embedding size,
 * precision, engine) and the same inputs (count and fingerprint), be distinct parts of one partition, and hold
 * disjoint rows, each in the part its path hashes to. Rows are streamed (a k-way merge by position), so
 * memory does not grow with the number of rows. Rows of the whole input that no shard holds are reported;
 * the shards' `.errors.jsonl` files are merged the same way and say why where they can.
 * @module
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { DenoOutputFs, type OutputFs } from "./output_files.ts";
import type { OutputReader } from "./output_format.ts";
import { type EmbeddingRow, facts, type OutputInfo } from "./output_rows.ts";
import { OUTPUT_FORMATS, outputFormat } from "./output_drivers.ts";
import { DEFAULT_ROW_GROUP_ROWS, openOutputReader } from "./outputs.ts";
import { errorsPath, OutputWriter } from "./output_writer.ts";
import { shardOf } from "./shard.ts";
import { readLines } from "./line_reader.ts";
import { reportError } from "./errors.ts";

const HELP = `deno task merge: join the outputs of a sharded embed run into one file

Usage:
  deno task merge --out OUT.EXT [options] SHARD...

Reads every SHARD (outputs of deno task embed --shard I/N, in any of the formats .npy, .jsonl, .parquet,
.safetensors) and writes OUT in the format of its extension with every row in the whole input order: the
file one run without --shard writes. The shards' OUT.errors.jsonl files are merged into OUT.errors.jsonl.
One SHARD alone is converted to OUT's format and stays a shard (it can be merged with the others later).

Checks: every shard states the same model, architecture, preset, input size, embedding size, precision,
engine and inputs (their count and SHA-256); their --shard parts are distinct parts of one N; no row is in
two shards, and each row is in the part its path hashes to. Rows of the whole input that no shard holds are reported
(with the reason where a shard's errors file has it); the merged file is written all the same, and the
exit code is 1.

Options:
  --out FILE            the merged output: .npy, .jsonl, .parquet or .safetensors (required)
  --checkpoint-every N  rows per Parquet row group of OUT (default: the shards' own when they are Parquet
                        files and agree, else ${DEFAULT_ROW_GROUP_ROWS}; the one-run file has embed's value)
  --quiet               no summary on stderr
  --json                print a JSON summary on stdout: rows, shards, missing rows and why
  --verbose             stack traces on errors
  --help                show this help

Exit codes: 0 every row of the input is present; 1 rows are missing, or the shards cannot be merged;
2 bad command line.`;

/** What {@linkcode mergeOutputs} did. */
export interface MergeSummary {
  readonly output: string;
  readonly rows: number;
  readonly inputs: number;
  readonly shards: readonly string[];
  /** Parts of the partition no given shard is (`I/N`). */
  readonly shardsNotGiven: readonly string[];
  /** Rows missing in all, and the first of their positions. */
  readonly missing: number;
  readonly missingPositions: readonly number[];
  /** Missing rows explained by a shard's errors file. */
  readonly failed: number;
  readonly bytesWritten: number;
}

/** Options of {@linkcode mergeOutputs}. */
export interface MergeOptions {
  /** Rows per Parquet row group (default: the shards' own, else 256). */
  rowGroupRows?: number;
  fs?: OutputFs;
}

/** Facts that must agree between shards. */
const SAME = [
  "model",
  "architecture",
  "preset",
  "input_size",
  "embedding_size",
  "precision",
  "engine",
  "inputs",
  "inputs_sha256",
];

/**
 * Merges shard outputs into `out`.
 *
 * @param shards The shards' paths.
 * @param out The merged output's path.
 * @throws {TypeError} When the shards do not belong together or overlap.
 */
export async function mergeOutputs(
  shards: readonly string[],
  out: string,
  options: MergeOptions = {},
): Promise<MergeSummary> {
  if (shards.length === 0) throw new TypeError("Cannot merge: no shard given");
  if (shards.some((s) => resolve(s) === resolve(out))) {
    throw new TypeError(`Cannot merge into "${out}": it is one of the shards`);
  }
  const readers: OutputReader[] = [];
  for (const s of shards) readers.push(await openOutputReader(s));
  const first = facts(readers[0].info);
  readers.forEach((r, i) => {
    const f = facts(r.info);
    for (const k of SAME) {
      if (String(f[k]) !== String(first[k])) {
        throw new TypeError(
          `Cannot merge "${shards[i]}" with "${shards[0]}": expected ${k} "${first[k]}", got "${f[k]}"`,
        );
      }
    }
  });
  const specs = readers.map((r) => r.info.shard);
  const count = specs.find((s) => s)?.count;
  const seen = new Map<number, string>();
  specs.forEach((s, i) => {
    if ((s?.count ?? 1) !== (count ?? 1) || (!s && count !== undefined)) {
      throw new TypeError(
        `Cannot merge "${shards[i]}": expected a shard of ${count ?? "an unsharded run"}, got ${
          s ? `${s.index}/${s.count}` : "an unsharded run"
        }`,
      );
    }
    const index = s?.index ?? 0;
    if (seen.has(index)) {
      throw new TypeError(
        `Cannot merge: shard ${index}/${count ?? 1} is both "${seen.get(index)}" and "${shards[i]}"`,
      );
    }
    seen.set(index, shards[i]);
  });
  const inputs = readers[0].info.inputs;
  if (inputs === undefined) throw new TypeError(`Cannot merge "${shards[0]}": it does not state its inputs`);

  // Columns and row groups as the one-run file has them.
  const recorded = readers.filter((r) => r.metadataKeys).map((r) => JSON.stringify(r.metadataKeys));
  if (new Set(recorded).size > 1) {
    throw new TypeError("Cannot merge: the shards record different metadata keys");
  }
  let metadataKeys: string[] = recorded.length > 0 ? JSON.parse(recorded[0]) : [];
  if (recorded.length === 0) {
    const keys = new Set<string>();
    for await (const row of mergeRows(readers, shards, count)) {
      for (const k of Object.keys(row.metadata)) keys.add(k);
    }
    metadataKeys = [...keys];
  }
  const groups = [...new Set(readers.map((r) => r.rowGroupRows).filter((g) => g !== undefined))];
  const rowGroupRows = options.rowGroupRows ?? (groups.length === 1 ? groups[0]! : DEFAULT_ROW_GROUP_ROWS);
  // One shard alone stays that shard (a conversion to another format); shards together are the whole.
  const info: OutputInfo = {
    ...readers[0].info,
    shard: readers.length === 1 ? readers[0].info.shard : undefined,
  };

  const fs = options.fs ?? new DenoOutputFs();
  const before = fs.bytesWritten;
  const writer = await OutputWriter.create(fs, out, {
    format: outputFormat(out)!,
    info,
    metadataKeys,
    rowGroupRows,
  });
  const present = new Uint8Array(inputs);
  let rows = 0;
  try {
    let chunk: EmbeddingRow[] = [];
    for await (const row of mergeRows(readers, shards, count)) {
      if (!Number.isInteger(row.position) || row.position < 0 || row.position >= inputs) {
        throw new TypeError(
          `Cannot merge "${row.path}": position ${row.position} is outside the ${inputs} inputs`,
        );
      }
      present[row.position] = 1;
      chunk.push(row);
      rows++;
      if (chunk.length === rowGroupRows) {
        await writer.append(chunk);
        chunk = [];
      }
    }
    await writer.append(chunk);
    const errors = await mergedErrors(shards);
    await writer.finish(errors.map((e) => e.line).join(""));
    const failedPositions = new Set(errors.map((e) => e.position));
    const missingPositions: number[] = [];
    let missing = 0;
    let failed = 0;
    for (let p = 0; p < inputs; p++) {
      if (present[p]) continue;
      missing++;
      if (failedPositions.has(p)) failed++;
      if (missingPositions.length < 20) missingPositions.push(p);
    }
    const shardsNotGiven = count === undefined
      ? []
      : Array.from({ length: count }, (_, i) => i).filter((i) => !seen.has(i)).map((i) => `${i}/${count}`);
    return {
      output: out,
      rows,
      inputs,
      shards,
      shardsNotGiven,
      missing,
      missingPositions,
      failed,
      bytesWritten: fs.bytesWritten - before,
    };
  } finally {
    writer.close();
  }
}

/** The rows of all readers in position order (a k-way merge), checked for order, overlap and partition. */
async function* mergeRows(
  readers: readonly OutputReader[],
  shards: readonly string[],
  count: number | undefined,
): AsyncGenerator<EmbeddingRow> {
  const streams = readers.map((r) => r.read());
  const heads: (EmbeddingRow | undefined)[] = [];
  for (const s of streams) heads.push((await s.next()).value ?? undefined);
  const last = readers.map(() => -1);
  try {
    for (;;) {
      let k = -1;
      for (let i = 0; i < heads.length; i++) {
        if (heads[i] && (k < 0 || heads[i]!.position < heads[k]!.position)) k = i;
      }
      if (k < 0) return;
      const row = heads[k]!;
      for (let i = 0; i < heads.length; i++) {
        if (i !== k && heads[i]?.position === row.position) {
          throw new TypeError(
            `Cannot merge: position ${row.position} is in both "${shards[k]}" and "${shards[i]}"`,
          );
        }
      }
      if (row.position <= last[k]) {
        throw new TypeError(`Cannot merge "${shards[k]}": its rows are not in input order at "${row.path}"`);
      }
      const spec = readers[k].info.shard;
      if (count !== undefined && spec && shardOf(row.path, count) !== spec.index) {
        throw new TypeError(
          `Cannot merge "${shards[k]}": "${row.path}" belongs to shard ${
            shardOf(row.path, count)
          }/${count}, not ${spec.index}`,
        );
      }
      last[k] = row.position;
      yield row;
      heads[k] = (await streams[k].next()).value ?? undefined;
    }
  } finally {
    for (const s of streams) await s.return(undefined);
  }
}

/** The errors files beside the shards, their lines in position order. */
async function mergedErrors(shards: readonly string[]): Promise<{ position: number; line: string }[]> {
  const out: { position: number; line: string }[] = [];
  for (const s of shards) {
    const path = errorsPath(s);
    try {
      for await (const { text } of readLines(path)) {
        if (text.trim() === "") continue;
        out.push({ position: Number(JSON.parse(text).position), line: text + "\n" });
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return out.sort((a, b) => a.position - b.position);
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
        "checkpoint-every": { type: "string" },
        quiet: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
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
  if (!values.out) return usage("--out is required");
  if (!outputFormat(values.out)) {
    return usage(`--out must end in ${OUTPUT_FORMATS.map((f) => `.${f}`).join(", ")}, got "${values.out}"`);
  }
  if (positionals.length === 0) return usage("no shard given");
  let rowGroupRows: number | undefined;
  if (values["checkpoint-every"] !== undefined) {
    rowGroupRows = Number(values["checkpoint-every"]);
    if (!Number.isInteger(rowGroupRows) || rowGroupRows < 1) {
      return usage(`--checkpoint-every must be an integer from 1, got "${values["checkpoint-every"]}"`);
    }
  }
  let summary: MergeSummary;
  try {
    summary = await mergeOutputs(positionals, values.out, { rowGroupRows });
  } catch (e) {
    return reportError(e, values.verbose);
  }
  if (!values.quiet) {
    console.error(
      `merge: ${summary.rows} rows of ${summary.inputs} from ${summary.shards.length} shard(s) into ${summary.output}`,
    );
    if (summary.missing > 0) {
      console.error(
        `merge: ${summary.missing} row(s) missing (positions ${summary.missingPositions.join(", ")}${
          summary.missing > summary.missingPositions.length ? ", ..." : ""
        }); ${summary.failed} failed in their shard (see ${errorsPath(summary.output)})${
          summary.shardsNotGiven.length > 0 ? `; shards not given: ${summary.shardsNotGiven.join(", ")}` : ""
        }`,
      );
    }
  }
  if (values.json) {
    console.log(JSON.stringify(
      {
        output: summary.output,
        rows: summary.rows,
        inputs: summary.inputs,
        shards: summary.shards,
        shards_not_given: summary.shardsNotGiven,
        missing: summary.missing,
        missing_positions: summary.missingPositions,
        failed: summary.failed,
        bytes_written: summary.bytesWritten,
      },
      null,
      2,
    ));
  }
  return summary.missing > 0 ? 1 : 0;
}

function usage(message: string): number {
  console.error(`error: ${message}\n\nRun with --help for usage.`);
  return 2;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
