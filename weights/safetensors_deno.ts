/**
 * Safetensors files on disk, for Deno: reads the header when opened and each tensor only when streamed
 * (seek + chunked reads into one buffer per tensor), so memory holds one tensor at a time.
 *
 * Deno only (uses `Deno.open`); browsers use `safetensorsFromUrl` or `safetensorsFromStream`.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import {
  entriesInFileOrder,
  parseSafetensorsHeader,
  SAFETENSORS_PREFIX_BYTES,
  safetensorsHeaderLength,
  type TensorChunk,
  type TensorEntry,
  type TensorSource,
} from "./safetensors.ts";
import { describeFileError, readAt } from "./_file_deno.ts";

/**
 * Opens a safetensors file and validates its header.
 *
 * @param path File path.
 * @returns A source that can be streamed any number of times; `close()` it when done.
 * @throws {WeightsError} naming `path` when the file cannot be opened (not found, permission denied, a
 * directory) or its header is invalid.
 *
 * @example
 * ```ts
 * const source = await openSafetensorsFile("r101x3.safetensors");
 * try {
 *   for await (const { entry, bytes } of source.stream()) console.log(entry.name, bytes.length);
 * } finally {
 *   await source.close();
 * }
 * ```
 */
export async function openSafetensorsFile(path: string): Promise<TensorSource> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new WeightsError(path, "", `Cannot open "${path}": ${describeFileError(e)}`, { cause: e });
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    file.close();
  };
  let header;
  try {
    const { size, isFile } = await file.stat();
    if (!isFile) throw new WeightsError(path, "", `Cannot open "${path}": not a regular file`);
    const first = new Uint8Array(SAFETENSORS_PREFIX_BYTES);
    const got = await readAt(file, 0, first);
    const length = safetensorsHeaderLength(first.subarray(0, got), path, size);
    const prefix = new Uint8Array(SAFETENSORS_PREFIX_BYTES + length);
    const filled = await readAt(file, 0, prefix);
    header = parseSafetensorsHeader(prefix.subarray(0, filled), size, path);
  } catch (e) {
    close();
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(path, "", `Cannot read "${path}": ${describeFileError(e)}`, { cause: e });
  }
  const checked = header;

  return {
    file: path,
    metadata: checked.metadata,
    tensors: checked.tensors,
    stream(wanted?: ReadonlySet<string>): AsyncIterable<TensorChunk> {
      if (closed) throw new WeightsError(path, "", `Cannot read "${path}": the source is closed`);
      for (const name of wanted ?? []) {
        if (!checked.tensors.has(name)) {
          throw new WeightsError(
            path,
            name,
            `Cannot load "${name}" from "${path}": no such tensor in the file`,
          );
        }
      }
      const entries = entriesInFileOrder(checked.tensors.values()).filter((e) =>
        !wanted || wanted.has(e.name)
      );
      return (async function* () {
        for (const entry of entries) yield { entry, bytes: await readTensor(entry) };
      })();
    },
    close,
  };

  async function readTensor(entry: TensorEntry): Promise<Uint8Array<ArrayBuffer>> {
    if (closed) {
      throw new WeightsError(
        path,
        entry.name,
        `Cannot load "${entry.name}" from "${path}": the source is closed`,
      );
    }
    const bytes = new Uint8Array(entry.end - entry.begin);
    let got: number;
    try {
      got = await readAt(file, entry.begin, bytes);
    } catch (e) {
      throw new WeightsError(
        path,
        entry.name,
        `Cannot load "${entry.name}" from "${path}": ${describeFileError(e)}`,
        {
          cause: e,
        },
      );
    }
    if (got < bytes.length) {
      throw new WeightsError(
        path,
        entry.name,
        `Cannot load "${entry.name}" from "${path}": file truncated: data ends at byte ${
          entry.begin + got
        }, expected ${entry.end}`,
      );
    }
    return bytes;
  }
}
