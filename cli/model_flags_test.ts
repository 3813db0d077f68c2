import assert from "node:assert/strict";
import { integerFlag, MODEL_FLAGS_HELP, modelFlags, PRESET_NAMES } from "./model_flags.ts";

Deno.test("integerFlag() reads integers in range and is undefined when the flag is absent", () => {
  assert.equal(integerFlag("port", "8080", 0, 65535), 8080);
  assert.equal(integerFlag("port", "0", 0, 65535), 0);
  assert.equal(integerFlag("port", undefined, 0, 65535), undefined);
});

Deno.test("integerFlag() refuses text, fractions, empty values and values out of range, naming the flag", () => {
  for (const bad of ["x", "1.5", "", " ", "65536", "-1", "1e999"]) {
    assert.throws(
      () => integerFlag("port", bad, 0, 65535),
      (e: Error) =>
        e instanceof RangeError && e.message === `--port must be an integer from 0 to 65535, got "${bad}"`,
      bad,
    );
  }
});

Deno.test("modelFlags() checks presets, precisions, tune modes, sizes and one of --weights and --model", () => {
  const ok = modelFlags({
    weights: "w.safetensors",
    preset: "derm",
    size: "64",
    kernels: "a, b,,",
    precision: "f16",
    tune: "off",
  });
  assert.deepEqual(ok, {
    weights: "w.safetensors",
    model: undefined,
    preset: "derm",
    size: 64,
    resize: undefined,
    vitHeads: undefined,
    vitBlocks: undefined,
    kernels: ["a", "b"],
    precision: "f16",
    tune: "off",
  });
  assert.equal(modelFlags({ model: "google/derm-foundation" }).weights, "");
  assert.throws(() => modelFlags({}), /exactly one of --weights and --model is required/);
  assert.throws(() => modelFlags({ weights: "w", model: "m" }), /exactly one of --weights and --model/);
  assert.throws(
    () => modelFlags({ weights: "w", preset: "tf" }),
    /--preset must be one of derm, bit, imagenet, got "tf"/,
  );
  assert.throws(
    () => modelFlags({ weights: "w", precision: "bf16" }),
    /--precision must be one of f32, f16, got "bf16"/,
  );
  assert.throws(
    () => modelFlags({ weights: "w", tune: "yes" }),
    /--tune must be auto, always or off, got "yes"/,
  );
  assert.throws(
    () => modelFlags({ weights: "w", size: "16" }),
    /--size must be an integer from 32 to 4096, got "16"/,
  );
});

Deno.test("MODEL_FLAGS_HELP documents every model flag and preset", () => {
  for (
    const flag of [
      "weights",
      "model",
      "preset",
      "size",
      "resize",
      "vit-heads",
      "vit-blocks",
      "kernels",
      "precision",
      "tune",
    ]
  ) {
    assert.match(MODEL_FLAGS_HELP, new RegExp(`^  --${flag}\\b`, "m"), flag);
  }
  for (const p of PRESET_NAMES) assert.match(MODEL_FLAGS_HELP, new RegExp(`\\b${p}\\b`));
  assert.match(MODEL_FLAGS_HELP, /tiny-derm/);
});
