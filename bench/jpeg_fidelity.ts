/**
 * JPEG decode fidelity: how far each available JavaScript/wasm JPEG decoder is from libjpeg-turbo, the
 * decoder behind Derm Foundation's TensorFlow and PIL pipelines.
 *
 * Reference PPMs come from libjpeg-turbo's own `djpeg` (Debian `libjpeg-turbo-progs`; defaults = islow
 * integer IDCT, fancy upsampling, which is also what PIL uses):
 *
 * ```sh
 * mkdir -p /tmp/ppm
 * for f in testdata/isic-cc0/*.jpg testdata/images/*.jpg; do
 *   djpeg -pnm -outfile /tmp/ppm/$(basename "$f" .jpg).ppm "$f"
 * done
 * deno run --config deno.dev.json --allow-read --allow-env bench/jpeg_fidelity.ts /tmp/ppm testdata/isic-cc0 testdata/images
 * ```
 *
 * Arguments: the PPM folder, then folders (or files) of JPEGs; each `X.jpg` is compared with `X.ppm`.
 * When the run has `testdata/bit/cases.json`, each JPEG case's model input (decode, then the float64
 * reference resize) is also compared with the fixture's `input` tensor, per decoder.
 * Prints, per decoder: images, max abs difference over all pixels and channels, mean abs difference,
 * share of channel values that differ, share of images decoded bit-identically. Figures are recorded in
 * `bench/jpeg_notes.md`.
 * @module
 */
import type { RawPixels } from "../engine/image_decode.ts";
import { imagescriptJpegDecoder } from "./jpeg_imagescript.ts";
// Candidates measured here only, not dependencies of the engine (deno.dev.json maps them).
import jsquashDecode from "@jsquash/jpeg/decode.js";
import jpegJs from "jpeg-js";
import { packPixels } from "../kernels/resize_bilinear.ts";
import { resizeBilinearRef } from "../kernels/resize_bilinear_ref.ts";
import { bitPreprocessing } from "../models/bit.ts";

/** A decoder under test: name and function returning RGB-compatible pixels. */
interface Candidate {
  name: string;
  decode(bytes: Uint8Array): Promise<RawPixels>;
}

const CANDIDATES: Candidate[] = [
  { name: "imagescript@1.3.1 jpeg.wasm (formerly the engine default)", decode: imagescriptJpegDecoder },
  {
    name: "@jsquash/jpeg@1.6.0 (MozJPEG 4 = libjpeg-turbo decoder, wasm)",
    async decode(bytes) {
      const im = await jsquashDecode(bytes.slice().buffer);
      return { width: im.width, height: im.height, data: im.data as Uint8ClampedArray, channels: 4 };
    },
  },
  {
    name: "jpeg-js@0.4.4 (pure JS)",
    decode(bytes) {
      const im = jpegJs.decode(bytes, { useTArray: true, formatAsRGBA: false });
      return Promise.resolve({ width: im.width, height: im.height, data: im.data, channels: 3 });
    },
  },
];

/** Parses a binary PPM (P6, maxval 255) into RGB bytes. */
export function parsePpm(b: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  const fields: string[] = [];
  let p = 0;
  while (fields.length < 4) {
    while (p < b.length && /\s/.test(String.fromCharCode(b[p]))) p++;
    if (b[p] === 0x23) { // comment
      while (p < b.length && b[p] !== 0x0a) p++;
      continue;
    }
    let s = "";
    while (p < b.length && !/\s/.test(String.fromCharCode(b[p]))) s += String.fromCharCode(b[p++]);
    fields.push(s);
  }
  p++; // the single whitespace after maxval
  const [magic, w, h, max] = fields;
  if (magic !== "P6" || max !== "255") {
    throw new SyntaxError(`Cannot parse PPM: expected P6/255, got ${magic}/${max}`);
  }
  const width = Number(w), height = Number(h);
  return { width, height, rgb: b.subarray(p, p + width * height * 3) };
}

/** Accumulated differences of one decoder against the references. */
interface Tally {
  images: number;
  identical: number;
  failed: number;
  max: number;
  sum: number;
  differ: number;
  values: number;
}

