/**
 * The text of a `.npy` output's JSON sidecar (`OUT.json`), in one place for the command line's appending
 * writer (`cli/outputs_npy.ts`) and the page's download (`web/export.ts`): the model facts and metadata
 * keys on the first line, then one row object per line, so the file can be appended to and read back line
 * by line:
 *
 * ```
 * {"model":...,"engine":...,"metadata_keys":[...],"rows":[
 * {"path":"a.png","hash":"...","position":0,"metadata":{}},
 * {"path":"b.png","hash":"...","position":1,"metadata":{}}
 * ]}
 * ```
 *
 * This module is browser compatible.
 * @module
 */
import { type EmbeddingRow, facts, type OutputInfo } from "./output_rows.ts";

/** What ends the sidecar, after the last row. */
export const NPY_SIDECAR_END = "\n]}\n";

/**
 * The sidecar's first line: facts and metadata keys, then the opening of `rows`.
 *
 * @param info The model facts.
 * @param metadataKeys The `--list` metadata columns (empty without one).
 * @returns The text, without a line break (each row starts with one).
 */
export function npySidecarHead(info: OutputInfo, metadataKeys: readonly string[]): string {
  const head = JSON.stringify({ ...facts(info), metadata_keys: metadataKeys });
  return `${head.slice(0, -1)},"rows":[`;
}

/**
 * One row's line, with the separator before it.
 *
 * @param row The row.
 * @param index Its index in the file (the first has no comma before it).
 * @returns The text.
 */
export function npySidecarRow(row: Omit<EmbeddingRow, "embedding">, index: number): string {
  return (index === 0 ? "\n" : ",\n") +
    JSON.stringify({ path: row.path, hash: row.hash, position: row.position, metadata: row.metadata });
}

/**
 * A whole sidecar.
 *
 * @param info The model facts.
 * @param metadataKeys The metadata columns.
 * @param rows The rows, in file order.
 * @returns The file's text.
 */
export function npySidecar(
  info: OutputInfo,
  metadataKeys: readonly string[],
  rows: readonly Omit<EmbeddingRow, "embedding">[],
): string {
  return npySidecarHead(info, metadataKeys) + rows.map(npySidecarRow).join("") + NPY_SIDECAR_END;
}
