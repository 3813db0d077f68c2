/**
 * Streams BiT weights from a {@linkcode TensorSource} to GPU buffers, one tensor at a time, and
 * standardises every convolution kernel on the GPU into the HWIO f32 layout the convolutions read.
 * The file is never held whole in memory: each tensor's bytes are written to one reused staging buffer.
 *
 * This module is browser compatible.
 * @module
 */
import type { TensorSource } from "../weights/safetensors.ts";
import { decodeToFloat32 } from "../weights/safetensors.ts";
import { adaptBitWeights, presetFromMetadata } from "../weights/bit_names.ts";
import type { BitArchitecture } from "./bit_arch.ts";
import { type BitPreset, INPUT_CHANNELS, PRESETS } from "./bit.ts";
import { weightStandardizeLaunch, weightStandardizeSpec } from "../kernels/weight_standardize.ts";
import { nonfiniteCheckLaunch, nonfiniteCheckSpec } from "../kernels/nonfinite_check.ts";
import { checkedGpuCall, type Gpu } from "../engine/device.ts";
import { createKernelPipeline } from "../engine/plan.ts";
import { WeightsError } from "../engine/errors.ts";

/** Weights resident on the GPU, by timm name. */
export interface BitWeights {
  /** Units and widths inferred from the tensors. */
  readonly architecture: BitArchitecture;
  /** The preset (from the options, else the file's metadata or naming scheme). */
  readonly preset: BitPreset;
  /** The file's naming scheme. */
  readonly naming: "timm" | "derm";
  /** The file the weights came from. */
  readonly file: string;
  /** The file's metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** GPU buffers: standardised HWIO f32 convolution kernels and f32 norm vectors, by timm name. */
  readonly buffers: ReadonlyMap<string, GPUBuffer>;
  /** Parameter count (elements in the file's tensors that the model uses). */
  readonly parameters: number;
  /** Bytes of GPU memory the buffers take. */
  readonly bytes: number;
  /** Frees the buffers. */
  dispose(): void;
}

