import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { randomF32AsF64, randomFloats } from "../tests/_random.ts";
import { recordingContext, testNode, uniformWords } from "../tests/_lowering_ctx.ts";
import { runKernelOnce } from "./_harness.ts";
import { assertClose } from "../tests/_compare.ts";
import { f16GpuTest, f16Tolerance, loaded, roundTo, stored } from "../tests/_f16.ts";
import {
  VIT_TOKENS_FLAVOURS,
  VIT_TOKENS_WORKGROUP_SIZE,
  vitTokensLaunch,
  vitTokensLowering,
  type VitTokensShape,
  vitTokensSpec,
} from "./vit_tokens.ts";
import { vitTokensRef } from "./vit_tokens_ref.ts";

Deno.test("vitTokensRef() puts the class token first and adds the position embedding", () => {
  // N 2, 2 patches, D 2
  const patches = new Float64Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const y = vitTokensRef(patches, new Float64Array([100, 200]), new Float64Array([0, 0, 10, 10, 20, 20]), {
    n: 2,
    patches: 2,
    d: 2,
  });
  assert.deepEqual([...y], [100, 200, 11, 12, 23, 24, 100, 200, 15, 16, 27, 28]);
});

Deno.test("vitTokensLaunch() packs {n, tokens, d, total} and folds the dispatch", () => {
  const launch = vitTokensLaunch({ n: 3, patches: 196, d: 384 });
  assert.deepEqual(uniformWords(launch), [3, 197, 384, 3 * 197 * 384]);
  assert.deepEqual(launch.workgroups, [Math.ceil(3 * 197 * 384 / VIT_TOKENS_WORKGROUP_SIZE), 1, 1]);
  const folded = vitTokensLaunch({ n: 3, patches: 196, d: 384 }, { maxComputeWorkgroupsPerDimension: 100 });
  assert.ok(folded.workgroups[0] <= 100 && folded.workgroups[0] * folded.workgroups[1] >= 887);
  assert.throws(() => vitTokensLaunch({ n: 1, patches: 0, d: 4 }), { name: "TypeError", message: /patches/ });
});

Deno.test("vitTokensLowering maps [N, gh, gw, D] to [N, 1 + gh*gw, D] and checks pos against the grid", () => {
  const node = testNode("vit_tokens", {
    name: "tokens",
    inputs: ["patch_embed"],
    weights: { cls: "cls_token", pos: "pos_embed" },
  });
  assert.deepEqual(vitTokensLowering.outputShape(node, [[3, 4, 4, 48]]), [3, 17, 48]);
  assert.throws(() => vitTokensLowering.outputShape(node, [[3, 16, 48]]), /rank 4/);
  const shapes = { patch_embed: [3, 4, 4, 48] };
  const { ctx, steps } = recordingContext(node, {
    shapes,
    weightBytes: { cls_token: 48 * 4, pos_embed: 17 * 48 * 4 },
  });
  vitTokensLowering.lower(ctx);
  assert.deepEqual(steps[0].bindings.map((b) => typeof b === "string" ? b : b.label), [
    "patch_embed",
    "cls_token",
    "pos_embed",
    "y",
  ]);
  assert.deepEqual(uniformWords(steps[0].launch), [3, 17, 48, 3 * 17 * 48]);
  // a position embedding for a 14x14 grid does not fit a 4x4 one
  const bad = recordingContext(node, { shapes, weightBytes: { cls_token: 48 * 4, pos_embed: 197 * 48 * 4 } });
  assert.throws(() => vitTokensLowering.lower(bad.ctx), {
    name: "TypeError",
    message:
      `Cannot build "tokens" (vit_tokens): expected weight "pos_embed" (pos) of 3264 bytes (f32 [17, 48]), got 37824`,
  });
});

