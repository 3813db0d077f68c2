import assert from "node:assert/strict";
import {
  decodeToFloat32,
  float16BitsToNumber,
  parseSafetensorsHeader,
  safetensorsFromBytes,
} from "./safetensors.ts";
import { encodeSafetensors, numberToFloat16Bits } from "./safetensors_write.ts";

Deno.test("encodeSafetensors() round-trips tensors, dtypes and metadata through the reader", async () => {
  const raw = new Uint8Array([0, 0, 0xc0, 0x3f, 0, 0, 0x80, 0xbf]);
  const tensors = [
    { name: "w", dtype: "F32" as const, shape: [2, 2], data: new Float32Array([1, -2, 0.1, 3e-40]) },
    { name: "raw", dtype: "F32" as const, shape: [2], data: raw },
    { name: "h", dtype: "F16" as const, shape: [3], data: new Float32Array([1, -0.333251953125, 65504]) },
    { name: "b", dtype: "BF16" as const, shape: [1, 2], data: new Float32Array([1.5, -256]) },
    { name: "scalar", dtype: "F32" as const, shape: [], data: new Float32Array([7]) },
  ];
  const bytes = encodeSafetensors(tensors, { seed: "s" });
  const header = parseSafetensorsHeader(bytes, bytes.length, "rt");
  assert.equal(header.dataStart % 8, 0, "data section is 8-byte aligned");
  const headerText = new TextDecoder().decode(bytes.subarray(8, header.dataStart));
  assert.match(headerText, /^\{"__metadata__":\{"seed":"s"\},"w":.* *$/);
  assert.deepEqual(header.metadata, { seed: "s" });
  const got = new Map<string, number[]>();
  for await (const { entry, bytes: b } of safetensorsFromBytes(bytes).stream()) {
    got.set(entry.name, [...decodeToFloat32(entry, b)]);
  }
  assert.deepEqual([...got.keys()], ["w", "raw", "h", "b", "scalar"]);
  assert.deepEqual(got.get("w"), [...new Float32Array([1, -2, 0.1, 3e-40])]);
  assert.deepEqual(got.get("raw"), [1.5, -1]);
  assert.deepEqual(got.get("h"), [1, -0.333251953125, 65504]);
  assert.deepEqual(got.get("b"), [1.5, -256]);
  assert.deepEqual(got.get("scalar"), [7]);
  assert.deepEqual(header.tensors.get("b")?.shape, [1, 2]);
});

Deno.test("encodeSafetensors() omits empty metadata and writes a bare header", () => {
  const bytes = encodeSafetensors([]);
  assert.equal(bytes.length, 16);
  assert.equal(new DataView(bytes.buffer).getUint32(0, true), 8);
  assert.equal(new TextDecoder().decode(bytes.subarray(8)), "{}      ");
  assert.equal(parseSafetensorsHeader(bytes, bytes.length, "empty").tensors.size, 0);
  const one = encodeSafetensors([{ name: "x", dtype: "F16", shape: [1], data: new Uint8Array(2) }], {});
  assert.doesNotMatch(new TextDecoder().decode(one), /__metadata__/);
});

Deno.test("encodeSafetensors() refuses bad names, dtypes, shapes and data lengths with TypeError", () => {
  const ok = { name: "x", dtype: "F32" as const, shape: [2], data: new Float32Array(2) };
  assert.throws(() => encodeSafetensors([ok, ok]), TypeError);
  assert.throws(() => encodeSafetensors([{ ...ok, name: "__metadata__" }]), TypeError);
  assert.throws(() => encodeSafetensors([{ ...ok, dtype: "F8" as "F32" }]), /unsupported dtype "F8"/);
  assert.throws(
    () => encodeSafetensors([{ ...ok, dtype: "I64" }]),
    /float32 values cannot be written as I64/,
  );
  assert.throws(() => encodeSafetensors([{ ...ok, shape: [-2] }]), TypeError);
  assert.throws(() => encodeSafetensors([{ ...ok, data: new Float32Array(3) }]), /expected 2 values/);
  assert.throws(() => encodeSafetensors([{ ...ok, data: new Uint8Array(7) }]), /expected 8 bytes/);
  assert.throws(() => encodeSafetensors([ok], { a: 1 as unknown as string }), TypeError);
});

Deno.test("numberToFloat16Bits() rounds to nearest even, including subnormals and overflow", () => {
  assert.equal(numberToFloat16Bits(1), 0x3c00);
  assert.equal(numberToFloat16Bits(-2), 0xc000);
  assert.equal(numberToFloat16Bits(65504), 0x7bff);
  assert.equal(numberToFloat16Bits(65520), 0x7c00, "halfway above max rounds to infinity");
  assert.equal(numberToFloat16Bits(65519), 0x7bff);
  assert.equal(numberToFloat16Bits(Infinity), 0x7c00);
  assert.equal(numberToFloat16Bits(-Infinity), 0xfc00);
  assert.ok(Number.isNaN(float16BitsToNumber(numberToFloat16Bits(NaN))));
  assert.equal(numberToFloat16Bits(2 ** -24), 0x0001);
  assert.equal(numberToFloat16Bits(2 ** -25), 0x0000, "halfway to the smallest subnormal rounds to even (0)");
  assert.equal(numberToFloat16Bits(3 * 2 ** -25), 0x0002, "1.5 ulp rounds to even (2)");
  assert.equal(numberToFloat16Bits(-0), 0x8000);
  assert.equal(numberToFloat16Bits(1 + 2 ** -11), 0x3c00, "tie rounds to even");
  assert.equal(numberToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02, "tie rounds to even (up)");
  // Exhaustive: every finite half survives number -> half bits -> number.
  for (let h = 0; h < 0x10000; h++) {
    const value = float16BitsToNumber(h);
    if (!Number.isFinite(value)) continue;
    assert.equal(numberToFloat16Bits(value), h, `half 0x${h.toString(16)}`);
  }
});
