import assert from "node:assert/strict";
import type { KernelSpec } from "../engine/kernel.ts";
import {
  deviceRefusal,
  lowerGraph,
  type LoweringDevice,
  loweringDevice,
  loweringTable,
} from "../engine/lowering.ts";
import type { Graph } from "../engine/graph.ts";
import { createKernelPipeline, runKernelOnce } from "./_harness.ts";
import { linearLowering, linearPreferred, type LinearShape } from "./linear.ts";
import {
  isLinearSplitK,
  linearBlock128,
  linearBlock64,
  linearBlock64SplitK,
  linearBlockFits,
  linearBlockLaunch,
  linearBlockTileVariant,
  linearSplitCount,
  linearSubgroup32,
  linearSubgroup8,
} from "./linear_block.ts";
import { linearRef } from "./linear_ref.ts";
import { splitkReduceLaunch, splitkReduceSpec } from "./splitk_reduce.ts";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomF32AsF64 } from "../tests/_random.ts";
import { kLoopBody } from "../tests/_wgsl_loops.ts";
import { lavapipeLike, noSubgroups, nvidiaLike } from "../tests/_gemm_devices.ts";

function layer(rows: number, din: number, dout: number, more: Partial<LinearShape> = {}): LinearShape {
  return { rows, din, dout, bias: false, activation: "none", accumulate: false, ...more };
}

/** ViT-S/16 at 224, batch 1 (197 tokens): the MLP's first layer, and the qkv projection at batch 64. */
const vitFc1 = layer(197, 384, 1536, { bias: true, activation: "gelu" });
const vitQkvB64 = layer(64 * 197, 384, 1152, { bias: true });

// ---------- pure tests ----------

Deno.test("linearSplitCount() splits the ViT-S layers at batch 1 and leaves batch 64 whole", () => {
  const s = linearSplitCount(vitFc1, nvidiaLike.limits);
  assert.ok(s >= 2 && s <= 16, `${s}`);
  const l = linearBlockLaunch(linearBlock64SplitK, vitFc1, { splits: s });
  assert.equal(l.workgroups[2], s);
  assert.equal(l.scratchBytes, 4 * s * 197 * 1536);
  assert.equal(linearSplitCount(vitQkvB64, nvidiaLike.limits), 1);
  assert.ok(linearBlockFits(linearBlock64SplitK, vitFc1, nvidiaLike));
  assert.ok(!linearBlockFits(linearBlock64SplitK, vitQkvB64, nvidiaLike));
});

Deno.test("linearPreferred() keeps the measured CPU order and puts block tiles first on a GPU", () => {
  const cpu = linearPreferred(vitFc1, lavapipeLike).map((s) => s.name);
  assert.deepEqual(cpu.slice(0, 3), ["linear_big_tile", "linear_tiled", "linear_direct"]);
  assert.deepEqual(linearPreferred(vitFc1, undefined).map((s) => s.name), cpu);
  assert.equal(linearPreferred(vitFc1, nvidiaLike)[0], linearBlock64SplitK);
  assert.equal(linearPreferred(vitQkvB64, nvidiaLike)[0], linearBlock128);
});

Deno.test("linearBlockFits() offers the subgroup kernels only where the adapter's subgroups are big enough", () => {
  assert.ok(!linearBlockFits(linearSubgroup8, vitFc1, noSubgroups));
  assert.ok(linearBlockFits(linearSubgroup8, vitFc1, lavapipeLike));
  assert.ok(!linearBlockFits(linearSubgroup32, vitFc1, lavapipeLike));
  assert.ok(linearBlockFits(linearSubgroup32, vitFc1, nvidiaLike));
  assert.ok(!linearBlockFits(linearBlock64, { ...vitFc1, din: 6 }, nvidiaLike));
  assert.equal(
    deviceRefusal(linearSubgroup32, lavapipeLike),
    "expected subgroups of at least 32 lanes, got 8 to 8",
  );
});

