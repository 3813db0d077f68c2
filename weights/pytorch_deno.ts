/**
 * PyTorch checkpoints on disk, for Deno: the file is read through seeks, never whole. Zip format: the end
 * records and central directory from the end, then each storage entry when it is streamed. Legacy format:
 * the pickles at the start (read in growing pieces until they fit), then one 8-byte header per storage to
 * place it, then each storage's bytes when streamed. See `pytorch.ts` for the formats.
 *
 * Deno only (uses `Deno.open`); browsers use `pytorchFromBytes` or `openPytorch` with their own reader.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { openPytorch, type PytorchCheckpoint } from "./pytorch.ts";
import type { RandomAccessReader } from "./zip.ts";
import { describeFileError, readAt } from "./_file_deno.ts";

/**
 * Opens a `torch.save` checkpoint (`.pth`, `.pt`, `.ckpt`) of either format.
 *
 * @param path File path.
 * @returns The checkpoint: its object tree, its checked tensors, and sources over chosen tensors;
 * `close()` it (or a source made from it) when done.
 * @throws {WeightsError} naming `path` when the file cannot be opened or read, and naming the file (and
 * the tensor, where one is concerned) for anything malformed or hostile in it.
 *
 * @example
 * ```ts
 * const checkpoint = await openPytorchFile("dino_vits16.pth");
 * const { tensors } = checkpointStateDict(checkpoint.tree, checkpoint.file);
 * const source = await checkpoint.source(tensors);
 * try {
 *   for await (const { entry, bytes } of source.stream()) console.log(entry.name, bytes.length);
 * } finally {
 *   await source.close();
 * }
 * ```
 */
export async function openPytorchFile(path: string): Promise<PytorchCheckpoint> {
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
  let size: number;
  try {
    const stat = await file.stat();
    if (!stat.isFile) throw new WeightsError(path, "", `Cannot open "${path}": not a regular file`);
    size = stat.size;
  } catch (e) {
    close();
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(path, "", `Cannot read "${path}": ${describeFileError(e)}`, { cause: e });
  }
  const reader: RandomAccessReader = {
    size,
    async read(begin: number, end: number) {
      if (closed) throw new WeightsError(path, "", `Cannot read "${path}": the file is closed`);
      const start = Math.max(0, begin);
      const bytes = new Uint8Array(Math.max(0, Math.min(end, size) - start));
      try {
        const got = await readAt(file, start, bytes);
        return bytes.subarray(0, got);
      } catch (e) {
        throw new WeightsError(path, "", `Cannot read "${path}": ${describeFileError(e)}`, { cause: e });
      }
    },
    close,
  };
  return await openPytorch(reader, path);
}
