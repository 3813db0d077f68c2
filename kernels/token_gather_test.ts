import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { randomF32AsF64, randomFloats } from "../tests/_random.ts";
import { recordingContext, testNode, uniformWords } from "../tests/_lowering_ctx.ts";
import { runKernelOnce } from "./_harness.ts";
import { f16GpuTest, loaded, roundTo, stored } from "../tests/_f16.ts";
import {
  TOKEN_GATHER_FLAVOURS,
  TOKEN_GATHER_WORKGROUP_SIZE,
  tokenGatherLaunch,
  tokenGatherLowering,
  type TokenGatherShape,
  tokenGatherSpec,
} from "./token_gather.ts";
import { tokenGatherRef } from "./token_gather_ref.ts";

Deno.test("tokenGatherRef() copies one token per image into one slot and keeps the others", () => {
  // N 2, T 3, D 2 -> 2 slots; token 2 into slot 1
  const x = new Float64Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const y = tokenGatherRef(x, new Float64Array([-1, -2, -3, -4, -5, -6, -7, -8]), {
    n: 2,
    tokens: 3,
    d: 2,
    token: 2,
    slots: 2,
    slot: 1,
  });
  assert.deepEqual([...y], [-1, -2, 5, 6, -5, -6, 11, 12]);
});

Deno.test("tokenGatherLaunch() packs {n, tokens, d, token, slots, slot} and rejects indices out of range", () => {
  const launch = tokenGatherLaunch({ n: 3, tokens: 197, d: 384, token: 0, slots: 4, slot: 2 });
  assert.deepEqual(uniformWords(launch).slice(0, 6), [3, 197, 384, 0, 4, 2]);
  assert.deepEqual(launch.workgroups, [Math.ceil(3 * 384 / TOKEN_GATHER_WORKGROUP_SIZE), 1, 1]);
  const base = { n: 1, tokens: 5, d: 8, token: 0, slots: 4, slot: 0 };
  assert.throws(() => tokenGatherLaunch({ ...base, slot: 4 }), {
    name: "RangeError",
    message: "Cannot launch token_gather: expected slot < 4, got 4",
  });
  assert.throws(() => tokenGatherLaunch({ ...base, token: 5 }), { name: "RangeError", message: /token < 5/ });
  assert.throws(() => tokenGatherLaunch({ ...base, token: -1 }), { name: "TypeError" });
});

Deno.test("tokenGatherLowering builds [N, slots, D], creating it at slot 0 and updating it in place after", () => {
  const first = testNode("token_gather", {
    name: "cls.8",
    inputs: ["block8"],
    output: "cls",
    attrs: { slots: 4, slot: 0 },
  });
  assert.deepEqual(tokenGatherLowering.outputShape(first, [[3, 197, 384]]), [3, 4, 384]);
  const later = { ...first, name: "cls.9", inputs: ["block9"], attrs: { slots: 4, slot: 1 }, inPlace: true };
  assert.deepEqual(tokenGatherLowering.outputShape(later, [[3, 197, 384]]), [3, 4, 384]);
  assert.throws(() => tokenGatherLowering.outputShape({ ...later, inPlace: false }, [[3, 197, 384]]), {
    name: "TypeError",
    message: /slot 1 to be written in place/,
  });
  assert.throws(
    () => tokenGatherLowering.outputShape({ ...first, attrs: { slots: 4, slot: 4 } }, [[3, 5, 8]]),
    {
      message: /"slot" in \[0, 4\), got 4/,
    },
  );
  assert.throws(
    () => tokenGatherLowering.outputShape({ ...first, attrs: { slots: 4, slot: 0, token: 9 } }, [[3, 5, 8]]),
    /"token" in \[0, 5\), got 9/,
  );
  assert.throws(() => tokenGatherLowering.outputShape(first, [[3, 5]]), /rank 3/);
  const { ctx, steps } = recordingContext(later, { shapes: { block9: [3, 197, 384] } });
  tokenGatherLowering.lower(ctx);
  assert.deepEqual(steps[0].bindings, ["block9", "cls"]);
  assert.deepEqual(uniformWords(steps[0].launch).slice(0, 6), [3, 197, 384, 0, 4, 1]);
});

gpuTest(
  "tokenGather() fills every slot of a collector like tokenGatherRef, N = 1 and 3",
  async ({ device }) => {
    for (const [n, tokens, d, slots, token] of [[1, 17, 48, 4, 0], [3, 197, 384, 4, 0], [3, 5, 37, 3, 4]]) {
      const x = randomF32AsF64(n * tokens * d, n + d);
      // y starts with a marker, each slot is written in turn on top of the previous result
      let got = new Float32Array(n * slots * d).fill(-7);
      let want: Float64Array = Float64Array.from(got);
      for (let slot = 0; slot < slots; slot++) {
        const shape: TokenGatherShape = { n, tokens, d, token: (token + slot) % tokens, slots, slot };
        want = tokenGatherRef(x, want, shape);
        const [out] = await runKernelOnce(device, tokenGatherSpec, tokenGatherLaunch(shape, device.limits), [
          new Float32Array(x),
          got,
        ]);
        got = new Float32Array(out);
        assert.deepEqual([...got], [...want], `N ${n} T ${tokens} D ${d} after slot ${slot}`);
      }
    }
  },
);

// f16: an exact copy of 2-byte elements; odd D puts slots and tokens at half-word boundaries, so a write
// that touched its neighbour half would show in the slots already filled.
f16GpuTest(
  "tokenGather() f16 flavour copies exactly and keeps the other slots, odd D included",
  async ({ device }) => {
    const spec = TOKEN_GATHER_FLAVOURS.f16!;
    for (const [n, tokens, d, slots, token] of [[1, 17, 48, 4, 0], [3, 197, 384, 4, 0], [3, 5, 37, 3, 4]]) {
      const x = roundTo(randomFloats(n * tokens * d, n + d), "f16");
      let want: Float64Array = new Float64Array(n * slots * d).fill(-7);
      let got = stored(want, "f16");
      for (let slot = 0; slot < slots; slot++) {
        const shape: TokenGatherShape = { n, tokens, d, token: (token + slot) % tokens, slots, slot };
        want = tokenGatherRef(x, want, shape);
        const [out] = await runKernelOnce(device, spec, tokenGatherLaunch(shape, device.limits), [
          stored(x, "f16"),
          got,
        ]);
        got = new Uint16Array(out);
        assert.deepEqual(
          [...loaded(out, "f16", want.length)],
          [...want],
          `N ${n} T ${tokens} D ${d} after slot ${slot}`,
        );
      }
    }
  },
  [TOKEN_GATHER_FLAVOURS.f16!],
);

Deno.test("tokenGatherLowering picks the f16 flavour for f16 tensors", () => {
  const node = testNode("token_gather", {
    name: "cls.8",
    inputs: ["block8"],
    output: "cls",
    attrs: { slots: 4, slot: 0 },
  });
  const { ctx, steps } = recordingContext(node, {
    shapes: { block8: [3, 197, 384] },
    dtypes: { block8: "f16", cls: "f16" },
    weightDtype: "f16",
  });
  tokenGatherLowering.lower(ctx);
  assert.equal(steps[0].spec, TOKEN_GATHER_FLAVOURS.f16);
});
