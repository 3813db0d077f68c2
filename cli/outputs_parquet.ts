/**
 * `.parquet` output, appended one row group at a time (encoding: `parquet_encode.ts`): columns `path`,
 * `hash`, `position` (int64), one string column per metadata key, `embedding` (a Parquet LIST of FLOAT, D
 * per row, declared `FixedSizeList<float32>[D]` by the `ARROW:schema` key-value entry that Arrow readers
 * such as pyarrow/pandas, polars and arrow-rs restore it from; DuckDB ignores that entry and reads
 * `FLOAT[]`, `embedding::FLOAT[D]` makes it an ARRAY); the model facts, `metadata_columns` and
 * `row_group_rows` in the key-value metadata.
 *
 * While the run goes: `OUT.partial` holds `PAR1` and the finished row groups, `OUT.groups.partial` their
 * footer entries (Thrift bytes, one after another), and the rows of the group being filled wait in a
 * journal (`journal.ts`). Every `rowGroupRows` rows a group is written; `finish()` writes the last (short)
 * group and the footer, streaming the entries from `OUT.groups.partial`. Row groups hold rows
 * [k R, (k + 1) R) of the output whatever the batches were, so a resumed run and a merge write the same
 * bytes as an uninterrupted run.
 * @module
 */
import { parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import type { FormatDriver, FormatSetup, FormatState, FormatWriter, OutputReader } from "./output_format.ts";
import { copyInto, readAt } from "./output_format.ts";
import type { OutputFile } from "./output_files.ts";
import { type EmbeddingRow, facts, infoFromFacts, metadataColumns } from "./output_rows.ts";
import {
  encodeRowGroup,
  footerEnd,
  footerHead,
  footerTail,
  PAR1,
  type ParquetLayout,
} from "./parquet_encode.ts";
import { arrowSchemaBase64 } from "./arrow_schema.ts";
import { journalPath, journalRecords, readJournal } from "./journal.ts";

function names(out: string) {
  return {
    main: `${out}.partial`,
    groups: `${out}.groups.partial`,
    journal0: journalPath(out, 0),
    journal1: journalPath(out, 1),
  };
}

function layoutOf(setup: FormatSetup): ParquetLayout {
  return { metadata: metadataColumns(setup.metadataKeys), embeddingSize: setup.info.embeddingSize };
}

/** The key-value metadata of the footer. */
function keyValues(setup: FormatSetup): [string, string][] {
  const meta = metadataColumns(setup.metadataKeys);
  return [
    ...Object.entries(facts(setup.info)).map(([k, v]): [string, string] => [k, String(v)]),
    ["metadata_columns", JSON.stringify(meta)],
    ["row_group_rows", String(setup.rowGroupRows)],
    ["ARROW:schema", arrowSchemaBase64(meta.map((m) => m.column), setup.info.embeddingSize)],
  ];
}

interface ParquetFiles {
  main: OutputFile;
  groups: OutputFile;
  journal: OutputFile;
}

class ParquetWriter implements FormatWriter {
  #setup: FormatSetup;
  #layout: ParquetLayout;
  #f: ParquetFiles;
  #rows: number;
  #groupCount: number;
  #generation: number;
  /** Rows of the group being filled (all in the current journal). */
  #open: EmbeddingRow[];
  /** The journal replaced by the last append, removed once the next commit is on disk. */
  #retired?: OutputFile;

  constructor(setup: FormatSetup, f: ParquetFiles, state: FormatState, open: EmbeddingRow[]) {
    this.#setup = setup;
    this.#layout = layoutOf(setup);
    this.#f = f;
    this.#rows = state.rows;
    this.#groupCount = state.groupCount;
    this.#generation = state.generation;
    this.#open = open;
  }

  async #writeGroup(rows: readonly EmbeddingRow[]): Promise<void> {
    const { data, entry } = encodeRowGroup(rows, this.#layout, { offset: this.#f.main.length });
    await this.#f.main.append(data);
    await this.#f.groups.append(entry);
    this.#groupCount++;
  }

  async append(rows: readonly EmbeddingRow[]): Promise<void> {
    if (rows.length === 0) return;
    const r = this.#setup.rowGroupRows;
    this.#rows += rows.length;
    if (this.#open.length + rows.length < r) {
      await this.#f.journal.append(journalRecords(rows));
      this.#open.push(...rows);
      return;
    }
    let pending = [...this.#open, ...rows];
    while (pending.length >= r) {
      await this.#writeGroup(pending.slice(0, r));
      pending = pending.slice(r);
    }
    // The rows left over start the other journal; the current one goes once this is committed (an append
    // before that would reuse the committed journal's name).
    if (this.#retired) {
      throw new Error("Cannot append to Parquet output: the previous append is not committed");
    }
    this.#retired = this.#f.journal;
    this.#generation++;
    this.#f.journal = await this.#setup.fs.create(journalPath(this.#setup.out, this.#generation));
    await this.#f.journal.append(journalRecords(pending));
    this.#open = pending;
  }

  async #dropRetired(): Promise<void> {
    const path = this.#retired!.path;
    this.#retired!.close();
    this.#retired = undefined;
    await this.#setup.fs.remove(path);
  }

  async sync(): Promise<FormatState> {
    await this.#f.main.sync();
    await this.#f.groups.sync();
    await this.#f.journal.sync();
    return {
      rows: this.#rows,
      main: this.#f.main.length,
      groups: this.#f.groups.length,
      groupCount: this.#groupCount,
      generation: this.#generation,
      journal: this.#f.journal.length,
    };
  }

  async committed(): Promise<void> {
    if (this.#retired) await this.#dropRetired();
  }

  async finish(): Promise<[string, string][]> {
    if (this.#open.length > 0) await this.#writeGroup(this.#open);
    this.#open = [];
    await this.#f.groups.sync();
    const head = footerHead(this.#layout, this.#rows, this.#groupCount);
    const tail = footerTail(keyValues(this.#setup), this.#setup.info.engine);
    await this.#f.main.append(head);
    await copyInto(this.#f.main, this.#f.groups.path, this.#f.groups.length);
    await this.#f.main.append(tail);
    await this.#f.main.append(footerEnd(head.length + this.#f.groups.length + tail.length));
    await this.#f.main.sync();
    return [[names(this.#setup.out).main, this.#setup.out]];
  }

  close(): void {
    this.#f.main.close();
    this.#f.groups.close();
    this.#f.journal.close();
    this.#retired?.close();
  }
}

/** A hyparquet AsyncBuffer over an open file. */
function fileBuffer(file: Deno.FsFile, byteLength: number) {
  return {
    byteLength,
    async slice(start: number, end = byteLength): Promise<ArrayBuffer> {
      return (await readAt(file, start, end - start)).buffer as ArrayBuffer;
    },
  };
}

/** The `.parquet` format. */
export const parquetDriver: FormatDriver = {
  async create(setup) {
    const n = names(setup.out);
    const main = await setup.fs.create(n.main);
    await main.append(PAR1);
    const files = {
      main,
      groups: await setup.fs.create(n.groups),
      journal: await setup.fs.create(n.journal0),
    };
    await setup.fs.remove(n.journal1);
    return new ParquetWriter(setup, files, { rows: 0, groupCount: 0, generation: 0 }, []);
  },

  async resume(setup, state) {
    const n = names(setup.out);
    const main = await setup.fs.open(n.main);
    const groups = await setup.fs.open(n.groups);
    const current = journalPath(setup.out, state.generation);
    const journal = await setup.fs.open(current);
    if (main.length !== state.main) await main.truncate(state.main);
    if (groups.length !== state.groups) await groups.truncate(state.groups);
    if (journal.length !== state.journal) await journal.truncate(state.journal);
    await setup.fs.remove(journalPath(setup.out, state.generation + 1));
    const open = await readJournal(current, state.journal, setup.info.embeddingSize);
    return new ParquetWriter(setup, { main, groups, journal }, state, open);
  },

  stagingFiles(out) {
    return Object.values(names(out));
  },

  async read(path) {
    const file = await Deno.open(path, { read: true });
    let metadata;
    try {
      metadata = await parquetMetadataAsync(fileBuffer(file, (await file.stat()).size));
    } catch (e) {
      throw new SyntaxError(`Cannot read "${path}": ${(e as Error).message}`, { cause: e });
    } finally {
      file.close();
    }
    const kv = Object.fromEntries((metadata.key_value_metadata ?? []).map((e) => [e.key, e.value ?? ""]));
    const meta: { key: string; column: string }[] = JSON.parse(kv.metadata_columns ?? "[]");
    const reader: OutputReader = {
      info: infoFromFacts(kv, path),
      metadataKeys: meta.map((m) => m.key),
      rowGroupRows: kv.row_group_rows === undefined ? undefined : Number(kv.row_group_rows),
      rows: Number(metadata.num_rows),
      async *read() {
        const file = await Deno.open(path, { read: true });
        try {
          const buffer = fileBuffer(file, (await file.stat()).size);
          let start = 0;
          for (const group of metadata.row_groups) {
            const end = start + Number(group.num_rows);
            const objects = await parquetReadObjects({
              file: buffer,
              metadata,
              rowStart: start,
              rowEnd: end,
            });
            for (const o of objects as Record<string, unknown>[]) {
              yield {
                path: String(o.path),
                hash: String(o.hash),
                position: Number(o.position),
                metadata: Object.fromEntries(
                  meta.filter(({ column }) => o[column] !== null && o[column] !== undefined)
                    .map(({ key, column }) => [key, String(o[column])]),
                ),
                embedding: Float32Array.from(o.embedding as number[]),
              };
            }
            start = end;
          }
        } finally {
          file.close();
        }
      },
    };
    return reader;
  },
};
