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
  const header = npyHeader(rows.length, columns);
  const out = new Uint8Array(header.length + rows.length * columns * 4);
  out.set(header);
  const data = new Float32Array(out.buffer, header.length, rows.length * columns);
  rows.forEach((r, i) => data.set(r, i * columns));
  return out;
}

/** Bytes of the magic, version, header length and header of {@linkcode npyHeader}: room for any row count. */
export const NPY_HEADER_BYTES = 128;

/**
 * The .npy preamble (magic, version 1.0, header length, header dict padded with spaces and ended by "\n")
 * for float32 [rows, columns]. It is {@linkcode NPY_HEADER_BYTES} long whatever `rows` is (NumPy pads its
 * own headers for the same reason: an appended file's row count can be rewritten in place), unless the
 * shape needs more (over 50 digits).
 */
export function npyHeader(rows: number, columns: number): Uint8Array {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${columns}), }`;
  const total = Math.max(NPY_HEADER_BYTES, Math.ceil((10 + dict.length + 1) / 64) * 64);
  const headerLength = total - 10;
  const out = new Uint8Array(total);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, headerLength, true);
  out.set(new TextEncoder().encode(dict.padEnd(headerLength - 1, " ") + "\n"), 10);
  return out;
}

/** Decodes the preamble of a float32 2-D .npy: its shape and where the data starts. */
export function decodeNpyFloat32Header(bytes: Uint8Array): { shape: [number, number]; offset: number } {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((m, i) => bytes[i] !== m)) {
    throw new SyntaxError("Cannot read .npy: bad magic");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (bytes.length < start + headerLength) throw new SyntaxError("Cannot read .npy: header cut short");
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLength));
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) {
    throw new SyntaxError(
      `Cannot read .npy: expected little-endian float32 in C order, got ${header.trim()}`,
    );
  }
  const m = /'shape':\s*\((\d+),\s*(\d+)\)/.exec(header);
  if (!m) throw new SyntaxError(`Cannot read .npy: expected a 2-D shape, got ${header.trim()}`);
  return { shape: [Number(m[1]), Number(m[2])], offset: start + headerLength };
}

/** Decodes a float32 2-D .npy written by {@linkcode encodeNpyFloat32} (or NumPy): shape and data. */
export function decodeNpyFloat32(bytes: Uint8Array): { shape: [number, number]; data: Float32Array } {
  const { shape, offset } = decodeNpyFloat32Header(bytes);
  const data = new Float32Array(bytes.slice(offset, offset + shape[0] * shape[1] * 4).buffer);
  if (data.length !== shape[0] * shape[1]) {
    throw new SyntaxError("Cannot read .npy: data shorter than its shape");
  }
  return { shape, data };
}
