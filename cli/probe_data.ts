/**
 * The inputs of `deno task probe`: an embeddings file of `deno task embed` (any of its formats), a labels
 * CSV, and the join of the two on the normalised image path.
 *
 * - Embeddings: `.npy` with its `.npy.json` sidecar (or, without it, `.npy.paths.txt`), `.jsonl`,
 *   `.parquet` (read by `cli/outputs.ts`'s `readOutput`), `.safetensors` (read here: tensor `embeddings`
 *   F32 [N, D] and `__metadata__.paths`; `hashes` and `metadata` are optional, so files written by other
 *   tools load too). The model facts the file states become its {@linkcode EmbeddingIdentity}. A row with
 *   NaN or infinity is an error naming it.
 * - Labels: a CSV (RFC 4180) with a path column (`path`, else `file`, `filename`, `image`), relative paths
 *   relative to the CSV's folder, as `embed --list` reads them.
 * - Join: both sides' paths are resolved to absolute, normalised paths. A relative path in the embeddings
 *   is taken relative to the working directory, as `embed` wrote it; when that matches fewer label rows
 *   than taking it relative to the embeddings file's folder, the folder is used (files moved together).
 * @module
 */
import { dirname, isAbsolute, resolve } from "node:path";
import type { EmbeddingIdentity } from "../models/classifier.ts";
import { parseCsv } from "./inputs.ts";
import { decodeNpyFloat32 } from "./npy.ts";
import { outputFormat, readOutput } from "./outputs.ts";
import { facts as factsOf } from "./output_rows.ts";

/** An embeddings file, read whole. */
export interface Embeddings {
  /** The file. */
  readonly file: string;
  /** Image path of each row, as stored. */
  readonly paths: readonly string[];
  /** [N, D] float32, row-major. */
  readonly data: Float32Array;
  /** D. */
  readonly d: number;
  /** The facts the file states about its model (embedding_size = D). */
  readonly identity: EmbeddingIdentity;
}

/** A labels CSV. */
export interface LabelTable {
  /** The file. */
  readonly file: string;
  /** Column names. */
  readonly columns: readonly string[];
  /** The column that gives the paths. */
  readonly pathColumn: string;
  /** Rows with a path: the path as written, its resolved key, every column's value (trimmed). */
  readonly rows: readonly { path: string; key: string; values: Readonly<Record<string, string>> }[];
  /** Rows whose path appeared before (the first is kept). */
  readonly duplicates: number;
}

/** Path columns of a labels CSV, in order of preference. */
export const PATH_COLUMNS = ["path", "file", "filename", "image"] as const;

/**
 * Reads an embeddings file of any format `deno task embed` writes.
 *
 * @param file The path.
 * @returns Paths, matrix, facts.
 * @throws {TypeError} When the file is missing, malformed, its rows differ in length, or a row is not
 * finite (the message names the file and the rows).
 */
export async function readEmbeddings(file: string): Promise<Embeddings> {
  const fail = (why: string): never => {
    throw new TypeError(`Cannot read embeddings "${file}": ${why}`);
  };
  const format = outputFormat(file);
  if (!format) fail("expected a .npy, .jsonl, .parquet or .safetensors file");
  let paths: string[];
  let data: Float32Array;
  let d: number;
  let facts: Record<string, unknown>;
  try {
    await Deno.stat(file);
  } catch {
    fail("no such file");
  }
  if (format === "safetensors") {
    ({ paths, data, d, facts } = parseSafetensorsEmbeddings(await Deno.readFile(file), fail));
  } else if (format === "npy" && !(await exists(`${file}.json`))) {
    if (!(await exists(`${file}.paths.txt`))) {
      fail(`expected "${file}.json" or "${file}.paths.txt" beside it`);
    }
    let shape: [number, number];
    try {
      ({ shape, data } = decodeNpyFloat32(await Deno.readFile(file)));
    } catch (e) {
      return fail((e as Error).message);
    }
    d = shape[1];
    paths = (await Deno.readTextFile(`${file}.paths.txt`)).split(/\r?\n/).filter((l) => l !== "");
    if (paths.length !== shape[0]) fail(`${shape[0]} rows but ${paths.length} paths in "${file}.paths.txt"`);
    facts = {};
  } else {
    let read;
    try {
      read = await readOutput(file);
    } catch (e) {
      const cause = (e as Error).cause as Error | undefined;
      return fail(cause?.message ?? (e as Error).message);
    }
    if (!read || read.rows.length === 0) return fail("no rows");
    d = read.rows[0].embedding.length;
    data = new Float32Array(read.rows.length * d);
    read.rows.forEach((r, i) => {
      if (r.embedding.length !== d) {
        fail(`row ${i} ("${r.path}") has ${r.embedding.length} values, row 0 has ${d}`);
      }
      data.set(r.embedding, i * d);
    });
    paths = read.rows.map((r) => r.path);
    facts = factsOf(read.info);
  }
  if (paths.length === 0 || d === 0) fail("no rows");
  const bad: string[] = [];
  for (let i = 0; i < paths.length; i++) {
    for (let j = i * d; j < (i + 1) * d; j++) {
      if (!Number.isFinite(data[j])) {
        bad.push(paths[i]);
        break;
      }
    }
  }
  if (bad.length > 0) {
    fail(
      `${bad.length} row${bad.length > 1 ? "s hold" : " holds"} NaN or infinity: ${
        bad.slice(0, 5).join(", ")
      }${bad.length > 5 ? ", ..." : ""}`,
    );
  }
  return { file, paths, data, d, identity: identityFromFacts(facts, d) };
}

