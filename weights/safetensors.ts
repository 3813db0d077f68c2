/**
 * Safetensors reading: header validation, and tensor sources that hand out one tensor's raw bytes at a
 * time, in file offset order, so a 1.5 GB model never sits in memory whole.
 *
 * File layout: 8 bytes u64 little-endian header length N, N bytes of UTF-8 JSON (an object mapping tensor
 * names to `{dtype, shape, data_offsets: [begin, end]}`, plus an optional `__metadata__` string map), then
 * the data section; offsets are relative to its start.
 *
 * Every problem with a file is a {@linkcode WeightsError} naming the file and the tensor ("" for the whole
 * file). Where an underlying error exists (invalid JSON, invalid UTF-8, a failed fetch) it is the `cause`.
 *
 * Longer than ~400 lines on purpose: the header checks, the three sources and the CPU decoder are one
 * contract (the offsets and errors the sources rely on are checked here), and about half the file is JSDoc.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { decodeToFloat32, type Dtype, DTYPE_BYTES, float16BitsToNumber, isDtype } from "./dtypes.ts";
import type { TensorChunk, TensorEntry, TensorSource } from "../engine/tensor_source.ts";

export { decodeToFloat32, DTYPE_BYTES, float16BitsToNumber };

/** Bytes at the start of a file that hold the header length (u64 little-endian). */
export const SAFETENSORS_PREFIX_BYTES = 8;

/**
 * Largest header accepted, in bytes. Real headers are a few hundred bytes per tensor (R101x3: about
 * 40 KB); the cap makes a hostile length (2^60) fail before anything is allocated.
 */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Element types of a safetensors file: every one of {@linkcode Dtype} (`engine/tensor_source.ts`). */
export type SafetensorsDtype = Dtype;

export type { TensorChunk, TensorEntry, TensorSource } from "../engine/tensor_source.ts";

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** File name, path or URL, for messages. */
  readonly file: string;
  /** The `__metadata__` map ({} when absent). */
  readonly metadata: Record<string, string>;
  /** Tensors by name, in header order. */
  readonly tensors: Map<string, TensorEntry>;
  /** Absolute offset of the data section: 8 + header length. */
  readonly dataStart: number;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : JSON.stringify(value) ?? typeof value;
}

function fileError(file: string, message: string, cause?: unknown): WeightsError {
  return new WeightsError(file, "", `Cannot read "${file}": ${message}`, cause ? { cause } : undefined);
}

function tensorError(file: string, tensor: string, message: string): WeightsError {
  return new WeightsError(file, tensor, `Cannot load "${tensor}" from "${file}": ${message}`);
}

/**
 * Reads the header length from the first {@linkcode SAFETENSORS_PREFIX_BYTES} bytes of a file, so a caller
 * can read exactly `8 + length` bytes before {@linkcode parseSafetensorsHeader}.
 *
 * @param first The file's first bytes (at least 8).
 * @param file Name for messages.
 * @param fileSize Total file size when known; the header must fit in it.
 * @returns The header length in bytes.
 * @throws {WeightsError} when fewer than 8 bytes are given, or the length is over {@linkcode MAX_HEADER_BYTES}
 * or past the end of the file.
 */
export function safetensorsHeaderLength(first: Uint8Array, file: string, fileSize?: number): number {
  if (first.length < SAFETENSORS_PREFIX_BYTES) {
    throw fileError(file, `malformed header: expected at least 8 bytes, got ${first.length}`);
  }
  const view = new DataView(first.buffer, first.byteOffset, SAFETENSORS_PREFIX_BYTES);
  const length = view.getUint32(0, true);
  if (view.getUint32(4, true) !== 0 || length > MAX_HEADER_BYTES) {
    const claimed = view.getBigUint64(0, true);
    throw fileError(
      file,
      `malformed header: header length ${claimed} exceeds the limit of ${MAX_HEADER_BYTES}`,
    );
  }
  if (fileSize !== undefined && SAFETENSORS_PREFIX_BYTES + length > fileSize) {
    throw fileError(
      file,
      `malformed header: header length ${length} is past the end of a ${fileSize}-byte file`,
    );
  }
  if (length < 2) throw fileError(file, `malformed header: header length ${length} is too short for JSON`);
  return length;
}

