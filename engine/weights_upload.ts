/**
 * Streams a model's weights from a {@linkcode TensorSource} to GPU buffers, one stored tensor at a time,
 * through each {@linkcode WeightRecipe}'s transform (a CPU function or a GPU kernel), so that a 1.5 GB file
 * is never in memory whole: a recipe's sources are held only until its last source has arrived.
 *
 * Every resident tensor is checked for NaN and infinity (CPU results on the CPU, GPU results by one
 * check kernel pass at the end): a bad value is a {@linkcode WeightsError} naming the stored tensor.
 *
 * At precision `f16` every resident tensor but those named `keepF32` (those of the nodes reading f32
 * activations, `f32Weights` in `engine/precision.ts`) is stored as f16, converted once here after its f32
 * transform: CPU results are rounded on the CPU (to nearest, ties to even; a value of magnitude over 65504 is
 * a WeightsError naming the tensor), GPU transforms run their f16 flavour (f32 arithmetic, the store rounded
 * to nearest even by the kernel). Each buffer's {@linkcode WeightBinding} says how it is stored.
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelLaunch, KernelSpec, LaunchLimits } from "./kernel.ts";
import type { CpuWeightTransform, GpuWeightTransform, WeightRecipe } from "./model.ts";
import type { WeightBinding } from "./lowering.ts";
import { checkedGpuCall, type Gpu } from "./device.ts";
import { createKernelPipeline } from "./plan.ts";
import { WeightsError } from "./errors.ts";
import { type Dtype, F16_MAX, type Precision, storageBytes, toFloat16 } from "./precision.ts";
import type { TensorChunk, TensorSource } from "./tensor_source.ts";

/**
 * The check kernel: reads a buffer (binding 0) of f32 or f16 values (its flavour for each), sets a u32 flag
 * (binding 1) when it holds NaN/Inf; `perImage` counts values.
 */
export interface NonfiniteKernel {
  readonly specs: Readonly<Record<Dtype, KernelSpec>>;
  launch(shape: { n: number; perImage: number }, limits?: LaunchLimits): KernelLaunch;
}

/** Weights resident on the GPU. */
export interface ResidentWeights {
  /** The file they came from. */
  readonly file: string;
  /** The file's metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Buffers by resident (graph) name. */
  readonly buffers: ReadonlyMap<string, WeightBinding>;
  /** Elements of the stored tensors read. */
  readonly parameters: number;
  /** Bytes of GPU memory the buffers take. */
  readonly bytes: number;
  /** The precision they were made for: f32, or f16 (every tensor f16 but those the upload kept f32). */
  readonly dtype: Dtype;
  /** Frees the buffers. */
  dispose(): void;
}

/** Options of {@linkcode uploadWeights}. */
export interface UploadWeightsOptions {
  /** Called after each stored tensor with the bytes read so far and the total. */
  onProgress?: (done: number, total: number) => void;
  /** How the resident tensors are stored (default f32); `f16` needs a device with `shader-f16`. */
  precision?: Precision;
  /** Resident tensors kept f32 at precision f16 (names of recipe outputs). */
  keepF32?: ReadonlySet<string>;
}

// Submitted but unfinished uploads are capped so the driver's staging copies stay bounded.
const BYTES_IN_FLIGHT = 256 * 1024 * 1024;

function align4(n: number): number {
  return Math.max(4, Math.ceil(n / 4) * 4);
}

/**
 * Reads every stored tensor the recipes name and builds the resident tensors.
 *
 * @param gpu The device.
 * @param source The weights.
 * @param recipes What to build (from the model definition).
 * @param nonfinite The check kernel.
 * @param options Progress callback, precision.
 * @returns The resident weights; the source is closed.
 * @throws {WeightsError} For a missing tensor, a transform's error, a NaN/infinite value, or (precision
 *   f16) a value beyond f16's range, naming the file and the stored tensor.
 */
