/**
 * One image's CPU work in `deno task embed` (and `deno task serve`, which passes the bytes): read the file,
 * hash it, decode it, orient it. Runs in a decode worker (`decode_worker.ts`), or on the main thread with
 * `--workers 0`.
 * @module
 */
import { decodeImage } from "../engine/image_decode.ts";
import { cpuPreprocess } from "../engine/input_stage.ts";
import type { Preprocessing } from "../engine/preprocessing.ts";
import { applyOrientation, readExifOrientation } from "./exif.ts";

/** A request to read and decode one image. */
export interface DecodeRequest {
  /** Caller's id, echoed in the reply. */
  readonly id: number;
  /** The file (with `bytes`: only the image's name, for messages). */
  readonly path: string;
  /** The file's bytes, when they are already in memory (`deno task serve`): then `path` is not read. */
  readonly bytes?: Uint8Array<ArrayBuffer>;
  /** When the file's SHA-256 equals this, it is not decoded (already embedded: `--resume`). */
  readonly skipHash?: string;
  /** Pixel limit (width x height). */
  readonly maxPixels: number;
  /** Apply the JPEG's EXIF orientation. */
  readonly exifOrientation: boolean;
  /**
   * The model's preprocessing: its CPU part (Pillow's resize and crop for `pillow-bilinear`) runs here, on
   * the worker, rather than on the thread that feeds the GPU.
   */
  readonly preprocessing?: Preprocessing;
}

/** The outcome for one image: pixels, or skipped, or an error; always the hash when the file was read. */
export interface DecodeReply {
  /** The request's id. */
  readonly id: number;
  /** SHA-256 of the file's bytes, hex ("" when it could not be read). */
  readonly hash: string;
  /** True when the hash matched `skipHash`. */
  readonly skipped: boolean;
  /** The decoded (and oriented, and CPU-preprocessed when asked) pixels. */
  readonly image?: { width: number; height: number; rgba: Uint8Array<ArrayBuffer>; preprocessed?: number };
  /** Why the image cannot be used (read or decode failure). */
  readonly error?: string;
  /** Milliseconds spent reading + hashing, and decoding + orienting. */
  readonly readMs: number;
  /** Milliseconds spent decoding and orienting. */
  readonly decodeMs: number;
}

/** Reads, hashes and decodes `request.path`; never throws (failures are in `error`). */
export async function decodeJob(request: DecodeRequest): Promise<DecodeReply> {
  const { id, path } = request;
  const t0 = performance.now();
  let bytes: Uint8Array<ArrayBuffer>;
  let hash: string;
  try {
    bytes = request.bytes ?? await Deno.readFile(path);
    hash = await sha256Hex(bytes);
  } catch (e) {
    const readMs = performance.now() - t0;
    return {
      id,
      hash: "",
      skipped: false,
      error: `Cannot read "${path}": ${(e as Error).message}`,
      readMs,
      decodeMs: 0,
    };
  }
  const t1 = performance.now();
  const readMs = t1 - t0;
  if (request.skipHash === hash) return { id, hash, skipped: true, readMs, decodeMs: 0 };
  try {
    let image = await decodeImage(bytes, path, { maxPixels: request.maxPixels });
    if (request.exifOrientation && image.format === "jpeg") {
      image = applyOrientation(image, readExifOrientation(bytes));
    }
    if (request.preprocessing) image = cpuPreprocess(image, request.preprocessing);
    const { width, height, rgba, preprocessed } = image;
    return {
      id,
      hash,
      skipped: false,
      image: { width, height, rgba, preprocessed },
      readMs,
      decodeMs: performance.now() - t1,
    };
  } catch (e) {
    return {
      id,
      hash,
      skipped: false,
      error: (e as Error).message,
      readMs,
      decodeMs: performance.now() - t1,
    };
  }
}

/** Hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
