/**
 * Model parity with the GPU-oriented kernel variants forced (`--kernels`): the tiny BiT (testdata/bit) and
 * the tiny ResNet and ViT (testdata/groeger) against their float64 references, the reference input through
 * the network, under the cases' own bounds. Each forced set also has to be what the plan actually runs
 * (its variants appear among the plan's steps), and a variant the device cannot run is refused with its
 * reason rather than run.
 *
 * On llvmpipe's GL each full block tile takes about a minute to compile (conv2d_block64 55 s, more for the
 * 128 x 128 one), so there the block variants are stood in for by small tiles of the same generator
 * (16x16 K step 8, its split-K, and 32x32 K step 16 with 8x8 per invocation), through a lowering table
 * that offers them in place of the full ones; on the other adapters (Vulkan: lavapipe) the real variants
 * are forced by name through `createEmbedder`, the subgroup ones where the device's subgroups allow.
 */
import assert from "node:assert/strict";
import { gpuTest } from "./_gpu.ts";
import {
  caseWeights,
  embeddingBound,
  fixtureCases,
  groegerBound,
  groegerCases,
  groegerVitArchitecture,
  readGroegerReference,
  readReference,
} from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import { createEmbedder, defineModel, type EmbedderOptions } from "../models/registry.ts";
import { resnetProceduralSource } from "../models/resnet.ts";
import { vitProceduralSource } from "../models/vit.ts";
import type { TensorSource } from "../engine/tensor_source.ts";
import type { Gpu } from "../engine/device.ts";
import type { KernelSpec } from "../engine/kernel.ts";
import {
  lowerGraph,
  loweringDevice,
  type LoweringTable,
  loweringTable,
  type OpLowering,
} from "../engine/lowering.ts";
import { createEmbedderRuntime, type Embedder, type RuntimeKernels } from "../engine/embedder.ts";
import { LOWERINGS, RUNTIME_KERNELS } from "../kernels/registry.ts";
import { conv2dBlockTileVariant } from "../kernels/conv2d_block.ts";
import { linearBlockTileVariant } from "../kernels/linear_block.ts";
import type { BlockTile } from "../kernels/_gemm_block.wgsl.ts";

/** A fixture: its weights, options, reference and which op it exercises. */
interface Fixture {
  readonly name: string;
  readonly weights: () => TensorSource;
  readonly options: EmbedderOptions;
  readonly ref: () => { tensors: Map<string, { data: Float64Array }>; metadata: Record<string, string> };
  readonly bound: (metadata: Record<string, string>) => number;
  /** The op whose forced variant must appear in the plan. */
  readonly op: "conv2d" | "linear";
}

function fixtures(): Fixture[] {
  const bit = fixtureCases().find((c) => c.name === "tiny-bit-64");
  const resnet = groegerCases().find((c) => c.name === "tiny-resnet-64");
  const vit = groegerCases().find((c) => c.name === "tiny-vit-64");
  assert.ok(bit && resnet && vit, "tiny-bit-64, tiny-resnet-64 or tiny-vit-64 missing from testdata");
  return [
    {
      name: bit.name,
      weights: () => caseWeights(bit),
      options: { preset: bit.preset, size: bit.size, maxBatch: 1 },
      ref: () => readReference(bit.name),
      bound: embeddingBound,
      op: "conv2d",
    },
    {
      name: resnet.name,
      weights: () =>
        resnetProceduralSource({
          layers: resnet.layers!,
          widthPerGroup: resnet.width_per_group ?? 64,
          stemChannels: 64,
        }, resnet.seed),
      options: { size: resnet.size, resize: resnet.resize, maxBatch: 1 },
      ref: () => readGroegerReference(resnet.name),
      bound: groegerBound,
      op: "conv2d",
    },
    {
      name: vit.name,
      weights: () => vitProceduralSource(groegerVitArchitecture(vit), vit.seed),
      options: { size: vit.size, resize: vit.resize, vitBlocks: vit.vit_blocks, maxBatch: 1 },
      ref: () => readGroegerReference(vit.name),
      bound: groegerBound,
      op: "linear",
    },
  ];
}

const GL = Deno.env.get("DENO_WEBGPU_BACKEND") === "gl";

/** The small tiles standing in on GL for conv2d_block64, conv2d_block64_splitk and conv2d_block128. */
const SMALL: readonly [string, BlockTile, boolean][] = [
  ["block64", { bm: 16, bn: 16, bk: 8, tm: 4, tn: 4 }, false],
  ["block64_splitk", { bm: 16, bn: 16, bk: 8, tm: 4, tn: 4 }, true],
  ["block128", { bm: 32, bn: 32, bk: 16, tm: 8, tn: 8 }, false],
];