export async function uploadWeights(
  gpu: Gpu,
  source: TensorSource,
  recipes: readonly WeightRecipe[],
  nonfinite: NonfiniteKernel,
  options: UploadWeightsOptions = {},
): Promise<ResidentWeights> {
  const device = gpu.device;
  const file = source.file;
  const dtype: Dtype = options.precision ?? "f32";
  const dtypeOf = (tensor: string): Dtype => (options.keepF32?.has(tensor) ? "f32" : dtype);
  const fail = (tensor: string, message: string) =>
    new WeightsError(file, tensor, `Cannot load "${tensor}" from "${file}": ${message}`);
  // Which recipe waits for which stored tensor; how many sources each still needs.
  const waiting = new Map<string, number[]>();
  const remaining = recipes.map((r) => r.sources.length);
  const held = recipes.map(() => new Map<string, TensorChunk>());
  let total = 0;
  let parameters = 0;
  let stagingBytes = 4;
  const outputs = new Set<string>();
  recipes.forEach((r, i) => {
    for (const name of r.sources) {
      const entry = source.tensors.get(name);
      if (!entry) throw fail(name, "no such tensor in the file");
      if (!waiting.has(name)) {
        waiting.set(name, []);
        total += entry.end - entry.begin;
        parameters += entry.shape.reduce((a, b) => a * b, 1);
      }
      waiting.get(name)!.push(i);
      if (r.transform.kind === "gpu") {
        // Room for the raw bytes or a float32 decoding of them.
        const count = entry.shape.reduce((a, b) => a * b, 1);
        stagingBytes = Math.max(stagingBytes, align4(Math.max(entry.end - entry.begin, 4 * count)));
      }
    }
    for (const o of r.outputs) {
      if (outputs.has(o)) throw new TypeError(`Cannot plan the weights: "${o}" is made twice`);
      outputs.add(o);
    }
    if (r.transform.kind === "gpu" && (r.sources.length !== 1 || r.outputs.length !== 1)) {
      throw new TypeError(
        `Cannot plan the weights: a GPU transform makes one tensor from one, "${r.outputs}"`,
      );
    }
  });
  const buffers = new Map<string, WeightBinding>();
  const created: GPUBuffer[] = [];
  const gpuMade: GpuMade[] = [];
  let bytes = 0;
  const pipelines = new Map<KernelSpec, GPUComputePipeline>();
  let staging: GPUBuffer | undefined;
  let uniforms: GPUBuffer | undefined;
  const scratch = () => {
    staging ??= device.createBuffer({
      label: "weights/staging",
      size: stagingBytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    uniforms ??= device.createBuffer({
      label: "weights/uniforms",
      size: 256,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    return { staging, uniforms };
  };

  const runCpu = async (r: WeightRecipe, t: CpuWeightTransform, inputs: TensorChunk[]) => {
    let values: readonly Float32Array[];
    try {
      values = t.run(inputs);
    } catch (e) {
      if (e instanceof WeightsError) throw e;
      throw fail(r.sources[0], (e as Error).message);
    }
    if (values.length !== r.outputs.length) {
      throw new TypeError(`Cannot build "${r.outputs}": the transform made ${values.length} tensors`);
    }
    values.forEach((v, k) => {
      const bad = v.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) {
        throw fail(r.sources[0], `element ${bad} of "${r.outputs[k]}" is ${v[bad]} (NaN or infinite values)`);
      }
    });
    // Rounded to f16 after the whole f32 transform (BatchNorm folding, transposes), once, here.
    const stored = values.map((v, k): ArrayBufferView<ArrayBuffer> => {
      if (dtypeOf(r.outputs[k]) === "f32") return v as Float32Array<ArrayBuffer>;
      const { bits, overflow } = toFloat16(v);
      if (overflow >= 0) {
        throw fail(
          r.sources[0],
          `element ${overflow} of "${r.outputs[k]}" is ${v[overflow]}, beyond f16's largest finite value ` +
            `${F16_MAX} (precision f16)`,
        );
      }
      return bits;
    });
    await checkedGpuCall(device, `load weights/${r.outputs.join(",")}`, () => {
      stored.forEach((v, k) => {
        const b = device.createBuffer({
          label: r.outputs[k],
          size: align4(v.byteLength),
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
        });
        created.push(b);
        device.queue.writeBuffer(b, 0, v);
        buffers.set(r.outputs[k], { buffer: b, dtype: dtypeOf(r.outputs[k]) });
        bytes += b.size;
      });
    });
  };

  const runGpu = async (r: WeightRecipe, t: GpuWeightTransform, input: TensorChunk) => {
    let staged: { bytes: Uint8Array; launch: KernelLaunch };
    try {
      staged = t.input(input);
    } catch (e) {
      if (e instanceof WeightsError) throw e;
      throw fail(r.sources[0], (e as Error).message);
    }
    const { bytes: raw, launch } = staged;
    const { staging, uniforms } = scratch();
    const outDtype = dtypeOf(r.outputs[0]);
    const spec = t.specs[outDtype];
    let pipeline = pipelines.get(spec);
    if (!pipeline) {
      pipeline = await checkedGpuCall(
        device,
        `load weights/${spec.name}`,
        () => createKernelPipeline(device, spec),
      );
      pipelines.set(spec, pipeline);
    }
    const out = await checkedGpuCall(device, `load weights/${r.outputs[0]}`, () => {
      const out = device.createBuffer({
        label: r.outputs[0],
        size: Math.max(4, storageBytes(t.outputElements, outDtype)),
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
      });
      created.push(out);
      const padded = raw.byteLength % 4 === 0 && raw.buffer instanceof ArrayBuffer
        ? raw as Uint8Array<ArrayBuffer>
        : padTo4(raw);
      device.queue.writeBuffer(staging, 0, padded);
      device.queue.writeBuffer(uniforms, 0, launch.uniforms);
      const bindGroup = device.createBindGroup({
        label: `${r.outputs[0]}/${spec.name}`,
        layout: pipeline!.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: staging, size: align4(raw.byteLength) } },
          { binding: 1, resource: { buffer: out } },
          { binding: 2, resource: { buffer: uniforms, size: launch.uniforms.byteLength } },
        ],
      });
      const encoder = device.createCommandEncoder({ label: `${r.outputs[0]}/${spec.name}` });
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline!);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...launch.workgroups);
      pass.end();
      device.queue.submit([encoder.finish()]);
      return out;
    });
    buffers.set(r.outputs[0], { buffer: out, dtype: outDtype });
    gpuMade.push({
      name: r.outputs[0],
      source: r.sources[0],
      buffer: out,
      elements: t.outputElements,
      dtype: outDtype,
    });
    bytes += out.size;
    return raw.byteLength;
  };

  try {
    let done = 0;
    let inFlight = 0;
    for await (const chunk of source.stream(new Set(waiting.keys()))) {
      const name = chunk.entry.name;
      for (const i of waiting.get(name) ?? []) {
        held[i].set(name, chunk);
        if (--remaining[i] > 0) continue;
        const r = recipes[i];
        const inputs = r.sources.map((s) => held[i].get(s)!);
        held[i].clear();
        if (r.transform.kind === "cpu") await runCpu(r, r.transform, inputs);
        else inFlight += await runGpu(r, r.transform, inputs[0]);
      }
      done += chunk.entry.end - chunk.entry.begin;
      options.onProgress?.(done, total);
      if (inFlight > BYTES_IN_FLIGHT) {
        await device.queue.onSubmittedWorkDone();
        inFlight = 0;
      }
    }
    const missing = recipes.findIndex((_, i) => remaining[i] > 0);
    if (missing >= 0) {
      const name = recipes[missing].sources.find((s) => !held[missing].has(s)) ?? recipes[missing].sources[0];
      throw fail(name, "the stream ended before it");
    }
    await checkGpuResults(gpu, file, gpuMade, nonfinite);
    const own = [...created];
    return {
      file,
      metadata: source.metadata,
      buffers,
      parameters,
      bytes,
      dtype,
      dispose: () => own.forEach((b) => b.destroy()),
    };
  } catch (e) {
    created.forEach((b) => b.destroy());
    throw e;
  } finally {
    (staging as GPUBuffer | undefined)?.destroy();
    (uniforms as GPUBuffer | undefined)?.destroy();
    await source.close();
  }
}

