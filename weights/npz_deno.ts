/**
 * BiT .npz checkpoints on disk, for Deno: the archive is read through seeks (central directory, then one
 * entry at a time), so memory holds one tensor at a time. See `npz.ts` for the format and the name mapping.
 *
 * Deno only (uses `Deno.open`); browsers use `openNpz` with `npzBlobReader(file)`.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { type ByteRangeReader, type NpzOptions, openNpz } from "./npz.ts";
import type { TensorSource } from "./safetensors.ts";
import { describeFileError } from "./_file_deno.ts";

/**
 * Opens a BiT .npz checkpoint (big_transfer's `BiT-M-R101x3.npz`) and exposes its tensors under Derm names.
 *
 * @param path File path.
 * @param options `maxUncompressedBytes` caps the declared uncompressed size (default 8 GiB); `dropHead`
 * leaves out the classifier head.
 * @returns A source that can be streamed any number of times, metadata `{ preset: "bit", source: "bit-npz" }`;
 * `close()` it when done.
 * @throws {WeightsError} naming `path` when the file cannot be opened or is not a valid BiT .npz.
 *
 * @example
 * ```ts
 * const source = await openNpzFile("BiT-M-R101x3.npz");
 * try {
 *   adaptBitWeights(source).architecture.stages.map((s) => s.units); // [3, 4, 23, 3]
 * } finally {
 *   await source.close();
 * }
 * ```
 */
export async function openNpzFile(
  path: string,
  options: Omit<NpzOptions, "file"> = {},
): Promise<TensorSource> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new WeightsError(path, "", `Cannot open "${path}": ${describeFileError(e)}`, { cause: e });
  }
  let closed = false;
  const reader: ByteRangeReader = {
    size: 0,
    async read(offset, length) {
      await file.seek(offset, Deno.SeekMode.Start);
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const n = await file.read(out.subarray(filled));
        if (n === null || n === 0) break;
        filled += n;
      }
      return out.subarray(0, filled);
    },
    close() {
      if (closed) return;
      closed = true;
      file.close();
    },
  };
  try {
    const { size, isFile } = await file.stat();
    if (!isFile) throw new WeightsError(path, "", `Cannot open "${path}": not a regular file`);
    return await openNpz({ ...reader, size }, { ...options, file: path });
  } catch (e) {
    reader.close!();
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(path, "", `Cannot read "${path}": ${(e as Error)?.message ?? e}`, { cause: e });
  }
}
