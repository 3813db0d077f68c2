/**
 * Decoding PNG and JPEG bytes into the 8-bit RGB pixels the model's preprocessing starts from, with the
 * numerics of Derm Foundation's `DecodePng(channels=3)` (libpng) and PIL's `convert("RGB")`:
 *
 * - grey is replicated to R = G = B; palette indices are expanded through `PLTE`;
 * - alpha (colour type 4 and 6, and `tRNS`) is **dropped, not composited**: (r, g, b, a) becomes (r, g, b),
 *   the stored, unassociated values (nothing is premultiplied);
 * - 16-bit samples keep their high byte (`v >> 8`), as libpng's `png_set_strip_16` (TF) and PIL's `RGB;16B`
 *   unpacker do; 1, 2 and 4-bit grey are scaled to 8 bits by bit replication (`v * 255 / (2^d - 1)`);
 * - gamma, ICC profiles and EXIF orientation are ignored, as TF and PIL's plain decode ignore them.
 *
 * PNG is decoded here (chunk walk with CRC checks, zlib through the web-standard `DecompressionStream`,
 * unfiltering, Adam7), so it is exact and needs no dependency. JPEG is lossy and its pixels depend on the
 * decoder (IDCT and chroma upsampling). The default, {@linkcode libjpegTurboJpegDecoder}, is Squoosh's wasm
 * build of MozJPEG's libjpeg-turbo-derived decoder (`@jsquash/jpeg`): bit-identical to libjpeg-turbo's
 * `djpeg`, which Derm Foundation's TensorFlow and PIL use, on all 443 JPEGs measured (`bench/jpeg_notes.md`).
 * Pass `jpegDecoder` to use another decoder (`bench/jpeg_fidelity.ts` compares imagescript's `jpeg.wasm`,
 * within 3 levels).
 *
 * Output layout: {@linkcode DecodedImage.rgba} is RGBA8, row-major, 4 bytes per pixel, with the 4th byte
 * always 255 (alpha already dropped), so that `new Uint32Array(rgba.buffer)` is the GPU upload of
 * `kernels/resize_bilinear.ts` with no repacking (one aligned u32 load per pixel in WGSL).
 *
 * This module is browser compatible.
 * @module
 */
import { ImageError } from "./errors.ts";
import { crc32 } from "./crc32.ts";
import jsquashDecodeJpeg from "@jsquash/jpeg/decode.js";

/** An image decoded to 8-bit RGB, stored as RGBA8 with the alpha byte set to 255. */
export interface DecodedImage {
  /** Width in pixels (W). */
  readonly width: number;
  /** Height in pixels (H). */
  readonly height: number;
  /** RGBA8 [H, W, 4], row-major; byte 3 of each pixel is 255 (alpha dropped, never composited). */
  readonly rgba: Uint8Array<ArrayBuffer>;
  /** The container that was decoded. */
  readonly format: "png" | "jpeg";
  /**
   * Set to S once the CPU part of a `pillow-bilinear` preprocessing (resize and centre crop to S x S) has
   * been applied, so that the input stage does not apply it twice (`engine/input_stage.ts`).
   */
  readonly preprocessed?: number;
}

/** Whether this host stores a u32's low byte first (every WebGPU host seen; checked, not assumed). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Decoded RGBA8 bytes as the u32 words the input stage uploads: one per pixel, R in the low byte (byte 3
 * is ignored by the kernels). A view without copying when the bytes are 4-aligned on a little-endian host.
 *
 * @param image Width, height and RGBA8 bytes [H, W, 4] (e.g. a `DecodedImage`).
 * @returns u32 [H, W].
 * @throws {TypeError} When `rgba` is shorter than width * height * 4.
 * @example
 * ```ts
 * const words = packPixels({ width: 1, height: 1, rgba: new Uint8Array([1, 2, 3, 255]) });
 * // words[0] === 0xff030201
 * ```
 */