async function main(args: string[]) {
  if (args.length < 2) {
    console.error("usage: jpeg_fidelity.ts PPM_DIR JPEG_DIR_OR_FILE...");
    Deno.exit(2);
  }
  const [ppmDir, ...sources] = args;
  const jpegs: string[] = [];
  for (const src of sources) {
    if (Deno.statSync(src).isDirectory) {
      for (const e of Deno.readDirSync(src)) if (/\.jpe?g$/i.test(e.name)) jpegs.push(`${src}/${e.name}`);
    } else jpegs.push(src);
  }
  jpegs.sort();
  const tallies = CANDIDATES.map((): Tally => ({
    images: 0,
    identical: 0,
    failed: 0,
    max: 0,
    sum: 0,
    differ: 0,
    values: 0,
  }));
  let compared = 0;
  for (const path of jpegs) {
    const base = path.split("/").pop()!.replace(/\.jpe?g$/i, "");
    let ref;
    try {
      ref = parsePpm(Deno.readFileSync(`${ppmDir}/${base}.ppm`));
    } catch {
      console.error(`no reference for ${path}, skipped`);
      continue;
    }
    compared++;
    const bytes = Deno.readFileSync(path);
    for (const [k, cand] of CANDIDATES.entries()) {
      const t = tallies[k];
      t.images++;
      let px: RawPixels;
      try {
        px = await cand.decode(bytes);
      } catch (e) {
        t.failed++;
        console.error(`${cand.name} failed on ${path}: ${(e as Error).message}`);
        continue;
      }
      if (px.width !== ref.width || px.height !== ref.height) {
        t.failed++;
        continue;
      }
      let imageMax = 0;
      const c = px.channels;
      for (let i = 0; i < ref.width * ref.height; i++) {
        for (let ch = 0; ch < 3; ch++) {
          const got = px.data[i * c + (c === 1 ? 0 : ch)];
          const d = Math.abs(got - ref.rgb[i * 3 + ch]);
          t.sum += d;
          if (d) t.differ++;
          if (d > imageMax) imageMax = d;
        }
      }
      t.values += ref.width * ref.height * 3;
      t.max = Math.max(t.max, imageMax);
      if (imageMax === 0) t.identical++;
    }
  }
  console.log(`${compared} JPEGs compared with djpeg (libjpeg-turbo) PPMs\n`);
  console.log(
    "| decoder | images | bit-identical images | max abs diff | mean abs diff | values that differ |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const [k, cand] of CANDIDATES.entries()) {
    const t = tallies[k];
    const mean = t.values ? t.sum / t.values : NaN;
    const share = t.values ? (100 * t.differ) / t.values : NaN;
    console.log(
      `| ${cand.name} | ${t.images - t.failed}/${t.images} | ${t.identical} | ${t.max} | ${
        mean.toFixed(4)
      } | ` +
        `${share.toFixed(2)} % |`,
    );
  }
}

/** Reads one F32 tensor from a safetensors file (8-byte LE header length, JSON header, data). */
function readSafetensor(bytes: Uint8Array, name: string): Float32Array {
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const [begin, end] = header[name].data_offsets as [number, number];
  return new Float32Array(bytes.slice(8 + headerLength + begin, 8 + headerLength + end).buffer);
}

/** Max abs difference of the model input of every JPEG fixture case, per decoder. */
async function fixtureInputs() {
  const root = new URL("../testdata/bit/", import.meta.url);
  let cases: { name: string; image: string; size: number; preset: "derm" | "bit" }[];
  try {
    cases = JSON.parse(Deno.readTextFileSync(new URL("cases.json", root)));
  } catch {
    console.log("\n(no testdata/bit: model-input comparison skipped)");
    return;
  }
  console.log("\n| fixture case (model input) | decoder | max abs diff | mean abs diff |\n|---|---|---|---|");
  for (const c of cases.filter((c) => /\.jpe?g$/i.test(c.image))) {
    const want = readSafetensor(Deno.readFileSync(new URL(`${c.name}.ref.safetensors`, root)), "input");
    const bytes = Deno.readFileSync(new URL(c.image, root));
    for (const cand of CANDIDATES) {
      const px = await cand.decode(bytes);
      const rgba = new Uint8Array(px.width * px.height * 4);
      for (let i = 0; i < px.width * px.height; i++) {
        for (let ch = 0; ch < 3; ch++) {
          rgba[i * 4 + ch] = px.data[i * px.channels + (px.channels === 1 ? 0 : ch)];
        }
      }
      const got = resizeBilinearRef(packPixels({ width: px.width, height: px.height, rgba }), {
        srcWidth: px.width,
        srcHeight: px.height,
        size: c.size,
        scale: bitPreprocessing(c.preset, c.size).scale,
        offset: bitPreprocessing(c.preset, c.size).offset,
      });
      let max = 0, sum = 0;
      for (let i = 0; i < c.size * c.size; i++) {
        for (let ch = 0; ch < 3; ch++) {
          const d = Math.abs(got[i * 4 + ch] - want[i * 3 + ch]);
          max = Math.max(max, d);
          sum += d;
        }
      }
      console.log(
        `| ${c.name} | ${cand.name} | ${max.toExponential(2)} | ${
          (sum / (c.size * c.size * 3)).toExponential(2)
        } |`,
      );
    }
  }
}

if (import.meta.main) {
  await main(Deno.args);
  await fixtureInputs();
}
