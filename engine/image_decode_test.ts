import assert from "node:assert/strict";
import { crc32 } from "imagescript/png/src/crc.mjs";
import { readTestdata } from "../tests/_testdata.ts";
import { decodeImage, type RawPixels } from "./image_decode.ts";
import { ImageError } from "./errors.ts";

// ---------- a small PNG encoder, to build every colour type, bit depth, filter and interlacing ----------

const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [
  0,
  1,
  1,
  2,
]];

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function zlib(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

/** Applies PNG filter `f` to a raw row (the encoder side of what the decoder undoes). */
function filterRow(f: number, row: Uint8Array, prev: Uint8Array, bpp: number): Uint8Array {
  const out = new Uint8Array(row.length + 1);
  out[0] = f;
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
    const pred = [
      0,
      a,
      b,
      (a + b) >> 1,
      Math.abs(b - c) <= Math.abs(a - c) && Math.abs(b - c) <= Math.abs(a + b - 2 * c)
        ? a
        : Math.abs(a - c) <= Math.abs(a + b - 2 * c)
        ? b
        : c,
    ][f];
    out[i + 1] = (row[i] - pred) & 0xff;
  }
  return out;
}

interface PngSpec {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  /** samples[y][x] = channel values at `depth` bits. */
  samples: number[][][];
  palette?: number[];
  trns?: number[];
  interlace?: boolean;
}

async function encodePng(s: PngSpec): Promise<Uint8Array> {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[s.colorType]!;
  const bpp = Math.max(1, (channels * s.depth) >> 3);
  const rows: Uint8Array[] = [];
  const passes = s.interlace ? ADAM7 : [[0, 0, 1, 1]];
  let f = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const xs: number[] = [];
    for (let x = x0; x < s.width; x += dx) xs.push(x);
    if (xs.length === 0) continue;
    let prev = new Uint8Array(Math.ceil((xs.length * channels * s.depth) / 8));
    for (let y = y0; y < s.height; y += dy) {
      const row = new Uint8Array(prev.length);
      let bit = 0;
      for (const x of xs) {
        for (const v of s.samples[y][x]) {
          if (s.depth === 16) row[bit >> 3] = v >> 8, row[(bit >> 3) + 1] = v & 0xff;
          else if (s.depth === 8) row[bit >> 3] = v;
          else row[bit >> 3] |= v << (8 - s.depth - (bit & 7));
          bit += s.depth;
        }
      }
      rows.push(filterRow(f++ % 5, row, prev, bpp));
      prev = row;
    }
  }
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, s.width), v.setUint32(4, s.height);
  ihdr.set([s.depth, s.colorType, 0, 0, s.interlace ? 1 : 0], 8);
  const parts = [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr)];
  if (s.palette) parts.push(chunk("PLTE", new Uint8Array(s.palette)));
  if (s.trns) parts.push(chunk("tRNS", new Uint8Array(s.trns)));
  parts.push(chunk("IDAT", await zlib(concat(rows))), chunk("IEND", new Uint8Array(0)));
  return concat(parts);
}

function grid(w: number, h: number, f: (x: number, y: number) => number[]): number[][][] {
  return Array.from({ length: h }, (_, y) => Array.from({ length: w }, (_, x) => f(x, y)));
}

function rgbOf(rgba: Uint8Array): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < rgba.length; i += 4) {
    assert.equal(rgba[i + 3], 255, "alpha byte must be 255");
    out.push([rgba[i], rgba[i + 1], rgba[i + 2]]);
  }
  return out;
}

const W = 13, H = 7; // odd sizes: partial bytes at 1/2/4 bits, every Adam7 pass non-empty
const hash = (x: number, y: number, c: number) => ((x * 73 + y * 151 + c * 211) * 2654435761) >>> 0;

// ---------- PNG ----------

