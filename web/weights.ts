/**
 * Weights in the page: `procedural:NAME[:SEED]`, a URL downloaded once with progress and kept in the Cache
 * API (so a reload does not download 1.5 GB again), or a file the person chose. The format is decided by the
 * file name in one place, {@linkcode weightsFormat} (the command line's rule, `isPytorchPath`), and opened
 * in one place, {@linkcode openWeightsFile}: safetensors streamed, PyTorch checkpoints (`.pth`, `.pt`,
 * `.ckpt`, `.bin`, `.pth.tar`: the Gröger et al. models) read from a Blob by random access.
 *
 * A download is written to the cache first (counting bytes for the progress bar) and then streamed from
 * it to the GPU, one tensor at a time, so the model is never in memory whole. When the cache is missing
 * (a non-secure origin, Deno without `--location`), the storage quota is too small, or `cache.put` fails,
 * the download streams straight to the GPU instead and `notCached` says why.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import type { TensorSource } from "../engine/tensor_source.ts";
import { blobReader, checkpointSource, openPytorch } from "../weights/pytorch.ts";
import { safetensorsFromStream } from "../weights/safetensors.ts";
import { isPytorchPath } from "../models/registry.ts";
import type { WeightsOrigin, WeightsSpec } from "./protocol.ts";

/** The Cache API cache holding downloaded weights (bump the suffix if the stored form changes). */
export const WEIGHTS_CACHE = "derm-webgpu-weights-v1";

/** Response header recording the stored size, checked when the entry is read back. */
const SIZE_HEADER = "x-derm-webgpu-bytes";

/** Weight file formats the page reads. */
export type WeightsFormat = "safetensors" | "pytorch";

/**
 * The format of a weights file, from its name (a URL's path or a chosen file's name): the names of
 * `PYTORCH_EXTENSIONS` are PyTorch checkpoints; everything else is read as safetensors (whose header check
 * fails clearly).
 *
 * @param name File name or URL.
 * @returns The format.
 */
export function weightsFormat(name: string): WeightsFormat {
  const path = /^[a-z][a-z0-9+.-]*:/i.test(name) ? safePathname(name) : name;
  return isPytorchPath(path) ? "pytorch" : "safetensors";
}

function safePathname(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

/** A weights file, however it arrived: call `stream()` or `blob()`, once. */
export interface WeightsFile {
  /** Name or URL, for messages. */
  readonly name: string;
  /** Size in bytes, when known. */
  readonly size?: number;
  /** The bytes from the first, streamed. */
  stream(): ReadableStream<Uint8Array>;
  /** The bytes as a Blob (random access, for formats that need it). */
  blob(): Promise<Blob>;
}

/**
 * Opens a weights file in its format.
 *
 * @param file The file.
 * @param format Its format (default from its name).
 * @returns The tensor source (streamed once).
 * @throws {WeightsError} For a file that cannot be read, or a format this build does not read.
 */
export async function openWeightsFile(
  file: WeightsFile,
  format: WeightsFormat = weightsFormat(file.name),
): Promise<TensorSource> {
  switch (format) {
    case "safetensors":
      return await safetensorsFromStream(file.stream(), file.name, file.size);
    case "pytorch":
      // The zip's central directory is at its end: a checkpoint needs random access, not a stream.
      return await checkpointSource(await openPytorch(blobReader(await file.blob()), file.name));
  }
}

/** Options of {@linkcode openPageWeights}. */
export interface PageWeightsOptions {
  /** The Cache API to keep downloads in (default `globalThis.caches`; `null` for none). */
  readonly caches?: CacheStorage | null;
  /** Download (or file read) progress: bytes so far and the total (0 when unknown). */
  readonly onProgress?: (done: number, total: number) => void;
  /** Free storage quota in bytes (default from `navigator.storage.estimate()`; undefined when unknown). */
  readonly freeStorage?: () => Promise<number | undefined>;
}

/** Weights ready for `createEmbedder`, and where they came from. */
export interface PageWeights {
  /** A `procedural:` string or an opened source. */
  readonly input: string | TensorSource;
  /** Where the bytes came from. */
  readonly origin: WeightsOrigin;
  /** Why a download was not cached, when it was not. */
  readonly notCached?: string;
}

/**
 * Opens the page's weights.
 *
 * @param spec `procedural:NAME[:SEED]`, an absolute URL, or a chosen file.
 * @param options Cache and progress.
 * @returns What `createEmbedder` loads.
 * @throws {WeightsError} For a failed download or an unreadable file.
 */
export async function openPageWeights(
  spec: WeightsSpec,
  options: PageWeightsOptions = {},
): Promise<PageWeights> {
  if (typeof spec === "string" && spec.startsWith("procedural:")) {
    return { input: spec, origin: "procedural" };
  }
  if (typeof spec !== "string") {
    const { blob, name } = spec;
    const file: WeightsFile = {
      name,
      size: blob.size,
      stream: () => countBytes(blob.stream(), blob.size, name, options.onProgress),
      blob: () => Promise.resolve(blob),
    };
    return { input: await openWeightsFile(file), origin: "file" };
  }
  const { file, origin, notCached } = await downloadWeights(spec, options);
  return { input: await openWeightsFile(file), origin, notCached };
}

/** A stream that reports bytes as they pass and fails when it ends short of (or past) `total`. */
function countBytes(
  stream: ReadableStream<Uint8Array>,
  total: number | undefined,
  name: string,
  onProgress?: (done: number, total: number) => void,
): ReadableStream<Uint8Array> {
  let done = 0;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        done += chunk.byteLength;
        onProgress?.(done, total ?? 0);
        controller.enqueue(chunk);
      },
      flush() {
        if (total !== undefined && done !== total) {
          throw new WeightsError(name, "", `Cannot read "${name}": expected ${total} bytes, got ${done}`);
        }
      },
    }),
  );
}

