import assert from "node:assert/strict";
import { deserializeError, serializeError } from "./protocol.ts";
import {
  DeviceLostError,
  GpuError,
  ImageError,
  NonFiniteError,
  WebGpuUnavailableError,
  WeightsError,
} from "../engine/errors.ts";

Deno.test("serializeError() and deserializeError() keep each error's class and fields through structuredClone", () => {
  const errors: Error[] = [
    new WebGpuUnavailableError("no adapter"),
    new DeviceLostError("destroyed", "lost"),
    new GpuError("stage1.unit01.conv1/conv2d_tiled", "validation"),
    new WeightsError("m.safetensors", "stem.conv.weight", "misshapen"),
    new ImageError("a.png", "truncated"),
    new NonFiniteError(3, "stage2", "NaN"),
    new TypeError("bad"),
    new RangeError("limit"),
  ];
  for (const e of errors) {
    const back = deserializeError(structuredClone(serializeError(e)));
    assert.equal(back.constructor, e.constructor, e.name);
    assert.equal(back.name, e.name);
    assert.equal(back.message, e.message);
    for (const k of ["file", "tensor", "layer", "reason", "image"]) {
      assert.equal(
        (back as unknown as Record<string, unknown>)[k],
        (e as unknown as Record<string, unknown>)[k],
        `${e.name}.${k}`,
      );
    }
  }
});

Deno.test("serializeError() turns a thrown non-Error into a message", () => {
  assert.deepEqual(serializeError("boom"), { name: "Error", message: "boom" });
  const custom = deserializeError({ name: "AbortError", message: "stopped" });
  assert.equal(custom.name, "AbortError");
});
