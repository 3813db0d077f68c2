/**
 * The BiT / Derm Foundation embedder: weights in, images in, one embedding row per image out.
 *
 * Images are decoded on the CPU, uploaded once as RGBA8, resized and scaled on the GPU into the model
 * input [N, S, S, 4], and run through a plan built once per batch size. Batches larger than the device's
 * storage-binding limit allows are split.
 *
 * This module is browser compatible (a `string` weights path loads the Deno file loader on demand).
 * @module
 */
import { acquireGpu, type Gpu } from "../engine/device.ts";
import { NonFiniteError } from "../engine/errors.ts";
import { createKernelPipeline, PipelineCache, type Plan } from "../engine/plan.ts";
import { numel } from "../engine/kernel.ts";
import { type DecodedImage, decodeImage, type DecodeImageOptions } from "../engine/image_decode.ts";
import { packPixels, resizeBilinear, resizeBilinearLaunch } from "../kernels/resize_bilinear.ts";
import {
  safetensorsFromBytes,
  safetensorsFromStream,
  safetensorsFromUrl,
  type TensorSource,
} from "../weights/safetensors.ts";
import { proceduralSource } from "../weights/procedural.ts";
import type { BitArchitecture } from "./bit_arch.ts";
import { type BitGraph, bitGraph, bitMacsPerImage, type BitPreset, INPUT_CHANNELS } from "./bit.ts";
import { type BitWeights, uploadBitWeights } from "./bit_weights.ts";
import { buildBitPlan } from "./bit_plan.ts";
import { kernelSpec } from "../kernels/registry.ts";
import type { KernelSpec } from "../engine/kernel.ts";

/** Procedurally generated weights (testdata/FIXTURES_README.md): real work, meaningless embeddings. */
export interface ProceduralWeights {
  /** The architecture to generate. */
  readonly procedural: BitArchitecture;
  /** The seed string. */
  readonly seed: string;
}

/**
 * Where weights come from: a safetensors file's bytes, a stream of them, a URL, a path (Deno only), an
 * opened {@linkcode TensorSource}, or a procedural spec.
 */
export type WeightsInput =
  | Uint8Array
  | ReadableStream<Uint8Array>
  | URL
  | string
  | TensorSource
  | ProceduralWeights;

/** An image: encoded PNG/JPEG bytes (optionally named, for error messages) or decoded pixels. */
export type ImageInput = Uint8Array | { readonly bytes: Uint8Array; readonly name: string } | DecodedImage;

/** Options of {@linkcode createBitEmbedder}. */
export interface BitEmbedderOptions {
  /** Numeric preset; default from the file's metadata or naming (procedural weights: `derm`). */
  preset?: BitPreset;
  /** Model input size S (default 448 for `derm`, 224 for `bit`). */
  size?: number;
  /** Most images per GPU submission (default: what the storage-binding limit allows, at most 16). */
  maxBatch?: number;
  /** A device to use (default: acquire one; it is destroyed by `dispose` only when acquired here). */
  gpu?: Gpu;
  /** Weight loading progress: bytes done and total. */
  onLoadProgress?: (done: number, total: number) => void;
  /** Image decoding options (pixel limit, JPEG decoder). */
  decode?: DecodeImageOptions;
  /** Convolution variant by name (default `conv2d_tiled`; see `kernels/registry.ts`). */
  convVariant?: string;
  /**
   * On a non-finite embedding, rerun the batch with a check after every node so the NonFiniteError
   * names the first layer whose output held NaN or infinity (default false).
   */
  locateNonFinite?: boolean;
}

const MAX_DEFAULT_BATCH = 16;
const PLANS_KEPT = 2;

// Not a literal, so that bundlers and the browser type-check leave the Deno file loader out of the graph.
const DENO_FILE_LOADER = "../weights/safetensors_deno.ts";

async function openFile(path: string): Promise<TensorSource> {
  const loader: { openSafetensorsFile(path: string): Promise<TensorSource> } = await import(DENO_FILE_LOADER);
  const { openSafetensorsFile } = loader;
  return await openSafetensorsFile(path);
}