/** The lowering table with the small tiles offered in place of the full block variants. */
function smallTileTable(): LoweringTable {
  const subst = new Map<string, KernelSpec>();
  for (const [role, tile, split] of SMALL) {
    subst.set(`conv2d_${role}`, conv2dBlockTileVariant(tile, split));
    subst.set(`linear_${role}`, linearBlockTileVariant(tile, split));
  }
  const wrap = (entry: OpLowering): OpLowering => ({
    ...entry,
    lower(ctx) {
      entry.lower({
        ...ctx,
        choose: (candidates, fits) => ctx.choose(candidates.map((c) => subst.get(c.name) ?? c), fits),
      });
    },
  });
  return loweringTable(
    [...LOWERINGS.values()].map((e) => (e.op === "conv2d" || e.op === "linear" ? wrap(e) : e)),
  );
}

/** The forced sets of this adapter: [conv2d variant, linear variant]. */
function forcedSets(gpu: Gpu): string[][] {
  if (GL) {
    return SMALL.map(([_, tile, split]) => [
      conv2dBlockTileVariant(tile, split).name,
      linearBlockTileVariant(tile, split).name,
    ]);
  }
  const sets = [
    ["conv2d_block128", "linear_block128"],
    ["conv2d_block64", "linear_block64"],
    ["conv2d_block64_splitk", "linear_block64_splitk"],
  ];
  const min = gpu.features.has("subgroups") ? gpu.adapterInfo.subgroupMinSize ?? 0 : 0;
  if (min >= 8) sets.push(["conv2d_subgroup8", "linear_subgroup8"]);
  if (min >= 32) sets.push(["conv2d_subgroup32", "linear_subgroup32"]);
  return sets;
}

async function embedderFor(
  gpu: Gpu,
  f: Fixture,
  kernels: string[],
  table?: LoweringTable,
): Promise<Embedder> {
  const options = { ...f.options, gpu, kernels, tune: "off" as const };
  if (!table) return await createEmbedder(f.weights(), options);
  const source = f.weights();
  const runtime: RuntimeKernels = { ...RUNTIME_KERNELS, lowerings: table };
  return await createEmbedderRuntime(defineModel(source, options), source, runtime, options);
}

for (const f of fixtures()) {
  gpuTest(`parity with forced GPU variants: ${f.name} matches the float64 reference`, async (gpu) => {
    const ref = f.ref();
    const bound = f.bound(ref.metadata);
    const want = ref.tensors.get("embedding_f64")!.data;
    const input = Float32Array.from(ref.tensors.get("input")!.data);
    const table = GL ? smallTileTable() : undefined;
    const lines: string[] = [];
    for (const kernels of forcedSets(gpu)) {
      const embedder = await embedderFor(gpu, f, kernels, table);
      try {
        const used = lowerGraph(
          embedder.graph(1),
          table ?? LOWERINGS,
          embedder.weights.buffers,
          loweringDevice(gpu),
          {
            label: "check",
            forcedKernels: new Set(kernels),
          },
        ).steps.map((s) => s.label.split("/")[1]);
        const mine = kernels.find((k) => k.startsWith(f.op))!;
        const count = used.filter((u) => u === mine).length;
        assert.ok(count > 0, `${f.name}: ${mine} forced but not in the plan (${[...new Set(used)]})`);
        const { rows: [row] } = await embedder.embedInputs(input);
        const e = relativeMaxError(row, want);
        lines.push(`${mine} x${count} ${e.toExponential(2)}`);
        assert.ok(
          e <= bound,
          `${f.name} with ${kernels}: relative error ${e.toExponential(3)} over ${bound}`,
        );
      } finally {
        embedder.dispose();
      }
    }
    console.log(`${f.name}: bound ${bound.toExponential(2)}; ${lines.join("; ")}`);
  });
}

gpuTest(
  "a forced subgroup variant the device cannot run is refused with the reason, never run",
  async (gpu) => {
    const f = fixtures()[0];
    const min = gpu.features.has("subgroups") ? gpu.adapterInfo.subgroupMinSize ?? 0 : 0;
    const name = min >= 32 ? undefined : min >= 8 ? "conv2d_subgroup32" : "conv2d_subgroup8";
    if (!name) {
      // a device with subgroups of 32 lanes or more runs both: the refusal is the pure tests' (lowering)
      console.log("subgroups of 32 lanes or more: both subgroup variants run (tested above)");
      return;
    }
    const why = min >= 8
      ? /expected subgroups of at least 32 lanes, got 8/
      : /expected device feature "subgroups"/;
    await assert.rejects(
      async () => {
        const embedder = await embedderFor(gpu, f, [name]);
        try {
          await embedder.embedInputs(Float32Array.from(f.ref().tensors.get("input")!.data));
        } finally {
          embedder.dispose();
        }
      },
      (e: Error) =>
        e instanceof RangeError && /Cannot use kernel "conv2d_subgroup/.test(e.message) &&
        why.test(e.message),
    );
  },
);