function responseFile(response: Response, name: string, size?: number): WeightsFile {
  return {
    name,
    size,
    stream: () => response.body!,
    blob: () => response.blob(),
  };
}

async function fetchOk(url: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new WeightsError(url, "", `Cannot download "${url}": ${(e as Error)?.message ?? e}`, { cause: e });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => {});
    throw new WeightsError(
      url,
      "",
      `Cannot download "${url}": expected a 2xx response with a body, got ${response.status} ${response.statusText}`
        .trim(),
    );
  }
  return response;
}

/** The body's size from `content-length`, when the body is not content-encoded. */
function declaredSize(response: Response): number | undefined {
  const encoding = response.headers.get("content-encoding");
  const length = response.headers.get("content-length");
  return length !== null && /^\d+$/.test(length) && (!encoding || encoding === "identity")
    ? Number(length)
    : undefined;
}

async function freeQuota(): Promise<number | undefined> {
  const storage = (globalThis.navigator as
    | { storage?: { estimate?(): Promise<{ quota?: number; usage?: number }> } }
    | undefined)
    ?.storage;
  if (!storage?.estimate) return undefined;
  try {
    const { quota, usage } = await storage.estimate();
    return quota === undefined ? undefined : quota - (usage ?? 0);
  } catch {
    return undefined;
  }
}

/**
 * Downloads weights into the cache (or finds them there) and returns the file to stream from.
 *
 * @param url Absolute http(s) or blob: URL.
 * @param options Cache and progress.
 * @returns The file, where it came from, and why it was not cached when it was not.
 * @throws {WeightsError} For a failed or short download.
 */
export async function downloadWeights(
  url: string,
  options: PageWeightsOptions = {},
): Promise<{ file: WeightsFile; origin: WeightsOrigin; notCached?: string }> {
  const storage = options.caches === undefined
    ? (globalThis as { caches?: CacheStorage }).caches
    : options.caches ?? undefined;
  const cacheable = /^https?:/i.test(url);
  let cache: Cache | undefined;
  let notCached: string | undefined;
  if (!cacheable) notCached = "only http(s) downloads are cached";
  else if (!storage) notCached = "the Cache API is not available here";
  else {
    try {
      cache = await storage.open(WEIGHTS_CACHE);
    } catch (e) {
      notCached = `the Cache API refused to open (${(e as Error)?.message ?? e})`;
    }
  }
  if (cache) {
    const hit = await cache.match(url);
    if (hit?.body) {
      const size = Number(hit.headers.get(SIZE_HEADER) ?? NaN);
      return { file: responseFile(hit, url, Number.isFinite(size) ? size : undefined), origin: "cache" };
    }
  }
  const response = await fetchOk(url);
  const size = declaredSize(response);
  const counted = countBytes(response.body!, size, url, options.onProgress);
  if (cache && size !== undefined) {
    const free = await (options.freeStorage ?? freeQuota)();
    if (free !== undefined && free < size * 1.05) {
      notCached = `not enough storage quota (${Math.round(free / 1e6)} MB free, ${
        Math.round(size / 1e6)
      } MB needed)`;
      cache = undefined;
    }
  }
  if (!cache) return { file: responseFile(new Response(counted), url, size), origin: "network", notCached };
  try {
    const headers = new Headers({ "content-type": "application/octet-stream" });
    if (size !== undefined) headers.set(SIZE_HEADER, String(size));
    await cache.put(url, new Response(counted, { headers }));
  } catch (e) {
    await cache.delete(url).catch(() => false);
    if (e instanceof WeightsError) throw e;
    // The body was consumed by the failed put: download again, straight to the GPU.
    const again = await fetchOk(url);
    const why = `the Cache API refused it (${(e as Error)?.message ?? e})`;
    return {
      file: responseFile(new Response(countBytes(again.body!, size, url, options.onProgress)), url, size),
      origin: "network",
      notCached: why,
    };
  }
  const stored = await cache.match(url);
  if (!stored?.body) {
    throw new WeightsError(url, "", `Cannot read "${url}" back from the cache: entry missing`);
  }
  return { file: responseFile(stored, url, size), origin: "network" };
}

/**
 * Deletes every cached weights file.
 *
 * @param storage The Cache API (default `globalThis.caches`).
 * @returns Whether there was anything to delete.
 */
export async function forgetCachedWeights(storage?: CacheStorage): Promise<boolean> {
  const c = storage ?? (globalThis as { caches?: CacheStorage }).caches;
  return c ? await c.delete(WEIGHTS_CACHE) : false;
}
