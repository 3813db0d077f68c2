/**
 * Writes a {@linkcode TensorSource} to a safetensors file, one tensor at a time (a 1.5 GB model is never
 * in memory whole), through a temporary file renamed at the end so no partial file is left behind.
 * @module
 */
import type { TensorSource } from "./safetensors.ts";
import { entriesInFileOrder } from "./safetensors.ts";
import { WeightsError } from "../engine/errors.ts";

/**
 * Streams every tensor of `source` into `path`.
 *
 * @param path The file to write.
 * @param source Where the tensors come from (kept in its file order, dtypes unchanged).
 * @param options `metadata` replaces the source's metadata.
 * @returns Bytes written.
 */
export async function writeSafetensorsFile(
  path: string,
  source: TensorSource,
  options: { metadata?: Readonly<Record<string, string>> } = {},
): Promise<number> {
  const entries = entriesInFileOrder(source.tensors.values());
  const header: Record<string, unknown> = {};
  const metadata = options.metadata ?? source.metadata;
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const e of entries) {
    const bytes = e.end - e.begin;
    Object.defineProperty(header, e.name, {
      value: { dtype: e.dtype, shape: [...e.shape], data_offsets: [offset, offset + bytes] },
      enumerable: true,
    });
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const prefix = new Uint8Array(8 + headerLength).fill(0x20, 8 + json.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerLength), true);
  prefix.set(json, 8);
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, prefix);
    for await (const { bytes } of source.stream()) await writeAll(file, bytes);
    file.close();
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(path, "", `Cannot write "${path}": ${(e as Error).message}`, { cause: e });
  }
  return prefix.length + offset;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}