async function openWeights(input: WeightsInput): Promise<TensorSource> {
  if (input instanceof Uint8Array) return safetensorsFromBytes(input);
  if (input instanceof URL) {
    if (input.protocol === "file:") return await openFile(decodeURIComponent(input.pathname));
    return await safetensorsFromUrl(input);
  }
  if (typeof input === "string") {
    if (/^https?:\/\//.test(input)) return await safetensorsFromUrl(input);
    return await openFile(input);
  }
  if (input instanceof ReadableStream) return await safetensorsFromStream(input, "<stream>");
  if ("procedural" in input) return proceduralSource(input.procedural, input.seed, { preset: "derm" });
  return input;
}

/**
 * Loads weights onto a GPU and returns an embedder.
 *
 * @param weights Where the weights come from.
 * @param options Preset, input size, batch and device.
 * @returns The embedder; call `dispose()` when done.
 * @example
 * ```ts
 * const embedder = await createBitEmbedder("derm_foundation.safetensors");
 * const [row] = await embedder.embed([await Deno.readFile("lesion.png")]);
 * embedder.dispose();
 * ```
 */
export async function createBitEmbedder(
  weights: WeightsInput,
  options: BitEmbedderOptions = {},
): Promise<BitEmbedder> {
  const ownsGpu = options.gpu === undefined;
  const gpu = options.gpu ?? await acquireGpu();
  try {
    const source = await openWeights(weights);
    const resident = await uploadBitWeights(gpu, source, {
      preset: options.preset,
      onProgress: options.onLoadProgress,
    });
    try {
      return new BitEmbedder(gpu, resident, ownsGpu, options);
    } catch (e) {
      resident.dispose();
      throw e;
    }
  } catch (e) {
    if (ownsGpu) gpu.destroy();
    throw e;
  }
}

interface BatchPlan {
  /** Batch size and kept checkpoints: plans with the same key are interchangeable. */
  readonly key: string;
  readonly graph: BitGraph;
  readonly plan: Plan;
  readonly input: ImageInputStage;
}

/**
 * Resize stage: one pixel buffer, uniform buffer and bind group per batch slot, made once per plan and
 * remade only when an image larger than every earlier one arrives.
 */
class ImageInputStage {
  #device: GPUDevice;
  #pipeline: GPUComputePipeline;
  #target: GPUBuffer;
  #slots: { pixels: GPUBuffer; uniforms: GPUBuffer; bindGroup: GPUBindGroup; words: number }[] = [];

  constructor(device: GPUDevice, pipeline: GPUComputePipeline, target: GPUBuffer) {
    this.#device = device;
    this.#pipeline = pipeline;
    this.#target = target;
  }

  /** Uploads the images and returns a function that encodes their resize dispatches. */
  write(images: readonly DecodedImage[], size: number, batch: number, preset: BitPreset) {
    const device = this.#device;
    const launches = images.map((image, n) =>
      resizeBilinearLaunch(
        { srcWidth: image.width, srcHeight: image.height, size, n, batch, preset },
        device.limits,
      )
    );
    images.forEach((image, n) => {
      const words = image.width * image.height;
      let slot = this.#slots[n];
      if (!slot || slot.words < words) {
        slot?.pixels.destroy();
        slot?.uniforms.destroy();
        const pixels = device.createBuffer({
          label: `input/slot${n}/pixels`,
          size: words * 4,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
        });
        const uniforms = device.createBuffer({
          label: `input/slot${n}/uniforms`,
          size: launches[n].uniforms.byteLength,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        });
        const bindGroup = device.createBindGroup({
          label: `input/slot${n}/resize_bilinear`,
          layout: this.#pipeline.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: pixels } },
            { binding: 1, resource: { buffer: this.#target } },
            { binding: 2, resource: { buffer: uniforms } },
          ],
        });
        slot = this.#slots[n] = { pixels, uniforms, bindGroup, words };
      }
      device.queue.writeBuffer(slot.pixels, 0, packPixels(image));
      device.queue.writeBuffer(slot.uniforms, 0, launches[n].uniforms);
    });
    return (encoder: GPUCommandEncoder) => {
      const pass = encoder.beginComputePass({ label: "input/resize_bilinear" });
      pass.setPipeline(this.#pipeline);
      launches.forEach((launch, n) => {
        pass.setBindGroup(0, this.#slots[n].bindGroup);
        pass.dispatchWorkgroups(...launch.workgroups);
      });
      pass.end();
    };
  }

  dispose(): void {
    for (const s of this.#slots) {
      s.pixels.destroy();
      s.uniforms.destroy();
    }
    this.#slots = [];
  }
}

/** Computes embeddings with resident weights. Create with {@linkcode createBitEmbedder}. */
export class BitEmbedder {
  /** The device. */
  readonly gpu: Gpu;
  /** The resident weights (architecture, preset, naming). */
  readonly weights: BitWeights;
  /** Numeric preset. */
  readonly preset: BitPreset;
  /** Model input size S. */
  readonly size: number;
  /** Floats per embedding (the last stage's channels: 6144 for Derm Foundation). */
  readonly embeddingSize: number;
  /** Most images per GPU submission. */
  readonly maxBatch: number;
  /** Multiply-accumulates per image. */
  readonly macsPerImage: number;
  #ownsGpu: boolean;
  #cache: PipelineCache;
  #plans: BatchPlan[] = [];
  #resize: GPUComputePipeline;
  #decode: DecodeImageOptions;
  #conv: KernelSpec | undefined;
  #locateNonFinite: boolean;
  #disposed = false;
  #timings = { uploadMs: 0, gpuMs: 0, images: 0 };

  /** Use {@linkcode createBitEmbedder}. */
  constructor(gpu: Gpu, weights: BitWeights, ownsGpu: boolean, options: BitEmbedderOptions) {
    this.gpu = gpu;
    this.weights = weights;
    this.preset = weights.preset;
    this.size = options.size ?? (this.preset === "derm" ? 448 : 224);
    const arch = weights.architecture;
    this.embeddingSize = arch.stages[arch.stages.length - 1].channels;
    this.#ownsGpu = ownsGpu;
    this.#cache = new PipelineCache(gpu.device);
    this.#resize = createKernelPipeline(gpu.device, resizeBilinear);
    this.#decode = options.decode ?? {};
    this.#locateNonFinite = options.locateNonFinite ?? false;
    this.#conv = options.convVariant === undefined ? undefined : kernelSpec(options.convVariant);
    if (this.#conv && !this.#conv.name.startsWith("conv2d")) {
      throw new TypeError(`Cannot use "${options.convVariant}" as the convolution: not a conv2d variant`);
    }
    const one = bitGraph(arch, { preset: this.preset, size: this.size, batch: 1 });
    this.macsPerImage = bitMacsPerImage(one);
    const perImage = Math.max(...[...one.tensors.values()].map((s) => numel(s) * 4));
    const fits = Math.floor(gpu.limits.maxStorageBufferBindingSize / perImage);
    if (fits < 1) {
      throw new RangeError(
        `Cannot run size ${this.size}: the largest activation needs ${perImage} bytes, over ` +
          `maxStorageBufferBindingSize ${gpu.limits.maxStorageBufferBindingSize}`,
      );
    }
    if (options.maxBatch !== undefined && options.maxBatch > fits) {
      throw new RangeError(
        `Cannot use batch ${options.maxBatch}: at size ${this.size} one image's largest activation is ${perImage} ` +
          `bytes and maxStorageBufferBindingSize is ${gpu.limits.maxStorageBufferBindingSize}, so at most ${fits} fit`,
      );
    }
    this.maxBatch = options.maxBatch ?? Math.min(fits, MAX_DEFAULT_BATCH);
  }

  /** One line: architecture, preset, size, parameters, batch. */
  describe(): string {
    const a = this.weights.architecture;
    return `BiT units ${a.stages.map((s) => s.units).join("/")}, widths ${
      a.stages.map((s) => s.channels).join("/")
    }, ` +
      `stem ${a.stemChannels}; preset ${this.preset}; input ${this.size}x${this.size}; ` +
      `${this.weights.parameters.toLocaleString("en-US")} parameters from ${this.weights.file}; ` +
      `${(this.macsPerImage / 1e9).toFixed(1)} GMAC/image; batch up to ${this.maxBatch}`;
  }

  async #planFor(batch: number, keep: readonly string[] = []): Promise<BatchPlan> {
    const key = `${batch}/${keep.join(",")}`;
    const found = this.#plans.findIndex((p) => p.key === key);
    if (found >= 0) {
      const [p] = this.#plans.splice(found, 1);
      this.#plans.unshift(p);
      return p;
    }
    while (this.#plans.length >= PLANS_KEPT) {
      const old = this.#plans.pop()!;
      old.plan.dispose();
      old.input.dispose();
    }
    const graph = bitGraph(this.weights.architecture, { preset: this.preset, size: this.size, batch });
    const label = `bit-${this.size}-b${batch}${keep.length > 0 ? "+checkpoints" : ""}`;
    const plan = await buildBitPlan(
      { device: this.gpu.device, limits: this.gpu.limits, lostError: this.gpu.lostError },
      graph,
      this.weights.buffers,
      { label, keep: keep.map((k) => graph.checkpoints[k] ?? k), cache: this.#cache, conv: this.#conv },
    );
    const input = new ImageInputStage(this.gpu.device, this.#resize, plan.bufferOf(graph.input));
    const entry = { key, graph, plan, input };
    this.#plans.unshift(entry);
    return entry;
  }

  /** Decodes encoded images (PNG/JPEG); decoded ones pass through. */
  async #decodeAll(images: readonly ImageInput[]): Promise<DecodedImage[]> {
    return await Promise.all(images.map((image, i) => {
      if (image instanceof Uint8Array) return decodeImage(image, `image ${i}`, this.#decode);
      if ("bytes" in image) return decodeImage(image.bytes, image.name, this.#decode);
      return image;
    }));
  }

  /**
   * Embeds images: one row of {@linkcode BitEmbedder.embeddingSize} floats per image, in input order.
   *
   * @param images Encoded PNG/JPEG bytes or decoded pixels.
   * @returns One Float32Array per image.
   * @throws {ImageError} For an image that cannot be decoded (naming it).
   * @throws {NonFiniteError} When an embedding holds NaN or infinity.
   */
  async embed(images: readonly ImageInput[]): Promise<Float32Array[]> {
    this.#checkUsable();
    const decoded = await this.#decodeAll(images);
    const rows: Float32Array[] = [];
    for (let start = 0; start < decoded.length; start += this.maxBatch) {
      const chunk = decoded.slice(start, start + this.maxBatch);
      const { graph, plan, input } = await this.#planFor(chunk.length);
      const t0 = performance.now();
      const prepare = input.write(chunk, this.size, chunk.length, this.preset);
      const t1 = performance.now();
      const out = await plan.run({}, prepare);
      this.#timings.uploadMs += t1 - t0;
      this.#timings.gpuMs += performance.now() - t1;
      this.#timings.images += chunk.length;
      try {
        rows.push(...this.#rows(out.get(graph.output)!, chunk.length, start));
      } catch (e) {
        if (!(e instanceof NonFiniteError) || !this.#locateNonFinite) throw e;
        const layers = await this.firstNonFiniteLayers(chunk);
        throw new NonFiniteError(
          e.image,
          layers[e.image - start],
          `${e.message} (first non-finite output: ${layers[e.image - start] || "none found"})`,
        );
      }
    }
    return rows;
  }

  /**
   * Runs `images` (at most `maxBatch`) through a diagnostic plan that checks every node's output for NaN
   * and infinity, and names the first node whose output is non-finite for each image ("" when none is).
   * Slower than `embed`: for explaining a failure, not for production.
   */
  async firstNonFiniteLayers(images: readonly ImageInput[]): Promise<string[]> {
    this.#checkUsable();
    const decoded = await this.#decodeAll(images);
    const n = decoded.length;
    if (n < 1 || n > this.maxBatch) {
      throw new RangeError(`Cannot diagnose ${n} images: expected 1 to ${this.maxBatch}`);
    }
    const device = this.gpu.device;
    const graph = bitGraph(this.weights.architecture, { preset: this.preset, size: this.size, batch: n });
    const stride = Math.ceil((4 * n) / this.gpu.limits.minStorageBufferOffsetAlignment) *
      this.gpu.limits.minStorageBufferOffsetAlignment;
    const bytes = stride * graph.nodes.length;
    const flags = device.createBuffer({
      label: "nonfinite flags",
      size: bytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    });
    const read = device.createBuffer({
      label: "nonfinite flags/read",
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const plan = await buildBitPlan(this.gpu, graph, this.weights.buffers, {
      label: `bit-${this.size}-b${n}+nonfinite`,
      cache: this.#cache,
      conv: this.#conv,
      nonfiniteFlags: { buffer: flags, stride },
    });
    const input = new ImageInputStage(device, this.#resize, plan.bufferOf(graph.input));
    try {
      await plan.run({}, input.write(decoded, this.size, n, this.preset));
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(flags, 0, read, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const values = new Uint32Array(read.getMappedRange().slice(0));
      read.unmap();
      return decoded.map((_, i) => {
        const k = graph.nodes.findIndex((_, k) => values[(k * stride) / 4 + i] !== 0);
        return k < 0 ? "" : graph.nodes[k].name;
      });
    } finally {
      plan.dispose();
      input.dispose();
      flags.destroy();
      read.destroy();
    }
  }

  /**
   * Embeds model inputs given directly, bypassing decode and resize: `x` is f32 NHWC [N, S, S, 3], already
   * scaled. For parity tests against reference inputs.
   *
   * @param x The inputs.
   * @param options `checkpoints`: also return these checkpoint tensors (`stem`, `stage1`..`stage4`,
   * `final_norm`) as NHWC f32.
   */
  async embedInputs(
    x: Float32Array,
    options: { checkpoints?: readonly string[] } = {},
  ): Promise<{ rows: Float32Array[]; checkpoints: Map<string, Float32Array> }> {
    this.#checkUsable();
    const s = this.size;
    const n = x.length / (s * s * 3);
    if (!Number.isInteger(n) || n < 1 || n > this.maxBatch) {
      throw new TypeError(
        `Cannot embed inputs: expected N x ${s} x ${s} x 3 floats with N <= ${this.maxBatch}, got ${x.length}`,
      );
    }
    const padded = new Float32Array(n * s * s * INPUT_CHANNELS);
    for (let p = 0; p < n * s * s; p++) {
      for (let c = 0; c < 3; c++) padded[p * INPUT_CHANNELS + c] = x[p * 3 + c];
    }
    const keep = options.checkpoints ?? [];
    const { graph, plan } = await this.#planFor(n, keep);
    const out = await plan.run({ [graph.input]: padded });
    const checkpoints = new Map<string, Float32Array>();
    for (const name of keep) {
      const tensor = graph.checkpoints[name] ?? name;
      checkpoints.set(name, new Float32Array(await plan.readTensor(tensor)));
    }
    return { rows: this.#rows(out.get(graph.output)!, n, 0), checkpoints };
  }

  #rows(bytes: ArrayBuffer, n: number, first: number): Float32Array[] {
    const all = new Float32Array(bytes);
    const d = this.embeddingSize;
    const rows: Float32Array[] = [];
    for (let i = 0; i < n; i++) {
      const row = all.slice(i * d, (i + 1) * d);
      const bad = row.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new NonFiniteError(
          first + i,
          "",
          `Cannot embed image ${first + i}: embedding element ${bad} is ${row[bad]}`,
        );
      }
      rows.push(row);
    }
    return rows;
  }

  #checkUsable(): void {
    if (this.#disposed) throw new TypeError("Cannot embed: the embedder was disposed");
    const lost = this.gpu.lostError();
    if (lost) throw lost;
  }

  /**
   * Time spent by {@linkcode BitEmbedder.embed} so far, summed over calls: `uploadMs` packing and queueing
   * the pixels (`writeBuffer`), `gpuMs` from submit to the embeddings read back (the upload's copy, the
   * resize and the network), `images` embedded. For `--json` profiles.
   */
  timings(): { uploadMs: number; gpuMs: number; images: number } {
    return { ...this.#timings };
  }

  /** Frees plans and weights, and the device when the embedder acquired it. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const p of this.#plans) {
      p.plan.dispose();
      p.input.dispose();
    }
    this.#plans = [];
    this.weights.dispose();
    if (this.#ownsGpu) this.gpu.destroy();
  }
}
