/**
 * NumPy .npy (format version 1.0) for float32 matrices: the embedding files of `deno task embed`.
 * @module
 */

/**
 * Encodes rows of equal length as a little-endian float32 .npy of shape [rows, columns].
 *
 * @param rows The rows (each `columns` long).
 * @param columns Row length (needed when there are no rows).
 * @returns The file's bytes.
 */
export function encodeNpyFloat32(rows: readonly Float32Array[], columns: number): Uint8Array {
  for (const [i, r] of rows.entries()) {
    if (r.length !== columns) {
      throw new TypeError(`Cannot write .npy row ${i}: expected ${columns} values, got ${r.length}`);
    }
  }
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows.length}, ${columns}), }`;
  // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by "\n" to 64 bytes.
  const unpadded = 10 + dict.length + 1;
  const headerLength = dict.length + 1 + ((64 - (unpadded % 64)) % 64);
  const out = new Uint8Array(10 + headerLength + rows.length * columns * 4);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, headerLength, true);
  const header = dict.padEnd(headerLength - 1, " ") + "\n";
  out.set(new TextEncoder().encode(header), 10);
  const data = new Float32Array(out.buffer, 10 + headerLength, rows.length * columns);
  rows.forEach((r, i) => data.set(r, i * columns));
  return out;
}

/** Decodes a float32 2-D .npy written by {@linkcode encodeNpyFloat32} (or NumPy): shape and data. */
export function decodeNpyFloat32(bytes: Uint8Array): { shape: [number, number]; data: Float32Array } {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((m, i) => bytes[i] !== m)) {
    throw new SyntaxError("Cannot read .npy: bad magic");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLength));
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) {
    throw new SyntaxError(
      `Cannot read .npy: expected little-endian float32 in C order, got ${header.trim()}`,
    );
  }
  const m = /'shape':\s*\((\d+),\s*(\d+)\)/.exec(header);
  if (!m) throw new SyntaxError(`Cannot read .npy: expected a 2-D shape, got ${header.trim()}`);
  const shape: [number, number] = [Number(m[1]), Number(m[2])];
  const offset = start + headerLength;
  const data = new Float32Array(bytes.slice(offset, offset + shape[0] * shape[1] * 4).buffer);
  if (data.length !== shape[0] * shape[1]) {
    throw new SyntaxError("Cannot read .npy: data shorter than its shape");
  }
  return { shape, data };
}
