/**
 * EXIF orientation for `deno task embed --exif-orientation`: the Orientation tag (0x0112) read from a JPEG's
 * APP1 `Exif` segment, and the rotation or flip it asks for applied to decoded RGBA pixels on the CPU.
 * Without the flag orientation is ignored, as TensorFlow's `DecodeJpeg` (and so Derm Foundation) ignores it.
 * @module
 */
import type { DecodedImage } from "../engine/image_decode.ts";

/**
 * The EXIF Orientation of a JPEG (1 to 8), or 1 when the file has none or is not a JPEG.
 *
 * @param bytes The JPEG file.
 * @returns 1 upright, 2 mirrored, 3 rotated 180°, 4 flipped, 5 transposed, 6 rotate 90° clockwise to view,
 * 7 transversed, 8 rotate 90° anticlockwise to view.
 */
export function readExifOrientation(bytes: Uint8Array): number {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 2;
  while (p + 4 <= bytes.length && bytes[p] === 0xff) {
    const marker = bytes[p + 1];
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      p += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return 1; // scan data: no EXIF before it
    const len = view.getUint16(p + 2);
    const start = p + 4;
    if (marker === 0xe1 && len >= 8 && start + len - 2 <= bytes.length) {
      const o = tiffOrientation(view, start, start + len - 2);
      if (o !== undefined) return o;
    }
    p += 2 + len;
  }
  return 1;
}

/** Orientation from an APP1 payload in [start, end): "Exif\0\0", TIFF header, IFD0 entries. */
function tiffOrientation(view: DataView, start: number, end: number): number | undefined {
  const exif = [0x45, 0x78, 0x69, 0x66, 0, 0];
  if (end - start < 14 || exif.some((b, i) => view.getUint8(start + i) !== b)) return undefined;
  const tiff = start + 6;
  const order = view.getUint16(tiff);
  if (order !== 0x4949 && order !== 0x4d4d) return undefined;
  const le = order === 0x4949;
  if (view.getUint16(tiff + 2, le) !== 42) return undefined;
  const ifd = tiff + view.getUint32(tiff + 4, le);
  if (ifd + 2 > end) return undefined;
  const count = view.getUint16(ifd, le);
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + i * 12;
    if (e + 12 > end) return undefined;
    if (view.getUint16(e, le) === 0x0112) {
      const type = view.getUint16(e + 2, le);
      const value = type === 3 ? view.getUint16(e + 8, le) : type === 4 ? view.getUint32(e + 8, le) : 0;
      return value >= 1 && value <= 8 ? value : undefined;
    }
  }
  return undefined;
}

/**
 * Returns `image` turned upright for EXIF `orientation` (a new image; the same one for 1).
 *
 * @param image Decoded pixels as stored in the file.
 * @param orientation EXIF Orientation, 1 to 8.
 * @returns The pixels as a viewer shows them (width and height swapped for 5 to 8).
 */
export function applyOrientation(image: DecodedImage, orientation: number): DecodedImage {
  if (orientation <= 1 || orientation > 8) return image;
  const { width: w, height: h } = image;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const src = new Uint32Array(image.rgba.buffer, image.rgba.byteOffset, w * h);
  const rgba = new Uint8Array(w * h * 4);
  const dst = new Uint32Array(rgba.buffer);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      // (sx, sy): the stored pixel shown at (x, y).
      let sx: number, sy: number;
      switch (orientation) {
        case 2:
          [sx, sy] = [w - 1 - x, y];
          break;
        case 3:
          [sx, sy] = [w - 1 - x, h - 1 - y];
          break;
        case 4:
          [sx, sy] = [x, h - 1 - y];
          break;
        case 5:
          [sx, sy] = [y, x];
          break;
        case 6:
          [sx, sy] = [y, h - 1 - x];
          break;
        case 7:
          [sx, sy] = [w - 1 - y, h - 1 - x];
          break;
        default: // 8
          [sx, sy] = [w - 1 - y, x];
      }
      dst[y * ow + x] = src[sy * w + sx];
    }
  }
  return { width: ow, height: oh, rgba, format: image.format };
}

/**
 * Inserts an APP1 Exif segment with one Orientation entry after a JPEG's SOI marker (for tests).
 *
 * @param jpeg A JPEG file.
 * @param orientation The value to store, 1 to 8.
 * @returns The new file.
 */
export function withExifOrientation(jpeg: Uint8Array, orientation: number): Uint8Array {
  // "Exif\0\0" + TIFF header (big-endian, IFD at 8) + 1 entry + next-IFD 0.
  const payload = new Uint8Array(6 + 8 + 2 + 12 + 4);
  const v = new DataView(payload.buffer);
  payload.set([0x45, 0x78, 0x69, 0x66, 0, 0]);
  v.setUint16(6, 0x4d4d);
  v.setUint16(8, 42);
  v.setUint32(10, 8);
  v.setUint16(14, 1);
  v.setUint16(16, 0x0112);
  v.setUint16(18, 3);
  v.setUint32(20, 1);
  v.setUint16(24, orientation);
  const out = new Uint8Array(jpeg.length + 4 + payload.length);
  out.set(jpeg.subarray(0, 2));
  out.set([0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 0xff], 2);
  out.set(payload, 6);
  out.set(jpeg.subarray(2), 6 + payload.length);
  return out;
}