/** The identity stated by a file's facts: strings kept, "undefined"/empty as null, sizes as numbers. */
export function identityFromFacts(facts: Record<string, unknown>, d: number): EmbeddingIdentity {
  const text = (k: string) => {
    const v = facts[k];
    return v === undefined || v === null || v === "" || v === "undefined" ? null : String(v);
  };
  const size = text("input_size");
  return {
    model: text("model"),
    architecture: text("architecture"),
    preset: text("preset"),
    input_size: size !== null && Number.isInteger(Number(size)) ? Number(size) : null,
    embedding_size: d,
  };
}

function parseSafetensorsEmbeddings(
  bytes: Uint8Array,
  fail: (why: string) => never,
): { paths: string[]; data: Float32Array; d: number; facts: Record<string, unknown> } {
  if (bytes.length < 8) fail("shorter than a safetensors header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > bytes.length) fail(`header of ${n} bytes runs past the end (${bytes.length} bytes)`);
  let header: Record<string, any>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    return fail(`header is not JSON (${(e as Error).message})`);
  }
  const t = header.embeddings;
  if (!t) {
    fail(
      `expected a tensor "embeddings", got ${
        Object.keys(header).filter((k) => k !== "__metadata__").join(", ") || "none"
      }`,
    );
  }
  if (t.dtype !== "F32") fail(`expected "embeddings" of dtype F32, got ${t.dtype}`);
  if (!Array.isArray(t.shape) || t.shape.length !== 2) {
    fail(`expected "embeddings" of 2 dimensions, got ${JSON.stringify(t.shape)}`);
  }
  const [rows, d] = t.shape as number[];
  const [begin, end] = t.data_offsets ?? [];
  if (end - begin !== rows * d * 4 || 8 + n + end > bytes.length) {
    fail(`"embeddings" data [${begin}, ${end}) does not hold ${rows} x ${d} floats inside the file`);
  }
  const data = new Float32Array(bytes.slice(8 + n + begin, 8 + n + end).buffer);
  const meta: Record<string, string> = header.__metadata__ ?? {};
  let paths: unknown;
  try {
    paths = JSON.parse(meta.paths ?? "null");
  } catch {
    paths = null;
  }
  if (!Array.isArray(paths) || paths.some((p) => typeof p !== "string")) {
    fail("expected __metadata__.paths to be a JSON array of the rows' image paths");
  }
  if ((paths as string[]).length !== rows) fail(`${rows} rows but ${(paths as string[]).length} paths`);
  return { paths: paths as string[], data, d, facts: meta };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads a labels CSV.
 *
 * @param file The CSV.
 * @returns Its rows, each with its resolved path.
 * @throws {TypeError} When the file cannot be read or has no path column.
 */
export async function readLabels(file: string): Promise<LabelTable> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new TypeError(`Cannot read labels "${file}": ${(e as Error).message}`);
  }
  const table = parseCsv(text.replace(/^\uFEFF/, ""));
  const columns = (table[0] ?? []).map((h) => h.trim());
  const pathColumn = PATH_COLUMNS.find((c) => columns.includes(c));
  if (pathColumn === undefined) {
    throw new TypeError(
      `Cannot read labels "${file}": expected a column named ${PATH_COLUMNS.join(", ")}, got ${
        columns.join(", ") || "no header"
      }`,
    );
  }
  const at = columns.indexOf(pathColumn);
  const base = dirname(file);
  const seen = new Set<string>();
  const rows: LabelTable["rows"][number][] = [];
  let duplicates = 0;
  for (const cells of table.slice(1)) {
    const path = (cells[at] ?? "").trim();
    if (path === "") continue;
    const key = isAbsolute(path) ? resolve(path) : resolve(base, path);
    if (seen.has(key)) {
      duplicates++;
      continue;
    }
    seen.add(key);
    const values: Record<string, string> = {};
    columns.forEach((c, i) => values[c] = (cells[i] ?? "").trim());
    rows.push({ path, key, values });
  }
  return { file, columns, pathColumn, rows, duplicates };
}

