import assert from "node:assert/strict";
import { BIT_R101X3, BIT_R50X1, bitArchitecture, bitParameterCount, bitTensorShapes } from "./bit_arch.ts";
import { proceduralWeightsRecords } from "../tests/_fixtures.ts";

Deno.test("bitArchitecture() sets stride 1 then 2 and mid = channels / 4", () => {
  const arch = bitArchitecture([1, 2], [8, 16], 4);
  assert.deepEqual(arch, {
    stemChannels: 4,
    stages: [
      { units: 1, channels: 8, midChannels: 2, stride: 1 },
      { units: 2, channels: 16, midChannels: 4, stride: 2 },
    ],
  });
  assert.deepEqual(BIT_R101X3.stages.map((s) => [s.units, s.channels, s.midChannels, s.stride]), [
    [3, 768, 192, 1],
    [4, 1536, 384, 2],
    [23, 3072, 768, 2],
    [3, 6144, 1536, 2],
  ]);
  assert.equal(BIT_R101X3.stemChannels, 192);
  assert.deepEqual(BIT_R50X1.stages.map((s) => s.units), [3, 4, 6, 3]);
});

Deno.test("bitArchitecture() refuses mismatched, empty or non-integer lists with TypeError", () => {
  assert.throws(() => bitArchitecture([3, 4], [256], 64), TypeError);
  assert.throws(() => bitArchitecture([], [], 64), TypeError);
  assert.throws(() => bitArchitecture([0], [256], 64), TypeError);
  assert.throws(() => bitArchitecture([1], [256.5], 64), TypeError);
  assert.throws(() => bitArchitecture([1], [254], 64), /multiples of 4/);
  assert.throws(() => bitArchitecture([1], [256], 0), TypeError);
});

Deno.test("bitTensorShapes() gives R101x3 304 tensors and 381,789,888 parameters", () => {
  const shapes = bitTensorShapes(BIT_R101X3);
  assert.equal(shapes.length, 304);
  assert.equal(bitParameterCount(BIT_R101X3), 381_789_888);
  assert.equal(new Set(shapes.map((t) => t.name)).size, 304);
  assert.deepEqual(shapes[0], { name: "stem.conv.weight", shape: [192, 3, 7, 7] });
  assert.deepEqual(shapes.slice(1, 11).map((t) => [t.name, t.shape]), [
    ["stages.0.blocks.0.downsample.conv.weight", [768, 192, 1, 1]],
    ["stages.0.blocks.0.norm1.weight", [192]],
    ["stages.0.blocks.0.norm1.bias", [192]],
    ["stages.0.blocks.0.conv1.weight", [192, 192, 1, 1]],
    ["stages.0.blocks.0.norm2.weight", [192]],
    ["stages.0.blocks.0.norm2.bias", [192]],
    ["stages.0.blocks.0.conv2.weight", [192, 192, 3, 3]],
    ["stages.0.blocks.0.norm3.weight", [192]],
    ["stages.0.blocks.0.norm3.bias", [192]],
    ["stages.0.blocks.0.conv3.weight", [768, 192, 1, 1]],
  ]);
  const byName = new Map(shapes.map((t) => [t.name, t.shape]));
  assert.deepEqual(byName.get("stages.0.blocks.1.conv1.weight"), [192, 768, 1, 1]);
  assert.equal(byName.has("stages.0.blocks.1.downsample.conv.weight"), false);
  assert.deepEqual(byName.get("stages.2.blocks.0.downsample.conv.weight"), [3072, 1536, 1, 1]);
  assert.deepEqual(byName.get("stages.2.blocks.22.conv2.weight"), [768, 768, 3, 3]);
  assert.deepEqual(byName.get("stages.3.blocks.0.norm1.weight"), [3072]);
  assert.deepEqual(shapes.slice(-2), [{ name: "norm.weight", shape: [6144] }, {
    name: "norm.bias",
    shape: [6144],
  }]);
  // Largest tensor: stage 3's conv2 (1536 x 1536 x 3 x 3 floats = 85 MB).
  assert.equal(Math.max(...shapes.map((t) => t.shape.reduce((a, b) => a * b, 1))), 1536 * 1536 * 9);
});

Deno.test("bitParameterCount() gives R50x1 its 23.5 M feature-extractor parameters", () => {
  assert.equal(bitTensorShapes(BIT_R50X1).length, 1 + 16 * 9 + 4 + 2);
  assert.equal(bitParameterCount(BIT_R50X1), 23_500_352);
});

Deno.test("bitTensorShapes() matches the names, order and shapes of tiny-bit-64.safetensors", () => {
  // Recorded from the original fixture file (testdata/procedural_weights.json), in offset order.
  const inFile = proceduralWeightsRecords()["bit/tiny-bit-64.safetensors"].tensors.map((t) => ({
    name: t.name,
    shape: t.shape,
  }));
  assert.deepEqual(inFile, bitTensorShapes(bitArchitecture([1, 1, 1, 1], [128, 256, 512, 1024], 32)));
});
