/**
 * Writing an output so that a kill at any moment loses at most the rows not yet committed, and the bytes
 * written per row stay the same however many rows there are.
 *
 * A commit: the format writer appends the rows to its files, syncs them, then one record goes to the commit
 * log (`commit_log.ts`) and is synced; only then does the writer touch anything the record depends on
 * (`committed()`). `resume()` cuts every file back to the last record. `finish()` writes the formats'
 * trailers and the errors file, logs a `done` record with the renames to make, renames (sidecars first, the
 * output last), then removes the log and staging files; a run killed after the `done` record only
 * completes the renames when resumed.
 * @module
 */
import type { FormatDriver, FormatSetup, FormatState, FormatWriter } from "./output_format.ts";
import type { OutputFs } from "./output_files.ts";
import type { EmbeddingRow, OutputInfo } from "./output_rows.ts";
import { formatDriver, type OutputFormat, outputFormat } from "./output_drivers.ts";
import { CommitLog, type CommitLogContents, commitLogPath } from "./commit_log.ts";

/** Line 1 of the commit log: everything that fixes the output's bytes besides its rows. */
export interface OutputHeader {
  readonly format: OutputFormat;
  readonly info: OutputInfo;
  readonly metadataKeys: readonly string[];
  readonly rowGroupRows: number;
}

/** A failed image, as the commit log and `OUT.errors.jsonl` hold it. */
export interface Failure {
  readonly position: number;
  readonly path: string;
  readonly hash: string;
  readonly reason: string;
}

/** One commit record. */
export interface CommitRecord {
  /** Rows committed in all. */
  readonly n: number;
  /** The format writer's state. */
  readonly s: FormatState;
  /** Rows this commit adds: position and hash. */
  readonly a?: readonly (readonly [number, string])[];
  /** Failures this commit adds (a later one for the same position replaces an earlier). */
  readonly f?: readonly Failure[];
  /** Set by `finish()`: the renames left to make, `[partial, final]`. */
  readonly done?: readonly (readonly [string, string])[];
  /** With `done`: whether an errors file is among the renames (else a stale one is removed). */
  readonly errors?: boolean;
}

/** The errors file beside an output. */
export function errorsPath(out: string): string {
  return `${out}.errors.jsonl`;
}

/** Removes every partial file, staging file and, last, the commit log of `out` (not `out` itself). */
export async function discardPartial(fs: OutputFs, out: string): Promise<void> {
  const driver = formatDriver(out);
  for (const path of [...driver.stagingFiles(out), `${errorsPath(out)}.partial`, commitLogPath(out)]) {
    await fs.remove(path);
  }
}

/** Completes a finished output's renames and removes what is left of its writing. */
export async function completeFinish(fs: OutputFs, out: string, record: CommitRecord): Promise<void> {
  for (const [from, to] of record.done ?? []) {
    try {
      await fs.rename(from, to);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // already renamed before a kill
    }
  }
  if (!record.errors) await fs.remove(errorsPath(out));
  await discardPartial(fs, out); // the commit log goes last: without it, nothing is left to clean up
}

/** An output being written. */
export class OutputWriter {
  #fs: OutputFs;
  #out: string;
  #log: CommitLog;
  #writer: FormatWriter;
  #rows: number;
  #closed = false;

  private constructor(fs: OutputFs, out: string, log: CommitLog, writer: FormatWriter, rows: number) {
    this.#fs = fs;
    this.#out = out;
    this.#log = log;
    this.#writer = writer;
    this.#rows = rows;
  }

  /** Rows committed. */
  get rows(): number {
    return this.#rows;
  }

  static #setup(fs: OutputFs, out: string, header: OutputHeader): FormatSetup {
    return {
      fs,
      out,
      info: header.info,
      metadataKeys: header.metadataKeys,
      rowGroupRows: header.rowGroupRows,
    };
  }

  static #driver(out: string, header: OutputHeader): FormatDriver {
    if (outputFormat(out) !== header.format) {
      throw new TypeError(`Cannot write "${out}": expected a .${header.format} name`);
    }
    if (!Number.isInteger(header.rowGroupRows) || header.rowGroupRows < 1) {
      throw new RangeError(
        `Cannot write "${out}": expected rows per row group from 1, got ${header.rowGroupRows}`,
      );
    }
    return formatDriver(out);
  }

  /** Starts `out` afresh (any partial state of an earlier run is removed; `out` itself stays until the end). */
  static async create(fs: OutputFs, out: string, header: OutputHeader): Promise<OutputWriter> {
    const driver = OutputWriter.#driver(out, header);
    await discardPartial(fs, out);
    const log = await CommitLog.create(fs, out, header);
    const writer = await driver.create(OutputWriter.#setup(fs, out, header));
    return new OutputWriter(fs, out, log, writer, 0);
  }

  /**
   * Continues `out` from its commit log (the last record not `done`).
   *
   * @throws {TypeError} When the log has no commit yet (start afresh instead).
   */
  static async resume(
    fs: OutputFs,
    out: string,
    contents: CommitLogContents<OutputHeader, CommitRecord>,
  ): Promise<OutputWriter> {
    const { header, last } = contents;
    if (!last || last.done) throw new TypeError(`Cannot resume "${out}": no commit to continue from`);
    const driver = OutputWriter.#driver(out, header);
    const writer = await driver.resume(OutputWriter.#setup(fs, out, header), last.s);
    const log = await CommitLog.continue(fs, out, contents.validLength);
    return new OutputWriter(fs, out, log, writer, last.n);
  }

  /**
   * Appends rows (in output order) and failures, and commits them: on disk when this resolves.
   */
  async append(rows: readonly EmbeddingRow[], failures: readonly Failure[] = []): Promise<void> {
    await this.#writer.append(rows);
    const s = await this.#writer.sync();
    this.#rows += rows.length;
    const record: CommitRecord = {
      n: this.#rows,
      s,
      a: rows.map((r) => [r.position, r.hash] as const),
      ...(failures.length > 0 ? { f: failures } : {}),
    };
    await this.#log.append(record);
    await this.#writer.committed();
  }

  /**
   * Ends the output: trailers, `OUT.errors.jsonl` when `errors` has lines, renames, cleanup.
   *
   * @param errors The errors file's text ("" or undefined: none, and a stale one is removed).
   */
  async finish(errors?: string): Promise<void> {
    const renames = await this.#writer.finish();
    const hasErrors = errors !== undefined && errors !== "";
    if (hasErrors) {
      const partial = `${errorsPath(this.#out)}.partial`;
      const file = await this.#fs.create(partial);
      try {
        await file.append(new TextEncoder().encode(errors));
        await file.sync();
      } finally {
        file.close();
      }
      renames.unshift([partial, errorsPath(this.#out)]);
    }
    const record: CommitRecord = { n: this.#rows, s: {}, done: renames, errors: hasErrors };
    await this.#log.append(record);
    this.close();
    await completeFinish(this.#fs, this.#out, record);
  }

  /** Closes the files, leaving the committed state for `--resume` (a stop, or after a crash in tests). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writer.close();
    this.#log.close();
  }
}
