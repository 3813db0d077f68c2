/**
 * The output files of `deno task embed`, chosen by the extension of `--out`, each written whole to a
 * temporary file, flushed and renamed (a reader never sees a partial file), and read back for `--resume`:
 *
 * - `.npy`: float32 [N, D]; `OUT.npy.paths.txt` lists the images; `OUT.npy.json` holds the model facts
 *   and each row's path, SHA-256 and metadata.
 * - `.jsonl`: one object per image: path, hash, metadata, embedding, and the model facts.
 * - `.parquet`: columns path, hash, one string column per metadata key, embedding (a Parquet LIST of
 *   FLOAT, D per row, declared `FixedSizeList<float32>[D]` by the `ARROW:schema` key-value entry that
 *   Arrow readers such as pyarrow/pandas, polars and arrow-rs restore it from; DuckDB ignores that entry
 *   and reads `FLOAT[]`, `embedding::FLOAT[D]` makes it an ARRAY); the model facts in the key-value
 *   metadata. Written by hyparquet-writer, the Arrow schema by `cli/arrow_schema.ts`.
 * - `.safetensors`: tensor `embeddings` F32 [N, D]; the model facts, paths, hashes and metadata in
 *   `__metadata__`.
 * @module
 */
import { parquetWriteBuffer } from "hyparquet-writer";
import { parquetMetadata, parquetReadObjects } from "hyparquet";
import { decodeNpyFloat32, encodeNpyFloat32 } from "./npy.ts";
import { arrowSchemaBase64 } from "./arrow_schema.ts";

/** One embedded image. */
export interface EmbeddingRow {
  /** The image's path. */
  readonly path: string;
  /** SHA-256 of the file's bytes, hex. */
  readonly hash: string;
  /** Metadata from a `--list` CSV. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The embedding, D floats. */
  readonly embedding: Float32Array;
}

/** What every output file states about how its embeddings were made. */
export interface OutputInfo {
  /** The weights or model the embeddings come from (the `--weights` value). */
  readonly model: string;
  /** Architecture, e.g. `BiT-R101x3` style summary. */
  readonly architecture: string;
  /** Numeric preset. */
  readonly preset: string;
  /** Model input size S. */
  readonly size: number;
  /** Floats per embedding (D). */
  readonly embeddingSize: number;
  /** `derm-webgpu VERSION`. */
  readonly engine: string;
}

/** Output formats, by extension. */
export const OUTPUT_FORMATS = ["npy", "jsonl", "parquet", "safetensors"] as const;
/** One of {@linkcode OUTPUT_FORMATS}. */
export type OutputFormat = typeof OUTPUT_FORMATS[number];

/** The format of `--out`, from its extension, or undefined for an unknown one. */
export function outputFormat(path: string): OutputFormat | undefined {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  return (OUTPUT_FORMATS as readonly string[]).includes(ext) ? ext as OutputFormat : undefined;
}

/** Files written beside `out` (removed with it when starting afresh). */
export function sidecarPaths(out: string): string[] {
  return outputFormat(out) === "npy" ? [`${out}.paths.txt`, `${out}.json`] : [];
}

/**
 * Writes `rows` to `out` in the format of its extension, atomically (sidecars first, the main file last).
 *
 * @param out The output path.
 * @param rows The rows, in output order.
 * @param info Model facts written into the file.
 * @returns Bytes written.
 */
