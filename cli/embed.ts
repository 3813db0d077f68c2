/**
 * `deno task embed`: folders of images in, one embedding per image out (.npy, .jsonl, .parquet or
 * .safetensors), resumable and crash-safe. Decoding runs on worker threads while the GPU embeds the
 * previous batch; a bad image is reported and skipped, never written as a row.
 * @module
 */
import { parseArgs } from "node:util";
import { createEmbedder } from "../models/registry.ts";
import { openWeightsArgument } from "./weights_arg.ts";
import { FileTuningCache } from "./tuning_cache.ts";
import { resolveModel } from "./model_cache.ts";
import { describeGpu } from "../engine/device.ts";
import type { Precision } from "../engine/precision.ts";
import { type DecodedImage, DEFAULT_MAX_PIXELS } from "../engine/image_decode.ts";
import { reportError } from "./errors.ts";
import { embedChunk } from "./embed_chunk.ts";
import { integerFlag, MODEL_FLAGS_HELP, type ModelFlags, modelFlags, type TuneMode } from "./model_flags.ts";
import { collectInputs, type InputImage } from "./inputs.ts";
import { DEFAULT_ROW_GROUP_ROWS, OUTPUT_FORMATS, outputFormat, type OutputInfo } from "./outputs.ts";
import { metadataKeys, type ShardSpec } from "./output_rows.ts";
import { inputsFingerprint, parseShard, selectShard } from "./shard.ts";
import { EmbedOutput } from "./embed_output.ts";
import { DecodePool } from "./decode_pool.ts";
import type { DecodeReply } from "./decode_job.ts";
import { ProgressBar } from "./progress_bar.ts";
import denoJson from "../deno.json" with { type: "json" };

/** `derm-webgpu VERSION`, written into every output file. */
export const ENGINE = `derm-webgpu ${denoJson.version}`;

/** Rows per checkpoint (a Parquet row group) by default. */
export const DEFAULT_CHECKPOINT_EVERY = DEFAULT_ROW_GROUP_ROWS;

const HELP = `deno task embed: compute Derm Foundation, BiT, ResNet-50 and ViT embeddings with WebGPU

Usage:
  deno task embed --weights WEIGHTS --out OUT.EXT [options] IMAGE|FOLDER|GLOB...

Embeds every image (PNG or JPEG) given: files, folders (recursively, *.png/*.jpg/*.jpeg, sorted by path),
glob patterns ("photos/**/*.jpg", quoted so the shell leaves them) and --list files. A path given twice is
embedded once. Rows are in that order. Images that cannot be read or decoded are reported on stderr and in
OUT.errors.jsonl and skipped; the others are still embedded (exit code 1 at the end).

Output, by the extension of --out (each states the model, preset, input size, engine version, the
inputs' count and SHA-256, and each row's position in the whole input order):
  .npy          float32 [images, D]; OUT.npy.paths.txt lists the images, OUT.npy.json has the model,
                each row's path, SHA-256, position and metadata
  .jsonl        one object per image: path, hash (SHA-256 of the file), position, metadata, model facts,
                embedding
  .parquet      columns path, hash, position, the --list CSV's metadata columns, embedding (list of D
                float32); one row group per --checkpoint-every rows
  .safetensors  tensor "embeddings" F32 [images, D]; paths, hashes, positions, metadata in __metadata__

Options:
${MODEL_FLAGS_HELP}
  --out FILE          output file: .npy, .jsonl, .parquet or .safetensors (required)
  --list FILE         more images: one path per line, or a CSV with a "path" column (else "file",
                      "filename" or "image") whose other columns are kept as metadata; relative paths are
                      relative to the list's folder. Repeatable
  --batch N           images per GPU submission (default: the most that fits the device's limits, at most 16)
  --in-flight N       batches computing at once, each with its own plan (default 2, 1 to 8): batch k + 1 is
                      uploaded and computed while batch k is read back and written
  --workers N         decode threads (default: CPU cores - 1, at least 1, at most 4; 0 decodes on the
                      main thread)
  --max-pixels N      refuse images whose header says more than N pixels (decompression bombs; default
                      ${DEFAULT_MAX_PIXELS})
  --exif-orientation  rotate/flip JPEGs as their EXIF Orientation says (default: ignored, as TensorFlow and
                      Derm Foundation ignore it)
  --checkpoint-every N  rows per Parquet row group (default ${DEFAULT_CHECKPOINT_EVERY}). Every format is appended
                      as batches finish: each finished batch is synced and committed to OUT.commits, so a
                      killed run loses at most the batch in flight; OUT appears, complete, at the end
  --resume            continue what an earlier run of OUT left: its committed rows stay (each image's
                      SHA-256 is checked), the rest is embedded; the result is the file an uninterrupted
                      run writes. A finished OUT's rows are reused the same way (by path and SHA-256)
  --shard I/N         embed only part I of N (0 <= I < N) of the images: those whose normalised path's
                      SHA-256 (first 8 bytes, big-endian) is I mod N; rows keep their position in the
                      whole input order, and deno task merge joins the N outputs. For Kubernetes Indexed
                      Jobs (--shard \$(JOB_COMPLETION_INDEX)/N) and Slurm arrays; see deploy/
  --strict            stop at the first image that fails (exit 1; what was committed stays for --resume)
  --quiet             no progress output (errors are still printed)
  --json              print a JSON summary on stdout: counts, errors, images/s, adapter, and a time
                      profile (read, decode, upload, GPU, write)
  --verbose           print the adapter, its limits, the model, timings, and stack traces to stderr
  --help              show this help

Images: PNG (1 to 16-bit grey, grey+alpha, palette, RGB, RGBA; 16-bit keeps the high byte, as TensorFlow's
DecodePng to uint8) and JPEG (decoded bit-identically to libjpeg-turbo). Alpha is dropped, grey replicated.
Exit codes: 0 success, 1 an image or the weights could not be used, 2 bad command line, 3 no WebGPU.`;

