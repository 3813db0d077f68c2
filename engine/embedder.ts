/**
 * The embedder runtime, the same for every model family: weights in (through the model's recipes), images
 * in, one embedding row per image out.
 *
 * Images are decoded on the CPU, uploaded once as RGBA8, preprocessed on the GPU (after Pillow's resample
 * on the CPU where the model asks for it) into the model input [N, S, S, 4], and run through a plan built
 * once per batch size (the two most recent are kept). Batches larger than the device's storage-binding
 * limit allows are split. A non-finite embedding can be traced to the first layer whose output holds NaN
 * or infinity, by a diagnostic plan that checks every node.
 *
 * At precision `f16` (adapters with `shader-f16`) weights and activations are stored as f16 and every kernel
 * runs its f16 flavour, with f32 arithmetic; the model input, the first layer's weights and the layers the
 * model keeps f32 stay f32, and the embedding is written as f32 by the last kernel (`engine/precision.ts`).
 *
 * The kernels come in through {@linkcode RuntimeKernels} (the lowering table, the resize and check
 * kernels from `kernels/registry.ts`), the model through a {@linkcode ModelDefinition}: the engine imports
 * no kernel and no model.
 *
 * This module is browser compatible.
 * @module
 */
import { acquireGpu, type Gpu } from "./device.ts";
import { NonFiniteError } from "./errors.ts";
import { numel } from "./kernel.ts";
import type { Graph, GraphNode } from "./graph.ts";
import type { KernelSpec } from "./kernel.ts";
import { graphFlops, lowerGraph, loweringDevice, type LoweringTable } from "./lowering.ts";
import type { ModelDefinition, ModelFacts } from "./model.ts";
import { createKernelPipeline, PipelineCache, type Plan } from "./plan.ts";
import { type DecodedImage, decodeImage, type DecodeImageOptions } from "./image_decode.ts";
import { type InputResizeKernel, InputStage } from "./input_stage.ts";
import type { Preprocessing } from "./preprocessing.ts";
import {
  checkPrecision,
  f32Weights,
  graphDtypes,
  largestActivationBytes,
  type Precision,
  widenFloat16,
} from "./precision.ts";
import { type NonfiniteKernel, type ResidentWeights, uploadWeights } from "./weights_upload.ts";
import type { TensorSource } from "./tensor_source.ts";
import { MemoryTuningCache, type TunedChoice, tuneGraph, type TuningCache, tuningScope } from "./autotune.ts";

/** The kernels the runtime needs, from `kernels/registry.ts`. */
export interface RuntimeKernels {
  /** Op entries for lowering graphs. */
  readonly lowerings: LoweringTable;
  /** The input stage's resize kernel. */
  readonly resize: InputResizeKernel;
  /** The NaN/infinity check (weights at load, and the diagnostic plan). */
  readonly nonfinite: NonfiniteKernel;
}

/** An image: encoded PNG/JPEG bytes (optionally named, for error messages) or decoded pixels. */
export type ImageInput = Uint8Array | { readonly bytes: Uint8Array; readonly name: string } | DecodedImage;

/** Options of {@linkcode createEmbedderRuntime}. */
export interface RuntimeOptions {
  /** Model input size S (default: the model's). */
  size?: number;
  /** Most images per GPU submission (default: what the storage-binding limit allows, at most 16). */
  maxBatch?: number;
  /** A device to use (default: acquire one; it is destroyed by `dispose` only when acquired here). */
  gpu?: Gpu;
  /** Weight loading progress: bytes done and total. */
  onLoadProgress?: (done: number, total: number) => void;
  /** Image decoding options (pixel limit, JPEG decoder). */
  decode?: DecodeImageOptions;
  /** Kernel variants to force by name wherever they apply (e.g. `conv2d_direct`, `conv2d_direct_f16`). */
  kernels?: readonly string[];
  /**
   * Storage of weights and activations (default `f32`). `f16` halves the weights' GPU memory and the
   * activations' traffic, with f32 arithmetic in every kernel and an f32 embedding; the first layer's
   * weights and the layers a model keeps f32 (`keepF32AtF16`: BiT's stem and first stage) stay f32. It
   * needs an adapter with `shader-f16`, and is a RangeError naming the adapter without it.
   */
  precision?: Precision;
  /**
   * On a non-finite embedding, rerun the batch with a check after every node so the NonFiniteError
   * names the first layer whose output held NaN or infinity (default false).
   */
  locateNonFinite?: boolean;
  /**
   * Choose kernel variants by timing them on this adapter (`engine/autotune.ts`): `auto` (the default) on
   * GPUs but not on CPU rasterisers (llvmpipe, lavapipe, SwiftShader), whose defaults are the measured
   * best; `always`; `off`. Forced `kernels` win over tuned choices.
   */
  tune?: "auto" | "always" | "off";
  /** Where tuned choices are kept between runs (default: memory, for this embedder only). */
  tuningCache?: TuningCache;
  /** Engine version in the tuning cache's keys (a new version tunes again). */
  engineVersion?: string;
  /**
   * Batches in flight (default 2): each has its own plan, so batch k + 1 is uploaded and computed while
   * batch k's embeddings are read back, which hides the readback latency (about 10 ms in Deno).
   */
  inFlight?: number;
}