Deno.test("lowerGraph() lowers a forced split-K linear to two steps and refuses a subgroup kernel it cannot run", () => {
  const graph: Graph = {
    input: "x",
    output: "y",
    checkpoints: {},
    tensors: new Map([["x", [1, 197, 384]], ["y", [1, 197, 1536]]]),
    nodes: [{
      op: "linear",
      name: "fc1",
      inputs: ["x"],
      output: "y",
      weights: { weight: "w", bias: "b" },
      attrs: { outFeatures: 1536, activation: "gelu" },
      inPlace: false,
    }],
  };
  const weights = new Map([
    ["w", { buffer: { size: 4 * 384 * 1536 } as GPUBuffer }],
    ["b", { buffer: { size: 4 * 1536 } as GPUBuffer }],
  ]);
  const table = loweringTable([linearLowering]);
  const lower = (device: LoweringDevice, name: string) =>
    lowerGraph(graph, table, weights, device, { label: "t", forcedKernels: new Set([name]) }).steps.map((s) =>
      s.label
    );
  assert.deepEqual(lower(nvidiaLike, "linear_block64_splitk"), [
    "fc1/linear_block64_splitk",
    "fc1/splitk_reduce",
  ]);
  assert.deepEqual(lower(nvidiaLike, "linear_subgroup32"), ["fc1/linear_subgroup32"]);
  assert.throws(() => lower(lavapipeLike, "linear_subgroup32"), {
    name: "RangeError",
    message:
      'Cannot use kernel "linear_subgroup32" for "fc1" on this device: expected subgroups of at least 32 lanes, got 8 to 8',
  });
  // not forced: a GPU's default, the CPU's default
  assert.deepEqual(
    lowerGraph(graph, table, weights, nvidiaLike, { label: "t" }).steps.map((s) => s.label),
    ["fc1/linear_block64_splitk", "fc1/splitk_reduce"],
  );
  assert.deepEqual(
    lowerGraph(graph, table, weights, lavapipeLike, { label: "t" }).steps.map((s) => s.label),
    ["fc1/linear_big_tile"],
  );
});

Deno.test("linearBlockLaunch() rejects bad shapes with a TypeError", () => {
  assert.throws(() => linearBlockLaunch(linearBlock64, layer(3, 6, 4)), {
    name: "TypeError",
    message: "Cannot launch linear_block64: expected Din % 4 == 0, got 6",
  });
  assert.throws(() => linearBlockLaunch(linearBlock64, layer(3, 4, 10)), {
    name: "TypeError",
    message: "Cannot launch linear_block64: expected Dout % 4 == 0, got 10",
  });
  assert.throws(
    () => linearBlockLaunch(linearBlock64, layer(3, 4, 4, { activation: "gelu", accumulate: true })),
    {
      name: "TypeError",
      message: "Cannot launch linear_block64: expected GELU or accumulate, got both",
    },
  );
  assert.throws(() => linearBlockLaunch(linearBlock64, layer(0, 4, 4)), {
    name: "TypeError",
    message: /rows/,
  });
});

// ---------- kernel tests: every variant against the reference ----------

const cases: { label: string; shape: LinearShape }[] = [
  { label: "197 x 20 -> 12 (ViT rows, Din not a multiple of the K step)", shape: layer(197, 20, 12) },
  {
    label: "34 x 64 -> 132 (2 images of 17 tokens, partial column tiles), bias and GELU",
    shape: layer(34, 64, 132, { bias: true, activation: "gelu" }),
  },
  {
    label: "37 x 136 -> 40 (K = 136: several accuracy chunks), bias and residual",
    shape: layer(37, 136, 40, { bias: true, accumulate: true }),
  },
  { label: "3 x 4 -> 4 (smaller than a tile)", shape: layer(3, 4, 4) },
  {
    label: "130 x 96 -> 20 (two row tiles of 128), residual",
    shape: layer(130, 96, 20, { accumulate: true }),
  },
  {
    label: "9 x 200 -> 8 (K tail of 8 past the last 32-step), bias",
    shape: layer(9, 200, 8, { bias: true }),
  },
];

const TEST_SPLITS = 3;
const pipelines = new Map<string, GPUComputePipeline>();
function pipelineOf(device: GPUDevice, spec: KernelSpec): GPUComputePipeline {
  const key = `${spec.name}/${JSON.stringify(spec.overrides)}`;
  let p = pipelines.get(key);
  if (!p) pipelines.set(key, p = createKernelPipeline(device, spec));
  return p;
}

