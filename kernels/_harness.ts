/**
 * Runs one kernel dispatch on fresh buffers and reads its writable bindings back: for kernel tests and
 * kernel benchmarks, not for the model (the planner owns buffers there).
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelLaunch, KernelSpec } from "../engine/kernel.ts";
import { checkedGpuCall } from "../engine/device.ts";
import { createKernelPipeline } from "../engine/plan.ts";

/** Contents of one binding: data to upload, or a byte size for a zero-filled buffer. */
export type HarnessBuffer = ArrayBufferView | { bytes: number };

export { createKernelPipeline };

function align4(n: number): number {
  return Math.max(4, Math.ceil(n / 4) * 4);
}

/**
 * Dispatches `spec` once and returns the bytes of every `storage` (writable) binding, in binding order.
 *
 * @param device The device.
 * @param spec The kernel variant.
 * @param launch Workgroups and uniforms from the kernel's launch function.
 * @param buffers One entry per binding of `spec`, in order.
 * @param options `repeat` dispatches that many times in one pass (for benchmarks); `pipeline`, one made
 *   from `spec` before, to run instead of creating it again (for kernels that compile slowly).
 */
export async function runKernelOnce(
  device: GPUDevice,
  spec: KernelSpec,
  launch: KernelLaunch,
  buffers: readonly HarnessBuffer[],
  options: { repeat?: number; pipeline?: GPUComputePipeline } = {},
): Promise<ArrayBuffer[]> {
  if (buffers.length !== spec.bindings.length) {
    throw new TypeError(
      `Cannot run "${spec.name}": expected ${spec.bindings.length} buffers, got ${buffers.length}`,
    );
  }
  const created: GPUBuffer[] = [];
  try {
    return await checkedGpuCall(device, spec.name, () => {
      const pipeline = options.pipeline ?? createKernelPipeline(device, spec);
      const gpuBuffers = buffers.map((b, i) => {
        const size = align4("bytes" in b ? b.bytes : b.byteLength);
        const buffer = device.createBuffer({
          label: `${spec.name}/${spec.bindings[i].name}`,
          size,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        });
        created.push(buffer);
        if (!("bytes" in b)) {
          const src = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
          const padded = new Uint8Array(size);
          padded.set(src);
          device.queue.writeBuffer(buffer, 0, padded);
        }
        return buffer;
      });
      const uniforms = device.createBuffer({
        label: `${spec.name}/uniforms`,
        size: launch.uniforms.byteLength,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      created.push(uniforms);
      device.queue.writeBuffer(uniforms, 0, launch.uniforms);
      const entries: GPUBindGroupEntry[] = gpuBuffers.map((buffer, i) => ({
        binding: i,
        resource: { buffer },
      }));
      entries.push({ binding: gpuBuffers.length, resource: { buffer: uniforms } });
      const bindGroup = device.createBindGroup({
        label: spec.name,
        layout: pipeline.getBindGroupLayout(0),
        entries,
      });
      const encoder = device.createCommandEncoder({ label: spec.name });
      const pass = encoder.beginComputePass({ label: spec.name });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      for (let r = 0; r < (options.repeat ?? 1); r++) pass.dispatchWorkgroups(...launch.workgroups);
      pass.end();
      const reads: { buffer: GPUBuffer; bytes: number }[] = [];
      spec.bindings.forEach((b, i) => {
        if (b.type !== "storage") return;
        const read = device.createBuffer({
          label: `${spec.name}/${b.name}/read`,
          size: gpuBuffers[i].size,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        });
        created.push(read);
        encoder.copyBufferToBuffer(gpuBuffers[i], 0, read, 0, gpuBuffers[i].size);
        const bi = buffers[i];
        reads.push({ buffer: read, bytes: "bytes" in bi ? bi.bytes : bi.byteLength });
      });
      device.queue.submit([encoder.finish()]);
      return reads;
    }).then((reads) =>
      Promise.all(reads.map(async ({ buffer, bytes }) => {
        await buffer.mapAsync(GPUMapMode.READ);
        const copy = buffer.getMappedRange().slice(0, bytes);
        buffer.unmap();
        return copy;
      }))
    );
  } finally {
    for (const b of created) b.destroy();
  }
}
