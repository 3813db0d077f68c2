/**
 * Execution plans: compile a list of kernel dispatches once per (model, input size, batch, device), then
 * run it many times. Building creates every pipeline, buffer, uniform and bind group; a run only writes
 * the input, encodes the recorded dispatches into one command buffer, submits it and reads back.
 *
 * Activation buffers are assigned by liveness: a tensor takes a free buffer (best fit) at its first use
 * and returns it after its last, so R101x3 needs a handful of buffers rather than one per layer.
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelLaunch, KernelSpec } from "./kernel.ts";
import { checkedGpuCall } from "./device.ts";
import type { DeviceLostError } from "./errors.ts";
import type { Dtype } from "./precision.ts";

/**
 * A buffer a step binds: a plan tensor by name, or an existing buffer (weights, flags) with its label and
 * optionally a byte range of it.
 */
export type StepBinding = string | { buffer: GPUBuffer; label: string; offset?: number; size?: number };

/** One recorded dispatch. */
export interface PlanStep {
  /** `<node>/<kernel>`, e.g. `stage3.unit07.conv2/conv2d_tiled`. */
  readonly label: string;
  /** The kernel variant. */
  readonly spec: KernelSpec;
  /** Workgroups and uniforms. */
  readonly launch: KernelLaunch;
  /** One entry per binding of `spec`, in order. */
  readonly bindings: readonly StepBinding[];
}

/** A tensor of the plan: an activation or scratch buffer whose lifetime the plan manages. */
export interface PlanTensorDecl {
  /** Size in bytes. */
  readonly bytes: number;
  /** Kept for the whole run (inputs, outputs, tensors to read back for debugging). */
  readonly keep?: boolean;
  /** How its values are stored (default f32), for whoever reads it back. */
  readonly dtype?: Dtype;
}

/** Device facts the plan needs. */
export interface PlanDevice {
  readonly device: GPUDevice;
  readonly limits: GPUSupportedLimits;
  /** The loss error once the device is lost (from `Gpu.lostError`). */
  readonly lostError?: () => DeviceLostError | undefined;
}

/** Statistics of a built plan, for logs and benchmarks. */
export interface PlanStats {
  /** Number of dispatches per run. */
  readonly steps: number;
  /** Distinct pipelines created. */
  readonly pipelines: number;
  /** Activation and scratch buffers after liveness sharing. */
  readonly activationBuffers: number;
  /** Bytes of those buffers. */
  readonly activationBytes: number;
  /** Bytes all tensors would take without sharing. */
  readonly unsharedBytes: number;
}

/**
 * Creates the compute pipeline of `spec` with an explicit layout (storage bindings, then the uniform
 * buffer), so bindings a variant does not read still validate.
 */
export function createKernelPipeline(device: GPUDevice, spec: KernelSpec): GPUComputePipeline {
  for (const feature of spec.features ?? []) {
    if (!device.features.has(feature as GPUFeatureName)) {
      throw new RangeError(
        `Cannot create the pipeline of "${spec.name}": expected device feature "${feature}", got ${
          [...device.features].sort().join(", ") || "none"
        }`,
      );
    }
  }
  const entries: GPUBindGroupLayoutEntry[] = spec.bindings.map((b, i) => ({
    binding: i,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: b.type },
  }));
  entries.push({
    binding: spec.bindings.length,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: "uniform" },
  });
  const layout = device.createBindGroupLayout({ label: spec.name, entries });
  return device.createComputePipeline({
    label: spec.name,
    layout: device.createPipelineLayout({ label: spec.name, bindGroupLayouts: [layout] }),
    compute: {
      module: device.createShaderModule({ label: spec.name, code: spec.wgsl }),
      entryPoint: "main",
      constants: { ...spec.overrides },
    },
  });
}

/** Caches pipelines by variant and overrides, across plans on one device. */
export class PipelineCache {
  #device: GPUDevice;
  #pipelines = new Map<string, GPUComputePipeline>();

  /** Creates an empty cache for `device`. */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** Number of pipelines created so far. */
  get size(): number {
    return this.#pipelines.size;
  }

  /** Returns the pipeline of `spec`, creating it on first use. */
  get(spec: KernelSpec): GPUComputePipeline {
    const key = `${spec.name}|${JSON.stringify(spec.overrides)}|${
      spec.bindings.map((b) => b.type).join(",")
    }`;
    let pipeline = this.#pipelines.get(key);
    if (!pipeline) {
      pipeline = createKernelPipeline(this.#device, spec);
      this.#pipelines.set(key, pipeline);
    }
    return pipeline;
  }
}

/** Records tensors and steps; {@linkcode PlanBuilder.build} turns them into a {@linkcode Plan}. */
export class PlanBuilder {
  #tensors = new Map<string, PlanTensorDecl>();
  #steps: PlanStep[] = [];
  #inputs: string[] = [];
  #outputs: string[] = [];
  #label: string;

