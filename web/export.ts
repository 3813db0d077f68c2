/**
 * The files the page offers for download, byte for byte what `deno task embed --out embeddings.npy` writes
 * for the same rows (`cli/outputs.ts`): `embeddings.npy` (float32 [N, D], by `cli/npy.ts`), its
 * `.paths.txt` (one name per line) and its `.json` (`cli/npy_sidecar.ts`: the model facts and each row's
 * path, SHA-256, position and metadata); and, with a classifier, `scores.csv`. In the page a row's path is the file's name.
 *
 * This module is browser compatible.
 * @module
 */
import { encodeNpyFloat32 } from "../cli/npy.ts";
import { npySidecar } from "../cli/npy_sidecar.ts";
import denoJson from "../deno.json" with { type: "json" };

/** `derm-webgpu VERSION`, as the command line writes it into every output. */
export const ENGINE = `derm-webgpu ${denoJson.version}`;

/** One embedded image. */
export interface ExportRow {
  /** The image's name (its path on the command line). */
  readonly path: string;
  /** SHA-256 of the file's bytes, hex. */
  readonly hash: string;
  /** Metadata columns (none in the page). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** The embedding, D floats. */
  readonly embedding: Float32Array;
}

/** What the files state about the model, as `cli/outputs.ts`'s `OutputInfo`. */
export interface ExportInfo {
  /** The weights: the `?weights=` value, or the chosen file's name. */
  readonly model: string;
  readonly architecture: string;
  readonly preset: string;
  /** Model input size S. */
  readonly size: number;
  /** Floats per embedding (D). */
  readonly embeddingSize: number;
}

/** The three files of a `.npy` output. */
export interface NpyFiles {
  /** `embeddings.npy`: float32 [N, D]. */
  readonly npy: Uint8Array;
  /** `embeddings.npy.paths.txt`. */
  readonly pathsTxt: string;
  /** `embeddings.npy.json`. */
  readonly json: string;
}

/**
 * The `.npy`, `.paths.txt` and `.json` of rows, as `deno task embed` writes them.
 *
 * @param rows The embedded images, in output order.
 * @param info The model facts.
 * @returns The three files' contents.
 */
export function npyFiles(rows: readonly ExportRow[], info: ExportInfo): NpyFiles {
  return {
    npy: encodeNpyFloat32(rows.map((r) => r.embedding), info.embeddingSize),
    pathsTxt: rows.map((r) => r.path + "\n").join(""),
    json: npySidecar(
      { ...info, engine: ENGINE },
      [],
      rows.map((r, position) => ({ path: r.path, hash: r.hash, position, metadata: r.metadata ?? {} })),
    ),
  };
}

/** A CSV field, quoted when it holds a comma, quote or line break (RFC 4180). */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * `scores.csv`: `path`, one column of probabilities per class (shortest round-trip decimal), `predicted`.
 *
 * @param classes The class names.
 * @param rows Each image's name and probabilities.
 * @returns The CSV text.
 */
export function scoresCsv(
  classes: readonly string[],
  rows: readonly { path: string; scores: ArrayLike<number> }[],
): string {
  const lines = [["path", ...classes, "predicted"].map(csvField).join(",")];
  for (const r of rows) {
    let best = 0;
    for (let k = 1; k < classes.length; k++) if (r.scores[k] > r.scores[best]) best = k;
    lines.push([csvField(r.path), ...Array.from(r.scores, String), csvField(classes[best])].join(","));
  }
  return lines.join("\n") + "\n";
}

/**
 * SHA-256 of bytes, hex (as the command line hashes each file).
 *
 * @param bytes The file.
 * @returns 64 hex digits.
 */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer> | ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