Deno.test("decodeImage() keeps RGB and drops alpha without compositing (8 and 16 bit, RGBA and grey+alpha)", async () => {
  const rgba8 = grid(W, H, (x, y) => [0, 1, 2, 3].map((c) => hash(x, y, c) & 0xff));
  const img = await decodeImage(
    await encodePng({ width: W, height: H, depth: 8, colorType: 6, samples: rgba8 }),
    "a.png",
  );
  assert.deepEqual([img.width, img.height, img.format], [W, H, "png"]);
  assert.deepEqual(rgbOf(img.rgba), rgba8.flat().map((p) => p.slice(0, 3)));

  const rgba16 = grid(W, H, (x, y) => [0, 1, 2, 3].map((c) => hash(x, y, c) & 0xffff));
  const img16 = await decodeImage(
    await encodePng({ width: W, height: H, depth: 16, colorType: 6, samples: rgba16 }),
    "b.png",
  );
  assert.deepEqual(
    rgbOf(img16.rgba),
    rgba16.flat().map((p) => p.slice(0, 3).map((v) => v >> 8)),
    "16 bit keeps the high byte",
  );

  const ga16 = grid(W, H, (x, y) => [hash(x, y, 0) & 0xffff, 0]);
  const imgGa = await decodeImage(
    await encodePng({ width: W, height: H, depth: 16, colorType: 4, samples: ga16 }),
    "c.png",
  );
  assert.deepEqual(rgbOf(imgGa.rgba), ga16.flat().map(([g]) => [g >> 8, g >> 8, g >> 8]));
});

Deno.test("decodeImage() replicates grey at 1, 2, 4, 8 and 16 bits by bit replication", async () => {
  for (const depth of [1, 2, 4, 8, 16]) {
    const max = 2 ** depth - 1;
    const g = grid(W, H, (x, y) => [hash(x, y, depth) % (max + 1)]);
    const img = await decodeImage(
      await encodePng({ width: W, height: H, depth, colorType: 0, samples: g }),
      "g.png",
    );
    const want = g.flat().map(([v]) => {
      const b = depth === 16 ? v >> 8 : (v * 255) / max;
      return [b, b, b];
    });
    assert.deepEqual(rgbOf(img.rgba), want, `grey ${depth} bit`);
  }
});

Deno.test("decodeImage() expands palettes at 1, 4 and 8 bits and ignores tRNS", async () => {
  const palette = Array.from({ length: 256 * 3 }, (_, i) => hash(i, 0, 9) & 0xff);
  for (const depth of [1, 4, 8]) {
    const idx = grid(W, H, (x, y) => [hash(x, y, 5) % 2 ** depth]);
    const png = await encodePng({
      width: W,
      height: H,
      depth,
      colorType: 3,
      samples: idx,
      palette,
      trns: [0, 128, 7],
    });
    const img = await decodeImage(png, "p.png");
    assert.deepEqual(
      rgbOf(img.rgba),
      idx.flat().map(([i]) => palette.slice(3 * i, 3 * i + 3)),
      `palette ${depth} bit`,
    );
  }
});

Deno.test("decodeImage() decodes Adam7-interlaced PNGs like non-interlaced ones", async () => {
  for (const [depth, colorType, channels] of [[8, 2, 3], [2, 0, 1], [16, 2, 3]]) {
    const samples = grid(
      W,
      H,
      (x, y) => Array.from({ length: channels }, (_, c) => hash(x, y, c) % 2 ** depth),
    );
    const plain = await decodeImage(
      await encodePng({ width: W, height: H, depth, colorType, samples }),
      "p.png",
    );
    const inter = await decodeImage(
      await encodePng({ width: W, height: H, depth, colorType, samples, interlace: true }),
      "i.png",
    );
    assert.deepEqual(inter.rgba, plain.rgba, `depth ${depth} colour type ${colorType}`);
  }
});