  /** Starts a plan called `label` (used in GPU object labels and errors). */
  constructor(label: string) {
    this.#label = label;
  }

  /** Declares a tensor; declaring the same name twice with another size is an error. */
  tensor(name: string, decl: PlanTensorDecl): string {
    const old = this.#tensors.get(name);
    if (old && old.bytes !== decl.bytes) {
      throw new TypeError(
        `Cannot declare tensor "${name}": already declared with ${old.bytes} bytes, got ${decl.bytes}`,
      );
    }
    const dtype = decl.dtype ?? "f32";
    if (old && (old.dtype ?? "f32") !== dtype) {
      throw new TypeError(`Cannot declare tensor "${name}": already declared as ${old.dtype}, got ${dtype}`);
    }
    if (!Number.isInteger(decl.bytes) || decl.bytes <= 0) {
      throw new RangeError(
        `Cannot declare tensor "${name}": expected a positive byte size, got ${decl.bytes}`,
      );
    }
    this.#tensors.set(name, {
      bytes: decl.bytes,
      keep: (old?.keep ?? false) || (decl.keep ?? false),
      dtype,
    });
    return name;
  }

  /** Declares a tensor written by the caller before each run (kept for the whole run). */
  input(name: string, bytes: number, dtype: Dtype = "f32"): string {
    this.tensor(name, { bytes, keep: true, dtype });
    this.#inputs.push(name);
    return name;
  }

  /** Marks a declared tensor as read back after each run (kept for the whole run). */
  output(name: string): string {
    const decl = this.#tensors.get(name);
    if (!decl) throw new TypeError(`Cannot mark "${name}" as output: no such tensor`);
    this.#tensors.set(name, { ...decl, keep: true });
    this.#outputs.push(name);
    return name;
  }

  /** Appends a dispatch. Every named binding must be a declared tensor. */
  step(step: PlanStep): void {
    if (step.bindings.length !== step.spec.bindings.length) {
      throw new TypeError(
        `Cannot add step "${step.label}": expected ${step.spec.bindings.length} bindings, got ${step.bindings.length}`,
      );
    }
    for (const b of step.bindings) {
      if (typeof b === "string" && !this.#tensors.has(b)) {
        throw new TypeError(`Cannot add step "${step.label}": tensor "${b}" is not declared`);
      }
    }
    this.#steps.push(step);
  }

  /** The steps recorded so far (read-only view, for tests and benchmarks). */
  get steps(): readonly PlanStep[] {
    return this.#steps;
  }

  /** Size in bytes of a declared tensor. */
  bytesOf(name: string): number {
    const decl = this.#tensors.get(name);
    if (!decl) throw new TypeError(`Unknown tensor "${name}"`);
    return decl.bytes;
  }

  /**
   * Creates every GPU object of the plan inside error scopes and checks the binding-size limit.
   *
   * @param gpu The device.
   * @param cache Pipeline cache to share across plans (a new one by default).
   * @throws {RangeError} When a tensor exceeds `maxStorageBufferBindingSize`.
   * @throws {GpuError} Naming the step whose GPU object failed validation or ran out of memory.
   */
  async build(gpu: PlanDevice, cache: PipelineCache = new PipelineCache(gpu.device)): Promise<Plan> {
    const limit = gpu.limits.maxStorageBufferBindingSize;
    for (const [name, decl] of this.#tensors) {
      if (decl.bytes > limit) {
        throw new RangeError(
          `Cannot plan "${this.#label}": tensor "${name}" needs ${decl.bytes} bytes, over ` +
            `maxStorageBufferBindingSize ${limit} (use a smaller batch)`,
        );
      }
    }
    const assignment = assignBuffers(this.#tensors, this.#steps);
    const device = gpu.device;
    const created: GPUBuffer[] = [];
    const destroyAll = () => created.forEach((b) => b.destroy());
    try {
      const buffers = await checkedGpuCall(
        device,
        `${this.#label}/buffers`,
        () =>
          assignment.sizes.map((size, i) => {
            const buffer = device.createBuffer({
              label: `${this.#label}/activations${i}`,
              size,
              usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
            });
            created.push(buffer);
            return buffer;
          }),
      );
      const tensorBuffer = (name: string) => buffers[assignment.bufferOf.get(name)!];
      const align = gpu.limits.minUniformBufferOffsetAlignment;
      const offsets: number[] = [];
      let uniformBytes = 0;
      for (const step of this.#steps) {
        uniformBytes = Math.ceil(uniformBytes / align) * align;
        offsets.push(uniformBytes);
        uniformBytes += step.launch.uniforms.byteLength;
      }
      const uniforms = await checkedGpuCall(device, `${this.#label}/uniforms`, () => {
        const buffer = device.createBuffer({
          label: `${this.#label}/uniforms`,
          size: Math.max(16, uniformBytes),
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        });
        created.push(buffer);
        const all = new Uint8Array(Math.max(16, uniformBytes));
        this.#steps.forEach((s, i) => all.set(s.launch.uniforms, offsets[i]));
        device.queue.writeBuffer(buffer, 0, all);
        return buffer;
      });
      const recorded: RecordedStep[] = [];
      for (let i = 0; i < this.#steps.length; i++) {
        const step = this.#steps[i];
        recorded.push(
          await checkedGpuCall(device, step.label, () => {
            const pipeline = cache.get(step.spec);
            const entries: GPUBindGroupEntry[] = step.bindings.map((b, binding) => {
              if (typeof b === "string") {
                return {
                  binding,
                  resource: { buffer: tensorBuffer(b), offset: 0, size: this.#tensors.get(b)!.bytes },
                };
              }
              return { binding, resource: { buffer: b.buffer, offset: b.offset ?? 0, size: b.size } };
            });
            entries.push({
              binding: step.bindings.length,
              resource: { buffer: uniforms, offset: offsets[i], size: step.launch.uniforms.byteLength },
            });
            const bindGroup = device.createBindGroup({
              label: step.label,
              layout: pipeline.getBindGroupLayout(0),
              entries,
            });
            return { label: step.label, pipeline, bindGroup, workgroups: step.launch.workgroups };
          }),
        );
      }
      const outputs = await checkedGpuCall(
        device,
        `${this.#label}/readback`,
        () =>
          this.#outputs.map((name) => {
            const bytes = this.#tensors.get(name)!.bytes;
            const read = device.createBuffer({
              label: `${this.#label}/${name}/read`,
              size: bytes,
              usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
            });
            created.push(read);
            return { name, bytes, read };
          }),
      );
      const tensorMap = new Map<string, PlanTensor>();
      for (const [name, decl] of this.#tensors) {
        tensorMap.set(name, { buffer: tensorBuffer(name), bytes: decl.bytes, dtype: decl.dtype ?? "f32" });
      }
      const unshared = [...this.#tensors.values()].reduce((a, d) => a + d.bytes, 0);
      return new Plan({
        label: this.#label,
        gpu,
        steps: recorded,
        tensors: tensorMap,
        inputs: [...this.#inputs],
        outputs,
        owned: created,
        stats: {
          steps: recorded.length,
          pipelines: new Set(recorded.map((s) => s.pipeline)).size,
          activationBuffers: buffers.length,
          activationBytes: assignment.sizes.reduce((a, b) => a + b, 0),
          unsharedBytes: unshared,
        },
      });
    } catch (e) {
      destroyAll();
      throw e;
    }
  }
}

interface PlanTensor {
  buffer: GPUBuffer;
  bytes: number;
  dtype: Dtype;
}

interface RecordedStep {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: readonly [number, number, number];
}

/**
 * Assigns tensors to buffers by liveness. A tensor is live from the first step that binds it to the last
 * (kept tensors: the whole run). At each step, tensors first used there take a free buffer (the smallest
 * that fits, else a new one), then tensors last used there are freed, so a step never shares a buffer
 * between two of its own bindings.
 *
 * @returns Buffer sizes and the buffer index of each tensor.
 */
export function assignBuffers(
  tensors: ReadonlyMap<string, PlanTensorDecl>,
  steps: readonly Pick<PlanStep, "bindings">[],
): { sizes: number[]; bufferOf: Map<string, number> } {
  const first = new Map<string, number>();
  const last = new Map<string, number>();
  steps.forEach((s, i) => {
    for (const b of s.bindings) {
      if (typeof b !== "string") continue;
      if (!first.has(b)) first.set(b, i);
      last.set(b, i);
    }
  });
  const sizes: number[] = [];
  const bufferOf = new Map<string, number>();
  const free = new Set<number>();
  // Kept tensors get their own buffers up front.
  for (const [name, decl] of tensors) {
    if (decl.keep) {
      bufferOf.set(name, sizes.length);
      sizes.push(align16(decl.bytes));
    }
  }
  const startsAt: string[][] = steps.map(() => []);
  const endsAt: string[][] = steps.map(() => []);
  for (const [name, i] of first) if (!tensors.get(name)!.keep) startsAt[i].push(name);
  for (const [name, i] of last) if (!tensors.get(name)!.keep) endsAt[i].push(name);
  for (let i = 0; i < steps.length; i++) {
    // Largest first, so big tensors get the big free buffers.
    startsAt[i].sort((a, b) => tensors.get(b)!.bytes - tensors.get(a)!.bytes);
    for (const name of startsAt[i]) {
      const bytes = align16(tensors.get(name)!.bytes);
      let best = -1;
      for (const f of free) {
        if (sizes[f] >= bytes && (best < 0 || sizes[f] < sizes[best])) best = f;
      }
      if (best < 0) {
        // No free buffer fits: grow the largest free one rather than add a buffer, when one exists.
        for (const f of free) if (best < 0 || sizes[f] > sizes[best]) best = f;
        if (best >= 0) sizes[best] = bytes;
        else {
          best = sizes.length;
          sizes.push(bytes);
        }
      }
      free.delete(best);
      bufferOf.set(name, best);
    }
    for (const name of endsAt[i]) free.add(bufferOf.get(name)!);
  }
  return { sizes, bufferOf };
}

function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}