/** Options of {@linkcode uploadBitWeights}. */
export interface UploadBitWeightsOptions {
  /** Overrides the preset found in the metadata or naming scheme. */
  preset?: BitPreset;
  /** Called after each tensor with the bytes read so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

// Submitted but unfinished uploads are capped so the driver's staging copies stay bounded.
const BYTES_IN_FLIGHT = 256 * 1024 * 1024;

/**
 * Reads every tensor the model needs from `source` and creates its GPU buffer.
 *
 * @param gpu The device.
 * @param source The weights (safetensors file, bytes, URL or procedural).
 * @param options Preset override and progress callback.
 * @returns The resident weights.
 * @throws {WeightsError} For a missing, misshapen or non-finite tensor, naming the file and tensor.
 */
export async function uploadBitWeights(
  gpu: Gpu,
  source: TensorSource,
  options: UploadBitWeightsOptions = {},
): Promise<BitWeights> {
  const adapted = adaptBitWeights(source);
  const preset = options.preset ?? presetFromMetadata(source.metadata, adapted.naming);
  const eps = PRESETS[preset].weightStandardizationEps;
  const device = gpu.device;
  const byName = new Map<string, string>(); // source name -> timm name
  let stagingBytes = 4;
  let total = 0;
  let parameters = 0;
  for (const [timm, t] of adapted.tensors) {
    byName.set(t.source.name, timm);
    total += t.source.end - t.source.begin;
    parameters += t.shape.reduce((a, b) => a * b, 1);
    if (t.layout !== "vector") stagingBytes = Math.max(stagingBytes, align4(t.source.end - t.source.begin));
  }
  const buffers = new Map<string, GPUBuffer>();
  const created: GPUBuffer[] = [];
  const convs: string[] = [];
  let bytes = 0;
  try {
    const staging = await checkedGpuCall(device, "load weights/staging", () => {
      const b = device.createBuffer({
        label: "weights/staging",
        size: stagingBytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      created.push(b);
      return b;
    });
    const standardize = await checkedGpuCall(
      device,
      "load weights/pipeline",
      () => createKernelPipeline(device, weightStandardizeSpec),
    );
    const uniformBuffer = device.createBuffer({
      label: "weights/uniforms",
      size: 256,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    created.push(uniformBuffer);
    let done = 0;
    let inFlight = 0;
    for await (const { entry, bytes: rawBytes } of source.stream(new Set(byName.keys()))) {
      const timm = byName.get(entry.name)!;
      const t = adapted.tensors.get(timm)!;
      if (t.layout === "vector") {
        const values = decodeToFloat32(entry, rawBytes);
        for (let i = 0; i < values.length; i++) {
          if (!Number.isFinite(values[i])) {
            throw new WeightsError(
              source.file,
              entry.name,
              `Cannot load "${entry.name}" from "${source.file}": element ${i} is ${values[i]}`,
            );
          }
        }
        const buffer = await checkedGpuCall(device, `load weights/${timm}`, () => {
          const b = device.createBuffer({
            label: timm,
            size: align4(values.byteLength),
            usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
          });
          created.push(b);
          device.queue.writeBuffer(b, 0, values as Float32Array<ArrayBuffer>);
          return b;
        });
        buffers.set(timm, buffer);
        bytes += buffer.size;
      } else {
        // F64 or integer kernels: decoded to float32 here, since the GPU kernel reads F32, F16 and BF16.
        const gpuDtype = entry.dtype === "F16" || entry.dtype === "BF16" ? entry.dtype : "F32";
        const raw = entry.dtype === gpuDtype
          ? rawBytes
          : new Uint8Array(decodeToFloat32(entry, rawBytes).buffer);
        const [cout, cin, kh, kw] = t.shape; // timm OIHW
        const cinPadded = timm === "stem.conv.weight" ? Math.max(INPUT_CHANNELS, cin) : cin;
        const launch = weightStandardizeLaunch({
          cout,
          cin,
          kh,
          kw,
          cinPadded,
          dtype: gpuDtype,
          layout: t.layout,
          eps,
        });
        const buffer = await checkedGpuCall(device, `load weights/${timm}`, () => {
          const out = device.createBuffer({
            label: timm,
            size: kh * kw * cinPadded * cout * 4,
            usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
          });
          created.push(out);
          device.queue.writeBuffer(staging, 0, raw.byteLength % 4 === 0 ? raw : padTo4(raw));
          device.queue.writeBuffer(uniformBuffer, 0, launch.uniforms);
          const bindGroup = device.createBindGroup({
            label: `${timm}/weight_standardize`,
            layout: standardize.getBindGroupLayout(0),
            entries: [
              { binding: 0, resource: { buffer: staging, size: align4(raw.byteLength) } },
              { binding: 1, resource: { buffer: out } },
              { binding: 2, resource: { buffer: uniformBuffer, size: launch.uniforms.byteLength } },
            ],
          });
          const encoder = device.createCommandEncoder({ label: `${timm}/weight_standardize` });
          const pass = encoder.beginComputePass();
          pass.setPipeline(standardize);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(...launch.workgroups);
          pass.end();
          device.queue.submit([encoder.finish()]);
          return out;
        });
        buffers.set(timm, buffer);
        convs.push(timm);
        bytes += buffer.size;
        inFlight += raw.byteLength;
      }
      done += entry.end - entry.begin;
      options.onProgress?.(done, total);
      if (inFlight > BYTES_IN_FLIGHT) {
        await device.queue.onSubmittedWorkDone();
        inFlight = 0;
      }
    }
    const missing = [...adapted.tensors.keys()].filter((k) => !buffers.has(k));
    if (missing.length > 0) {
      const name = adapted.tensors.get(missing[0])!.source.name;
      throw new WeightsError(
        source.file,
        name,
        `Cannot load "${name}" from "${source.file}": the stream ended before it`,
      );
    }
    await checkNonFinite(
      gpu,
      source.file,
      convs.map((timm) => ({
        timm,
        name: adapted.tensors.get(timm)!.source.name,
        buffer: buffers.get(timm)!,
      })),
    );
    staging.destroy();
    uniformBuffer.destroy();
    const own = created.filter((b) => b !== staging && b !== uniformBuffer);
    return {
      architecture: adapted.architecture,
      preset,
      naming: adapted.naming,
      file: source.file,
      metadata: source.metadata,
      buffers,
      parameters,
      bytes,
      dispose: () => own.forEach((b) => b.destroy()),
    };
  } catch (e) {
    created.forEach((b) => b.destroy());
    throw e;
  } finally {
    await source.close();
  }
}

/**
 * A NaN or infinity in a raw kernel makes its whole standardised output non-finite: one flag per kernel,
 * read back once, names the first bad tensor.
 */
async function checkNonFinite(
  gpu: Gpu,
  file: string,
  convs: { timm: string; name: string; buffer: GPUBuffer }[],
): Promise<void> {
  if (convs.length === 0) return;
  const device = gpu.device;
  const pipeline = createKernelPipeline(device, nonfiniteCheckSpec);
  // One flag per kernel, each at an offset the storage binding alignment allows.
  const stride = Math.max(4, gpu.limits.minStorageBufferOffsetAlignment);
  const flags = device.createBuffer({
    label: "weights/nonfinite",
    size: convs.length * stride,
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
    pass.setPipeline(pipeline);
    convs.forEach((c, i) => {
      const count = c.buffer.size / 4;
      const launch = nonfiniteCheckLaunch({ n: 1, perImage: count });
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
            { binding: 0, resource: { buffer: c.buffer } },
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
    const bad = convs.findIndex((_, i) => values[(i * stride) / 4] !== 0);
    if (bad >= 0) {
      throw new WeightsError(
        file,
        convs[bad].name,
        `Cannot load "${convs[bad].name}" from "${file}": it holds NaN or infinite values`,
      );
    }
  } finally {
    flags.destroy();
    read.destroy();
    uniforms.forEach((u) => u.destroy());
  }
}

function align4(n: number): number {
  return Math.max(4, Math.ceil(n / 4) * 4);
}

function padTo4(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(align4(bytes.byteLength));
  out.set(bytes);
  return out;
}