export function packPixels(
  image: { width: number; height: number; rgba: Uint8Array },
): Uint32Array<ArrayBuffer> {
  const n = image.width * image.height;
  const b = image.rgba;
  if (b.length < n * 4) {
    throw new TypeError(
      `Cannot pack pixels: expected ${n * 4} RGBA bytes for ${image.width}x${image.height}, got ${b.length}`,
    );
  }
  if (LITTLE_ENDIAN && b.byteOffset % 4 === 0 && b.buffer instanceof ArrayBuffer) {
    return new Uint32Array(b.buffer, b.byteOffset, n);
  }
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = (b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) | (b[4 * i + 3] << 24)) >>> 0;
  }
  return out;
}

/** Pixels returned by a {@linkcode JpegDecoder}: 1 (grey), 3 (RGB) or 4 (RGBA/RGBX) bytes per pixel. */
export interface RawPixels {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** Row-major samples, `channels` bytes per pixel. */
  readonly data: Uint8Array | Uint8ClampedArray;
  /** Bytes per pixel: 1, 3 or 4 (the 4th is ignored). */
  readonly channels: 1 | 3 | 4;
}

/** A JPEG decoder: resolves with the pixels of `bytes` or rejects (the rejection becomes an ImageError). */
export type JpegDecoder = (bytes: Uint8Array) => Promise<RawPixels>;

/** Options of {@linkcode decodeImage}. */
export interface DecodeImageOptions {
  /**
   * Largest accepted width x height, checked from the header before anything is decompressed, against
   * decompression bombs (default {@linkcode DEFAULT_MAX_PIXELS}).
   */
  maxPixels?: number;
  /** Decoder for JPEG (default {@linkcode libjpegTurboJpegDecoder}, identical to libjpeg-turbo). */
  jpegDecoder?: JpegDecoder;
}

/** 100 megapixels: 400 MB of RGBA, beyond any dermoscopic photograph; larger headers are refused. */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/**
 * Decodes a PNG or JPEG (detected by its magic bytes, not by the file name) to RGBA8 with alpha dropped.
 *
 * @param bytes The encoded file.
 * @param file Path or label of the image, used in error messages and in {@linkcode ImageError.file}.
 * @param options Pixel limit and JPEG decoder.
 * @returns The decoded image.
 * @throws {ImageError} When the format is not PNG or JPEG, the data is truncated or corrupt, or the image
 * is larger than `maxPixels`.
 * @example
 * ```ts
 * const image = await decodeImage(await Deno.readFile("lesion.png"), "lesion.png");
 * console.log(image.width, image.height, image.rgba.length); // W, H, W * H * 4
 * ```
 */
export async function decodeImage(
  bytes: Uint8Array,
  file: string,
  options: DecodeImageOptions = {},
): Promise<DecodedImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const fail = (what: string, cause?: unknown): never => {
    throw new ImageError(
      file,
      `Cannot decode "${file}": ${what}`,
      cause === undefined ? undefined : { cause },
    );
  };
  const format = sniffFormat(bytes);
  if (format === undefined) {
    const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
    return fail(`unsupported format: expected PNG or JPEG, got first bytes [${head}]`);
  }
  const checkSize = (width: number, height: number) => {
    if (width < 1 || height < 1) fail(`invalid ${format.toUpperCase()} size ${width}x${height}`);
    if (width * height > maxPixels) {
      fail(`image too large: ${width}x${height} = ${width * height} pixels, limit ${maxPixels}`);
    }
  };
  if (format === "png") return await decodePng(bytes, fail, checkSize);
  const { width, height, components } = readJpegHeader(bytes, fail);
  checkSize(width, height);
  if (components !== 1 && components !== 3) {
    fail(`unsupported JPEG colour: expected 1 (grey) or 3 (YCbCr) components, got ${components} (CMYK/YCCK)`);
  }
  let raw: RawPixels;
  try {
    raw = await (options.jpegDecoder ?? libjpegTurboJpegDecoder)(bytes);
  } catch (cause) {
    return fail(`corrupt JPEG data (${(cause as Error).message})`, cause);
  }
  if (raw.width !== width || raw.height !== height) {
    fail(`JPEG decoder returned ${raw.width}x${raw.height}, header says ${width}x${height}`);
  }
  return { width, height, rgba: expandToRgba(raw, fail), format };
}