/** The rows of an embeddings file and a labels table that name the same image. */
export interface Join {
  /** Per match: the embedding row and the label row (in embedding order). */
  readonly pairs: readonly { row: number; label: number }[];
  /** Label rows with no embedding (their paths as written). */
  readonly missingEmbeddings: readonly string[];
  /** Embedding rows with no label row. */
  readonly unmatchedEmbeddings: number;
  /** Where relative embedding paths were taken from. */
  readonly base: "working directory" | "embeddings folder";
}

/**
 * Joins embeddings and labels on the resolved path (see the module doc).
 *
 * @param embeddings The embeddings.
 * @param labels The labels.
 * @param cwd The working directory (default the process's).
 * @returns The matches and what did not match.
 * @throws {TypeError} When no path matches, with an example of each side's paths.
 */
export function joinLabels(embeddings: Embeddings, labels: LabelTable, cwd = Deno.cwd()): Join {
  const byKey = new Map(labels.rows.map((r, i) => [r.key, i]));
  const folder = resolve(cwd, dirname(embeddings.file));
  const attempt = (base: string) => {
    const pairs: { row: number; label: number }[] = [];
    const used = new Set<number>();
    embeddings.paths.forEach((p, row) => {
      const label = byKey.get(isAbsolute(p) ? resolve(p) : resolve(base, p));
      if (label !== undefined && !used.has(label)) {
        used.add(label);
        pairs.push({ row, label });
      }
    });
    return { pairs, used };
  };
  const fromCwd = attempt(resolve(cwd));
  const fromFolder = attempt(folder);
  const useFolder = fromFolder.pairs.length > fromCwd.pairs.length;
  const { pairs, used } = useFolder ? fromFolder : fromCwd;
  if (pairs.length === 0) {
    throw new TypeError(
      `Cannot join "${embeddings.file}" and "${labels.file}": no image path is in both (embeddings: "${
        embeddings.paths[0]
      }", taken relative to ${resolve(cwd)} or ${folder}; labels: "${labels.rows[0]?.path ?? "none"}", ` +
        `relative to ${resolve(cwd, dirname(labels.file))})`,
    );
  }
  return {
    pairs,
    missingEmbeddings: labels.rows.filter((_, i) => !used.has(i)).map((r) => r.path),
    unmatchedEmbeddings: embeddings.paths.length - pairs.length,
    base: useFolder ? "embeddings folder" : "working directory",
  };
}

/** One label column over the joined rows: the labelled rows and their classes. */
export interface LabelTask {
  /** The column. */
  readonly column: string;
  /** Its values, sorted (code-unit order). */
  readonly classes: readonly string[];
  /** Embedding row of each labelled row (join order). */
  readonly rows: readonly number[];
  /** Label-table row of each labelled row. */
  readonly labelRows: readonly number[];
  /** Class index of each labelled row. */
  readonly y: Int32Array;
  /** Joined rows whose cell is empty (skipped). */
  readonly unlabelled: number;
}

/**
 * The labelled rows of one column.
 *
 * @param join The join.
 * @param labels The labels.
 * @param column The column.
 * @returns The task.
 * @throws {TypeError} When the column is missing or holds fewer than two classes.
 */
export function labelTask(join: Join, labels: LabelTable, column: string): LabelTask {
  requireColumn(labels, column, "--label");
  const rows: number[] = [];
  const labelRows: number[] = [];
  const values: string[] = [];
  let unlabelled = 0;
  for (const { row, label } of join.pairs) {
    const v = labels.rows[label].values[column];
    if (v === "") {
      unlabelled++;
      continue;
    }
    rows.push(row);
    labelRows.push(label);
    values.push(v);
  }
  const classes = [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (classes.length < 2) {
    throw new TypeError(
      `Cannot train on column "${column}" of "${labels.file}": expected two or more classes, got ${
        classes.length === 0 ? "no labelled row" : `only "${classes[0]}"`
      }`,
    );
  }
  const index = new Map(classes.map((c, i) => [c, i]));
  return { column, classes, rows, labelRows, y: Int32Array.from(values, (v) => index.get(v)!), unlabelled };
}

/** Throws naming the columns there are when `column` is not one of them. */
export function requireColumn(labels: LabelTable, column: string, flag: string): void {
  if (!labels.columns.includes(column)) {
    throw new TypeError(
      `Cannot use ${flag} "${column}": "${labels.file}" has no such column (columns: ${
        labels.columns.join(", ")
      })`,
    );
  }
}
