import assert from "node:assert/strict";
import { addFromBlock, blockWidths, rowAxpy, rowDots, toBlock } from "./probe_rows.ts";
import { randomF32, randomFloats } from "../tests/_random.ts";

Deno.test("blockWidths() covers every row with blocks of at most 4", () => {
  assert.deepEqual(blockWidths(1), [1]);
  assert.deepEqual(blockWidths(3), [3]);
  assert.deepEqual(blockWidths(4), [4]);
  assert.deepEqual(blockWidths(9), [4, 4, 1]);
  assert.deepEqual(blockWidths(0), []);
});

for (const w of [1, 2, 3, 4]) {
  for (const d of [1, 7, 13]) {
    Deno.test(`rowDots() and rowAxpy() match plain loops for a block of ${w} rows when D is ${d}`, () => {
      const n = 3;
      const x = randomF32(n * d, 11 + d);
      const rows = 2 + w;
      const m = randomFloats(rows * d, 5 * w);
      const k0 = rows - w; // the last w rows
      const block = new Float64Array(w * d);
      toBlock(m, d, k0, w, block);
      const z = new Float64Array(w + 1);
      rowDots(x, d, d, block, w, z, 1); // row 1 of x, written from z[1]
      for (let t = 0; t < w; t++) {
        let want = 0;
        for (let j = 0; j < d; j++) want += x[d + j] * m[(k0 + t) * d + j];
        assert.ok(Math.abs(z[1 + t] - want) <= 1e-12 * (1 + Math.abs(want)), `z[${t}]`);
      }
      const acc = new Float64Array(w * d);
      const r = Float64Array.from({ length: w + 2 }, (_, i) => 0.5 - i);
      rowAxpy(x, 2 * d, d, r, 2, acc, w);
      const out = new Float64Array(rows * d);
      addFromBlock(acc, d, k0, w, out);
      for (let t = 0; t < w; t++) {
        for (let j = 0; j < d; j++) {
          assert.ok(Math.abs(out[(k0 + t) * d + j] - r[2 + t] * x[2 * d + j]) <= 1e-15);
        }
      }
      for (let j = 0; j < k0 * d; j++) assert.equal(out[j], 0);
    });
  }
}

Deno.test("rowDots() refuses a block wider than 4", () => {
  assert.throws(
    () => rowDots(new Float32Array(5), 0, 1, new Float64Array(5), 5, new Float64Array(5), 0),
    RangeError,
  );
});