/** A compiled plan: run it with {@linkcode Plan.run}. */
export class Plan {
  /** The plan's label. */
  readonly label: string;
  /** Figures about the plan. */
  readonly stats: PlanStats;
  #gpu: PlanDevice;
  #steps: RecordedStep[];
  #tensors: Map<string, PlanTensor>;
  #inputs: string[];
  #outputs: { name: string; bytes: number; read: GPUBuffer }[];
  #owned: GPUBuffer[];
  #busy: Promise<unknown> = Promise.resolve();
  #disposed = false;

  /** Use {@linkcode PlanBuilder.build}. */
  constructor(parts: {
    label: string;
    gpu: PlanDevice;
    steps: RecordedStep[];
    tensors: Map<string, PlanTensor>;
    inputs: string[];
    outputs: { name: string; bytes: number; read: GPUBuffer }[];
    owned: GPUBuffer[];
    stats: PlanStats;
  }) {
    this.label = parts.label;
    this.#gpu = parts.gpu;
    this.#steps = parts.steps;
    this.#tensors = parts.tensors;
    this.#inputs = parts.inputs;
    this.#outputs = parts.outputs;
    this.#owned = parts.owned;
    this.stats = parts.stats;
  }

  /** Labels of the recorded steps, in order. */
  get stepLabels(): string[] {
    return this.#steps.map((s) => s.label);
  }