interface Options {
  weights: string;
  /** Hugging Face model id, resolved through the cache instead of `weights`. */
  model?: string;
  preset?: string;
  size?: number;
  resize?: number;
  vitHeads?: number;
  vitBlocks?: number;
  kernels?: string[];
  precision?: Precision;
  tune?: TuneMode;
  out: string;
  batch?: number;
  inFlight?: number;
  workers: number;
  maxPixels: number;
  exifOrientation: boolean;
  checkpointEvery: number;
  resume: boolean;
  shard?: ShardSpec;
  strict: boolean;
  quiet: boolean;
  json: boolean;
  verbose: boolean;
}

/** Runs the command with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        weights: { type: "string" },
        model: { type: "string" },
        preset: { type: "string" },
        size: { type: "string" },
        resize: { type: "string" },
        "vit-heads": { type: "string" },
        "vit-blocks": { type: "string" },
        kernels: { type: "string" },
        precision: { type: "string" },
        tune: { type: "string" },
        out: { type: "string" },
        list: { type: "string", multiple: true },
        batch: { type: "string" },
        "in-flight": { type: "string" },
        workers: { type: "string" },
        "max-pixels": { type: "string" },
        "exif-orientation": { type: "boolean", default: false },
        "checkpoint-every": { type: "string" },
        resume: { type: "boolean", default: false },
        shard: { type: "string" },
        strict: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        verbose: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let model: ModelFlags;
  try {
    model = modelFlags(values);
  } catch (e) {
    return usage((e as Error).message);
  }
  if (!values.out) return usage("--out is required");
  if (positionals.length === 0 && !values.list?.length) return usage("no images given");
  if (!outputFormat(values.out)) {
    return usage(`--out must end in ${OUTPUT_FORMATS.map((f) => `.${f}`).join(", ")}, got "${values.out}"`);
  }
  let options: Options;
  try {
    const cores = navigator.hardwareConcurrency ?? 2;
    options = {
      ...model,
      out: values.out,
      batch: integerFlag("batch", values.batch, 1),
      inFlight: integerFlag("in-flight", values["in-flight"], 1, 8),
      workers: integerFlag("workers", values.workers, 0, 64) ?? Math.min(4, Math.max(1, cores - 1)),
      maxPixels: integerFlag("max-pixels", values["max-pixels"], 1) ?? DEFAULT_MAX_PIXELS,
      exifOrientation: values["exif-orientation"],
      checkpointEvery: integerFlag("checkpoint-every", values["checkpoint-every"], 1) ??
        DEFAULT_CHECKPOINT_EVERY,
      resume: values.resume,
      shard: values.shard === undefined ? undefined : parseShard(values.shard),
      strict: values.strict,
      quiet: values.quiet,
      json: values.json,
      verbose: values.verbose,
    };
  } catch (e) {
    return usage((e as Error).message);
  }
  let inputs: InputImage[];
  try {
    inputs = await collectInputs(positionals, { lists: values.list });
  } catch (e) {
    return usage((e as Error).message);
  }
  if (inputs.length === 0) return usage("no images found");
  try {
    return await run(inputs, options);
  } catch (e) {
    return reportError(e, options.verbose);
  }
}

function usage(message: string): number {
  console.error(`error: ${message}\n\nRun with --help for usage.`);
  return 2;
}

/** A failed image, as printed and written to OUT.errors.jsonl. */
interface ImageFailure {
  path: string;
  hash: string;
  reason: string;
}

