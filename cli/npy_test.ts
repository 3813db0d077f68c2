import assert from "node:assert/strict";
import { decodeNpyFloat32, encodeNpyFloat32 } from "./npy.ts";

Deno.test("encodeNpyFloat32() writes a 64-byte aligned v1.0 header and row-major data", () => {
  const bytes = encodeNpyFloat32([new Float32Array([1, 2, 3]), new Float32Array([4, 5, 6.5])], 3);
  const headerLength = bytes[8] | (bytes[9] << 8);
  assert.equal((10 + headerLength) % 64, 0);
  const header = new TextDecoder().decode(bytes.subarray(10, 10 + headerLength));
  assert.match(header, /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} *\n$/);
  const data = new Float32Array(bytes.slice(10 + headerLength).buffer);
  assert.deepEqual([...data], [1, 2, 3, 4, 5, 6.5]);
  const round = decodeNpyFloat32(bytes);
  assert.deepEqual(round.shape, [2, 3]);
  assert.deepEqual([...round.data], [1, 2, 3, 4, 5, 6.5]);
});

Deno.test("encodeNpyFloat32() rejects a row of the wrong length", () => {
  assert.throws(() => encodeNpyFloat32([new Float32Array(2)], 3), TypeError);
});

Deno.test("decodeNpyFloat32() rejects a non-npy file", () => {
  assert.throws(() => decodeNpyFloat32(new TextEncoder().encode("hello world")), SyntaxError);
});