function isNonNegativeInteger(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function checkEntry(
  file: string,
  name: string,
  raw: unknown,
  dataStart: number,
  dataSize?: number,
): TensorEntry {
  if (name === "") throw fileError(file, "malformed header: empty tensor name");
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw tensorError(
      file,
      name,
      `malformed header: expected {dtype, shape, data_offsets}, got ${describe(raw)}`,
    );
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== "string") {
    throw tensorError(file, name, `malformed header: dtype is ${describe(dtype)}`);
  }
  if (!isDtype(dtype)) {
    throw tensorError(
      file,
      name,
      `unsupported dtype "${dtype}": expected one of ${Object.keys(DTYPE_BYTES).join(", ")}`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw tensorError(
      file,
      name,
      `malformed header: expected shape as non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    throw tensorError(
      file,
      name,
      `malformed header: expected data_offsets [begin,end], got ${JSON.stringify(offsets)}`,
    );
  }
  const [begin, end] = offsets as number[];
  if (begin > end) throw tensorError(file, name, `data_offsets [${begin},${end}] end before they begin`);
  if (dataSize !== undefined && end > dataSize) {
    throw tensorError(
      file,
      name,
      `data_offsets [${begin},${end}] are past the ${dataSize}-byte data section`,
    );
  }
  let elements = 1;
  for (const d of shape as number[]) elements *= d;
  const bytes = elements * DTYPE_BYTES[dtype as SafetensorsDtype];
  if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
    throw tensorError(
      file,
      name,
      `expected ${bytes} bytes for ${dtype} [${shape.join(",")}], got ${
        end - begin
      } (data_offsets [${begin},${end}])`,
    );
  }
  return {
    name,
    dtype: dtype as SafetensorsDtype,
    shape: [...shape as number[]],
    begin: dataStart + begin,
    end: dataStart + end,
  };
}

/** Entries sorted by file offset (empty tensors by name among equals). */
export function entriesInFileOrder(tensors: Iterable<TensorEntry>): TensorEntry[] {
  return [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : 1));
}

/**
 * Parses and validates a safetensors header.
 *
 * @param prefix The file's first `8 + headerLength` bytes (more is fine).
 * @param fileSize Total file size, or `undefined` when unknown (a stream without a length): offsets are
 * then checked against each other only, and truncation is found while streaming.
 * @param file Name for messages.
 * @returns The header, with absolute tensor offsets.
 * @throws {WeightsError} for a bad length, invalid UTF-8 or JSON, a non-object, a bad `__metadata__`, an
 * unsupported dtype, a bad shape or offsets, a size that does not match the shape, or overlapping tensors.
 *
 * @example
 * ```ts
 * const header = parseSafetensorsHeader(bytes, bytes.length, "model.safetensors");
 * header.tensors.get("stem.conv.weight")?.shape; // [192, 3, 7, 7]
 * ```
 */
export function parseSafetensorsHeader(
  prefix: Uint8Array,
  fileSize: number | undefined,
  file: string,
): SafetensorsHeader {
  const length = safetensorsHeaderLength(prefix, file, fileSize);
  const dataStart = SAFETENSORS_PREFIX_BYTES + length;
  if (prefix.length < dataStart) {
    throw fileError(file, `malformed header: expected ${dataStart} header bytes, got ${prefix.length}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      prefix.subarray(SAFETENSORS_PREFIX_BYTES, dataStart),
    );
  } catch (e) {
    throw fileError(file, "malformed header: not valid UTF-8", e);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw fileError(file, `malformed header: invalid JSON (${(e as Error).message})`, e);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw fileError(file, `malformed header: expected a JSON object, got ${describe(json)}`);
  }
  const dataSize = fileSize === undefined ? undefined : fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        throw fileError(
          file,
          `malformed header: expected __metadata__ as a string map, got ${describe(raw)}`,
        );
      }
      for (const [key, value] of Object.entries(raw)) {
        if (typeof value !== "string") {
          throw fileError(
            file,
            `malformed header: __metadata__ "${key}" is ${describe(value)}, expected a string`,
          );
        }
      }
      // fromEntries defines own properties, so a hostile "__proto__" key stays a plain key.
      metadata = Object.fromEntries(Object.entries(raw));
      continue;
    }
    tensors.set(name, checkEntry(file, name, raw, dataStart, dataSize));
  }
  let previous: TensorEntry | undefined;
  for (const entry of entriesInFileOrder(tensors.values())) {
    if (entry.begin === entry.end) continue;
    if (previous && entry.begin < previous.end) {
      const range = (t: TensorEntry) => `[${t.begin - dataStart},${t.end - dataStart}]`;
      throw tensorError(
        file,
        entry.name,
        `bytes ${range(entry)} overlap "${previous.name}" ${range(previous)}`,
      );
    }
    if (!previous || entry.end > previous.end) previous = entry;
  }
  return { file, metadata, tensors, dataStart };
}