async function check(device: GPUDevice, shape: VitTokensShape, seed: number) {
  const { n, patches: p, d } = shape;
  const patches = randomF32AsF64(n * p * d, seed);
  const cls = randomF32AsF64(d, seed + 1);
  const pos = randomF32AsF64((p + 1) * d, seed + 2);
  const want = vitTokensRef(patches, cls, pos, shape);
  const [out] = await runKernelOnce(device, vitTokensSpec, vitTokensLaunch(shape, device.limits), [
    new Float32Array(patches),
    new Float32Array(cls),
    new Float32Array(pos),
    { bytes: want.length * 4 },
  ]);
  const got = new Float32Array(out);
  // One correctly rounded f32 add per element: exactly the reference rounded to f32.
  const bad = [...got.keys()].filter((i) => got[i] !== Math.fround(want[i]));
  assert.equal(bad.length, 0, `${JSON.stringify(shape)}: ${bad.length} differ, first at ${bad[0]}`);
}

gpuTest(
  "vitTokens() matches vitTokensRef exactly for 4x4, 2x3 and 14x14 grids, N = 1, 3, 2",
  async ({ device }) => {
    await check(device, { n: 1, patches: 16, d: 48 }, 1); // the tiny case: T = 17
    await check(device, { n: 3, patches: 6, d: 20 }, 2); // a 2x3 grid, D % 4 != 0, a dispatch tail
    await check(device, { n: 2, patches: 196, d: 384 }, 3); // ViT-S/16 at 224: T = 197
  },
);

// f16: patches, cls and pos f16 (the reference sees those values), one f32 add, one f16 store.
f16GpuTest(
  "vitTokens() f16 flavour matches vitTokensRef within one f16 store for 4x4, 2x3 and 14x14 grids",
  async ({ device }) => {
    const spec = VIT_TOKENS_FLAVOURS.f16!;
    for (
      const [i, shape] of [{ n: 1, patches: 16, d: 48 }, { n: 3, patches: 6, d: 21 }, {
        n: 2,
        patches: 196,
        d: 384,
      }].entries()
    ) {
      const { n, patches: p, d } = shape;
      const patches = roundTo(randomFloats(n * p * d, 10 + i, -4, 4), "f16");
      const cls = roundTo(randomFloats(d, 20 + i), "f16");
      const pos = roundTo(randomFloats((p + 1) * d, 30 + i), "f16");
      const want = vitTokensRef(patches, cls, pos, shape);
      const [out] = await runKernelOnce(device, spec, vitTokensLaunch(shape, device.limits), [
        stored(patches, "f16"),
        stored(cls, "f16"),
        stored(pos, "f16"),
        stored(new Float32Array(want.length).fill(NaN), "f16"),
      ]);
      assertClose(loaded(out, "f16", want.length), want, {
        ...f16Tolerance({ abs: 0, rel: 2 ** -24 }),
        shape: [n, p + 1, d],
        what: `vit_tokens_f16 ${JSON.stringify(shape)}`,
      });
    }
  },
  [VIT_TOKENS_FLAVOURS.f16!],
);

Deno.test("vitTokensLowering picks the f16 flavour for an f16 plan's tensors and checks f16 weight bytes", () => {
  const node = testNode("vit_tokens", {
    name: "tokens",
    inputs: ["patch_embed"],
    weights: { cls: "cls_token", pos: "pos_embed" },
  });
  const { ctx, steps } = recordingContext(node, {
    shapes: { patch_embed: [3, 4, 4, 48] },
    weightBytes: { cls_token: 48 * 2, pos_embed: 17 * 48 * 2 },
    dtypes: { patch_embed: "f16", y: "f16" },
    weightDtype: "f16",
  });
  vitTokensLowering.lower(ctx);
  assert.equal(steps[0].spec, VIT_TOKENS_FLAVOURS.f16);
  const f32Bytes = recordingContext(node, {
    shapes: { patch_embed: [3, 4, 4, 48] },
    weightBytes: { cls_token: 48 * 4, pos_embed: 17 * 48 * 4 },
    dtypes: { patch_embed: "f16", y: "f16" },
    weightDtype: "f16",
  });
  assert.throws(
    () => vitTokensLowering.lower(f32Bytes.ctx),
    /"cls_token" \(cls\) of 96 bytes \(f16 \[48\]\), got 192/,
  );
});
