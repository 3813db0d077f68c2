import assert from "node:assert/strict";
import { parseReference } from "../tests/_fixtures.ts";
import { randomFloats } from "../tests/_random.ts";
import { readTestdata, readTestdataJson } from "../tests/_testdata.ts";
import { decodeImage } from "./image_decode.ts";
import {
  centerCrop,
  centerCropOffset,
  defaultResize,
  pillowBilinearCoefficients,
  pillowResizeBilinear,
  pillowResizeCrop,
  type RgbaImage,
  roundHalfEven,
} from "./pillow_resize.ts";
import { pillowResizeBilinearRef, pillowResizeCropRef, pythonRoundRef } from "./pillow_resize_ref.ts";

/** One entry of testdata/groeger/cases.json (the fields preprocessing reads). */
interface GroegerCase {
  name: string;
  image: string;
  resize: number;
  size: number;
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

/** A seeded random RGBA8 image; byte 3 random too (it must be ignored). */
function randomImage(width: number, height: number, seed: number): RgbaImage {
  const values = randomFloats(width * height * 4, seed, 0, 256);
  return { width, height, rgba: Uint8Array.from(values, Math.floor) };
}

/** An image from RGB triples (alpha 255). */
function rgbImage(width: number, height: number, rgb: number[]): RgbaImage {
  const rgba = new Uint8Array(width * height * 4).fill(255);
  for (let i = 0; i < width * height; i++) rgba.set(rgb.slice(i * 3, i * 3 + 3), i * 4);
  return { width, height, rgba };
}

/** A grey image from one value per pixel. */
function greyImage(width: number, height: number, values: number[]): RgbaImage {
  return rgbImage(width, height, values.flatMap((v) => [v, v, v]));
}

/** Channel 0 of each pixel. */
function reds(image: RgbaImage): number[] {
  return Array.from({ length: image.width * image.height }, (_, i) => image.rgba[i * 4]);
}

/** Asserts two RGBA8 images are identical, naming the first differing pixel. */
function assertSameImage(got: RgbaImage, want: RgbaImage, label: string): void {
  assert.equal(got.width, want.width, `${label}: width`);
  assert.equal(got.height, want.height, `${label}: height`);
  assert.equal(got.rgba.length, want.rgba.length, `${label}: bytes`);
  for (let i = 0; i < want.rgba.length; i++) {
    if (got.rgba[i] !== want.rgba[i]) {
      const p = i >> 2, x = p % want.width, y = (p - x) / want.width;
      assert.fail(
        `${label}: pixel (y ${y}, x ${x}) channel ${i & 3}: got ${got.rgba[i]}, want ${want.rgba[i]}`,
      );
    }
  }
}

// ---------- the fixtures: Pillow 9.4's own output ----------

for (const c of readTestdataJson<GroegerCase[]>("groeger/cases.json")) {
  Deno.test(`pillowResizeCrop() matches Pillow's input_u8 byte for byte for ${c.name}`, async () => {
    const imagePath = new URL(c.image, "file:///groeger/").pathname.slice(1);
    const image = await decodeImage(readTestdata(imagePath), imagePath);
    const file = `groeger/${c.name}.ref.safetensors`;
    const { tensors } = parseReference(readTestdata(file), file);
    const u8 = tensors.get("input_u8"), input = tensors.get("input");
    assert.ok(u8 && input, `${file} has input_u8 and input`);
    const S = c.size;
    assert.deepEqual(u8.shape, [S, S, 3]);
    assert.deepEqual(input.shape, [S, S, 3]);

    const got = pillowResizeCrop(image, c.resize, S);
    assert.equal(got.width, S);
    assert.equal(got.height, S);
    let mismatches = 0, first = "";
    for (let i = 0; i < S * S; i++) {
      for (let ch = 0; ch < 3; ch++) {
        if (got.rgba[i * 4 + ch] !== u8.data[i * 3 + ch]) {
          if (mismatches++ === 0) {
            first = `(y ${Math.floor(i / S)}, x ${i % S}, c ${ch}): got ${got.rgba[i * 4 + ch]}, ` +
              `want ${u8.data[i * 3 + ch]}`;
          }
        }
      }
      assert.equal(got.rgba[i * 4 + 3], 255);
    }
    assert.equal(mismatches, 0, `${mismatches} bytes differ from Pillow; first at ${first}`);
    // The shortcut (only the kept pixels resampled) equals resizing all of R x R and cropping.
    assertSameImage(centerCrop(pillowResizeBilinear(image, c.resize, c.resize), S), got, c.name);

    // Normalisation in float32: (u8 / 255 - mean) / std, against the reference's float32 `input`.
    const f = Math.fround;
    const mean = IMAGENET_MEAN.map(f), std = IMAGENET_STD.map(f);
    let maxAbs = 0, maxUlp = 0, maxUlpOfValue = 0, f64Mismatches = 0;
    for (let i = 0; i < S * S * 3; i++) {
      const ch = i % 3, u = got.rgba[(i - ch) / 3 * 4 + ch];
      const x = f(f(f(u / 255) - mean[ch]) / std[ch]);
      const want = input.data[i];
      const err = Math.abs(x - want);
      maxAbs = Math.max(maxAbs, err);
      // The subtraction cancels, so the error is measured in float32 ulps of the operands' scale: u / 255
      // in [0, 1] (ulp 2^-23 at the top) magnified by 1 / std.
      maxUlp = Math.max(maxUlp, err * std[ch] / 2 ** -23);
      maxUlpOfValue = Math.max(maxUlpOfValue, err / float32Ulp(want));
      if (f((u / 255 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]) !== want) f64Mismatches++;
    }
    console.log(
      `${c.name}: input max |float32 - ref| = ${maxAbs.toExponential(2)} = ${maxUlp.toFixed(2)} ulp of ` +
        `the operands (${maxUlpOfValue} ulp of the value); float64 rounded once: ${f64Mismatches} differ`,
    );
    assert.equal(f64Mismatches, 0, "float64 (u8 / 255 - mean) / std rounded to float32 equals `input`");
    assert.ok(
      maxUlp <= 4,
      `normalised input is ${maxUlp} float32 operand ulp from the reference (max abs ${maxAbs})`,
    );
  });
}

/** The spacing of float32 values at |v| (the ulp of the reference value; normal range). */
function float32Ulp(v: number): number {
  const a = Math.max(Math.abs(v), 2 ** -126);
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

// ---------- hand-computed cases ----------

Deno.test("pillowResizeBilinear() averages with the widened triangle when it halves a row", () => {
  // 4 -> 2: scale 2, support 2. Output 0: center 1, taps 0..2 at t = -0.25, 0.25, 0.75 -> weights
  // 0.75, 0.75, 0.25 (/1.75 = 3/7, 3/7, 1/7): (0*3 + 100*3 + 200) / 7 = 71.4 -> 71.
  // Output 1: center 3, taps 1..3 -> 1/7, 3/7, 3/7: (100 + 600 + 765) / 7 = 209.3 -> 209.
  const out = pillowResizeBilinear(greyImage(4, 1, [0, 100, 200, 255]), 2, 1);
  assert.deepEqual(Array.from(out.rgba), [71, 71, 71, 255, 209, 209, 209, 255]);
});

Deno.test("pillowResizeBilinear() rounds the fixed-point sum half up", () => {
  // 2 -> 1: weights 1/2, 1/2 (2^21 each). [0, 1]: 2^21 + 2^21 = 2^22 -> 1 (0.5 up); [2, 3]: 2.5 -> 3.
  assert.deepEqual(reds(pillowResizeBilinear(greyImage(2, 1, [0, 1]), 1, 1)), [1]);
  assert.deepEqual(reds(pillowResizeBilinear(greyImage(2, 1, [2, 3]), 1, 1)), [3]);
  assert.deepEqual(reds(pillowResizeBilinear(greyImage(1, 2, [4, 5]), 1, 1)), [5]);
});

Deno.test("pillowResizeBilinear() interpolates and replicates edges when it upscales", () => {
  // 2 -> 4: scale 0.5, support 1. Centers 0.25, 0.75, 1.25, 1.75: outputs p0, 0.75 p0 + 0.25 p1,
  // 0.25 p0 + 0.75 p1, p1 (the edge outputs have one tap). [0, 2] -> 0, 0.5 -> 1, 1.5 -> 2, 2.
  assert.deepEqual(reds(pillowResizeBilinear(greyImage(2, 1, [0, 2]), 4, 1)), [0, 1, 2, 2]);
  assert.deepEqual(reds(pillowResizeBilinear(greyImage(1, 2, [0, 2]), 1, 4)), [0, 1, 2, 2]);
  assert.deepEqual(reds(pillowResizeBilinear(greyImage(2, 1, [0, 100]), 4, 1)), [0, 25, 75, 100]);
});

Deno.test("pillowResizeBilinear() resamples a 1 x N column vertically only", () => {
  // 3 -> 1: scale 3, support 3, center 1.5: taps 0..2 at t = -1/3, 0, 1/3 -> 2/3, 1, 2/3 (/7*3):
  // (2*10 + 3*20 + 2*40) / 7 = 22.86 -> 23.
  const out = pillowResizeBilinear(rgbImage(1, 3, [10, 0, 255, 20, 0, 255, 40, 0, 255]), 1, 1);
  assert.deepEqual(Array.from(out.rgba), [23, 0, 255, 255]);
});

Deno.test("pillowResizeBilinear() copies RGB and sets alpha 255 when the size is unchanged", () => {
  for (const [w, h] of [[1, 1], [5, 3], [1, 7], [7, 1]]) {
    const image = randomImage(w, h, 11 * w + h);
    const out = pillowResizeBilinear(image, w, h);
    for (let i = 0; i < w * h * 4; i++) assert.equal(out.rgba[i], (i & 3) === 3 ? 255 : image.rgba[i]);
    assert.notEqual(out.rgba.buffer, image.rgba.buffer);
  }
});

Deno.test("pillowResizeBilinear() keeps a constant image constant at any scale", () => {
  for (const [w, h, ow, oh] of [[997, 13, 5, 7], [3, 5, 301, 2], [64, 64, 1, 1], [1, 1, 9, 4]]) {
    const out = pillowResizeBilinear(rgbImage(w, h, Array(w * h).fill([255, 0, 137]).flat()), ow, oh);
    for (let i = 0; i < ow * oh; i++) {
      assert.deepEqual(Array.from(out.rgba.subarray(i * 4, i * 4 + 4)), [255, 0, 137, 255]);
    }
  }
});

Deno.test("pillowBilinearCoefficients() widens the filter by the downscale factor", () => {
  // 997 -> 5: scale 199.4, ksize = ceil(199.4) * 2 + 1 = 401; every row sums to 2^22 up to rounding.
  const { ksize, bounds, coeffs } = pillowBilinearCoefficients(997, 5);
  assert.equal(ksize, 401);
  for (let o = 0; o < 5; o++) {
    const [xmin, n] = [bounds[2 * o], bounds[2 * o + 1]];
    assert.ok(xmin >= 0 && xmin + n <= 997 && n <= ksize, `output ${o}: taps ${xmin}..${xmin + n}`);
    let sum = 0;
    for (let i = 0; i < ksize; i++) sum += coeffs[o * ksize + i];
    assert.ok(Math.abs(sum - 2 ** 22) <= n / 2, `output ${o}: sum ${sum}`);
    for (let i = n; i < ksize; i++) assert.equal(coeffs[o * ksize + i], 0);
  }
  // Upscaling keeps radius 1: ksize 3, at most 2 taps.
  const up = pillowBilinearCoefficients(7, 100);
  assert.equal(up.ksize, 3);
  for (let o = 0; o < 100; o++) assert.ok(up.bounds[2 * o + 1] <= 2);
});

// ---------- the crop and its rounding ----------

Deno.test("centerCropOffset() rounds half to even as Python does", () => {
  assert.equal(centerCropOffset(73, 64), 4); // 4.5 -> 4
  assert.equal(centerCropOffset(75, 64), 6); // 5.5 -> 6
  assert.equal(centerCropOffset(77, 64), 6); // 6.5 -> 6
  assert.equal(centerCropOffset(74, 64), 5);
  assert.equal(centerCropOffset(256, 224), 16);
  assert.equal(centerCropOffset(6, 5), 0); // 0.5 -> 0
  assert.equal(centerCropOffset(8, 5), 2); // 1.5 -> 2
  assert.equal(centerCropOffset(5, 5), 0);
});

Deno.test("roundHalfEven() matches Python's round on ties, near-ties and negatives", () => {
  const cases = [
    0.5,
    1.5,
    2.5,
    -0.5,
    -1.5,
    -2.5,
    4.5,
    2.4999999999999996,
    0.49999999999999994,
    1e15 + 0.5,
    -7.25,
  ];
  // Python's round returns an int, which has no -0: compare as integers (x + 0 turns -0 into 0).
  const same = (x: number) => assert.equal(roundHalfEven(x) + 0, pythonRoundRef(x) + 0, `round(${x})`);
  cases.forEach(same);
  assert.deepEqual(cases.map((x) => roundHalfEven(x) + 0), [0, 2, 2, 0, -2, -2, 4, 2, 0, 1e15, -7]);
  for (const x of randomFloats(1000, 5, -50, 50)) {
    same(Math.round(x * 2) / 2); // an exact tie
    same(x);
  }
});

Deno.test("defaultResize() is round(S * 8 / 7)", () => {
  assert.equal(defaultResize(224), 256);
  assert.equal(defaultResize(64), 73); // 73.14
  assert.equal(defaultResize(384), 439); // 438.86
  assert.equal(defaultResize(448), 512);
  assert.equal(defaultResize(1), 1); // 1.14
});

Deno.test("centerCrop() keeps the centred square when the offset is a tie", () => {
  // 4 x 3 image, crop 2: left round(1) = 1, top round(0.5) = 0.
  const values = [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23];
  assert.deepEqual(reds(centerCrop(greyImage(4, 3, values), 2)), [1, 2, 11, 12]);
  // 5 x 5, crop 2: offset round(1.5) = 2 on both axes.
  const grid = Array.from({ length: 25 }, (_, i) => i);
  assert.deepEqual(reds(centerCrop(greyImage(5, 5, grid), 2)), [12, 13, 17, 18]);
});

Deno.test("pillowResizeCrop() crops at offset 4 when (73 - 64) / 2 = 4.5", () => {
  const image = randomImage(97, 89, 3);
  const full = pillowResizeBilinear(image, 73, 73);
  const got = pillowResizeCrop(image, 73, 64);
  for (let y = 0; y < 64; y++) {
    for (let x = 0; x < 64; x++) {
      const want = full.rgba.subarray(((y + 4) * 73 + x + 4) * 4, ((y + 4) * 73 + x + 4) * 4 + 4);
      assert.deepEqual(got.rgba.subarray((y * 64 + x) * 4, (y * 64 + x) * 4 + 4), want);
    }
  }
});

// ---------- against the literal reference ----------

Deno.test("pillowResizeBilinear() matches the literal reference on random images of awkward sizes", () => {
  const sizes = [
    [997, 13, 5, 7], // strong downscale, ksize 401 horizontally
    [1, 1, 1, 1],
    [1, 1, 6, 5],
    [1, 17, 1, 5],
    [19, 1, 4, 1],
    [1, 9, 3, 13],
    [13, 1, 2, 4],
    [2, 3, 7, 11],
    [37, 41, 37, 20], // vertical only
    [37, 41, 12, 41], // horizontal only
    [37, 41, 37, 41], // copy
    [100, 77, 73, 73],
    [73, 100, 256, 31],
    [255, 256, 257, 255],
    [50, 50, 49, 51],
    [7, 7, 100, 3],
    [331, 211, 17, 29],
    [1000, 3, 17, 2],
  ];
  for (const [i, [w, h, ow, oh]] of sizes.entries()) {
    const image = randomImage(w, h, 100 + i);
    assertSameImage(
      pillowResizeBilinear(image, ow, oh),
      pillowResizeBilinearRef(image, ow, oh),
      `${w}x${h} -> ${ow}x${oh}`,
    );
  }
});

Deno.test("pillowResizeCrop() matches the literal reference on random images of awkward sizes", () => {
  const cases = [[97, 89, 73, 64], [300, 200, 256, 224], [31, 400, 9, 4], [5, 3, 8, 7], [1, 1, 3, 2], [
    640,
    7,
    33,
    33,
  ]];
  for (const [i, [w, h, r, s]] of cases.entries()) {
    const image = randomImage(w, h, 200 + i);
    assertSameImage(
      pillowResizeCrop(image, r, s),
      pillowResizeCropRef(image, r, s),
      `${w}x${h} -> ${r} / ${s}`,
    );
  }
});

Deno.test("pillowResizeCrop() matches the literal reference on a two-level image, where rounding is sharpest", () => {
  const w = 211, h = 157;
  const noise = randomFloats(w * h, 9);
  const image = greyImage(w, h, Array.from(noise, (v) => v < 0 ? 0 : 255));
  for (const [r, s] of [[73, 64], [74, 64], [256, 224], [160, 159]]) {
    assertSameImage(pillowResizeCrop(image, r, s), pillowResizeCropRef(image, r, s), `${r} / ${s}`);
  }
});

// ---------- errors ----------

Deno.test("pillowResizeBilinear() throws TypeError when the pixels do not fill width x height", () => {
  const image = { width: 3, height: 2, rgba: new Uint8Array(23) };
  assert.throws(() => pillowResizeBilinear(image, 2, 2), {
    name: "TypeError",
    message: "Cannot resize image: expected rgba of 3 x 2 x 4 = 24 bytes, got 23",
  });
  assert.throws(() => pillowResizeCrop({ width: 0, height: 2, rgba: new Uint8Array(0) }, 2, 2), TypeError);
});

Deno.test("pillowResizeBilinear() throws RangeError when a size is not a positive integer", () => {
  const image = randomImage(3, 3, 1);
  assert.throws(() => pillowResizeBilinear(image, 0, 2), {
    name: "RangeError",
    message: "Cannot resize image: expected width to be a positive integer, got 0",
  });
  assert.throws(() => pillowResizeBilinear(image, 2, 1.5), RangeError);
  assert.throws(() => pillowResizeCrop(image, 8, 9), {
    name: "RangeError",
    message: "Cannot resize and crop image: expected crop to be an integer in [1, 8], got 9",
  });
  assert.throws(() => centerCrop(image, 4), RangeError);
  assert.throws(() => centerCropOffset(4, 0), RangeError);
  assert.throws(() => defaultResize(-1), RangeError);
});