function checkWanted(header: SafetensorsHeader, wanted?: ReadonlySet<string>): TensorEntry[] {
  for (const name of wanted ?? []) {
    if (!header.tensors.has(name)) throw tensorError(header.file, name, "no such tensor in the file");
  }
  const all = entriesInFileOrder(header.tensors.values());
  return wanted ? all.filter((e) => wanted.has(e.name)) : all;
}

function closedError(file: string): WeightsError {
  return fileError(file, "the source is closed");
}

/**
 * A source over a whole file already in memory; chunks are views into `bytes` (no copies, unless `bytes` is
 * on a `SharedArrayBuffer`).
 *
 * @param bytes The complete file.
 * @param file Name for messages.
 * @returns A source that can be streamed any number of times.
 * @throws {WeightsError} when the header is invalid.
 *
 * @example
 * ```ts
 * const source = safetensorsFromBytes(await (await fetch(url)).bytes());
 * for await (const { entry, bytes } of source.stream()) console.log(entry.name, bytes.length);
 * ```
 */
export function safetensorsFromBytes(bytes: Uint8Array, file = "<bytes>"): TensorSource {
  const header = parseSafetensorsHeader(bytes, bytes.length, file);
  let closed = false;
  return {
    file,
    metadata: header.metadata,
    tensors: header.tensors,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (closed) throw closedError(file);
      const entries = checkWanted(header, wanted);
      return (async function* () {
        for (const entry of entries) {
          if (closed) throw closedError(file);
          const view = bytes.subarray(entry.begin, entry.end);
          // Views of a SharedArrayBuffer are copied: GPU uploads and decoders want a plain ArrayBuffer.
          yield {
            entry,
            bytes: view.buffer instanceof ArrayBuffer ? view as Uint8Array<ArrayBuffer> : view.slice(),
          };
        }
      })();
    },
    close() {
      closed = true;
    },
  };
}

