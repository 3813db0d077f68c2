/**
 * The embed journal: every finished batch's rows are appended to `OUT.journal.jsonl` (and synced) before
 * the next batch starts, so a killed run loses at most the batch in flight. Checkpoints fold the journal
 * into the output file and remove it; `--resume` reads the output and then the journal.
 *
 * Line 1 states the run (`{"info": {...}}`); each further line is one row with the embedding as base64
 * of its little-endian float32 bytes. A last line cut short by a crash is ignored.
 * @module
 */
import type { EmbeddingRow, OutputInfo } from "./outputs.ts";

/** The journal beside an output file. */
export function journalPath(out: string): string {
  return `${out}.journal.jsonl`;
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

/** Appends rows to the journal (creating it with its info line), then syncs it to disk. */
export async function appendJournal(
  out: string,
  info: OutputInfo,
  rows: readonly EmbeddingRow[],
): Promise<void> {
  if (rows.length === 0) return;
  const path = journalPath(out);
  const fresh = await Deno.stat(path).then(() => false, () => true);
  const lines = rows.map((r) =>
    JSON.stringify({
      path: r.path,
      hash: r.hash,
      metadata: r.metadata,
      embedding: toBase64(new Uint8Array(r.embedding.buffer, r.embedding.byteOffset, r.embedding.byteLength)),
    })
  );
  if (fresh) lines.unshift(JSON.stringify({ info }));
  const file = await Deno.open(path, { append: true, create: true });
  try {
    const bytes = new TextEncoder().encode(lines.join("\n") + "\n");
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
    await file.syncData();
  } finally {
    file.close();
  }
}

/** Reads the journal: its info and rows (none when there is no journal). */
export async function readJournal(
  out: string,
  embeddingSize: number,
): Promise<{ info?: OutputInfo; rows: EmbeddingRow[] }> {
  let text: string;
  try {
    text = await Deno.readTextFile(journalPath(out));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { rows: [] };
    throw e;
  }
  const lines = text.split("\n").filter((l) => l !== "");
  const rows: EmbeddingRow[] = [];
  let info: OutputInfo | undefined;
  for (const [i, line] of lines.entries()) {
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(line);
    } catch (e) {
      if (i === lines.length - 1) break; // torn last line of a killed run
      throw new SyntaxError(`Cannot read "${journalPath(out)}": line ${i + 1} is not JSON`, { cause: e });
    }
    if (i === 0 && "info" in value) {
      info = value.info as OutputInfo;
      continue;
    }
    const bytes = fromBase64(String(value.embedding));
    if (bytes.length !== embeddingSize * 4) {
      if (i === lines.length - 1) break;
      throw new SyntaxError(
        `Cannot read "${journalPath(out)}": line ${i + 1} holds ${bytes.length / 4} floats`,
      );
    }
    rows.push({
      path: String(value.path),
      hash: String(value.hash),
      metadata: (value.metadata ?? {}) as Record<string, string>,
      embedding: new Float32Array(bytes.buffer),
    });
  }
  return { info, rows };
}

/** Removes the journal (after its rows reached the output file, or before a fresh run). */
export async function removeJournal(out: string): Promise<void> {
  await Deno.remove(journalPath(out)).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}
