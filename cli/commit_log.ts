/**
 * The commit log of an output being written, `OUT.commits`: what `--resume` trusts after a kill.
 *
 * The writer appends data to its files, syncs them, then appends one commit record here and syncs it:
 * every byte a record counts is on disk before the record is. On resume the files are cut back to the
 * last record's lengths, whatever came after it (a torn write, a batch not yet committed) is dropped.
 *
 * Line 1 is the header (what the output is: format, model facts, columns); each further line one record.
 * A line is the JSON text, a tab and the CRC-32 of the JSON's UTF-8 bytes as 8 hex digits; a last line
 * that is incomplete or fails its CRC (a write cut short) is ignored. Records are small: the lengths and
 * state of the files, and the positions and hashes of the rows and failures the commit adds.
 * @module
 */
import { crc32 } from "../engine/crc32.ts";
import type { OutputFile, OutputFs } from "./output_files.ts";
import { readLines } from "./line_reader.ts";

/** The commit log beside an output. */
export function commitLogPath(out: string): string {
  return `${out}.commits`;
}

const enc = new TextEncoder();

function line(value: unknown): Uint8Array {
  const json = JSON.stringify(value);
  return enc.encode(`${json}\t${crc32(enc.encode(json)).toString(16).padStart(8, "0")}\n`);
}

/** What {@linkcode readCommitLog} found. */
export interface CommitLogContents<H, R> {
  readonly header: H;
  /** The last valid record, if any. */
  readonly last?: R;
  /** Valid records. */
  readonly records: number;
  /** Bytes up to the end of the last valid line. */
  readonly validLength: number;
}

/**
 * Reads the commit log of `out`, calling `onRecord` for each valid record in order.
 *
 * @returns The header, the last record and where the valid part ends; undefined when there is no log.
 * @throws {SyntaxError} When the header is unreadable, or a bad line is followed by good ones (not a torn
 * tail but damage).
 */
export async function readCommitLog<H, R>(
  out: string,
  onRecord?: (record: R) => void,
): Promise<CommitLogContents<H, R> | undefined> {
  const path = commitLogPath(out);
  try {
    await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  let header: H | undefined;
  let last: R | undefined;
  let records = 0;
  let validLength = 0;
  let bad = -1;
  let index = 0;
  for await (const { text, end } of readLines(path)) {
    index++;
    const tab = text.lastIndexOf("\t");
    const json = tab < 0 ? "" : text.slice(0, tab);
    const ok = tab >= 0 && crc32(enc.encode(json)).toString(16).padStart(8, "0") === text.slice(tab + 1);
    if (!ok) {
      if (bad < 0) bad = index;
      continue;
    }
    if (bad >= 0) {
      throw new SyntaxError(`Cannot resume from "${path}": line ${bad} is damaged but later lines are not`);
    }
    const value = JSON.parse(json);
    if (header === undefined) header = value as H;
    else {
      last = value as R;
      records++;
      onRecord?.(last);
    }
    validLength = end;
  }
  if (header === undefined) {
    // Killed while writing the header: nothing was committed.
    return undefined;
  }
  return { header, last, records, validLength };
}

/** An open commit log. */
export class CommitLog {
  #file: OutputFile;

  private constructor(file: OutputFile) {
    this.#file = file;
  }

  /** Starts a new log for `out` with its header (synced before anything else is written). */
  static async create(fs: OutputFs, out: string, header: unknown): Promise<CommitLog> {
    const file = await fs.create(commitLogPath(out));
    await file.append(line(header));
    await file.sync();
    return new CommitLog(file);
  }

  /** Continues the log of `out` after its last valid line (a torn tail is cut off). */
  static async continue(fs: OutputFs, out: string, validLength: number): Promise<CommitLog> {
    const file = await fs.open(commitLogPath(out));
    if (file.length !== validLength) await file.truncate(validLength);
    return new CommitLog(file);
  }

  /** Appends a record and syncs it. */
  async append(record: unknown): Promise<void> {
    await this.#file.append(line(record));
    await this.#file.sync();
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}
