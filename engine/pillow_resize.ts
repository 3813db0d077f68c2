/**
 * Pillow's `Image.resize((W', H'), Image.BILINEAR)` on an 8-bit RGB image, byte for byte, and the centre
 * crop of torchvision's `CenterCrop`: the `imagenet` preprocessing of Gröger et al.'s models
 * (testdata/groeger/README.md), resize R x R then crop S x S.
 *
 * Pillow 9.4's convolution resample (libImaging/Resample.c; the 8-bit path is unchanged up to 12.x), per
 * axis, for input length `in` and output length `out`:
 *
 * ```
 * scale = in / out;  filterscale = max(scale, 1);  support = 1 * filterscale   (triangle filter, radius 1)
 * ksize = ceil(support) * 2 + 1                     (coefficients kept per output sample, zero padded)
 * for o in [0, out):
 *   center = (o + 0.5) * scale
 *   xmin = max(trunc(center - support + 0.5), 0);  xend = min(trunc(center + support + 0.5), in)
 *   w[i] = tri((xmin + i - center + 0.5) / filterscale) for i < xend - xmin, tri(t) = max(1 - |t|, 0)
 *   w[i] /= sum(w)                                  (float64, summed in order; skipped when the sum is 0)
 *   k[i] = trunc(w[i] * 2^22 ± 0.5)                 (PRECISION_BITS = 32 - 8 - 2 = 22; sign of w[i])
 * value = clip8((2^21 + sum_i p[xmin + i] * k[i]) >> 22)      (int32; clip8 clamps to [0, 255])
 * ```
 *
 * The horizontal pass runs first, on the source rows the vertical pass reads, into an 8-bit intermediate
 * image; the vertical pass then reads that. A pass is skipped when its axis keeps its length (Pillow's
 * `need_horizontal` / `need_vertical` with the default box), and `resize` to the same size is a copy.
 * Every output pixel depends only on its own taps, so {@linkcode pillowResizeCrop} resamples only the
 * pixels the crop keeps: identical bytes to resizing everything and cropping.
 *
 * Centre crop: offset `round((R - S) / 2)` with Python's `round` (half to even: (73 - 64) / 2 = 4.5 -> 4),
 * as torchvision's `CenterCrop` computes it.
 *
 * Layout: images are RGBA8 [H, W, 4] row-major, byte 3 = 255 (engine/image_decode.ts `DecodedImage`); byte
 * 3 of the input is ignored (Pillow's RGB images have no alpha to filter).
 *
 * One file for the resize and the crop that follows it (about 400 lines, half of them documentation).
 *
 * This module is browser compatible.
 * @module
 */

/** An RGBA8 image: [H, W, 4] row-major, the 4th byte of each pixel 255 (alpha is not resampled). */
export interface RgbaImage {
  /** Width in pixels (W). */
  readonly width: number;
  /** Height in pixels (H). */
  readonly height: number;
  /** RGBA8 [H, W, 4], row-major. */
  readonly rgba: Uint8Array;
}

/** A resampled or cropped image, RGBA8 [H, W, 4] with byte 3 = 255. */
export interface ResizedImage extends RgbaImage {
  /** RGBA8 [H, W, 4], row-major, byte 3 of each pixel 255. */
  readonly rgba: Uint8Array<ArrayBuffer>;
}

/** Pillow's fixed-point fraction bits for 8-bit images: 32 - 8 (result) - 2 (headroom). */
export const PILLOW_PRECISION_BITS = 22;

/** Pillow's limit on a coefficient table: out * ksize * sizeof(double) must fit a C int. */
const MAX_COEFF_BYTES = 0x7fffffff;

/**
 * The integer filter of one axis, as Pillow builds it: output sample `o` reads input samples
 * `bounds[2o] .. bounds[2o] + bounds[2o + 1] - 1` with weights `coeffs[o * ksize + i]` (fixed point, 2^22 = 1).
 */
export interface ResampleCoefficients {
  /** Coefficients kept per output sample (the table's row length); taps past `bounds[2o + 1]` are 0. */
  readonly ksize: number;
  /** [out, 2] int32: first input sample, number of taps. */
  readonly bounds: Int32Array<ArrayBuffer>;
  /** [out, ksize] int32 weights in 2^-22 units. */
  readonly coeffs: Int32Array<ArrayBuffer>;
}

/**
 * Computes Pillow's bilinear (triangle) filter for resampling `inSize` samples to `outSize`, in float64
 * with Pillow's exact operation order, then converted to its 22-bit fixed point.
 *
 * @param inSize Input length (W or H), a positive integer.
 * @param outSize Output length, a positive integer.
 * @returns Bounds and integer coefficients per output sample.
 * @throws {RangeError} When a size is not a positive integer or the table exceeds Pillow's size limit.
 * @example
 * ```ts
 * const { bounds, coeffs, ksize } = pillowBilinearCoefficients(4, 2);
 * // output 0 reads inputs 0..2 with weights 3/7, 3/7, 1/7 of 2^22
 * console.log(bounds[0], bounds[1], coeffs[0] + coeffs[1] + coeffs[2], ksize); // 0 3 4194304 5
 * ```
 */