  /** How tensor `name` is stored (f16 tensors read back as f16 bytes). */
  dtypeOf(name: string): Dtype {
    const t = this.#tensors.get(name);
    if (!t) throw new TypeError(`Cannot find tensor "${name}" in plan "${this.label}"`);
    return t.dtype;
  }

  /** The GPU buffer holding tensor `name` (for kernels that write the input on the GPU). */
  bufferOf(name: string): GPUBuffer {
    const t = this.#tensors.get(name);
    if (!t) throw new TypeError(`Cannot find tensor "${name}" in plan "${this.label}"`);
    return t.buffer;
  }

  /**
   * Encodes steps `[from, to)` into `encoder`, one compute pass. Used by {@linkcode Plan.run} and by
   * benchmarks that time a range of steps.
   */
  encode(
    encoder: GPUCommandEncoder,
    from: number = 0,
    to: number = this.#steps.length,
    timestampWrites?: GPUComputePassTimestampWrites,
  ): void {
    const pass = encoder.beginComputePass({ label: this.label, timestampWrites });
    for (let i = from; i < to; i++) {
      const s = this.#steps[i];
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
    }
    pass.end();
  }

  /**
   * Runs the plan once: writes `inputs` (by tensor name; omit those written on the GPU beforehand by
   * `prepare`), encodes every step into one command buffer, submits, and reads back the outputs.
   * Runs on one plan are serialised.
   *
   * @param inputs Bytes per input tensor.
   * @param prepare Encodes extra work before the steps (e.g. image resize into the input tensor).
   * @returns The bytes of each output tensor, by name.
   */
  run(
    inputs: Readonly<Record<string, ArrayBufferView<ArrayBuffer>>> = {},
    prepare?: (encoder: GPUCommandEncoder) => void,
  ): Promise<Map<string, ArrayBuffer>> {
    const next = this.#busy.then(() => this.#runNow(inputs, prepare));
    this.#busy = next.catch(() => {});
    return next;
  }

