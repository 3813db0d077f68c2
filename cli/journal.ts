/**
 * The journal of rows not yet in a Parquet row group: each committed batch's rows are appended to
 * `OUT.journal0.partial` or `OUT.journal1.partial` (binary records: a JSON head and the float32 bytes,
 * see {@linkcode journalRecords}) until enough rows for a row group have come; the group is written to the
 * file and the rows left over start the other journal. The commit record says which journal is current and
 * how long it is, so a killed run loses at most the batch in flight.
 * @module
 */
import type { EmbeddingRow } from "./output_rows.ts";

/** The journal of generation `generation` (0, 1, 2... alternate between two files). */
export function journalPath(out: string, generation: number): string {
  return `${out}.journal${generation % 2}.partial`;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The journal records of `rows`: for each, the byte length of its JSON (u32 LE), the JSON (path, hash,
 * position, metadata) and the embedding's float32 bytes (little-endian, as in memory).
 */
export function journalRecords(rows: readonly EmbeddingRow[]): Uint8Array {
  const heads = rows.map((r) =>
    enc.encode(JSON.stringify({ path: r.path, hash: r.hash, position: r.position, metadata: r.metadata }))
  );
  const size = rows.reduce((n, r, i) => n + 4 + heads[i].length + r.embedding.byteLength, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let o = 0;
  rows.forEach((r, i) => {
    view.setUint32(o, heads[i].length, true);
    out.set(heads[i], o + 4);
    o += 4 + heads[i].length;
    out.set(new Uint8Array(r.embedding.buffer, r.embedding.byteOffset, r.embedding.byteLength), o);
    o += r.embedding.byteLength;
  });
  return out;
}

/**
 * Reads the first `length` bytes of a journal (at most a row group's rows): its rows.
 *
 * @throws {SyntaxError} When a record within `length` is cut short or not a row.
 */
export async function readJournal(
  path: string,
  length: number,
  embeddingSize: number,
): Promise<EmbeddingRow[]> {
  const rows: EmbeddingRow[] = [];
  if (length === 0) return rows;
  const bytes = (await Deno.readFile(path)).subarray(0, length);
  if (bytes.length < length) {
    throw new SyntaxError(`Cannot read "${path}": shorter than its committed ${length} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  while (o < length) {
    const n = o + 4 <= length ? view.getUint32(o, true) : Infinity;
    const end = o + 4 + n + 4 * embeddingSize;
    if (end > length) throw new SyntaxError(`Cannot read "${path}": record ${rows.length + 1} is cut short`);
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(dec.decode(bytes.subarray(o + 4, o + 4 + n)));
    } catch (e) {
      throw new SyntaxError(`Cannot read "${path}": record ${rows.length + 1} is not a row`, { cause: e });
    }
    rows.push({
      path: String(value.path),
      hash: String(value.hash),
      position: Number(value.position),
      metadata: (value.metadata ?? {}) as Record<string, string>,
      embedding: new Float32Array(bytes.slice(o + 4 + n, end).buffer),
    });
    o = end;
  }
  return rows;
}