async function run(all: InputImage[], o: Options): Promise<number> {
  const wallStart = performance.now();
  const log = (line: string) => o.verbose && console.error(line);
  // This run's part of the inputs, each with its position in the whole input order.
  const inputs = selectShard(all, o.shard).map(({ item, position }) => ({ ...item, position }));
  if (inputs.length === 0) {
    console.error(`embed: shard ${o.shard!.index}/${o.shard!.count} holds none of the ${all.length} images`);
    return 0;
  }

  const weights = await openWeightsArgument(o.model ? await resolveModel(o.model) : o.weights);
  const embedder = await createEmbedder(weights, {
    preset: o.preset,
    size: o.size,
    resize: o.resize,
    vitHeads: o.vitHeads,
    vitBlocks: o.vitBlocks,
    kernels: o.kernels,
    precision: o.precision,
    tune: o.tune,
    tuningCache: new FileTuningCache(),
    engineVersion: ENGINE,
    maxBatch: o.batch,
    inFlight: o.inFlight,
    locateNonFinite: o.verbose,
  });
  const pool = new DecodePool(o.workers);
  const progress = new ProgressBar(inputs.length, {
    mode: o.quiet ? "none" : Deno.stderr.isTerminal() ? "bar" : "lines",
  });
  let output: EmbedOutput | undefined;
  try {
    log(describeGpu(embedder.gpu));
    log(`model: ${embedder.describe()}; loaded in ${((performance.now() - wallStart) / 1000).toFixed(1)} s`);
    const info: OutputInfo = {
      model: o.model ?? o.weights,
      architecture: embedder.facts.architecture,
      preset: embedder.facts.preset,
      size: embedder.size,
      embeddingSize: embedder.embeddingSize,
      precision: embedder.precision,
      engine: ENGINE,
      inputs: all.length,
      inputsSha256: inputsFingerprint(all),
      shard: o.shard,
    };
    output = await EmbedOutput.open({
      out: o.out,
      header: {
        format: outputFormat(o.out)!,
        info,
        metadataKeys: metadataKeys(all),
        rowGroupRows: o.checkpointEvery,
      },
      inputs,
      resume: o.resume,
    });
    const out = output;
    if (o.resume) log(`resume: ${out.mode}`);
    const loadMs = performance.now() - wallStart;
    const batch = embedder.maxBatch;

    // Decode ahead: up to `window` images in flight or waiting, in input order.
    const window = Math.max(2 * batch, 2 * Math.max(1, pool.size));
    const replies = new Map<number, Promise<DecodeReply>>();
    let requested = 0;
    const requestMore = (upTo: number) => {
      while (requested < Math.min(upTo, inputs.length)) {
        const i = requested++;
        replies.set(
          i,
          pool.decode({
            path: inputs[i].path,
            skipHash: out.knownHash(i),
            maxPixels: o.maxPixels,
            exifOrientation: o.exifOrientation,
            preprocessing: embedder.preprocessing,
          }),
        );
      }
    };

    const failures: ImageFailure[] = [];
    const t = { readMs: 0, decodeMs: 0, waitDecodeMs: 0, writeMs: 0 };
    let resumed = 0;
    let embedded = 0;
    let stopped = false;
    const timed = async (write: Promise<void>) => {
      const t0 = performance.now();
      await write;
      t.writeMs += performance.now() - t0;
    };
    const fail = async (i: number, hash: string, reason: string) => {
      failures.push({ path: inputs[i].path, hash, reason });
      await timed(out.fail(i, hash, reason));
      progress.clear();
      console.error(`error: ${inputs[i].path}: ${reason}`);
      if (o.strict) stopped = true;
    };

    // Up to `inFlight` batches embed at once (the engine gives each its own plan); their rows are written
    // in input order as each finishes, so readback and writing hide behind the next batch's GPU work.
    type Chunk = { index: number; hash: string; image: DecodedImage }[];
    const pending: { chunk: Chunk; results: Promise<(Float32Array | Error)[]> }[] = [];
    const settleOldest = async () => {
      const { chunk, results } = pending.shift()!;
      const rows = await results;
      if (stopped) return; // --strict stopped on an earlier batch: the output is abandoned
      const finished: { index: number; hash: string; embedding: Float32Array }[] = [];
      for (const [k, r] of rows.entries()) {
        const { index, hash } = chunk[k];
        if (r instanceof Error) {
          if (!stopped) await fail(index, hash, r.message);
        } else {
          finished.push({ index, hash, embedding: r });
          embedded++;
        }
      }
      await timed(out.add(finished));
      progress.update(chunk.length - rows.filter((r) => r instanceof Error).length);
    };

    let next = 0;
    try {
      while (next < inputs.length && !stopped) {
        // Gather one batch of decoded images (skipping resumed and failed ones).
        const chunk: Chunk = [];
        while (chunk.length < batch && next < inputs.length && !stopped) {
          requestMore(next + window);
          const i = next++;
          const w0 = performance.now();
          const reply = await replies.get(i)!;
          t.waitDecodeMs += performance.now() - w0;
          replies.delete(i);
          t.readMs += reply.readMs;
          t.decodeMs += reply.decodeMs;
          if (reply.skipped) {
            resumed++;
            await timed(out.keep(i));
            progress.skip(1);
          } else if (reply.error !== undefined) {
            await fail(i, reply.hash, reply.error);
            progress.update(1, 1);
          } else {
            const { width, height, rgba, preprocessed } = reply.image!;
            chunk.push({
              index: i,
              hash: reply.hash,
              image: { width, height, rgba, format: "png", preprocessed },
            });
          }
        }
        requestMore(next + window);
        if (!stopped && chunk.length > 0) {
          const results = embedChunk(embedder, chunk.map((c) => c.image));
          results.catch(() => {}); // awaited in order by settleOldest; never an unhandled rejection
          pending.push({ chunk, results });
        }
        while (pending.length >= embedder.inFlight) await settleOldest();
      }
      while (pending.length > 0) await settleOldest();
    } finally {
      // An error (a lost device) leaves later batches running: let them end before the embedder goes.
      await Promise.allSettled(pending.map((p) => p.results));
    }
    const f0 = performance.now();
    const written = stopped ? null : await out.finish();
    if (stopped) await out.stop();
    t.writeMs += performance.now() - f0;
    progress.finish();

    const wallMs = performance.now() - wallStart;
    const embedMs = wallMs - loadMs;
    const gpuTimes = embedder.timings();
    if (written === 0) console.error(`error: no image could be embedded; "${o.out}" not written`);
    log(
      `embedded ${embedded} image(s), ${resumed} resumed, ${failures.length} failed, in ${
        (embedMs / 1000).toFixed(2)
      } s`,
    );
    if (o.json) {
      const share = (ms: number) => Number((ms / embedMs).toFixed(4));
      console.log(JSON.stringify(
        {
          images: inputs.length,
          embedded,
          resumed,
          failed: failures.length,
          rows_written: written,
          stopped_early: stopped,
          errors: failures.map(({ path, reason }) => ({ path, reason })),
          output: o.out,
          format: outputFormat(o.out),
          seconds: Number((embedMs / 1000).toFixed(3)),
          images_per_second: Number((embedded / (embedMs / 1000)).toFixed(2)),
          adapter: embedder.gpu.adapterInfo.description,
          model: embedder.describe(),
          precision: embedder.precision,
          weight_bytes: embedder.weights.bytes,
          tuned_kernels: embedder.tunedChoices.map((c) => ({
            shape: c.key,
            variant: c.variant,
            cached: c.cached,
            ms: c.times,
          })),
          batch,
          workers: pool.size,
          shard: o.shard ? `${o.shard.index}/${o.shard.count}` : null,
          resume_mode: out.mode,
          output_bytes_written: out.bytesWritten,
          profile: {
            load_ms: Math.round(loadMs),
            wall_ms: Math.round(embedMs),
            read_hash_ms: Math.round(t.readMs),
            decode_ms: Math.round(t.decodeMs),
            wait_for_decode_ms: Math.round(t.waitDecodeMs),
            upload_ms: Math.round(gpuTimes.uploadMs),
            gpu_ms: Math.round(gpuTimes.gpuMs),
            write_ms: Math.round(t.writeMs),
            share_of_wall: {
              read_hash: share(t.readMs),
              decode: share(t.decodeMs),
              wait_for_decode: share(t.waitDecodeMs),
              upload: share(gpuTimes.uploadMs),
              gpu: share(gpuTimes.gpuMs),
              write: share(t.writeMs),
            },
          },
        },
        null,
        2,
      ));
    }
    return failures.length > 0 || written === 0 ? 1 : 0;
  } finally {
    output?.close();
    pool.close();
    embedder.dispose();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
