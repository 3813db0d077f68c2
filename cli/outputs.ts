/**
 * The output files of `deno task embed` and `deno task merge`, chosen by the extension of `--out`, each
 * appended as rows come and crash-safe (`output_writer.ts`), each stating the model facts and every row's
 * position in the whole input order:
 *
 * - `.npy`: float32 [N, D]; `OUT.npy.paths.txt` lists the images; `OUT.npy.json` holds the model facts
 *   and each row's path, SHA-256, position and metadata (`outputs_npy.ts`).
 * - `.jsonl`: one object per image: path, hash, position, metadata, the model facts, embedding
 *   (`outputs_jsonl.ts`).
 * - `.parquet`: columns path, hash, position, one string column per metadata key, embedding (Parquet LIST
 *   of FLOAT declared `FixedSizeList<float32>[D]` for Arrow readers), one row group per `rowGroupRows`
 *   rows, written by our own encoder (`outputs_parquet.ts`, `parquet_encode.ts`).
 * - `.safetensors`: tensor `embeddings` F32 [N, D]; facts, paths, hashes, positions and metadata in
 *   `__metadata__` (`outputs_safetensors.ts`).
 *
 * This module gathers the whole-file helpers: {@linkcode writeOutput} and {@linkcode readOutput} for
 * rows in memory (tests, small files), {@linkcode openOutputReader} to stream a finished file.
 * @module
 */
import { DenoOutputFs, type OutputFs } from "./output_files.ts";
import type { OutputReader } from "./output_format.ts";
import { type EmbeddingRow, metadataKeys, type OutputInfo } from "./output_rows.ts";
import { formatDriver, OUTPUT_FORMATS, type OutputFormat, outputFormat } from "./output_drivers.ts";
import { OutputWriter } from "./output_writer.ts";

export type { EmbeddingRow, OutputInfo, OutputReader };
export { OUTPUT_FORMATS, type OutputFormat, outputFormat };

/** Rows per Parquet row group by default (`--checkpoint-every`). */
export const DEFAULT_ROW_GROUP_ROWS = 256;

/** Files written beside `out` (the `.npy` sidecars). */
export function sidecarPaths(out: string): string[] {
  return outputFormat(out) === "npy" ? [`${out}.paths.txt`, `${out}.json`] : [];
}

/** Options of {@linkcode writeOutput}. */
export interface WriteOutputOptions {
  /** Rows per Parquet row group (default {@linkcode DEFAULT_ROW_GROUP_ROWS}). */
  rowGroupRows?: number;
  /** Metadata keys (default: every key of `rows`, in first-seen order). */
  metadataKeys?: readonly string[];
  /** Rows per commit (default: all at once). */
  batch?: number;
  /** Where files are written (default: the local file system). */
  fs?: OutputFs;
}

/**
 * Writes `rows` to `out` in the format of its extension, through the same append-only writer as `embed`.
 *
 * @param out The output path.
 * @param rows The rows, in output order.
 * @param info Model facts written into the file.
 * @param options Row groups, metadata keys, commit size.
 * @returns Bytes written (every file, the commit log included).
 */
export async function writeOutput(
  out: string,
  rows: readonly EmbeddingRow[],
  info: OutputInfo,
  options: WriteOutputOptions = {},
): Promise<number> {
  const fs = options.fs ?? new DenoOutputFs();
  const before = fs.bytesWritten;
  const writer = await OutputWriter.create(fs, out, {
    format: outputFormat(out)!,
    info,
    metadataKeys: options.metadataKeys ?? metadataKeys(rows),
    rowGroupRows: options.rowGroupRows ?? DEFAULT_ROW_GROUP_ROWS,
  });
  try {
    const batch = options.batch ?? Math.max(1, rows.length);
    for (let i = 0; i < rows.length; i += batch) await writer.append(rows.slice(i, i + batch));
    await writer.finish();
  } finally {
    writer.close();
  }
  return fs.bytesWritten - before;
}

/**
 * Opens a finished output (any format) to stream its rows.
 *
 * @throws {TypeError} For an unknown extension. {@link Deno.errors.NotFound} when it does not exist.
 * @throws {SyntaxError} When it cannot be parsed.
 */
export function openOutputReader(path: string): Promise<OutputReader> {
  return formatDriver(path).read(path);
}

/**
 * Reads all rows of a finished output into memory.
 *
 * @returns The rows and the model facts, or undefined when the file does not exist.
 */
export async function readOutput(
  path: string,
): Promise<{ rows: EmbeddingRow[]; info: OutputInfo; reader: OutputReader } | undefined> {
  let reader: OutputReader;
  try {
    reader = await openOutputReader(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const rows: EmbeddingRow[] = [];
  for await (const r of reader.read()) rows.push(r);
  return { rows, info: reader.info, reader };
}
