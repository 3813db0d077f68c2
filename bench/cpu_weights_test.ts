import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { createEmbedder, defineModel, proceduralWeights } from "../models/registry.ts";
import { cpuResidentWeights } from "./cpu_weights.ts";

async function readBack(device: GPUDevice, buffer: GPUBuffer, bytes: number): Promise<Float32Array> {
  const read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    return new Float32Array(read.getMappedRange().slice(0));
  } finally {
    read.destroy();
  }
}

for (const name of ["tiny-derm", "tiny-resnet"]) {
  gpuTest(
    `cpuResidentWeights() matches the engine's resident tensors when replaying ${name}'s recipes`,
    async (gpu) => {
      const source = proceduralWeights(name, "bench-test");
      const cpu = await cpuResidentWeights(source, defineModel(source).weights);
      await source.close();
      const embedder = await createEmbedder({ procedural: name, seed: "bench-test" }, { gpu, size: 64 });
      try {
        assert.deepEqual([...cpu.keys()].sort(), [...embedder.weights.buffers.keys()].sort());
        let worst = 0;
        for (const [tensor, values] of cpu) {
          const got = await readBack(
            gpu.device,
            embedder.weights.buffers.get(tensor)!.buffer,
            values.byteLength,
          );
          let scale = 0;
          for (let i = 0; i < values.length; i++) scale = Math.max(scale, Math.abs(values[i]));
          for (let i = 0; i < values.length; i++) {
            worst = Math.max(worst, Math.abs(got[i] - values[i]) / Math.max(scale, 1e-30));
          }
        }
        // BiT's standardisation: float64 on the CPU vs f32 on the GPU; ResNet's fold: the same CPU code.
        assert.ok(worst <= 1e-5, `max rel difference ${worst}`);
        if (name === "tiny-resnet") assert.equal(worst, 0);
      } finally {
        embedder.dispose();
      }
    },
  );
}
