/**
 * What each output format provides to the generic writer (`output_writer.ts`) and to readers: an
 * append-only writer whose state after `sync()` is what a commit record stores, a way to continue from
 * such a state after a kill, and a streaming reader of finished files.
 *
 * Every file a writer makes is `NAME.partial` (or a staging file) until `finish()`, then renamed to its
 * final name: a file at an output's own name is always complete.
 * @module
 */
import type { OutputFs } from "./output_files.ts";
import type { EmbeddingRow, OutputInfo } from "./output_rows.ts";

/** What a writer is made from (the commit log's header holds it, so a resumed writer is the same). */
export interface FormatSetup {
  readonly fs: OutputFs;
  /** The output path (its final name). */
  readonly out: string;
  readonly info: OutputInfo;
  /** Metadata keys of the whole input order (Parquet makes a column of each). */
  readonly metadataKeys: readonly string[];
  /** Rows per Parquet row group (the last one may hold fewer). */
  readonly rowGroupRows: number;
}

/** A format's state after a sync: byte lengths and counts, JSON. */
export type FormatState = Readonly<Record<string, number>>;

/** An output being written. */
export interface FormatWriter {
  /** Appends rows (in output order); not yet durable. Each append is synced and committed before the next. */
  append(rows: readonly EmbeddingRow[]): Promise<void>;
  /** Flushes what was appended and returns the state a commit record stores. */
  sync(): Promise<FormatState>;
  /** Called once the commit record of the last sync is on disk. */
  committed(): Promise<void>;
  /** Writes what ends the files (header counts, footers), syncs; returns `[partial, final]` renames. */
  finish(): Promise<[string, string][]>;
  /** Closes every file. */
  close(): void;
}

/** One output format. */
export interface FormatDriver {
  /** Starts a new output (partial files created empty). */
  create(setup: FormatSetup): Promise<FormatWriter>;
  /** Continues after a kill: files cut back to `state`. */
  resume(setup: FormatSetup, state: FormatState): Promise<FormatWriter>;
  /** Every partial or staging file of `out` (removed when a run starts afresh or has finished). */
  stagingFiles(out: string): string[];
  /** Opens a finished output for reading. */
  read(path: string): Promise<OutputReader>;
}

/** A finished output, read in bounded memory. */
export interface OutputReader {
  readonly info: OutputInfo;
  /** Metadata keys as recorded (absent where the format records none: .jsonl). */
  readonly metadataKeys?: readonly string[];
  /** Rows per row group, for Parquet files. */
  readonly rowGroupRows?: number;
  /** Number of rows. */
  readonly rows: number;
  /** The rows in file order. */
  read(): AsyncGenerator<EmbeddingRow>;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The float32 bytes of rows' embeddings, one after another. */
export function embeddingBytes(rows: readonly EmbeddingRow[], d: number): Uint8Array {
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, i) => {
    if (r.embedding.length !== d) {
      throw new TypeError(`Cannot write "${r.path}": expected ${d} floats, got ${r.embedding.length}`);
    }
    out.set(r.embedding, i * d);
  });
  return new Uint8Array(out.buffer);
}

/** Reads exactly `length` bytes at `offset` of an open file. */
export function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  return readInto(file, offset, new Uint8Array(length));
}

/** Fills `out` with the bytes at `offset` of an open file (a buffer reused by copies). */
export async function readInto(file: Deno.FsFile, offset: number, out: Uint8Array): Promise<Uint8Array> {
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < out.length) {
    const n = await file.read(out.subarray(done));
    if (n === null) {
      throw new SyntaxError(`Cannot read ${out.length} bytes at ${offset}: the file ends first`);
    }
    done += n;
  }
  return out;
}

/** Appends the first `length` bytes of the file at `path` to `to`, through one reused 1 MiB buffer. */
export async function copyInto(to: { append(b: Uint8Array): Promise<void> }, path: string, length: number) {
  const source = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(1 << 20);
  try {
    for (let o = 0; o < length; o += buffer.length) {
      await to.append(await readInto(source, o, buffer.subarray(0, Math.min(buffer.length, length - o))));
    }
  } finally {
    source.close();
  }
}

/** Reads fixed-size records (`size` bytes each) from `offset` on, `count` of them, in 1 MiB chunks. */
export async function* readRecords(
  file: Deno.FsFile,
  offset: number,
  size: number,
  count: number,
): AsyncGenerator<Uint8Array> {
  const perChunk = Math.max(1, Math.floor((1 << 20) / size));
  for (let i = 0; i < count; i += perChunk) {
    const k = Math.min(perChunk, count - i);
    const chunk = await readAt(file, offset + i * size, k * size);
    for (let j = 0; j < k; j++) yield chunk.subarray(j * size, (j + 1) * size);
  }
}
