import assert from "node:assert/strict";
import { applyOrientation, readExifOrientation, withExifOrientation } from "./exif.ts";

Deno.test("readExifOrientation() finds the tag a test splices in; applyOrientation() turns all 8 ways", () => {
  const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xdb, 0, 4, 0, 0, 0xff, 0xd9]);
  assert.equal(readExifOrientation(jpeg), 1);
  for (let o = 1; o <= 8; o++) assert.equal(readExifOrientation(withExifOrientation(jpeg, o)), o);
  // 3 x 2 image, pixel value = its index: 0 1 2 / 3 4 5.
  const rgba = new Uint8Array(24);
  for (let i = 0; i < 6; i++) rgba[i * 4] = i;
  const image = { width: 3, height: 2, rgba, format: "jpeg" as const };
  const shown = (o: number) => {
    const r = applyOrientation(image, o);
    return { w: r.width, px: Array.from({ length: 6 }, (_, i) => r.rgba[i * 4]) };
  };
  assert.deepEqual(shown(1), { w: 3, px: [0, 1, 2, 3, 4, 5] });
  assert.deepEqual(shown(2), { w: 3, px: [2, 1, 0, 5, 4, 3] });
  assert.deepEqual(shown(3), { w: 3, px: [5, 4, 3, 2, 1, 0] });
  assert.deepEqual(shown(4), { w: 3, px: [3, 4, 5, 0, 1, 2] });
  assert.deepEqual(shown(5), { w: 2, px: [0, 3, 1, 4, 2, 5] });
  assert.deepEqual(shown(6), { w: 2, px: [3, 0, 4, 1, 5, 2] }); // rotated 90° clockwise
  assert.deepEqual(shown(7), { w: 2, px: [5, 2, 4, 1, 3, 0] });
  assert.deepEqual(shown(8), { w: 2, px: [2, 5, 1, 4, 0, 3] }); // rotated 90° anticlockwise
});
