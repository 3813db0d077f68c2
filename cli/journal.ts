/**
 * The journal of rows not yet in a Parquet row group: each committed batch's rows are appended to
 * `OUT.journal0.partial` or `OUT.journal1.partial` (one JSON object per line, the embedding as base64 of
 * its little-endian float32 bytes) until enough rows for a row group have come; the group is written to the
 * file and the rows left over start the other journal. The commit record says which journal is current and
 * how long it is, so a killed run loses at most the batch in flight.
 * @module
 */
import type { EmbeddingRow } from "./output_rows.ts";
import { readLines } from "./line_reader.ts";

/** The journal of generation `generation` (0, 1, 2... alternate between two files). */
export function journalPath(out: string, generation: number): string {
  return `${out}.journal${generation % 2}.partial`;
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** The journal lines of `rows`. */
export function journalLines(rows: readonly EmbeddingRow[]): string {
  return rows.map((r) =>
    JSON.stringify({
      path: r.path,
      hash: r.hash,
      position: r.position,
      metadata: r.metadata,
      embedding: toBase64(new Uint8Array(r.embedding.buffer, r.embedding.byteOffset, r.embedding.byteLength)),
    }) + "\n"
  ).join("");
}

/**
 * Reads the first `length` bytes of a journal: its rows.
 *
 * @throws {SyntaxError} When a line within `length` is not a row of `embeddingSize` floats.
 */
export async function readJournal(
  path: string,
  length: number,
  embeddingSize: number,
): Promise<EmbeddingRow[]> {
  const rows: EmbeddingRow[] = [];
  if (length === 0) return rows;
  let end = 0;
  for await (const line of readLines(path, length)) {
    end = line.end;
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(line.text);
    } catch (e) {
      throw new SyntaxError(`Cannot read "${path}": line ${rows.length + 1} is not JSON`, { cause: e });
    }
    const bytes = fromBase64(String(value.embedding));
    if (bytes.length !== embeddingSize * 4) {
      throw new SyntaxError(
        `Cannot read "${path}": line ${rows.length + 1} holds ${bytes.length / 4} floats`,
      );
    }
    rows.push({
      path: String(value.path),
      hash: String(value.hash),
      position: Number(value.position),
      metadata: (value.metadata ?? {}) as Record<string, string>,
      embedding: new Float32Array(bytes.buffer),
    });
  }
  if (end !== length) {
    throw new SyntaxError(`Cannot read "${path}": its committed ${length} bytes end mid-line`);
  }
  return rows;
}
