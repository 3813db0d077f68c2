import assert from "node:assert/strict";
import { assignBuffers, type PlanTensorDecl } from "./plan.ts";
import { bitGraph } from "../models/bit.ts";
import { BIT_R101X3 } from "../models/bit_arch.ts";
import { recordBitPlan } from "../models/bit_plan.ts";
import { numel } from "./kernel.ts";

// Recording a plan only checks that each weight exists: any name resolves to a stand-in buffer.
const ANY_WEIGHTS = new Proxy(new Map<string, GPUBuffer>(), {
  get: (target, prop) => prop === "get" ? () => ({} as GPUBuffer) : Reflect.get(target, prop),
});

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
  const builder = recordBitPlan(graph, ANY_WEIGHTS, { maxComputeWorkgroupsPerDimension: 65535 });
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

Deno.test("recordBitPlan() keeps every R101x3 dispatch within 65,535 workgroups per dimension up to batch 16", () => {
  for (const batch of [1, 3, 16]) {
    const graph = bitGraph(BIT_R101X3, { preset: "derm", size: 448, batch });
    const builder = recordBitPlan(graph, ANY_WEIGHTS, { maxComputeWorkgroupsPerDimension: 65535 });
    for (const step of builder.steps) {
      for (const d of step.launch.workgroups) {
        assert.ok(d >= 1 && d <= 65535, `${step.label} at batch ${batch}: ${step.launch.workgroups}`);
      }
    }
  }
});