/** A GPU transform's output, to check for NaN and infinity. */
interface GpuMade {
  readonly name: string;
  /** The stored tensor it was made from (named in errors). */
  readonly source: string;
  readonly buffer: GPUBuffer;
  readonly elements: number;
  readonly dtype: Dtype;
}

/**
 * A NaN or infinity in a raw kernel makes its GPU-transformed output non-finite: one flag per tensor, read
 * back once, names the first bad stored tensor.
 */
async function checkGpuResults(
  gpu: Gpu,
  file: string,
  made: readonly GpuMade[],
  kernel: NonfiniteKernel,
): Promise<void> {
  if (made.length === 0) return;
  const device = gpu.device;
  const pipelines = new Map<Dtype, GPUComputePipeline>();
  const pipelineOf = (dtype: Dtype) => {
    let p = pipelines.get(dtype);
    if (!p) pipelines.set(dtype, p = createKernelPipeline(device, kernel.specs[dtype]));
    return p;
  };
  // One flag per tensor, each at an offset the storage binding alignment allows.
  const stride = Math.max(4, gpu.limits.minStorageBufferOffsetAlignment);
  const flags = device.createBuffer({
    label: "weights/nonfinite",
    size: made.length * stride,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    label: "weights/nonfinite/read",
    size: flags.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const uniforms: GPUBuffer[] = [];
  try {
    const encoder = device.createCommandEncoder({ label: "weights/nonfinite" });
    const pass = encoder.beginComputePass();
    made.forEach((m, i) => {
      const pipeline = pipelineOf(m.dtype);
      pass.setPipeline(pipeline);
      const launch = kernel.launch({ n: 1, perImage: m.elements }, gpu.limits);
      const u = device.createBuffer({
        size: launch.uniforms.byteLength,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      uniforms.push(u);
      device.queue.writeBuffer(u, 0, launch.uniforms);
      pass.setBindGroup(
        0,
        device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: m.buffer } },
            { binding: 1, resource: { buffer: flags, offset: i * stride, size: 4 } },
            { binding: 2, resource: { buffer: u } },
          ],
        }),
      );
      pass.dispatchWorkgroups(...launch.workgroups);
    });
    pass.end();
    encoder.copyBufferToBuffer(flags, 0, read, 0, flags.size);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const values = new Uint32Array(read.getMappedRange().slice(0));
    read.unmap();
    const bad = made.findIndex((_, i) => values[(i * stride) / 4] !== 0);
    if (bad >= 0) {
      throw new WeightsError(
        file,
        made[bad].source,
        `Cannot load "${made[bad].source}" from "${file}": it holds NaN or infinite values`,
      );
    }
  } finally {
    flags.destroy();
    read.destroy();
    uniforms.forEach((u) => u.destroy());
  }
}

function padTo4(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(align4(bytes.byteLength));
  out.set(bytes);
  return out;
}