const MAX_DEFAULT_BATCH = 16;
/** Batch sizes (plan keys) whose plans are kept; older ones are freed. */
const PLAN_KEYS_KEPT = 2;
/** Batches in flight by default: one computing while the previous one's embeddings are read back. */
const DEFAULT_IN_FLIGHT = 2;

/**
 * Uploads a model's weights and returns an embedder.
 *
 * @param model The model definition (from a family in `models/`).
 * @param source Its opened weights; closed once read.
 * @param kernels The runtime kernels.
 * @param options Size, batch, device, progress, forced variants.
 * @returns The embedder; call `dispose()` when done.
 * @throws {WeightsError} For a missing, misshapen or non-finite tensor (or one beyond f16's range at f16).
 * @throws {RangeError} For a size the model refuses, a batch over the device's limits, or precision `f16`
 *   on an adapter without `shader-f16`.
 */
export async function createEmbedderRuntime(
  model: ModelDefinition,
  source: TensorSource,
  kernels: RuntimeKernels,
  options: RuntimeOptions = {},
): Promise<Embedder> {
  const size = options.size ?? model.defaultSize;
  const precision = options.precision ?? "f32";
  const ownsGpu = options.gpu === undefined;
  let gpu: Gpu | undefined;
  try {
    model.checkSize(size);
    gpu = options.gpu ?? await acquireGpu();
    checkPrecision(precision, gpu.features, gpu.adapterInfo.description);
  } catch (e) {
    if (ownsGpu) gpu?.destroy();
    await source.close();
    throw e;
  }
  try {
    // uploadWeights closes the source, whatever happens.
    const weights = await uploadWeights(gpu, source, model.weights, kernels.nonfinite, {
      onProgress: options.onLoadProgress,
      precision,
      keepF32: precision === "f16" ? f16PlanF32Weights(model, size) : undefined,
    });
    try {
      return new Embedder(gpu, model, weights, kernels, ownsGpu, { ...options, size, precision });
    } catch (e) {
      weights.dispose();
      throw e;
    }
  } catch (e) {
    if (ownsGpu) gpu.destroy();
    throw e;
  }
}

/** The weights an f16 plan of `model` at `size` keeps f32 (`f32Weights`: the batch does not matter). */
function f16PlanF32Weights(model: ModelDefinition, size: number): Set<string> {
  const graph = model.graph(size, 1);
  return f32Weights(graph, graphDtypes(graph, "f16", model.keepF32AtF16));
}

interface BatchPlan {
  /** Batch size and kept checkpoints: plans with the same key are interchangeable. */
  readonly key: string;
  readonly graph: Graph;
  readonly plan: Plan;
  readonly input: InputStage;
  /** Whether a batch holds it. */
  busy: boolean;
}

/** Computes embeddings with resident weights. Create with {@linkcode createEmbedderRuntime}. */
export class Embedder {
  /** The device. */
  readonly gpu: Gpu;
  /** The model definition. */
  readonly model: ModelDefinition;
  /** The resident weights. */
  readonly weights: ResidentWeights;
  /** Model input size S. */
  readonly size: number;
  /** The preprocessing at that size. */
  readonly preprocessing: Preprocessing;
  /** Floats per embedding. */
  readonly embeddingSize: number;
  /** Most images per GPU submission. */
  readonly maxBatch: number;
  /** Floating-point operations per image (2 per multiply-add). */
  readonly flopsPerImage: number;
  /** How weights and activations are stored (`f32` or `f16`). */
  readonly precision: Precision;
  #kernels: RuntimeKernels;
  #ownsGpu: boolean;
  #cache: PipelineCache;
  #plans: BatchPlan[] = [];
  #resize: GPUComputePipeline;
  #decode: DecodeImageOptions;
  #forced: ReadonlySet<string>;
  #locateNonFinite: boolean;
  #tune: boolean;
  #tuningCache: TuningCache;
  #tuningScope: string;
  #tuned: TunedChoice[] = [];
  #inFlight: number;
  /** Resolves when a plan is released; replaced each time. */
  #released: { promise: Promise<void>; resolve: () => void } = Promise.withResolvers<void>();
  #disposed = false;
  #timings = { uploadMs: 0, gpuMs: 0, images: 0 };

