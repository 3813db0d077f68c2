import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { createEmbedder } from "../models/registry.ts";
import { relativeMaxError } from "../tests/_compare.ts";
import { isSoftwareAdapter, MemoryTuningCache, shapeKey, tuningScope } from "./autotune.ts";
import { GraphBuilder } from "./graph.ts";
import { LOWERINGS } from "../kernels/registry.ts";

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
