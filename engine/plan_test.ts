import assert from "node:assert/strict";
import { assignBuffers, type PlanTensorDecl } from "./plan.ts";
import { bitGraph } from "../models/bit.ts";
import { BIT_R101X3 } from "../models/bit_arch.ts";
import { LOWERINGS } from "../kernels/registry.ts";
import { lowerGraph, type WeightBinding } from "./lowering.ts";
import { numel } from "./kernel.ts";

// Lowering only checks that each weight exists: any name resolves to a stand-in buffer.
const ANY_WEIGHTS = new Proxy(new Map<string, WeightBinding>(), {
  get: (target, prop) => prop === "get" ? () => ({ buffer: {} as GPUBuffer }) : Reflect.get(target, prop),
});
const DEVICE = { limits: { maxComputeWorkgroupsPerDimension: 65535 }, features: new Set<string>() };

function decls(entries: [string, number, boolean?][]): Map<string, PlanTensorDecl> {
  return new Map(entries.map(([n, bytes, keep]) => [n, { bytes, keep }]));
}

Deno.test("assignBuffers() reuses a buffer once its tensor is dead", () => {
  const tensors = decls([["in", 64, true], ["a", 64], ["b", 64], ["c", 64], ["out", 16, true]]);
  const steps = [
    { bindings: ["in", "a"] },
    { bindings: ["a", "b"] },
    { bindings: ["b", "c"] }, // a is dead: c may take its buffer
    { bindings: ["c", "out"] },
  ];
  const { sizes, bufferOf } = assignBuffers(tensors, steps);
  assert.equal(sizes.length, 4); // in, out, and two rotating scratch buffers
  assert.equal(bufferOf.get("c"), bufferOf.get("a"));
  assert.notEqual(bufferOf.get("a"), bufferOf.get("b"));
});

Deno.test("assignBuffers() never gives two bindings of one step the same buffer", () => {
  const graph = bitGraph(BIT_R101X3, { preset: "derm", size: 448, batch: 2 });
  const builder = lowerGraph(graph, LOWERINGS, ANY_WEIGHTS, DEVICE, { label: "r101x3" });
  const tensors = new Map<string, PlanTensorDecl>();
  for (const [name] of graph.tensors) tensors.set(name, { bytes: numel(graph.tensors.get(name)!) * 4 });
  for (const step of builder.steps) {
    for (const b of step.bindings) {
      if (typeof b === "string" && !tensors.has(b)) tensors.set(b, { bytes: builder.bytesOf(b) });
    }
  }
  const { sizes, bufferOf } = assignBuffers(tensors, builder.steps);
  for (const step of builder.steps) {
    const used = step.bindings.filter((b): b is string => typeof b === "string").map((b) => bufferOf.get(b));
    assert.equal(new Set(used).size, used.length, `step ${step.label} binds one buffer twice`);
  }
  const shared = sizes.reduce((a, b) => a + b, 0);
  const unshared = [...tensors.values()].reduce((a, d) => a + d.bytes, 0);
  assert.ok(shared < unshared / 10, `liveness saves memory: ${shared} of ${unshared} bytes`);
  assert.ok(sizes.length <= 12, `R101x3 needs few activation buffers, got ${sizes.length}`);
});
