import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { createEmbedder } from "../models/registry.ts";
import { relativeMaxError } from "../tests/_compare.ts";
import { isSoftwareAdapter, MemoryTuningCache, shapeKey, tuneGraph, tuningScope } from "./autotune.ts";
import { GraphBuilder } from "./graph.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { lowerGraph, loweringDevice, loweringTable, type OpLowering } from "./lowering.ts";
import { conv2dLowering } from "../kernels/conv2d.ts";
import { conv2dBlockTileVariant } from "../kernels/conv2d_block.ts";
import { randomF32 } from "../tests/_random.ts";

const IMAGE = {
  bytes: Deno.readFileSync(new URL("../samples/ISIC_0000101.jpg", import.meta.url)),
  name: "s",
};

Deno.test("shapeKey() names op, shapes and attributes, not the node", () => {
  const g = new GraphBuilder(LOWERINGS);
  const x = g.input("x", [1, 8, 8, 4]);
  const a = g.node("conv2d", "a", {
    inputs: [x],
    weights: { weight: "w" },
    attrs: { cout: 8, kernel: 3, pad: 1 },
  });
  g.node("conv2d", "b", { inputs: [x], weights: { weight: "v" }, attrs: { pad: 1, kernel: 3, cout: 8 } });
  const graph = g.build(a);
  const shape = (t: string) => graph.tensors.get(t)!;
  const [na, nb] = graph.nodes;
  assert.equal(shapeKey(na, shape), shapeKey({ ...nb, output: "a" }, shape));
  assert.equal(shapeKey(na, shape), "conv2d[1,8,8,4]->[1,8,8,8]{cout=8,kernel=3,pad=1}");
  assert.ok(isSoftwareAdapter("llvmpipe (LLVM 15.0.6, 256 bits)") && !isSoftwareAdapter("NVIDIA H200"));
  assert.equal(
    tuningScope({ vendor: "v", architecture: "a", device: "d", description: "x" }, "e"),
    "e|v|a|d|x",
  );
});

gpuTest(
  "tuning times every fitting variant once per shape, caches the winners, and a second run times nothing",
  async (gpu) => {
    const cache = new MemoryTuningCache();
    const options = { gpu, size: 64, tune: "always" as const, tuningCache: cache, engineVersion: "test" };
    const plain = await createEmbedder("procedural:tiny-bit:tune", { gpu, size: 64, tune: "off" });
    const [want] = await plain.embed([IMAGE]);
    plain.dispose();
    const first = await createEmbedder("procedural:tiny-bit:tune", options);
    try {
      const [row] = await first.embed([IMAGE]);
      assert.ok(relativeMaxError(row, want) < 1e-5, `tuned plan differs: ${relativeMaxError(row, want)}`);
      const choices = first.tunedChoices;
      assert.ok(choices.length >= 5, `expected conv shapes with a choice, got ${choices.length}`);
      for (const c of choices) {
        assert.equal(c.cached, false);
        assert.ok(Object.keys(c.times).length >= 2, `${c.key}: ${JSON.stringify(c.times)}`);
        assert.ok(Object.values(c.times).every((ms) => ms > 0 && Number.isFinite(ms)));
        assert.equal(c.variant, Object.entries(c.times).sort((a, b) => a[1] - b[1])[0][0]);
      }
      assert.equal(cache.entries.size, choices.length);
      assert.ok([...cache.entries.keys()].every((k) => k.startsWith("test|")));
    } finally {
      first.dispose();
    }
    const second = await createEmbedder("procedural:tiny-bit:tune", options);
    try {
      const [row] = await second.embed([IMAGE]);
      assert.ok(relativeMaxError(row, want) < 1e-5);
      assert.ok(
        second.tunedChoices.length > 0 &&
          second.tunedChoices.every((c) => c.cached && Object.keys(c.times).length === 0),
      );
    } finally {
      second.dispose();
    }
  },
);

/**
 * The GPU variants as tuning candidates: a conv2d and a ViT-sized linear, on the adapter the tests run on
 * but described as a GPU (`cpuAdapter: false`, which on a CPU rasteriser leaves them out). On GL the
 * full block tiles compile for about a minute each, so there the block variants of conv2d are stood in for
 * by small tiles of the same generator (conv2d_block64 -> 16x16, conv2d_block64_splitk -> 16x16 split-K,
 * conv2d_block128 -> 32x32 8x8) and the linear is left to the Vulkan run, which tunes the real ones.
 */