/** Runs a block variant as the lowering does: one step, or (split-K) the partials and `splitk_reduce`. */
async function runBlock(
  device: GPUDevice,
  spec: KernelSpec,
  shape: LinearShape,
  x: Float64Array,
  w: Float64Array,
  bias?: Float64Array,
  residual?: Float64Array,
): Promise<{ y: Float32Array; splits: number }> {
  const launch = linearBlockLaunch(spec, shape, {
    limits: device.limits,
    splits: isLinearSplitK(spec) ? TEST_SPLITS : 1,
  });
  const outBytes = shape.rows * shape.dout * 4;
  // unread bindings get garbage, proving they are not read
  const garbage = new Float32Array(4).fill(1e9);
  const b = bias ? new Float32Array(bias) : garbage;
  const res = residual ? new Float32Array(residual) : garbage;
  const xs = new Float32Array(x), ws = new Float32Array(w);
  if (launch.splits === 1) {
    const [out] = await runKernelOnce(device, spec, launch, [xs, ws, b, res, { bytes: outBytes }], {
      pipeline: pipelineOf(device, spec),
    });
    return { y: new Float32Array(out), splits: 1 };
  }
  const scratch = new Float32Array(launch.scratchBytes / 4).fill(Number.NaN);
  const [part] = await runKernelOnce(device, spec, launch, [xs, ws, b, res, scratch], {
    pipeline: pipelineOf(device, spec),
  });
  const reduce = splitkReduceLaunch({
    rows: shape.rows,
    cols: shape.dout,
    splits: launch.splits,
    bias: shape.bias,
    gelu: shape.activation === "gelu",
    accumulate: false,
    residual: shape.accumulate,
    relu: false,
  }, device.limits);
  const [out] = await runKernelOnce(device, splitkReduceSpec, reduce, [new Float32Array(part), b, res, {
    bytes: outBytes,
  }], { pipeline: pipelineOf(device, splitkReduceSpec) });
  return { y: new Float32Array(out), splits: launch.splits };
}

/**
 * Small tiles from the same generator on every adapter: llvmpipe's GL compiles a full 64 x 64 tile in
 * about a minute, so there these stand in for the full tiles (same code, other constants); the full tiles
 * run on the other adapters (Vulkan: lavapipe compiles each in well under a second).
 */
const SMALL_TILES: readonly KernelSpec[] = [
  linearBlockTileVariant({ bm: 16, bn: 16, bk: 8, tm: 4, tn: 4 }),
  linearBlockTileVariant({ bm: 16, bn: 16, bk: 8, tm: 4, tn: 4 }, true),
  linearBlockTileVariant({ bm: 32, bn: 32, bk: 16, tm: 8, tn: 8 }),
];
const FULL: readonly KernelSpec[] = [linearBlock128, linearBlock64, linearBlock64SplitK];
const SUBGROUP: readonly KernelSpec[] = [linearSubgroup8, linearSubgroup32];
/** GL's llvmpipe: the backend the tests were started on (Deno picks Vulkan unless told). */
const SLOW_COMPILER = Deno.env.get("DENO_WEBGPU_BACKEND") === "gl";
const BLOCK_TESTED: readonly KernelSpec[] = [...SMALL_TILES, ...(SLOW_COMPILER ? [] : FULL)];

for (const [i, { label, shape }] of cases.entries()) {
  gpuTest(`linear block variants match linearRef for ${label}`, async (gpu) => {
    const x = randomF32AsF64(shape.rows * shape.din, 10 + i);
    const w = randomF32AsF64(shape.din * shape.dout, 20 + i);
    const bias = shape.bias ? randomF32AsF64(shape.dout, 30 + i) : undefined;
    const residual = shape.accumulate ? randomF32AsF64(shape.rows * shape.dout, 40 + i) : undefined;
    const want = linearRef(x, w, bias, shape, residual);
    const device = loweringDevice(gpu);
    const specs = [...BLOCK_TESTED];
    for (const spec of SUBGROUP) {
      if (!linearBlockFits(spec, shape, device)) continue;
      specs.push(spec, { ...spec, overrides: { ...spec.overrides, NO_SHUFFLE: 1 } });
    }
    for (const spec of specs) {
      const { y, splits } = await runBlock(gpu.device, spec, shape, x, w, bias, residual);
      const what = `${spec.name}${
        spec.overrides.NO_SHUFFLE ? " (NO_SHUFFLE)" : ""
      } splits ${splits} ${label}`;
      assertClose(y, want, { abs: 1e-5, rel: 1e-5, shape: [shape.rows, shape.dout], what });
    }
  });
}

Deno.test("the linear block cases split K for the split-K variants", () => {
  const split = SMALL_TILES[1];
  assert.ok(isLinearSplitK(split));
  const n =
    cases.filter(({ shape }) => linearBlockLaunch(split, shape, { splits: TEST_SPLITS }).splits > 1).length;
  assert.ok(n >= 4, `${n}`);
  assert.ok(cases.some(({ shape }) => shape.activation === "gelu" && shape.bias));
  assert.ok(cases.some(({ shape }) => shape.accumulate));
});

Deno.test("the linear block kernels' K loops are unrolled: no division, modulo or inner loop", () => {
  for (const spec of [linearBlock128, linearBlock64, linearSubgroup8, linearSubgroup32, ...SMALL_TILES]) {
    const body = kLoopBody(spec.wgsl);
    assert.doesNotMatch(body, /[/%]/, spec.name);
    assert.doesNotMatch(body.slice(1), /\b(for|while|loop)\b/, spec.name);
  }
});
