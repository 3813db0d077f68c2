/**
 * What `deno task embed` writes, whatever the format: one row per embedded image (its path, SHA-256,
 * `--list` metadata, position in the whole input order, embedding) and the facts every output states about
 * how its embeddings were made.
 * @module
 */

/** One embedded image. */
export interface EmbeddingRow {
  /** The image's path. */
  readonly path: string;
  /** SHA-256 of the file's bytes, hex. */
  readonly hash: string;
  /** Metadata from a `--list` CSV. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Index of the image in the whole input order (before `--shard` picks its part). */
  readonly position: number;
  /** The embedding, D floats. */
  readonly embedding: Float32Array;
}

/** One shard of a partitioned run: `index` of `count` (`--shard I/N`). */
export interface ShardSpec {
  readonly index: number;
  readonly count: number;
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
  /** Storage precision of the run (`--precision`), when not the default f32: `f16`. */
  readonly precision?: string;
  /** `derm-webgpu VERSION`. */
  readonly engine: string;
  /** Number of images in the whole input order (all shards together). */
  readonly inputs?: number;
  /** SHA-256 of the whole input order's normalised paths, one per line (`cli/shard.ts`). */
  readonly inputsSha256?: string;
  /** The part of the inputs this output holds, when the run was sharded. */
  readonly shard?: ShardSpec;
}

/**
 * The facts as written into files: snake_case keys, in this order; `precision` only when not f32, `shard` as
 * "I/N" only when sharded.
 */
export function facts(info: OutputInfo): Record<string, string | number> {
  const out: Record<string, string | number> = {
    model: info.model,
    architecture: info.architecture,
    preset: info.preset,
    input_size: info.size,
    embedding_size: info.embeddingSize,
  };
  if (info.precision !== undefined && info.precision !== "f32") out.precision = info.precision;
  out.engine = info.engine;
  if (info.inputs !== undefined) out.inputs = info.inputs;
  if (info.inputsSha256 !== undefined) out.inputs_sha256 = info.inputsSha256;
  if (info.shard) out.shard = `${info.shard.index}/${info.shard.count}`;
  return out;
}

/** The keys {@linkcode facts} may write, in order. */
export const FACT_KEYS = [
  "model",
  "architecture",
  "preset",
  "input_size",
  "embedding_size",
  "precision",
  "engine",
  "inputs",
  "inputs_sha256",
  "shard",
] as const;

/** Reads facts back (values as strings, as Parquet and safetensors store them) into an {@linkcode OutputInfo}. */
export function infoFromFacts(values: Readonly<Record<string, unknown>>, where: string): OutputInfo {
  const get = (k: string) => {
    const v = values[k];
    return v === undefined || v === null ? undefined : String(v);
  };
  const need = (k: string) => {
    const v = get(k);
    if (v === undefined) throw new SyntaxError(`Cannot read "${where}": expected the fact "${k}", got none`);
    return v;
  };
  const shard = get("shard");
  const m = shard === undefined ? undefined : /^(\d+)\/(\d+)$/.exec(shard);
  if (shard !== undefined && !m) {
    throw new SyntaxError(`Cannot read "${where}": expected shard I/N, got "${shard}"`);
  }
  return {
    model: need("model"),
    architecture: need("architecture"),
    preset: need("preset"),
    size: Number(need("input_size")),
    embeddingSize: Number(need("embedding_size")),
    ...(get("precision") === undefined ? {} : { precision: get("precision") }),
    engine: need("engine"),
    inputs: get("inputs") === undefined ? undefined : Number(get("inputs")),
    inputsSha256: get("inputs_sha256"),
    shard: m ? { index: Number(m[1]), count: Number(m[2]) } : undefined,
  };
}

/** Column names that a metadata key must not take in a Parquet file. */
const RESERVED_COLUMNS = ["path", "hash", "position", "embedding"];

/** A metadata key and its Parquet column: `metadata_KEY` when the key clashes with a fixed column. */
export interface MetadataColumn {
  readonly key: string;
  readonly column: string;
}

/** Metadata columns for `keys` (in order). */
export function metadataColumns(keys: readonly string[]): MetadataColumn[] {
  return keys.map((key) => ({ key, column: RESERVED_COLUMNS.includes(key) ? `metadata_${key}` : key }));
}

/** Every metadata key of `items`, in first-seen order. */
export function metadataKeys(
  items: Iterable<{ readonly metadata: Readonly<Record<string, string>> }>,
): string[] {
  const keys = new Set<string>();
  for (const item of items) for (const k of Object.keys(item.metadata)) keys.add(k);
  return [...keys];
}
