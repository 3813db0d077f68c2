/**
 * `.jsonl` output, appended as it goes: one object per row (path, hash, position, metadata, the model
 * facts, embedding as an array of numbers that parse back to the same float32 values).
 * @module
 */
import type { FormatDriver, FormatSetup, FormatState, FormatWriter, OutputReader } from "./output_format.ts";
import type { OutputFile } from "./output_files.ts";
import { type EmbeddingRow, facts, infoFromFacts } from "./output_rows.ts";
import { readLines } from "./line_reader.ts";

const enc = new TextEncoder();

/** One line of the file. */
export function jsonlLine(r: EmbeddingRow, info: Record<string, string | number>): string {
  return JSON.stringify({
    path: r.path,
    hash: r.hash,
    position: r.position,
    metadata: r.metadata,
    ...info,
    embedding: Array.from(r.embedding),
  }) + "\n";
}

class JsonlWriter implements FormatWriter {
  #setup: FormatSetup;
  #file: OutputFile;
  #facts: Record<string, string | number>;
  #rows: number;

  constructor(setup: FormatSetup, file: OutputFile, rows: number) {
    this.#setup = setup;
    this.#file = file;
    this.#facts = facts(setup.info);
    this.#rows = rows;
  }

  async append(rows: readonly EmbeddingRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#file.append(enc.encode(rows.map((r) => jsonlLine(r, this.#facts)).join("")));
    this.#rows += rows.length;
  }

  async sync(): Promise<FormatState> {
    await this.#file.sync();
    return { rows: this.#rows, main: this.#file.length };
  }

  async committed(): Promise<void> {}

  async finish(): Promise<[string, string][]> {
    await this.#file.sync();
    return [[`${this.#setup.out}.partial`, this.#setup.out]];
  }

  close(): void {
    this.#file.close();
  }
}

/** The `.jsonl` format. */
export const jsonlDriver: FormatDriver = {
  async create(setup) {
    return new JsonlWriter(setup, await setup.fs.create(`${setup.out}.partial`), 0);
  },

  async resume(setup, state) {
    const file = await setup.fs.open(`${setup.out}.partial`);
    if (file.length !== state.main) await file.truncate(state.main);
    return new JsonlWriter(setup, file, state.rows);
  },

  stagingFiles(out) {
    return [`${out}.partial`];
  },

  async read(path) {
    let first: Record<string, unknown> | undefined;
    let count = 0;
    for await (const { text } of readLines(path)) {
      if (text.trim() === "") continue;
      if (!first) first = JSON.parse(text);
      count++;
    }
    if (!first) throw new SyntaxError(`Cannot read "${path}": it holds no row`);
    const reader: OutputReader = {
      info: infoFromFacts(first, path),
      rows: count,
      async *read() {
        for await (const { text } of readLines(path)) {
          if (text.trim() === "") continue;
          const o = JSON.parse(text);
          yield {
            path: o.path,
            hash: o.hash,
            position: o.position,
            metadata: o.metadata ?? {},
            embedding: Float32Array.from(o.embedding),
          };
        }
      },
    };
    return reader;
  },
};