gpuTest(
  "tuning times the GPU variants per shape, caches the winners, and a second tuning times nothing",
  async (gpu) => {
    const gl = Deno.env.get("DENO_WEBGPU_BACKEND") === "gl";
    const small = new Map([
      ["conv2d_block64", conv2dBlockTileVariant({ bm: 16, bn: 16, bk: 8, tm: 4, tn: 4 })],
      ["conv2d_block64_splitk", conv2dBlockTileVariant({ bm: 16, bn: 16, bk: 8, tm: 4, tn: 4 }, true)],
      ["conv2d_block128", conv2dBlockTileVariant({ bm: 32, bn: 32, bk: 16, tm: 8, tn: 8 })],
    ]);
    const conv: OpLowering = {
      ...conv2dLowering,
      lower(ctx) {
        conv2dLowering.lower({
          ...ctx,
          choose: (candidates, fits) => ctx.choose(candidates.map((c) => small.get(c.name) ?? c), fits),
        });
      },
    };
    const table = gl ? loweringTable([conv]) : LOWERINGS;
    const g = new GraphBuilder(table);
    const x = g.input("x", [1, 9, 9, 32]);
    let out = g.node("conv2d", "c", {
      inputs: [x],
      weights: { weight: "cw" },
      attrs: { cout: 32, kernel: 3, pad: 1 },
    });
    const sizes: Record<string, number> = { cw: 9 * 32 * 32 };
    if (!gl) {
      out = g.node("linear", "l", { inputs: [out], weights: { weight: "lw" }, attrs: { outFeatures: 64 } });
      sizes.lw = 32 * 64;
    }
    const graph = g.build(out);
    const buffers: GPUBuffer[] = [];
    const weights = new Map(
      Object.entries(sizes).map(([name, n]) => {
        const buffer = gpu.device.createBuffer({
          size: 4 * n,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
        });
        gpu.device.queue.writeBuffer(buffer, 0, randomF32(n, 7));
        buffers.push(buffer);
        return [name, { buffer }];
      }),
    );
    const device = {
      ...loweringDevice(gpu),
      limits: gpu.limits,
      cpuAdapter: false,
      device: gpu.device,
      lostError: gpu.lostError,
    };
    const cache = new MemoryTuningCache();
    try {
      const first = await tuneGraph(device, graph, table, weights, { cache, scope: "test", trials: 1 });
      const timed = first.choices.flatMap((c) => Object.keys(c.times));
      const want = gl ? ["conv2d_tiled", ...[...small.values()].map((s) => s.name)] : [
        "conv2d_tiled",
        "conv2d_block64_splitk",
        "conv2d_block64",
        "conv2d_block128",
        "linear_block64",
        "linear_block128",
        "linear_tiled",
      ];
      for (const name of want) assert.ok(timed.includes(name), `${name} not timed: ${timed}`);
      if (gpu.features.has("subgroups") && gpu.adapterInfo.subgroupMinSize === 8) {
        assert.ok(timed.includes("conv2d_subgroup8") && !timed.includes("conv2d_subgroup32"), `${timed}`);
      }
      for (const c of first.choices) {
        assert.equal(c.cached, false);
        assert.equal(c.variant, Object.entries(c.times).sort((a, b) => a[1] - b[1])[0][0]);
        assert.equal(cache.entries.get(`test|${c.key}`), c.variant);
      }
      const second = await tuneGraph(device, graph, table, weights, { cache, scope: "test", trials: 1 });
      assert.deepEqual(
        second.choices.map((c) => [c.key, c.variant]),
        first.choices.map((c) => [c.key, c.variant]),
      );
      assert.ok(second.choices.every((c) => c.cached && Object.keys(c.times).length === 0));
      // the winners are what the plan then uses
      const builder = lowerGraph(graph, table, weights, device, { label: "tuned", pick: second.pick });
      const used = builder.steps.map((s) => s.label.split("/")[1]);
      for (const c of first.choices) assert.ok(used.includes(c.variant), `${c.variant} not in ${used}`);
      // and on the CPU rasteriser it is (cpuAdapter true): the GPU variants are not even candidates
      const cpu = await tuneGraph({ ...device, cpuAdapter: true }, graph, table, weights, {
        cache: new MemoryTuningCache(),
        scope: "cpu",
        trials: 1,
      });
      const cpuTimed = cpu.choices.flatMap((c) => Object.keys(c.times));
      assert.ok(cpuTimed.length > 0 && cpuTimed.every((n) => !/block|subgroup/.test(n)), `${cpuTimed}`);
    } finally {
      for (const b of buffers) b.destroy();
    }
  },
);