/** Sequential reader over a byte stream: fills buffers exactly, skips, and counts the bytes consumed. */
class StreamReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #offset = 0;
  /** Absolute position of the next byte. */
  position = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async #next(): Promise<boolean> {
    while (this.#offset >= this.#chunk.length) {
      const { done, value } = await this.#reader.read();
      if (done) return false;
      this.#chunk = value;
      this.#offset = 0;
    }
    return true;
  }

  /** Fills `target`; returns the number of bytes filled (less only at the end of the stream). */
  async fill(target: Uint8Array): Promise<number> {
    let filled = 0;
    while (filled < target.length && await this.#next()) {
      const n = Math.min(target.length - filled, this.#chunk.length - this.#offset);
      target.set(this.#chunk.subarray(this.#offset, this.#offset + n), filled);
      this.#offset += n;
      filled += n;
    }
    this.position += filled;
    return filled;
  }

  /** Discards `count` bytes; returns the number discarded. */
  async skip(count: number): Promise<number> {
    let skipped = 0;
    while (skipped < count && await this.#next()) {
      const n = Math.min(count - skipped, this.#chunk.length - this.#offset);
      this.#offset += n;
      skipped += n;
    }
    this.position += skipped;
    return skipped;
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

function truncatedError(file: string, entry: TensorEntry, at: number): WeightsError {
  return tensorError(file, entry.name, `file truncated: data ends at byte ${at}, expected ${entry.end}`);
}

/**
 * A source reading a stream from its first byte: the header now, then the body sequentially when streamed.
 * It can be streamed only once (a second `stream()` call throws); unwanted tensors are read and dropped.
 *
 * @param stream The file's bytes from the start.
 * @param file Name for messages.
 * @param size Total size when known (checks offsets up front); otherwise truncation is found while streaming.
 * @returns The source.
 * @throws {WeightsError} when the header is invalid or the stream ends inside it.
 *
 * @example
 * ```ts
 * const file = input.files[0];
 * const source = await safetensorsFromStream(file.stream(), file.name, file.size);
 * ```
 */
export async function safetensorsFromStream(
  stream: ReadableStream<Uint8Array>,
  file: string,
  size?: number,
): Promise<TensorSource> {
  const reader = new StreamReader(stream);
  let header: SafetensorsHeader;
  try {
    const first = new Uint8Array(SAFETENSORS_PREFIX_BYTES);
    const got = await reader.fill(first);
    if (got === 0) throw fileError(file, "malformed header: the file is empty");
    const length = safetensorsHeaderLength(first.subarray(0, got), file, size);
    const prefix = new Uint8Array(SAFETENSORS_PREFIX_BYTES + length);
    prefix.set(first);
    const filled = await reader.fill(prefix.subarray(SAFETENSORS_PREFIX_BYTES));
    if (filled < length) {
      throw fileError(file, `malformed header: file truncated in the header (${filled} of ${length} bytes)`);
    }
    header = parseSafetensorsHeader(prefix, size, file);
  } catch (e) {
    await reader.cancel();
    if (e instanceof WeightsError) throw e;
    throw fileError(file, `reading failed (${(e as Error)?.message ?? e})`, e);
  }
  let streamed = false;
  let closed = false;
  return {
    file,
    metadata: header.metadata,
    tensors: header.tensors,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (closed) throw closedError(file);
      if (streamed) throw fileError(file, "a stream source can be streamed only once");
      streamed = true;
      const entries = checkWanted(header, wanted);
      return (async function* () {
        try {
          for (const entry of entries) {
            // Read and drop everything before this tensor: gaps and unwanted tensors.
            const gap = entry.begin - reader.position;
            if (gap > 0 && await reader.skip(gap) < gap) throw truncatedError(file, entry, reader.position);
            const bytes = new Uint8Array(entry.end - entry.begin);
            const got = await reader.fill(bytes);
            if (got < bytes.length) throw truncatedError(file, entry, reader.position);
            if (closed) throw closedError(file);
            yield { entry, bytes };
          }
        } catch (e) {
          if (e instanceof WeightsError) throw e;
          throw fileError(file, `reading failed (${(e as Error)?.message ?? e})`, e);
        } finally {
          await reader.cancel();
        }
      })();
    },
    async close() {
      closed = true;
      await reader.cancel();
    },
  };
}

/**
 * A source over an HTTP(S) (or `data:`/`blob:`) URL, streamed once from a single request. The
 * `content-length` is used as the file size when the body is not content-encoded.
 *
 * @param url Where the file is.
 * @param init Passed to `fetch` (headers, signal...).
 * @returns The source (streamable once, like {@linkcode safetensorsFromStream}).
 * @throws {WeightsError} when the request fails, the status is not 2xx, or the header is invalid.
 *
 * @example
 * ```ts
 * const source = await safetensorsFromUrl("https://example.com/derm.safetensors");
 * ```
 */
export async function safetensorsFromUrl(url: string | URL, init?: RequestInit): Promise<TensorSource> {
  const file = String(url);
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw fileError(file, `fetch failed (${(e as Error)?.message ?? e})`, e);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => {});
    throw fileError(
      file,
      `expected a 2xx response with a body, got ${response.status} ${response.statusText}`.trim(),
    );
  }
  const encoding = response.headers.get("content-encoding");
  const lengthHeader = response.headers.get("content-length");
  const size = lengthHeader !== null && (!encoding || encoding === "identity") && /^\d+$/.test(lengthHeader)
    ? Number(lengthHeader)
    : undefined;
  return await safetensorsFromStream(response.body, file, size);
}