export async function writeOutput(
  out: string,
  rows: readonly EmbeddingRow[],
  info: OutputInfo,
): Promise<number> {
  const format = outputFormat(out);
  const d = info.embeddingSize;
  const enc = new TextEncoder();
  switch (format) {
    case "npy": {
      const side = {
        ...facts(info),
        rows: rows.map((r) => ({ path: r.path, hash: r.hash, metadata: r.metadata })),
      };
      const json = enc.encode(JSON.stringify(side) + "\n");
      const paths = enc.encode(rows.map((r) => r.path + "\n").join(""));
      const npy = encodeNpyFloat32(rows.map((r) => r.embedding), d);
      await writeAtomically(`${out}.json`, json);
      await writeAtomically(`${out}.paths.txt`, paths);
      await writeAtomically(out, npy);
      return json.length + paths.length + npy.length;
    }
    case "jsonl": {
      const bytes = enc.encode(rows.map((r) => jsonlLine(r, info)).join(""));
      await writeAtomically(out, bytes);
      return bytes.length;
    }
    case "parquet": {
      const bytes = encodeParquet(rows, info);
      await writeAtomically(out, bytes);
      return bytes.length;
    }
    case "safetensors": {
      const bytes = encodeSafetensors(rows, info);
      await writeAtomically(out, bytes);
      return bytes.length;
    }
    default:
      throw new TypeError(`Cannot write "${out}": expected an extension of ${OUTPUT_FORMATS.join(", ")}`);
  }
}

function facts(info: OutputInfo): Record<string, string | number> {
  return {
    model: info.model,
    architecture: info.architecture,
    preset: info.preset,
    input_size: info.size,
    embedding_size: info.embeddingSize,
    engine: info.engine,
  };
}

const lineCache = new WeakMap<EmbeddingRow, string>();

/** One JSONL line (cached per row: checkpoints rewrite the file without re-formatting old rows). */
function jsonlLine(r: EmbeddingRow, info: OutputInfo): string {
  let line = lineCache.get(r);
  if (line === undefined) {
    line = JSON.stringify({
      path: r.path,
      hash: r.hash,
      metadata: r.metadata,
      ...facts(info),
      embedding: Array.from(r.embedding),
    }) + "\n";
    lineCache.set(r, line);
  }
  return line;
}

/** Metadata column names: every key seen, in first-seen order, renamed `metadata_KEY` when it clashes. */
function metadataColumns(rows: readonly EmbeddingRow[]): { key: string; column: string }[] {
  const keys: string[] = [];
  for (const r of rows) for (const k of Object.keys(r.metadata)) if (!keys.includes(k)) keys.push(k);
  return keys.map((key) => ({
    key,
    column: ["path", "hash", "embedding"].includes(key) ? `metadata_${key}` : key,
  }));
}