  /** Use {@linkcode createEmbedderRuntime}. */
  constructor(
    gpu: Gpu,
    model: ModelDefinition,
    weights: ResidentWeights,
    kernels: RuntimeKernels,
    ownsGpu: boolean,
    options: RuntimeOptions & { size: number },
  ) {
    this.gpu = gpu;
    this.precision = options.precision ?? "f32";
    if (weights.dtype !== this.precision) {
      throw new TypeError(
        `Cannot run precision ${this.precision}: the weights are resident as ${weights.dtype}`,
      );
    }
    this.model = model;
    this.weights = weights;
    this.size = options.size;
    this.preprocessing = model.preprocessing(this.size);
    this.embeddingSize = model.embeddingSize;
    this.#kernels = kernels;
    this.#ownsGpu = ownsGpu;
    this.#cache = new PipelineCache(gpu.device);
    this.#resize = createKernelPipeline(gpu.device, kernels.resize.spec);
    this.#decode = options.decode ?? {};
    this.#locateNonFinite = options.locateNonFinite ?? false;
    this.#forced = new Set(options.kernels ?? []);
    this.#inFlight = options.inFlight ?? DEFAULT_IN_FLIGHT;
    if (!Number.isInteger(this.#inFlight) || this.#inFlight < 1 || this.#inFlight > 8) {
      throw new RangeError(`Cannot keep ${options.inFlight} batches in flight: expected 1 to 8`);
    }
    const tune = options.tune ?? "auto";
    this.#tune = tune === "always" || (tune === "auto" && !gpu.cpuAdapter);
    this.#tuningCache = options.tuningCache ?? new MemoryTuningCache();
    this.#tuningScope = tuningScope(gpu.adapterInfo, options.engineVersion ?? "derm-webgpu");
    const one = model.graph(this.size, 1);
    this.flopsPerImage = graphFlops(one, kernels.lowerings);
    const perImage = largestActivationBytes(one, this.precision, model.keepF32AtF16);
    const limit = gpu.limits.maxStorageBufferBindingSize;
    const fits = Math.floor(limit / perImage);
    if (fits < 1) {
      throw new RangeError(
        `Cannot run size ${this.size}: the largest activation needs ${perImage} bytes, over ` +
          `maxStorageBufferBindingSize ${limit}`,
      );
    }
    if (options.maxBatch !== undefined && options.maxBatch > fits) {
      throw new RangeError(
        `Cannot use batch ${options.maxBatch}: at size ${this.size} one image's largest activation is ${perImage} ` +
          `bytes and maxStorageBufferBindingSize is ${limit}, so at most ${fits} fit`,
      );
    }
    this.maxBatch = options.maxBatch ?? Math.min(fits, MAX_DEFAULT_BATCH);
  }

  /** What output files record about the model. */
  get facts(): ModelFacts {
    return {
      family: this.model.family,
      architecture: this.model.architecture,
      preset: this.model.preset,
      size: this.size,
      embeddingSize: this.embeddingSize,
    };
  }

  /** One line: architecture, preset, size, parameters, work per image, batch. */
  describe(): string {
    const p = this.preprocessing;
    const resize = p.resize === "pillow-bilinear"
      ? `Pillow resize ${p.resizeTo}, crop ${p.size}`
      : "bilinear";
    return `${this.model.architecture}; preset ${this.model.preset} (${resize}); input ${this.size}x${this.size}; ` +
      `${this.weights.parameters.toLocaleString("en-US")} parameters from ${this.weights.file}; ` +
      `precision ${this.precision} (weights ${(this.weights.bytes / 2 ** 20).toFixed(1)} MiB); ` +
      `${(this.flopsPerImage / 2e9).toFixed(1)} GMAC/image; batch up to ${this.maxBatch}`;
  }

  /** The variants chosen by timing so far (empty when tuning is off), and whether each came from the cache. */
  /** Batches that may compute at once (each with its own plan): the `inFlight` option. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Kernel variants chosen by tuning (or taken from the cache) for this embedder's shapes. */
  get tunedChoices(): readonly TunedChoice[] {
    return this.#tuned;
  }

  /** The graph for a batch, as planned (for inspection and benchmarks). */
  graph(batch: number): Graph {
    return this.model.graph(this.size, batch);
  }

  /**
   * A free plan for `batch` (and `keep`), marked busy: an idle one, else a new one while fewer than
   * `inFlight` exist, else the next one released. Plans of batch sizes not used lately are freed.
   */
  async #acquire(batch: number, keep: readonly string[] = []): Promise<BatchPlan> {
    const key = `${batch}/${keep.join(",")}`;
    for (;;) {
      this.#checkUsable();
      const mine = this.#plans.filter((p) => p.key === key);
      const free = mine.find((p) => !p.busy);
      if (free) {
        free.busy = true;
        // Most recently used first, for the eviction below.
        this.#plans = [free, ...this.#plans.filter((p) => p !== free)];
        return free;
      }
      if (mine.length < this.#inFlight) {
        const keys = [...new Set(this.#plans.map((p) => p.key))];
        if (!keys.includes(key) && keys.length >= PLAN_KEYS_KEPT) {
          const oldest = keys[keys.length - 1];
          for (const p of this.#plans.filter((p) => p.key === oldest && !p.busy)) {
            p.plan.dispose();
            p.input.dispose();
            this.#plans = this.#plans.filter((q) => q !== p);
          }
        }
        const entry = await this.#buildPlan(batch, keep);
        entry.busy = true;
        this.#plans.unshift(entry);
        return entry;
      }
      await this.#released.promise;
    }
  }

  #release(p: BatchPlan): void {
    p.busy = false;
    const released = this.#released;
    this.#released = Promise.withResolvers<void>();
    released.resolve();
  }

  /**
   * A new plan for `batch`, lowered as {@linkcode embed}'s are (this device's variants, the forced kernels,
   * the tuned choices when tuning is on, timing shapes not seen before), with no input stage: for
   * benchmarks that time the network with the input already on the GPU. The caller disposes it.
   */
  async buildPlan(batch: number, cache?: PipelineCache): Promise<{ graph: Graph; plan: Plan }> {
    this.#checkUsable();
    return await this.#lower(batch, [], undefined, cache ?? this.#cache);
  }

  async #lower(
    batch: number,
    keep: readonly string[],
    nonfiniteFlags: { buffer: GPUBuffer; stride: number } | undefined,
    cache: PipelineCache,
  ): Promise<{ graph: Graph; plan: Plan }> {
    const graph = this.model.graph(this.size, batch, { checkpoints: keep.length > 0 });
    const device = loweringDevice(this.gpu);
    const storage = {
      dtypes: graphDtypes(graph, this.precision, this.model.keepF32AtF16),
      weightDtype: this.weights.dtype,
    };
    let pick: ((node: GraphNode, fitting: readonly KernelSpec[]) => string | undefined) | undefined;
    if (this.#tune) {
      const tuned = await tuneGraph(
        { ...device, limits: this.gpu.limits, device: this.gpu.device, lostError: this.gpu.lostError },
        graph,
        this.#kernels.lowerings,
        this.weights.buffers,
        { cache: this.#tuningCache, scope: this.#tuningScope, ...storage },
      );
      pick = tuned.pick;
      this.#tuned.push(...tuned.choices);
    }
    const label = `${this.model.family}-${this.size}-b${batch}${this.precision === "f16" ? "-f16" : ""}${
      keep.length > 0 ? "+checkpoints" : ""
    }${nonfiniteFlags ? "+nonfinite" : ""}`;
    const plan = await lowerGraph(
      graph,
      this.#kernels.lowerings,
      this.weights.buffers,
      device,
      {
        label,
        keep: keep.map((k) => graph.checkpoints[k] ?? k),
        forcedKernels: this.#forced,
        pick,
        nonfiniteFlags,
        ...storage,
      },
    ).build(
      { device: this.gpu.device, limits: this.gpu.limits, lostError: this.gpu.lostError },
      cache,
    );
    return { graph, plan };
  }

  async #buildPlan(
    batch: number,
    keep: readonly string[],
    nonfiniteFlags?: { buffer: GPUBuffer; stride: number },
  ): Promise<BatchPlan> {
    const { graph, plan } = await this.#lower(batch, keep, nonfiniteFlags, this.#cache);
    const input = new InputStage(
      this.gpu.device,
      { kernel: this.#kernels.resize, pipeline: this.#resize },
      plan.bufferOf(graph.input),
      this.preprocessing,
    );
    return { key: `${batch}/${keep.join(",")}`, graph, plan, input, busy: false };
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
   * Embeds images: one row of {@linkcode Embedder.embeddingSize} floats per image, in input order.
   *
   * @param images Encoded PNG/JPEG bytes or decoded pixels.
   * @returns One Float32Array per image.
   * @throws {ImageError} For an image that cannot be decoded (naming it).
   * @throws {NonFiniteError} When an embedding holds NaN or infinity.
   */
  async embed(images: readonly ImageInput[]): Promise<Float32Array[]> {
    this.#checkUsable();
    const decoded = await this.#decodeAll(images);
    // Every batch at once: #acquire holds back all but `inFlight` of them, so batch k + 1 computes while
    // batch k is read back.
    const batches: Promise<Float32Array[]>[] = [];
    for (let start = 0; start < decoded.length; start += this.maxBatch) {
      batches.push(this.#embedBatch(decoded.slice(start, start + this.maxBatch), start));
    }
    const settled = await Promise.allSettled(batches);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    return settled.flatMap((r) => (r as PromiseFulfilledResult<Float32Array[]>).value);
  }

  /** One batch: a free plan, upload, run, read back, rows (images `start`.. of the call). */
  async #embedBatch(chunk: DecodedImage[], start: number): Promise<Float32Array[]> {
    const p = await this.#acquire(chunk.length);
    let out: Map<string, ArrayBuffer>;
    try {
      const t0 = performance.now();
      const prepare = p.input.write(chunk, chunk.length);
      const t1 = performance.now();
      out = await p.plan.run({}, prepare);
      this.#timings.uploadMs += t1 - t0;
      this.#timings.gpuMs += performance.now() - t1;
      this.#timings.images += chunk.length;
    } finally {
      this.#release(p);
    }
    try {
      return this.#rows(this.#floats(p, p.graph.output, out.get(p.graph.output)!), chunk.length, start);
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
    const nodes = this.model.graph(this.size, n).nodes;
    const align = this.gpu.limits.minStorageBufferOffsetAlignment;
    const stride = Math.ceil((4 * n) / align) * align;
    const bytes = stride * nodes.length;
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
    let built: BatchPlan | undefined;
    try {
      built = await this.#buildPlan(n, [], { buffer: flags, stride });
      await built.plan.run({}, built.input.write(decoded, n));
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(flags, 0, read, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const values = new Uint32Array(read.getMappedRange().slice(0));
      read.unmap();
      return decoded.map((_, i) => {
        const k = nodes.findIndex((_, k) => values[(k * stride) / 4 + i] !== 0);
        return k < 0 ? "" : nodes[k].name;
      });
    } finally {
      built?.plan.dispose();
      built?.input.dispose();
      flags.destroy();
      read.destroy();
    }
  }

  /**
   * Embeds model inputs given directly, bypassing decode and preprocessing: `x` is f32 NHWC [N, S, S, 3],
   * already scaled. For parity tests against reference inputs.
   *
   * @param x The inputs.
   * @param options `checkpoints`: also return these tensors (the graph's checkpoint names, e.g. `stem`,
   *   `stage1`, `block0`, `final_norm`, or any tensor name) as f32 (widened exactly from f16 at precision
   *   f16).
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
    const padded = new Float32Array(n * s * s * 4);
    for (let p = 0; p < n * s * s; p++) {
      for (let c = 0; c < 3; c++) padded[p * 4 + c] = x[p * 3 + c];
    }
    const keep = options.checkpoints ?? [];
    const p = await this.#acquire(n, keep);
    try {
      const out = await p.plan.run({ [p.graph.input]: padded });
      const checkpoints = new Map<string, Float32Array>();
      for (const name of keep) {
        const tensor = p.graph.checkpoints[name] ?? name;
        checkpoints.set(name, this.#floats(p, tensor, await p.plan.readTensor(tensor)));
      }
      return {
        rows: this.#rows(this.#floats(p, p.graph.output, out.get(p.graph.output)!), n, 0),
        checkpoints,
      };
    } finally {
      this.#release(p);
    }
  }

  /** A tensor's bytes read back as f32: f16 tensors widened exactly, their padding dropped. */
  #floats(p: BatchPlan, tensor: string, bytes: ArrayBuffer): Float32Array {
    if (p.plan.dtypeOf(tensor) === "f32") return new Float32Array(bytes);
    return widenFloat16(bytes, numel(p.graph.tensors.get(tensor)!));
  }

  #rows(all: Float32Array, n: number, first: number): Float32Array[] {
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
   * Time spent by {@linkcode Embedder.embed} so far, summed over batches: `uploadMs` preprocessing on the
   * CPU and queueing the pixels, `gpuMs` from submit to the embeddings read back (the upload's copy, the GPU
   * preprocessing and the network; batches in flight together each count theirs), `images` embedded. For
   * `--json` profiles.
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