async function rejects(bytes: Uint8Array, pattern: RegExp, options = {}) {
  await assert.rejects(decodeImage(bytes, "x.png", options), (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${e}`);
    assert.equal(e.file, "x.png");
    assert.match(e.message, /^Cannot decode "x\.png": /);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("decodeImage() throws ImageError naming the file for bad, truncated and oversized data", async () => {
  const samples = grid(W, H, (x, y) => [x, y, 7]);
  const png = await encodePng({ width: W, height: H, depth: 8, colorType: 2, samples });
  await rejects(
    new TextEncoder().encode("GIF89a......"),
    /unsupported format: expected PNG or JPEG, got first bytes \[47 49 46/,
  );
  await rejects(new Uint8Array(0), /unsupported format/);
  await rejects(png.subarray(0, png.length - 20), /truncated PNG data/);
  await rejects(png.subarray(0, 40), /truncated PNG data/);
  const bad = png.slice();
  bad[bad.length - 20] ^= 1; // inside IDAT
  await rejects(bad, /CRC mismatch in chunk "IDAT"/);
  await rejects(png, /image too large: 13x7 = 91 pixels, limit 90/, { maxPixels: 90 });
  // A header claiming 60000 x 60000 is refused before anything is inflated.
  const huge = png.slice();
  new DataView(huge.buffer).setUint32(16, 60000), new DataView(huge.buffer).setUint32(20, 60000);
  new DataView(huge.buffer).setUint32(29, crc32(huge.subarray(12, 29)));
  await rejects(huge, /image too large: 60000x60000/);
  // Valid chunks, but too little image data.
  const short = await encodePng({
    width: W,
    height: H + 5,
    depth: 8,
    colorType: 2,
    samples: [...samples, ...samples],
  });
  const shortIhdr = short.slice();
  new DataView(shortIhdr.buffer).setUint32(20, H + 50);
  new DataView(shortIhdr.buffer).setUint32(29, crc32(shortIhdr.subarray(12, 29)));
  await rejects(shortIhdr, /truncated PNG data: image data has \d+ bytes, expected \d+/);
});

// ---------- JPEG ----------

function fixture(name: string): Uint8Array {
  return readTestdata(`images/${name}`);
}

Deno.test("decodeImage() decodes a JPEG fixture close to its lossless PNG twin", async () => {
  const jpg = fixture("isic_0000387.jpg"), png = fixture("isic_0000387.png");
  const a = await decodeImage(jpg, "isic_0000387.jpg");
  const b = await decodeImage(png, "isic_0000387.png");
  assert.deepEqual([a.format, a.width, a.height], ["jpeg", 250, 250]);
  let sum = 0;
  for (let i = 0; i < a.rgba.length; i++) sum += Math.abs(a.rgba[i] - b.rgba[i]);
  assert.ok(sum / a.rgba.length < 4, `mean abs difference ${sum / a.rgba.length}`);
});

Deno.test("decodeImage() uses the jpegDecoder option and replicates its grey output", async () => {
  const jpg = fixture("isic_0000387.jpg");
  const decoder = (_: Uint8Array): Promise<RawPixels> =>
    Promise.resolve({ width: 250, height: 250, data: new Uint8Array(250 * 250).fill(9), channels: 1 });
  const img = await decodeImage(jpg, "g.jpg", { jpegDecoder: decoder });
  assert.deepEqual([...img.rgba.subarray(0, 8)], [9, 9, 9, 255, 9, 9, 9, 255]);
  const wrong = () => Promise.resolve({ width: 1, height: 1, data: new Uint8Array(3), channels: 3 as const });
  await assert.rejects(
    decodeImage(jpg, "w.jpg", { jpegDecoder: wrong }),
    /JPEG decoder returned 1x1, header says 250x250/,
  );
});

Deno.test("decodeImage() rejects truncated, corrupt and oversized JPEGs with ImageError", async () => {
  const jpg = fixture("isic_0000387.jpg");
  const rejectsJpeg = (bytes: Uint8Array, pattern: RegExp, options = {}) =>
    assert.rejects(decodeImage(bytes, "x.jpg", options), (e: unknown) => {
      assert.ok(e instanceof ImageError);
      assert.match(e.message, /^Cannot decode "x\.jpg": /);
      assert.match(e.message, pattern);
      return true;
    });
  await rejectsJpeg(jpg.subarray(0, jpg.length - 100), /truncated JPEG data/);
  await rejectsJpeg(jpg.subarray(0, 30), /truncated JPEG data/);
  await rejectsJpeg(jpg, /image too large: 250x250/, { maxPixels: 1000 });
  // Garbage entropy-coded data with intact markers: the decoder itself fails.
  const sos = jpg.findLastIndex((b, i) => b === 0xff && jpg[i + 1] === 0xda);
  const garbled = jpg.slice();
  garbled.fill(0xff, sos + 20, sos + 21);
  garbled[sos + 21] = 0xc4; // a DHT marker in the middle of the scan
  await assert.rejects(decodeImage(garbled, "x.jpg"), ImageError);
});
