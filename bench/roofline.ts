/**
 * Roofline calibration: the adapter's attainable FMA throughput and memory bandwidth, measured with two
 * WGSL kernels, so each kernel's figure can be reported as a share of what the hardware gives here.
 *
 * - `fma_peak`: every invocation runs `ITERS` iterations of 8 independent `fma` chains on `vec4<f32>`
 *   registers (no memory traffic in the loop; the sum is written once so nothing is eliminated).
 *   FLOP = invocations x ITERS x 8 chains x 4 lanes x 2.
 * - `stream_copy`: y[i] = x[i] over `vec4<f32>`, grid-stride. Bytes = 2 x buffer size (read + write).
 * Both are timed with {@linkcode timeOnGpu} (timestamps where offered, else amortised wall time).
 * @module
 */
import { timeOnGpu, type TimingOptions } from "./_timing.ts";

// fma_peak: 8 independent vec4 chains per invocation, ITERS iterations (override, set below).
// bindings: 0 out rw (one vec4 per invocation) · overrides: WG, ITERS · dispatch: GROUPS x 1 x 1
const FMA_WGSL = /* wgsl */ `
override WG: u32 = 64u;
override ITERS: u32 = 1024u;
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = f32(gid.x) * 1e-9;
  var a0 = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
  var a1 = a0 + 0.1; var a2 = a0 + 0.2; var a3 = a0 + 0.3;
  var a4 = a0 + 0.4; var a5 = a0 + 0.5; var a6 = a0 + 0.6; var a7 = a0 + 0.7;
  let m = vec4<f32>(0.999999);
  let c = vec4<f32>(1e-7);
  for (var i = 0u; i < ITERS; i++) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  out[gid.x] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}`;

// stream_copy: y = x, vec4, grid-stride over `count` vec4s.
// bindings: 0 x r · 1 y rw · 2 uniforms {count: u32} · overrides: WG · dispatch: GROUPS x 1 x 1
const COPY_WGSL = /* wgsl */ `
override WG: u32 = 256u;
struct U { count: u32, stride: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  for (var i = gid.x; i < u.count; i += u.stride) { y[i] = x[i]; }
}`;

const FMA_WG = 64;
const FMA_ITERS = 4096;
const FMA_GROUPS = 256;
const COPY_WG = 256;
const COPY_GROUPS = 1024;

/** Measured peaks of this adapter. */
export interface Roofline {
  /** Attainable f32 FMA throughput, GFLOP/s (an FMA counts 2 FLOP). */
  readonly gflops: number;
  /** Attainable copy bandwidth, GB/s (read + write bytes). */
  readonly gbps: number;
  /** Bytes copied per repeat by the bandwidth kernel (read + write). */
  readonly copyBytes: number;
  /** Whether the figures came from timestamp queries (else amortised wall time). */
  readonly timestamps: boolean;
}

/**
 * Measures the FMA and bandwidth roofs of `device`.
 *
 * @param device The device.
 * @param options Timing budget; `copyMiB` sets the copy buffer size (default 64 MiB).
 * @returns Peak GFLOP/s and GB/s.
 */
export async function measureRoofline(
  device: GPUDevice,
  options: TimingOptions & { copyMiB?: number } = {},
): Promise<Roofline> {
  const layoutOf = (types: GPUBufferBindingType[]) =>
    device.createBindGroupLayout({
      entries: types.map((type, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type },
      })),
    });
  const fmaLayout = layoutOf(["storage"]);
  const fma = device.createComputePipeline({
    label: "roofline/fma_peak",
    layout: device.createPipelineLayout({ bindGroupLayouts: [fmaLayout] }),
    compute: {
      module: device.createShaderModule({ label: "fma_peak", code: FMA_WGSL }),
      entryPoint: "main",
      constants: { WG: FMA_WG, ITERS: FMA_ITERS },
    },
  });
  const copyLayout = layoutOf(["read-only-storage", "storage", "uniform"]);
  const copy = device.createComputePipeline({
    label: "roofline/stream_copy",
    layout: device.createPipelineLayout({ bindGroupLayouts: [copyLayout] }),
    compute: {
      module: device.createShaderModule({ label: "stream_copy", code: COPY_WGSL }),
      entryPoint: "main",
      constants: { WG: COPY_WG },
    },
  });
  const invocations = FMA_WG * FMA_GROUPS;
  const out = device.createBuffer({ size: invocations * 16, usage: GPUBufferUsage.STORAGE });
  const bytes = (options.copyMiB ?? 64) * 2 ** 20;
  const x = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
  const y = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
  const u = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(u, 0, new Uint32Array([bytes / 16, COPY_WG * COPY_GROUPS, 0, 0]));
  try {
    const fmaGroup = device.createBindGroup({
      layout: fmaLayout,
      entries: [{ binding: 0, resource: { buffer: out } }],
    });
    const copyGroup = device.createBindGroup({
      layout: copyLayout,
      entries: [x, y, u].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const dispatch =
      (pipeline: GPUComputePipeline, group: GPUBindGroup, groups: number) =>
      (encoder: GPUCommandEncoder, timestampWrites?: GPUComputePassTimestampWrites) => {
        const pass = encoder.beginComputePass({ timestampWrites });
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(groups);
        pass.end();
      };
    const tf = await timeOnGpu(device, dispatch(fma, fmaGroup, FMA_GROUPS), options);
    const tc = await timeOnGpu(device, dispatch(copy, copyGroup, COPY_GROUPS), options);
    const flop = invocations * FMA_ITERS * 8 * 4 * 2;
    const fmaMs = tf.gpuMs ?? tf.wallMs;
    const copyMs = tc.gpuMs ?? tc.wallMs;
    return {
      gflops: flop / (fmaMs * 1e6),
      gbps: (2 * bytes) / (copyMs * 1e6),
      copyBytes: 2 * bytes,
      timestamps: tf.gpuMs !== undefined && tc.gpuMs !== undefined,
    };
  } finally {
    for (const b of [out, x, y, u]) b.destroy();
  }
}
