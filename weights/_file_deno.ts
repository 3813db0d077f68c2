/**
 * File helpers shared by the Deno weight loaders (safetensors, SavedModel shards, .npz).
 * @module
 */

/** Largest single `read` call: big tensors are read in pieces of this size into their one buffer. */
const READ_CHUNK_BYTES = 16 * 1024 * 1024;

/** Says why a file could not be opened or read, in the words of our error messages. */
export function describeFileError(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "file not found";
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    return "permission denied";
  }
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  return (e as Error)?.message ?? String(e);
}

/** Reads at `position` until `target` is full or the file ends; returns the bytes read. */
export async function readAt(file: Deno.FsFile, position: number, target: Uint8Array): Promise<number> {
  await file.seek(position, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < target.length) {
    const n = await file.read(target.subarray(filled, Math.min(target.length, filled + READ_CHUNK_BYTES)));
    if (n === null || n === 0) break;
    filled += n;
  }
  return filled;
}