function encodeParquet(rows: readonly EmbeddingRow[], info: OutputInfo): Uint8Array {
  const meta = metadataColumns(rows);
  const buffer = parquetWriteBuffer({
    columnData: [
      { name: "path", data: rows.map((r) => r.path) },
      { name: "hash", data: rows.map((r) => r.hash) },
      ...meta.map(({ key, column }) => ({ name: column, data: rows.map((r) => r.metadata[key] ?? null) })),
      { name: "embedding", data: rows.map((r) => Array.from(r.embedding)) },
    ],
    schema: [
      { name: "root", num_children: 3 + meta.length },
      { name: "path", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "REQUIRED" },
      { name: "hash", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "REQUIRED" },
      ...meta.map(({ column }) => ({
        name: column,
        type: "BYTE_ARRAY" as const,
        converted_type: "UTF8" as const,
        repetition_type: "OPTIONAL" as const,
      })),
      { name: "embedding", repetition_type: "REQUIRED", converted_type: "LIST", num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      { name: "element", type: "FLOAT", repetition_type: "REQUIRED" },
    ],
    kvMetadata: [
      ...Object.entries(facts(info)).map(([key, value]) => ({ key, value: String(value) })),
      { key: "metadata_columns", value: JSON.stringify(meta) },
      { key: "ARROW:schema", value: arrowSchemaBase64(meta.map((m) => m.column), info.embeddingSize) },
    ],
    createdBy: info.engine,
  });
  return new Uint8Array(buffer);
}

function encodeSafetensors(rows: readonly EmbeddingRow[], info: OutputInfo): Uint8Array {
  const d = info.embeddingSize;
  const dataBytes = rows.length * d * 4;
  const metadata: Record<string, string> = {
    ...Object.fromEntries(Object.entries(facts(info)).map(([k, v]) => [k, String(v)])),
    paths: JSON.stringify(rows.map((r) => r.path)),
    hashes: JSON.stringify(rows.map((r) => r.hash)),
    metadata: JSON.stringify(rows.map((r) => r.metadata)),
  };
  const header = {
    __metadata__: metadata,
    embeddings: { dtype: "F32", shape: [rows.length, d], data_offsets: [0, dataBytes] },
  };
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // data starts 8-byte aligned
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  const data = new Float32Array(out.buffer, 8 + head.length, rows.length * d);
  rows.forEach((r, i) => data.set(r.embedding, i * d));
  return out;
}

/**
 * Reads the rows of an existing output (for `--resume`).
 *
 * @param out The output path.
 * @returns The rows and the model facts stated in the file, or undefined when the file does not exist.
 * @throws {SyntaxError} When the file exists but cannot be parsed.
 */
export async function readOutput(
  out: string,
): Promise<{ rows: EmbeddingRow[]; info: Record<string, string> } | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(out);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const format = outputFormat(out);
  const str = (o: Record<string, unknown>) =>
    Object.fromEntries(
      ["model", "architecture", "preset", "input_size", "embedding_size", "engine"].map((
        k,
      ) => [k, String(o[k])]),
    );
  try {
    switch (format) {
      case "npy": {
        const { shape, data } = decodeNpyFloat32(bytes);
        const side = JSON.parse(await Deno.readTextFile(`${out}.json`));
        const n = Math.min(shape[0], side.rows.length);
        const d = shape[1];
        const rows = (side.rows as { path: string; hash: string; metadata: Record<string, string> }[])
          .slice(0, n).map((r, i) => ({ ...r, embedding: data.slice(i * d, (i + 1) * d) }));
        return { rows, info: str(side) };
      }
      case "jsonl": {
        const lines = new TextDecoder().decode(bytes).split("\n").filter((l) => l.trim() !== "");
        const objects = lines.map((l) => JSON.parse(l));
        const rows = objects.map((o) => ({
          path: o.path,
          hash: o.hash,
          metadata: o.metadata ?? {},
          embedding: Float32Array.from(o.embedding),
        }));
        return { rows, info: objects.length > 0 ? str(objects[0]) : {} };
      }
      case "parquet": {
        const file = bytes.slice().buffer;
        const kv = Object.fromEntries(
          (parquetMetadata(file).key_value_metadata ?? []).map((e) => [e.key, e.value ?? ""]),
        );
        const meta: { key: string; column: string }[] = JSON.parse(kv.metadata_columns ?? "[]");
        const objects = await parquetReadObjects({ file }) as Record<string, unknown>[];
        const rows = objects.map((o) => ({
          path: String(o.path),
          hash: String(o.hash),
          metadata: Object.fromEntries(
            meta.filter(({ column }) => o[column] !== null && o[column] !== undefined)
              .map(({ key, column }) => [key, String(o[column])]),
          ),
          embedding: Float32Array.from(o.embedding as number[]),
        }));
        return { rows, info: kv };
      }
      case "safetensors": {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const n = Number(view.getBigUint64(0, true));
        const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
        const t = header.embeddings;
        const m = header.__metadata__;
        const [count, d] = t.shape;
        const data = new Float32Array(
          bytes.slice(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]).buffer,
        );
        const paths: string[] = JSON.parse(m.paths);
        const hashes: string[] = JSON.parse(m.hashes);
        const metadata: Record<string, string>[] = JSON.parse(m.metadata);
        const rows = paths.slice(0, count).map((path, i) => ({
          path,
          hash: hashes[i],
          metadata: metadata[i] ?? {},
          embedding: data.slice(i * d, (i + 1) * d),
        }));
        return { rows, info: m };
      }
      default:
        throw new TypeError(`Cannot read "${out}": unknown extension`);
    }
  } catch (e) {
    throw new SyntaxError(`Cannot resume from "${out}": ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Writes `bytes` to a temporary file beside `path`, flushes it to disk, then renames it over `path`: a
 * reader (or a resumed run after a crash) sees the old file or the new one, never a partial one.
 */
export async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      let off = 0;
      while (off < bytes.length) off += await file.write(bytes.subarray(off));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Cannot write "${path}": ${(e as Error).message}`, { cause: e });
  }
}