  async #runNow(
    inputs: Readonly<Record<string, ArrayBufferView<ArrayBuffer>>>,
    prepare?: (encoder: GPUCommandEncoder) => void,
  ): Promise<Map<string, ArrayBuffer>> {
    if (this.#disposed) throw new TypeError(`Cannot run plan "${this.label}": it was disposed`);
    const lost = this.#gpu.lostError?.();
    if (lost) throw lost;
    const device = this.#gpu.device;
    for (const [name, data] of Object.entries(inputs)) {
      if (!this.#inputs.includes(name)) {
        throw new TypeError(`Cannot run plan "${this.label}": "${name}" is not an input`);
      }
      const t = this.#tensors.get(name)!;
      if (data.byteLength > t.bytes) {
        throw new RangeError(
          `Cannot write input "${name}": expected at most ${t.bytes} bytes, got ${data.byteLength}`,
        );
      }
      device.queue.writeBuffer(t.buffer, 0, data);
    }
    await checkedGpuCall(device, `${this.label}/run`, () => {
      const encoder = device.createCommandEncoder({ label: this.label });
      prepare?.(encoder);
      this.encode(encoder);
      for (const o of this.#outputs) {
        encoder.copyBufferToBuffer(this.#tensors.get(o.name)!.buffer, 0, o.read, 0, o.bytes);
      }
      device.queue.submit([encoder.finish()]);
    });
    const result = new Map<string, ArrayBuffer>();
    for (const o of this.#outputs) {
      try {
        await o.read.mapAsync(GPUMapMode.READ);
      } catch (cause) {
        const lostNow = this.#gpu.lostError?.();
        if (lostNow) throw lostNow;
        throw new Error(`Cannot read back "${o.name}" of plan "${this.label}": ${(cause as Error).message}`, {
          cause,
        });
      }
      result.set(o.name, o.read.getMappedRange().slice(0));
      o.read.unmap();
    }
    return result;
  }

  /**
   * Reads any tensor of the plan after a run (kept tensors hold their final value; others may have been
   * overwritten by later tensors sharing their buffer). For debugging and intermediate comparisons.
   */
  async readTensor(name: string): Promise<ArrayBuffer> {
    const t = this.#tensors.get(name);
    if (!t) throw new TypeError(`Cannot read tensor "${name}": not in plan "${this.label}"`);
    const device = this.#gpu.device;
    const read = device.createBuffer({
      label: `${name}/read`,
      size: t.bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(t.buffer, 0, read, 0, t.bytes);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      return read.getMappedRange().slice(0);
    } finally {
      read.destroy();
    }
  }

  /**
   * Times every step on the GPU with timestamp queries: each step in its own compute pass, so the
   * figures include a pass boundary per step. The input tensors keep whatever they last held.
   *
   * @returns Milliseconds per step label, in order.
   * @throws {RangeError} When the device lacks `timestamp-query` (acquire it with `timestamps: true`).
   */
  async profile(): Promise<{ label: string; ms: number }[]> {
    const device = this.#gpu.device;
    if (!device.features.has("timestamp-query")) {
      throw new RangeError(
        `Cannot profile plan "${this.label}": the device has no "timestamp-query" feature`,
      );
    }
    const perSet = 2048; // two queries per step; sets stay well under the 4096-query limit
    const results: { label: string; ms: number }[] = [];
    for (let first = 0; first < this.#steps.length; first += perSet / 2) {
      const last = Math.min(this.#steps.length, first + perSet / 2);
      const count = 2 * (last - first);
      const querySet = device.createQuerySet({ label: `${this.label}/profile`, type: "timestamp", count });
      const resolve = device.createBuffer({
        size: count * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const read = device.createBuffer({
        size: count * 8,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      try {
        const encoder = device.createCommandEncoder({ label: `${this.label}/profile` });
        for (let i = first; i < last; i++) {
          const q = 2 * (i - first);
          this.encode(encoder, i, i + 1, {
            querySet,
            beginningOfPassWriteIndex: q,
            endOfPassWriteIndex: q + 1,
          });
        }
        encoder.resolveQuerySet(querySet, 0, count, resolve, 0);
        encoder.copyBufferToBuffer(resolve, 0, read, 0, count * 8);
        device.queue.submit([encoder.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        const ticks = new BigInt64Array(read.getMappedRange().slice(0));
        read.unmap();
        for (let i = first; i < last; i++) {
          const q = 2 * (i - first);
          results.push({ label: this.#steps[i].label, ms: Number(ticks[q + 1] - ticks[q]) / 1e6 });
        }
      } finally {
        querySet.destroy();
        resolve.destroy();
        read.destroy();
      }
    }
    return results;
  }

  /** Frees the plan's buffers (weights bound by reference are not the plan's and stay). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.#owned) b.destroy();
  }
}