export function pillowBilinearCoefficients(inSize: number, outSize: number): ResampleCoefficients {
  checkSize("compute resample coefficients", "input size", inSize);
  checkSize("compute resample coefficients", "output size", outSize);
  // Pillow passes the box edges as C floats; in1 - in0 = inSize is exact for any image it accepts.
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 1 * filterscale; // BILINEAR.support = 1
  const ksize = Math.ceil(support) * 2 + 1;
  if (outSize * ksize * 8 > MAX_COEFF_BYTES) {
    throw new RangeError(
      `Cannot compute resample coefficients for ${inSize} -> ${outSize}: expected a table of at most ` +
        `${MAX_COEFF_BYTES} bytes (Pillow's limit), got ${outSize * ksize * 8}`,
    );
  }
  const bounds = new Int32Array(outSize * 2);
  const coeffs = new Int32Array(outSize * ksize);
  const weights = new Float64Array(ksize);
  const ss = 1 / filterscale;
  const one = 2 ** PILLOW_PRECISION_BITS;
  for (let o = 0; o < outSize; o++) {
    const center = 0 + (o + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let i = 0; i < xmax; i++) {
      let t = (i + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      const w = t < 1 ? 1 - t : 0;
      weights[i] = w;
      ww += w;
    }
    const row = o * ksize;
    for (let i = 0; i < xmax; i++) {
      const w = ww !== 0 ? weights[i] / ww : weights[i];
      coeffs[row + i] = w < 0 ? Math.trunc(-0.5 + w * one) : Math.trunc(0.5 + w * one);
    }
    bounds[2 * o] = xmin;
    bounds[2 * o + 1] = xmax;
  }
  return { ksize, bounds, coeffs };
}

/**
 * Resizes an RGB image exactly as Pillow 9.4's `Image.resize((outWidth, outHeight), Image.BILINEAR)`
 * (antialiasing triangle filter, 22-bit fixed point, horizontal pass then vertical pass, aspect ratio not
 * kept).
 *
 * @param image RGBA8 pixels (a `DecodedImage`); byte 3 is ignored.
 * @param outWidth Output width, a positive integer.
 * @param outHeight Output height, a positive integer.
 * @returns RGBA8 [outHeight, outWidth, 4] with byte 3 = 255.
 * @throws {TypeError} When `image.rgba` is not width x height x 4 bytes.
 * @throws {RangeError} When a size is not a positive integer.
 * @example
 * ```ts
 * const image = { width: 4, height: 1, rgba: new Uint8Array([0, 0, 0, 255, 100, 100, 100, 255,
 *   200, 200, 200, 255, 255, 255, 255, 255]) };
 * console.log(pillowResizeBilinear(image, 2, 1).rgba); // [71, 71, 71, 255, 209, 209, 209, 255]
 * ```
 */
export function pillowResizeBilinear(image: RgbaImage, outWidth: number, outHeight: number): ResizedImage {
  checkImage("resize image", image);
  checkSize("resize image", "width", outWidth);
  checkSize("resize image", "height", outHeight);
  return resampleRegion(image, outWidth, outHeight, 0, 0, outWidth, outHeight);
}

/**
 * Python 3's `round(x)` for a finite float: to the nearest integer, ties to even (`round(4.5) == 4`).
 *
 * @param x A finite number.
 * @returns The nearest integer, the even one on a tie.
 * @example
 * ```ts
 * console.log(roundHalfEven(4.5), roundHalfEven(5.5), roundHalfEven(-2.5)); // 4 6 -2
 * ```
 */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const frac = x - floor; // exact for every double
  if (frac > 0.5) return floor + 1;
  if (frac < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The offset of a centred crop of length `crop` in a length `size`: `round((size - crop) / 2)` with
 * Python's rounding, as torchvision's `CenterCrop` computes its top and left.
 *
 * @param size Length of the image along the axis.
 * @param crop Length kept, 1 <= crop <= size.
 * @returns The first kept index.
 * @throws {RangeError} When `crop` is not an integer in [1, size].
 * @example
 * ```ts
 * console.log(centerCropOffset(73, 64), centerCropOffset(256, 224)); // 4 16
 * ```
 */
export function centerCropOffset(size: number, crop: number): number {
  checkSize("compute crop offset", "size", size);
  checkCrop("compute crop offset", size, crop);
  return roundHalfEven((size - crop) / 2);
}

/**
 * Crops the centred `crop` x `crop` square of an image (offsets from {@linkcode centerCropOffset} on each
 * axis).
 *
 * @param image RGBA8 pixels.
 * @param crop Side of the square kept, at most the image's width and height.
 * @returns RGBA8 [crop, crop, 4] with byte 3 = 255.
 * @throws {TypeError} When `image.rgba` is not width x height x 4 bytes.
 * @throws {RangeError} When `crop` is not an integer in [1, min(width, height)].
 * @example
 * ```ts
 * const image = { width: 3, height: 3, rgba: new Uint8Array(36).fill(255) };
 * console.log(centerCrop(image, 2).width); // 2 (the top-left 2x2: offset round(0.5) = 0)
 * ```
 */
export function centerCrop(image: RgbaImage, crop: number): ResizedImage {
  checkImage("crop image", image);
  checkCrop("crop image", Math.min(image.width, image.height), crop);
  const left = centerCropOffset(image.width, crop), top = centerCropOffset(image.height, crop);
  const out = new Uint8Array(crop * crop * 4);
  for (let y = 0; y < crop; y++) {
    const from = ((top + y) * image.width + left) * 4;
    out.set(image.rgba.subarray(from, from + crop * 4), y * crop * 4);
  }
  for (let i = 3; i < out.length; i += 4) out[i] = 255;
  return { width: crop, height: crop, rgba: out };
}

/**
 * Pillow's bilinear resize to `resize` x `resize`, then the centred `crop` x `crop` square: the bytes of
 * `centerCrop(pillowResizeBilinear(image, resize, resize), crop)`, computing only the pixels kept.
 *
 * @param image RGBA8 pixels (a `DecodedImage`); byte 3 is ignored.
 * @param resize R, the side of the resized square.
 * @param crop S, the side of the crop, 1 <= S <= R.
 * @returns RGBA8 [S, S, 4] with byte 3 = 255.
 * @throws {TypeError} When `image.rgba` is not width x height x 4 bytes.
 * @throws {RangeError} When `resize` is not a positive integer or `crop` is not an integer in [1, resize].
 * @example
 * ```ts
 * import { decodeImage } from "./image_decode.ts";
 * const image = await decodeImage(await Deno.readFile("lesion.png"), "lesion.png");
 * const input = pillowResizeCrop(image, defaultResize(224), 224); // 224 x 224 of the 256 x 256 resize
 * ```
 */
export function pillowResizeCrop(image: RgbaImage, resize: number, crop: number): ResizedImage {
  checkImage("resize and crop image", image);
  checkSize("resize and crop image", "resize", resize);
  checkCrop("resize and crop image", resize, crop);
  const offset = roundHalfEven((resize - crop) / 2);
  return resampleRegion(image, resize, resize, offset, offset, crop, crop);
}

/**
 * The resize R used for a crop S when a preset gives none: `round(S * 8 / 7)` (Python), 256 for 224.
 *
 * @param size S, a positive integer.
 * @returns R.
 * @throws {RangeError} When `size` is not a positive integer.
 * @example
 * ```ts
 * console.log(defaultResize(224), defaultResize(64)); // 256 73
 * ```
 */
export function defaultResize(size: number): number {
  checkSize("compute default resize", "size", size);
  return roundHalfEven(size * 8 / 7);
}

// ---------------------------------------------------------------------------------------------------------

const HALF = 1 << (PILLOW_PRECISION_BITS - 1);

/**
 * Output pixels [top, top + h) x [left, left + w) of Pillow's resize of `image` to outW x outH.
 * Source and intermediate are RGBA8 (4 bytes a pixel); the intermediate's byte 3 is never read.
 */
function resampleRegion(
  image: RgbaImage,
  outW: number,
  outH: number,
  left: number,
  top: number,
  w: number,
  h: number,
): ResizedImage {
  const { width: W, height: H, rgba: src } = image;
  const out = new Uint8Array(w * h * 4);
  // Pillow: need_horizontal = xsize != imIn->xsize (box defaults to the whole image), same for vertical.
  const needH = outW !== W, needV = outH !== H;
  const vert = needV ? pillowBilinearCoefficients(H, outH) : undefined;
  // Source rows the vertical pass reads (bounds are non-decreasing in the output index).
  const rowFirst = vert ? vert.bounds[2 * top] : top;
  const rowEnd = vert ? vert.bounds[2 * (top + h - 1)] + vert.bounds[2 * (top + h - 1) + 1] : top + h;
  // The image the vertical pass reads: pixel (x, y) at byte ((y - rowFirst) * stride + x - colFirst) * 4.
  let mid = src, stride = W, colFirst = 0, midRow0 = 0;
  if (needH) {
    mid = horizontalPass(src, W, rowFirst, rowEnd, pillowBilinearCoefficients(W, outW), left, w);
    stride = w;
    colFirst = left;
    midRow0 = rowFirst;
  }
  if (vert) {
    verticalPass(mid, stride, (left - colFirst) * 4, midRow0, vert, top, w, h, out);
  } else {
    for (let y = 0; y < h; y++) {
      const from = ((top + y - midRow0) * stride + left - colFirst) * 4;
      out.set(mid.subarray(from, from + w * 4), y * w * 4);
    }
  }
  for (let i = 3; i < out.length; i += 4) out[i] = 255;
  return { width: w, height: h, rgba: out };
}

/**
 * Horizontal pass over source rows [row0, row1): output columns [x0, x0 + w) of the resize.
 * Returns RGBA8 [row1 - row0, w, 4] (byte 3 unset).
 */
function horizontalPass(
  src: Uint8Array,
  W: number,
  row0: number,
  row1: number,
  { ksize, bounds, coeffs }: ResampleCoefficients,
  x0: number,
  w: number,
): Uint8Array {
  const rows = row1 - row0;
  const out = new Uint8Array(rows * w * 4);
  const clamped = new Uint8ClampedArray(out.buffer); // clamps to [0, 255] on store: Pillow's clip8
  for (let y = 0; y < rows; y++) {
    const srcRow = (row0 + y) * W * 4;
    let o = y * w * 4;
    for (let xx = x0; xx < x0 + w; xx++, o += 4) {
      const n = bounds[2 * xx + 1], kb = xx * ksize;
      let p = srcRow + bounds[2 * xx] * 4;
      let s0 = HALF, s1 = HALF, s2 = HALF;
      for (let i = 0; i < n; i++, p += 4) {
        const k = coeffs[kb + i];
        s0 += src[p] * k;
        s1 += src[p + 1] * k;
        s2 += src[p + 2] * k;
      }
      clamped[o] = s0 >> PILLOW_PRECISION_BITS;
      clamped[o + 1] = s1 >> PILLOW_PRECISION_BITS;
      clamped[o + 2] = s2 >> PILLOW_PRECISION_BITS;
    }
  }
  return out;
}

/**
 * Vertical pass: output rows [top, top + h) from `mid`, whose row r holds source row r + row0 and whose
 * column 0 of the region starts at byte `colByte` of each row (`stride` pixels a row). Writes RGB of
 * RGBA8 [h, w, 4] into `out`. Accumulates a whole output row tap by tap (integer sums, order-free), so
 * every read is contiguous.
 */
function verticalPass(
  mid: Uint8Array,
  stride: number,
  colByte: number,
  row0: number,
  { ksize, bounds, coeffs }: ResampleCoefficients,
  top: number,
  w: number,
  h: number,
  out: Uint8Array,
): void {
  const acc = new Int32Array(w * 3);
  const clamped = new Uint8ClampedArray(out.buffer, out.byteOffset, out.length);
  for (let y = 0; y < h; y++) {
    const yy = top + y;
    acc.fill(HALF);
    const n = bounds[2 * yy + 1], kb = yy * ksize;
    for (let i = 0; i < n; i++) {
      const k = coeffs[kb + i];
      if (k === 0) continue;
      let p = (bounds[2 * yy] + i - row0) * stride * 4 + colByte;
      for (let j = 0; j < w * 3; j += 3, p += 4) {
        acc[j] += mid[p] * k;
        acc[j + 1] += mid[p + 1] * k;
        acc[j + 2] += mid[p + 2] * k;
      }
    }
    let o = y * w * 4;
    for (let j = 0; j < w * 3; j += 3, o += 4) {
      clamped[o] = acc[j] >> PILLOW_PRECISION_BITS;
      clamped[o + 1] = acc[j + 1] >> PILLOW_PRECISION_BITS;
      clamped[o + 2] = acc[j + 2] >> PILLOW_PRECISION_BITS;
    }
  }
}

function checkSize(action: string, what: string, n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 0x7fffffff) {
    throw new RangeError(`Cannot ${action}: expected ${what} to be a positive integer, got ${n}`);
  }
}

function checkCrop(action: string, size: number, crop: number): void {
  if (!Number.isInteger(crop) || crop < 1 || crop > size) {
    throw new RangeError(`Cannot ${action}: expected crop to be an integer in [1, ${size}], got ${crop}`);
  }
}

function checkImage(action: string, image: RgbaImage): void {
  const { width, height, rgba } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new TypeError(
      `Cannot ${action}: expected a positive integer width and height, got ${width}x${height}`,
    );
  }
  if (!(rgba instanceof Uint8Array) || rgba.length !== width * height * 4) {
    throw new TypeError(
      `Cannot ${action}: expected rgba of ${width} x ${height} x 4 = ${width * height * 4} bytes, got ` +
        `${rgba instanceof Uint8Array ? rgba.length : typeof rgba}`,
    );
  }
}
