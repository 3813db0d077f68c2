/**
 * `deno task embed`: images in, one embedding per image out, as a float32 .npy [images, embedding size].
 * @module
 */
import { parseArgs } from "node:util";
import { createBitEmbedder } from "../models/bit_embedder.ts";
import { parseWeightsArgument } from "./weights_arg.ts";
import { encodeNpyFloat32 } from "./npy.ts";
import { describeGpu } from "../engine/device.ts";
import { reportError } from "./errors.ts";
import type { BitPreset } from "../models/bit.ts";

const HELP = `deno task embed: compute Derm Foundation / BiT embeddings with WebGPU

Usage:
  deno task embed --weights WEIGHTS --out OUT.npy [options] IMAGE...

Writes a float32 .npy of shape [number of images, embedding size], one row per IMAGE in the order given,
and OUT.npy.paths.txt listing the images, one per line, in the same order.

Options:
  --weights WEIGHTS   safetensors file or http(s) URL (Derm Foundation in Derm naming, or timm BiT), or
                      procedural:ARCH[:SEED] for generated test weights (ARCH: r50x1, r101x3, r152x4, or
                      tiny-bit, tiny-derm as in the fixtures). Procedural embeddings carry no meaning.
  --preset derm|bit   numeric preset (default: from the file's metadata or tensor names; derm for
                      procedural weights). derm: x/255, -inf max-pool padding; bit: x/127.5-1, zero padding
  --size N            model input size S; images are resized to S x S (default 448 for derm, 224 for bit)
  --out FILE          output .npy path (required)
  --batch N           images per GPU submission (default: the most that fits the device's limits)
  --verbose           print the adapter, its limits, the plan and timings to stderr
  --help              show this help

Images: PNG (8-bit grey, grey+alpha, palette, RGB, RGBA) and JPEG. Alpha is dropped, grey replicated.
Exit codes: 0 success, 1 an image or the weights could not be used, 2 bad command line, 3 no WebGPU.`;

/** Runs the command with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        weights: { type: "string" },
        preset: { type: "string" },
        size: { type: "string" },
        out: { type: "string" },
        batch: { type: "string" },
        verbose: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\nRun with --help for usage.`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const usage = (message: string) => {
    console.error(`error: ${message}\n\nRun with --help for usage.`);
    return 2;
  };
  if (!values.weights) return usage("--weights is required");
  if (!values.out) return usage("--out is required");
  if (positionals.length === 0) return usage("no images given");
  if (values.preset !== undefined && values.preset !== "derm" && values.preset !== "bit") {
    return usage(`--preset must be "derm" or "bit", got "${values.preset}"`);
  }
  const size = values.size === undefined ? undefined : Number(values.size);
  if (size !== undefined && (!Number.isInteger(size) || size < 32 || size > 4096)) {
    return usage(`--size must be an integer from 32 to 4096, got "${values.size}"`);
  }
  const batch = values.batch === undefined ? undefined : Number(values.batch);
  if (batch !== undefined && (!Number.isInteger(batch) || batch < 1)) {
    return usage(`--batch must be a positive integer, got "${values.batch}"`);
  }
  const verbose = values.verbose;
  const log = (line: string) => verbose && console.error(line);
  try {
    const started = performance.now();
    const weights = await parseWeightsArgument(values.weights);
    const embedder = await createBitEmbedder(weights, {
      preset: values.preset as BitPreset | undefined,
      size,
      maxBatch: batch,
    });
    try {
      log(describeGpu(embedder.gpu));
      log(
        `model: ${embedder.describe()}; weights loaded in ${
          ((performance.now() - started) / 1000).toFixed(1)
        } s`,
      );
      const images = [];
      for (const path of positionals) {
        let bytes: Uint8Array;
        try {
          bytes = await Deno.readFile(path);
        } catch (e) {
          throw new Error(`Cannot read image "${path}": ${(e as Error).message}`);
        }
        images.push({ bytes, name: path });
      }
      const t0 = performance.now();
      const rows = await embedder.embed(images);
      log(`embedded ${rows.length} image(s) in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      await writeAtomically(values.out, encodeNpyFloat32(rows, embedder.embeddingSize));
      await writeAtomically(
        `${values.out}.paths.txt`,
        new TextEncoder().encode(positionals.join("\n") + "\n"),
      );
      log(`wrote ${values.out} [${rows.length}, ${embedder.embeddingSize}]`);
    } finally {
      embedder.dispose();
    }
    return 0;
  } catch (e) {
    return reportError(e, verbose);
  }
}

/** Writes to a temporary file beside `path`, then renames: a reader never sees a partial file. */
async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Cannot write "${path}": ${(e as Error).message}`);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