/** PNG or JPEG from the magic bytes, else undefined. */
function sniffFormat(b: Uint8Array): "png" | "jpeg" | undefined {
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (b.length >= 8 && png.every((v, i) => b[i] === v)) return "png";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  return undefined;
}

type Fail = (what: string, cause?: unknown) => never;

function expandToRgba(raw: RawPixels, fail: Fail): Uint8Array<ArrayBuffer> {
  const n = raw.width * raw.height;
  const c = raw.channels;
  if (raw.data.length < n * c) fail(`JPEG decoder returned ${raw.data.length} bytes, expected ${n * c}`);
  const out = new Uint8Array(n * 4);
  const src = raw.data;
  for (let i = 0, j = 0, k = 0; i < n; i++, j += c, k += 4) {
    out[k] = src[j];
    out[k + 1] = src[c === 1 ? j : j + 1];
    out[k + 2] = src[c === 1 ? j : j + 2];
    out[k + 3] = 255;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// JPEG header

/** Walks the JPEG segments: size and component count from SOFn, and an EOI after the scans (else truncated). */
function readJpegHeader(b: Uint8Array, fail: Fail): { width: number; height: number; components: number } {
  let p = 2;
  let sof: { width: number; height: number; components: number } | undefined;
  const truncated = () => fail("truncated JPEG data (no end-of-image marker)");
  while (true) {
    if (p + 2 > b.length) return truncated();
    if (b[p] !== 0xff) fail(`corrupt JPEG data: expected a marker at byte ${p}, got 0x${b[p].toString(16)}`);
    const m = b[p + 1];
    if (m === 0xff) { // fill byte
      p++;
      continue;
    }
    if (m === 0xd9) break; // EOI
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { // TEM, RSTn: no length
      p += 2;
      continue;
    }
    if (p + 4 > b.length) return truncated();
    const len = (b[p + 2] << 8) | b[p + 3];
    if (len < 2) fail(`corrupt JPEG data: segment 0x${m.toString(16)} has length ${len}`);
    if (p + 2 + len > b.length) return truncated();
    const isSof = m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
    if (isSof) {
      if (len < 8) fail("corrupt JPEG data: short SOF segment");
      sof = {
        height: (b[p + 5] << 8) | b[p + 6],
        width: (b[p + 7] << 8) | b[p + 8],
        components: b[p + 9],
      };
      if (sof.height === 0) fail("unsupported JPEG: height 0 (DNL marker)");
    }
    p += 2 + len;
    if (m === 0xda) { // SOS: skip the entropy-coded data up to the next marker that is not RSTn or a stuffed 0
      if (!sof) fail("corrupt JPEG data: scan before frame header");
      while (true) {
        if (p + 1 >= b.length) return truncated();
        if (b[p] === 0xff && b[p + 1] !== 0 && !(b[p + 1] >= 0xd0 && b[p + 1] <= 0xd7) && b[p + 1] !== 0xff) {
          break;
        }
        p++;
      }
    }
  }
  if (!sof) return fail("corrupt JPEG data: no frame header (SOF)");
  return sof;
}

/**
 * The default {@linkcode JpegDecoder}: `@jsquash/jpeg` 1.6.0, a wasm build of MozJPEG's decoder, which
 * gives libjpeg-turbo's pixels exactly (default IDCT and fancy upsampling). EXIF orientation is ignored.
 *
 * @param bytes A JPEG file.
 * @returns RGBA pixels (alpha 255).
 */
export async function libjpegTurboJpegDecoder(bytes: Uint8Array): Promise<RawPixels> {
  const image = await jsquashDecodeJpeg(bytes.slice().buffer as ArrayBuffer, { preserveOrientation: false });
  return { width: image.width, height: image.height, data: image.data as Uint8ClampedArray, channels: 4 };
}

/** Channels per colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA) and the allowed bit depths. */
const PNG_COLOR_TYPES: Record<number, { channels: number; depths: number[] }> = {
  0: { channels: 1, depths: [1, 2, 4, 8, 16] },
  2: { channels: 3, depths: [8, 16] },
  3: { channels: 1, depths: [1, 2, 4, 8] },
  4: { channels: 2, depths: [8, 16] },
  6: { channels: 4, depths: [8, 16] },
};

/** Adam7 passes: x0, y0, dx, dy. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [
  0,
  1,
  1,
  2,
]];

async function decodePng(
  b: Uint8Array,
  fail: Fail,
  checkSize: (w: number, h: number) => void,
): Promise<DecodedImage> {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 8;
  let ihdr:
    | { width: number; height: number; depth: number; colorType: number; interlace: number }
    | undefined;
  let palette: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (p < b.length) {
    if (p + 12 > b.length) fail("truncated PNG data");
    const len = view.getUint32(p);
    const type = String.fromCharCode(b[p + 4], b[p + 5], b[p + 6], b[p + 7]);
    if (len > 0x7fffffff || p + 12 + len > b.length) {
      fail(`truncated PNG data (in chunk ${JSON.stringify(type)})`);
    }
    const data = b.subarray(p + 8, p + 8 + len);
    if (crc32(b.subarray(p + 4, p + 8 + len)) !== view.getUint32(p + 8 + len)) {
      fail(`corrupt PNG data: CRC mismatch in chunk ${JSON.stringify(type)}`);
    }
    if (ihdr === undefined && type !== "IHDR") {
      fail(`corrupt PNG data: first chunk is ${JSON.stringify(type)}`);
    }
    if (type === "IHDR") {
      if (len !== 13) fail(`corrupt PNG data: IHDR length ${len}`);
      const d = new DataView(data.buffer, data.byteOffset, 13);
      ihdr = {
        width: d.getUint32(0),
        height: d.getUint32(4),
        depth: data[8],
        colorType: data[9],
        interlace: data[12],
      };
      const ct = PNG_COLOR_TYPES[ihdr.colorType];
      if (!ct || !ct.depths.includes(ihdr.depth)) {
        fail(`invalid PNG: colour type ${ihdr.colorType} with bit depth ${ihdr.depth}`);
      }
      if (data[10] !== 0 || data[11] !== 0 || ihdr.interlace > 1) {
        fail(`invalid PNG: compression ${data[10]}, filter ${data[11]}, interlace ${ihdr.interlace}`);
      }
      checkSize(ihdr.width, ihdr.height);
    } else if (type === "PLTE") {
      if (len % 3 !== 0 || len === 0 || len > 768) fail(`corrupt PNG data: PLTE length ${len}`);
      palette = data;
    } else if (type === "IDAT") {
      idat.push(data);
    } else if (type === "IEND") {
      ended = true;
      break;
    }
    p += 12 + len;
  }
  if (!ihdr) return fail("truncated PNG data (no IHDR)");
  if (!ended) fail("truncated PNG data (no IEND chunk)");
  if (idat.length === 0) fail("corrupt PNG data: no IDAT chunk");
  if (ihdr.colorType === 3 && !palette) fail("corrupt PNG data: palette image without PLTE");
  const { width, height, depth, colorType, interlace } = ihdr;
  const channels = PNG_COLOR_TYPES[colorType].channels;
  const bitsPerPixel = channels * depth;
  const filterBytes = Math.max(1, bitsPerPixel >> 3);
  const passes = interlace
    ? ADAM7.map(([x0, y0, dx, dy]) => ({
      x0,
      y0,
      dx,
      dy,
      w: Math.ceil((width - x0) / dx),
      h: Math.ceil((height - y0) / dy),
    })).filter((q) => q.w > 0 && q.h > 0)
    : [{ x0: 0, y0: 0, dx: 1, dy: 1, w: width, h: height }];
  let expected = 0;
  for (const q of passes) expected += q.h * (1 + Math.ceil((q.w * bitsPerPixel) / 8));
  const raw = await inflate(idat, expected, fail);

  const rgba = new Uint8Array(width * height * 4);
  const pal = palette ?? new Uint8Array(0);
  const greyScale = depth < 8 ? 255 / ((1 << depth) - 1) : 1;
  let off = 0;
  for (const q of passes) {
    const stride = Math.ceil((q.w * bitsPerPixel) / 8);
    let prev = new Uint8Array(stride);
    let cur = new Uint8Array(stride);
    for (let y = 0; y < q.h; y++) {
      const filter = raw[off];
      unfilter(filter, raw.subarray(off + 1, off + 1 + stride), prev, cur, filterBytes, fail);
      off += 1 + stride;
      const row = (q.y0 + y * q.dy) * width;
      for (let x = 0; x < q.w; x++) {
        const o = (row + q.x0 + x * q.dx) * 4;
        let r: number, g: number, bl: number;
        if (depth < 8) { // grey or palette index, packed MSB first
          const bit = x * depth;
          const v = (cur[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
          if (colorType === 3) [r, g, bl] = paletteEntry(pal, v);
          else r = g = bl = Math.round(v * greyScale);
        } else {
          // For 16-bit samples the high byte comes first (big-endian): sample k's high byte is at k * 2.
          const step = depth >> 3;
          const i = x * channels * step;
          if (colorType === 3) [r, g, bl] = paletteEntry(pal, cur[i]);
          else if (channels <= 2) r = g = bl = cur[i];
          else {
            r = cur[i];
            g = cur[i + step];
            bl = cur[i + 2 * step];
          }
        }
        rgba[o] = r;
        rgba[o + 1] = g;
        rgba[o + 2] = bl;
        rgba[o + 3] = 255;
      }
      [prev, cur] = [cur, prev];
    }
  }
  return { width, height, rgba, format: "png" };
}

/** Palette lookup; an index past the end of PLTE reads black, as libpng's zero-filled 256-entry table does. */
function paletteEntry(pal: Uint8Array, i: number): [number, number, number] {
  return 3 * i + 2 < pal.length ? [pal[3 * i], pal[3 * i + 1], pal[3 * i + 2]] : [0, 0, 0];
}

/** Reverses one PNG row filter: `cur` = unfiltered row from `src` (filtered) and `prev` (previous row). */
function unfilter(
  filter: number,
  src: Uint8Array,
  prev: Uint8Array,
  cur: Uint8Array,
  bpp: number,
  fail: Fail,
) {
  const n = src.length;
  switch (filter) {
    case 0:
      cur.set(src);
      break;
    case 1:
      for (let i = 0; i < n; i++) cur[i] = src[i] + (i >= bpp ? cur[i - bpp] : 0);
      break;
    case 2:
      for (let i = 0; i < n; i++) cur[i] = src[i] + prev[i];
      break;
    case 3:
      for (let i = 0; i < n; i++) cur[i] = src[i] + (((i >= bpp ? cur[i - bpp] : 0) + prev[i]) >> 1);
      break;
    case 4:
      for (let i = 0; i < n; i++) {
        const a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        cur[i] = src[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      break;
    default:
      fail(`corrupt PNG data: row filter ${filter}`);
  }
}

/**
 * Inflates the concatenated IDAT data (zlib) into exactly `expected` bytes; stops reading once they are
 * there, so a zlib bomb cannot allocate more than the header's size allows.
 */
async function inflate(parts: Uint8Array[], expected: number, fail: Fail): Promise<Uint8Array> {
  const out = new Uint8Array(expected);
  let n = 0;
  const ds = new DecompressionStream("deflate");
  const writer = ds.writable.getWriter();
  const writing = (async () => {
    for (const part of parts) await writer.write(part as Uint8Array<ArrayBuffer>);
    await writer.close();
  })().catch(() => {}); // a write error also errors the readable side, reported below
  const reader = ds.readable.getReader();
  try {
    while (n < expected) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, expected - n);
      out.set(value.subarray(0, take), n);
      n += take;
    }
  } catch (cause) {
    if (n < expected) fail(`corrupt PNG data (zlib: ${(cause as Error).message})`, cause);
  } finally {
    await reader.cancel().catch(() => {});
    await writing;
  }
  if (n < expected) fail(`truncated PNG data: image data has ${n} bytes, expected ${expected}`);
  return out;
}
