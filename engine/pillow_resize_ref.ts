/**
 * Slow, literal reference of engine/pillow_resize.ts: Pillow 9.4's `ImagingResampleInner` for an 8-bit RGB
 * image with the BILINEAR filter and the default box, step by step as libImaging/Resample.c does it, with
 * plain arrays and per-pixel loops, and the centre crop with Python's rounding written another way. The test
 * compares the fast module against it on random images of awkward sizes.
 *
 * Steps (for each axis, `precompute_coeffs` then `normalize_coeffs_8bpc`):
 *   1. coefficients in float64 for both axes; ybox_first / ybox_last = the source rows the vertical pass uses
 *   2. if the width changes: horizontal pass on rows [ybox_first, ybox_last) into an intermediate RGB image
 *      of xsize x (ybox_last - ybox_first), vertical bounds shifted by ybox_first
 *   3. if the height changes: vertical pass on the intermediate (or the source)
 *   4. if neither changes: a copy
 * Each sum starts at 1 << 21 and ends with clip8 = clamp(floor(sum / 2^22), 0, 255).
 *
 * This module is browser compatible.
 * @module
 */
import type { ResizedImage, RgbaImage } from "./pillow_resize.ts";

/** Pillow's triangle filter, `bilinear_filter`. */
function bilinearFilter(x: number): number {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

/** `precompute_coeffs(inSize, 0, inSize, outSize, &BILINEAR)`: float64 weights, [xmin, count] per output. */
function precomputeCoeffs(
  inSize: number,
  outSize: number,
): { ksize: number; bounds: number[][]; kk: number[][] } {
  const in0 = 0, in1 = inSize;
  const scale = (in1 - in0) / outSize;
  let filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds: number[][] = [];
  const kk: number[][] = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    let ww = 0.0;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5); // C's (int) cast
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const k: number[] = new Array(ksize).fill(0);
    for (let x = 0; x < xmax; x++) {
      const w = bilinearFilter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      if (ww !== 0.0) k[x] /= ww;
    }
    bounds.push([xmin, xmax]);
    kk.push(k);
  }
  return { ksize, bounds, kk };
}

/** `normalize_coeffs_8bpc`: float64 weights to int32 in units of 2^-22. */
function normalizeCoeffs8bpc(kk: number[][]): number[][] {
  return kk.map((k) => k.map((w) => w < 0 ? Math.trunc(-0.5 + w * 2 ** 22) : Math.trunc(0.5 + w * 2 ** 22)));
}

/** `clip8`: the lookup table indexed by `sum >> 22`, i.e. floor(sum / 2^22) clamped to [0, 255]. */
function clip8(sum: number): number {
  const v = Math.floor(sum / 2 ** 22);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** An RGB image as nested arrays: img[y][x] = [r, g, b]. */
type Rgb = number[][][];

/**
 * Pillow's `Image.resize((outWidth, outHeight), Image.BILINEAR)` of an RGB image, literally.
 *
 * @param image RGBA8 [H, W, 4] (byte 3 ignored).
 * @returns RGBA8 [outHeight, outWidth, 4], byte 3 = 255.
 */
export function pillowResizeBilinearRef(image: RgbaImage, outWidth: number, outHeight: number): ResizedImage {
  const { width, height, rgba } = image;
  let imIn: Rgb = [];
  for (let y = 0; y < height; y++) {
    const row: number[][] = [];
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 4;
      row.push([rgba[p], rgba[p + 1], rgba[p + 2]]);
    }
    imIn.push(row);
  }
  const needHorizontal = outWidth !== width;
  const needVertical = outHeight !== height;
  const horiz = precomputeCoeffs(width, outWidth);
  const vert = precomputeCoeffs(height, outHeight);
  const yboxFirst = vert.bounds[0][0];
  const yboxLast = vert.bounds[outHeight - 1][0] + vert.bounds[outHeight - 1][1];
  let imOut: Rgb | undefined;
  if (needHorizontal) {
    for (let i = 0; i < outHeight; i++) vert.bounds[i][0] -= yboxFirst;
    const k = normalizeCoeffs8bpc(horiz.kk);
    const imTemp: Rgb = [];
    for (let yy = 0; yy < yboxLast - yboxFirst; yy++) {
      const row: number[][] = [];
      for (let xx = 0; xx < outWidth; xx++) {
        const [xmin, xmax] = horiz.bounds[xx];
        const ss = [1 << 21, 1 << 21, 1 << 21];
        for (let x = 0; x < xmax; x++) {
          for (let c = 0; c < 3; c++) ss[c] += imIn[yy + yboxFirst][x + xmin][c] * k[xx][x];
        }
        row.push(ss.map(clip8));
      }
      imTemp.push(row);
    }
    imOut = imIn = imTemp;
  }
  if (needVertical) {
    const k = normalizeCoeffs8bpc(vert.kk);
    const result: Rgb = [];
    for (let yy = 0; yy < outHeight; yy++) {
      const [ymin, ymax] = vert.bounds[yy];
      const row: number[][] = [];
      for (let xx = 0; xx < imIn[0].length; xx++) {
        const ss = [1 << 21, 1 << 21, 1 << 21];
        for (let y = 0; y < ymax; y++) {
          for (let c = 0; c < 3; c++) ss[c] += imIn[y + ymin][xx][c] * k[yy][y];
        }
        row.push(ss.map(clip8));
      }
      result.push(row);
    }
    imOut = result;
  }
  if (!imOut) imOut = imIn.map((row) => row.map((p) => [...p]));
  const out = new Uint8Array(outWidth * outHeight * 4);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      out.set([...imOut[y][x], 255], (y * outWidth + x) * 4);
    }
  }
  return { width: outWidth, height: outHeight, rgba: out };
}

/** Python's `round` on a float, written from `Math.round` (which sends ties up): a tie to an odd moves down. */
export function pythonRoundRef(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && Math.abs(r % 2) === 1 ? r - 1 : r;
}

/**
 * Resize to R x R, then torchvision's `CenterCrop(S)`: top = round((R - S) / 2), left likewise.
 *
 * @returns RGBA8 [S, S, 4], byte 3 = 255.
 */
export function pillowResizeCropRef(image: RgbaImage, resize: number, crop: number): ResizedImage {
  const full = pillowResizeBilinearRef(image, resize, resize);
  const top = pythonRoundRef((resize - crop) / 2), left = top;
  const out = new Uint8Array(crop * crop * 4);
  for (let y = 0; y < crop; y++) {
    for (let x = 0; x < crop; x++) {
      for (let c = 0; c < 4; c++) {
        out[(y * crop + x) * 4 + c] = full.rgba[((y + top) * resize + x + left) * 4 + c];
      }
    }
  }
  return { width: crop, height: crop, rgba: out };
}
