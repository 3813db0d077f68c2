/**
 * The output formats of `embed` and `merge`, chosen by the extension of `--out`.
 * @module
 */
import type { FormatDriver } from "./output_format.ts";
import { npyDriver } from "./outputs_npy.ts";
import { jsonlDriver } from "./outputs_jsonl.ts";
import { parquetDriver } from "./outputs_parquet.ts";
import { safetensorsDriver } from "./outputs_safetensors.ts";

/** Output formats, by extension. */
export const OUTPUT_FORMATS = ["npy", "jsonl", "parquet", "safetensors"] as const;
/** One of {@linkcode OUTPUT_FORMATS}. */
export type OutputFormat = typeof OUTPUT_FORMATS[number];

const DRIVERS: Record<OutputFormat, FormatDriver> = {
  npy: npyDriver,
  jsonl: jsonlDriver,
  parquet: parquetDriver,
  safetensors: safetensorsDriver,
};

/** The format of `path`, from its extension, or undefined for an unknown one. */
export function outputFormat(path: string): OutputFormat | undefined {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  return (OUTPUT_FORMATS as readonly string[]).includes(ext) ? ext as OutputFormat : undefined;
}

/**
 * The driver of `path`'s format.
 *
 * @throws {TypeError} For an unknown extension.
 */
export function formatDriver(path: string): FormatDriver {
  const format = outputFormat(path);
  if (!format) {
    throw new TypeError(`Cannot use "${path}": expected an extension of ${OUTPUT_FORMATS.join(", ")}`);
  }
  return DRIVERS[format];
}
