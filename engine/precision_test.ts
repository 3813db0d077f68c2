import assert from "node:assert/strict";
import {
  checkPrecision,
  dtypeBytes,
  F16_MAX,
  f32Weights,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  graphDtypes,
  largestActivationBytes,
  storageBytes,
  toFloat16,
  widenFloat16,
} from "./precision.ts";
import { GraphBuilder, type OpShape } from "./graph.ts";

/** The f16 bits JavaScript's own rounding gives (Math.f16round rounds to nearest, ties to even). */
function jsBits(v: number): number {
  return new Uint16Array(new Float16Array([Math.fround(v)]).buffer)[0];
}

Deno.test("float32ToFloat16Bits() matches Math.f16round on ties, subnormals, the range's edges and 2^20 random floats", () => {
  const edges = [
    0,
    -0,
    1,
    -1,
    1 + 2 ** -11, // a tie between 1 and 1 + 2^-10: to even, 1
    1 + 3 * 2 ** -11, // a tie: to even, 1 + 2^-9
    2 ** -14, // the smallest normal
    2 ** -14 - 2 ** -25, // a tie below it
    2 ** -24, // the smallest subnormal
    2 ** -25, // a tie between 0 and it: to even, 0
    1.5 * 2 ** -24, // a tie between 1 and 2 units: 2
    2 ** -26,
    F16_MAX,
    65519.99,
    65520, // a tie between 65504 and infinity: infinity
    -65520,
    1e6,
    Infinity,
    -Infinity,
    3.4e38,
  ];
  for (const v of edges) assert.equal(float32ToFloat16Bits(v), jsBits(v), `${v}`);
  assert.equal(float32ToFloat16Bits(NaN) & 0x7c00, 0x7c00);
  assert.notEqual(float32ToFloat16Bits(NaN) & 0x3ff, 0);
  // Random f32 bit patterns over the whole range (NaNs aside), so every exponent and rounding case occurs.
  const bits = new Uint32Array(1 << 20);
  let s = 12345;
  for (let i = 0; i < bits.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    bits[i] = (s ^ (s << 13) ^ (i * 2654435761)) >>> 0;
  }
  const values = new Float32Array(bits.buffer);
  let checked = 0;
  for (const v of values) {
    if (Number.isNaN(v)) continue;
    if (float32ToFloat16Bits(v) !== jsBits(v)) {
      assert.fail(`${v}: ${float32ToFloat16Bits(v)} vs ${jsBits(v)}`);
    }
    checked++;
  }
  assert.ok(checked > 1_000_000);
});

Deno.test("float16BitsToFloat32() gives every one of the 65,536 f16 values exactly", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const js = new Float16Array(all.buffer);
  for (let i = 0; i < 65536; i++) {
    const got = float16BitsToFloat32(i);
    if (Number.isNaN(js[i])) assert.ok(Number.isNaN(got), `${i}`);
    else assert.ok(Object.is(got, js[i]), `bits ${i}: ${got} vs ${js[i]}`);
  }
  assert.deepEqual(widenFloat16(all.buffer.slice(0, 8)), Float32Array.from(js.subarray(0, 4)));
});

Deno.test("toFloat16() pads to 4 bytes and reports the first value beyond f16's range", () => {
  const ok = toFloat16(new Float32Array([1, -2, 0.5]));
  assert.equal(ok.bits.byteLength, 8);
  assert.deepEqual([...ok.bits], [0x3c00, 0xc000, 0x3800, 0]);
  assert.equal(ok.overflow, -1);
  assert.equal(toFloat16(new Float32Array([F16_MAX, -F16_MAX])).overflow, -1);
  assert.equal(toFloat16(new Float32Array([1, 2, 65505, 1e9])).overflow, 2);
  assert.equal(toFloat16(new Float32Array([1, -70000])).overflow, 1);
});

Deno.test("storageBytes() rounds f16 buffers up to a multiple of 4 bytes", () => {
  assert.equal(dtypeBytes("f16"), 2);
  assert.equal(dtypeBytes("f32"), 4);
  assert.equal(storageBytes(1, "f16"), 4);
  assert.equal(storageBytes(2, "f16"), 4);
  assert.equal(storageBytes(3, "f16"), 8);
  assert.equal(storageBytes(3, "f32"), 12);
});

const identity: OpShape = { outputShape: (_node, inputs) => inputs[0] };

Deno.test("graphDtypes() keeps the input and the embedding f32 and stores every other tensor as f16", () => {
  const b = new GraphBuilder(new Map([["id", identity]]));
  const x = b.input("x", [1, 8, 8, 4]);
  const a = b.node("id", "a", { inputs: [x] });
  const c = b.node("id", "c", { inputs: [a] });
  const graph = b.build(b.node("id", "e", { inputs: [c] }));
  assert.deepEqual([...graphDtypes(graph, "f16")], [["x", "f32"], ["a", "f16"], ["c", "f16"], ["e", "f32"]]);
  assert.deepEqual([...graphDtypes(graph, "f32")].map(([, d]) => d), ["f32", "f32", "f32", "f32"]);
  // The largest activation: the f32 input (1024 bytes) against an f16 [1,8,8,4] (512 bytes).
  assert.equal(largestActivationBytes(graph, "f16"), 1024);
  assert.equal(largestActivationBytes(graph, "f32"), 1024);
});

Deno.test("graphDtypes() keeps f32 what the model asks and f32Weights() names the weights reading f32", () => {
  const b = new GraphBuilder(new Map([["id", identity]]));
  const x = b.input("x", [1, 8, 8, 4]);
  const stem = b.node("id", "stem", { inputs: [x], weights: { weight: "stem.w" } });
  const s1 = b.node("id", "s1.a", { inputs: [stem], weights: { weight: "s1.w", bias: "s1.b" } });
  const s2 = b.node("id", "s2.a", { inputs: [s1], weights: { gamma: "s2.g" } });
  const graph = b.build(b.node("id", "e", { inputs: [s2], weights: { weight: "e.w" } }));
  const keep = (t: string) => t === "stem";
  const dtypes = graphDtypes(graph, "f16", keep);
  assert.deepEqual([...dtypes], [["x", "f32"], ["stem", "f32"], ["s1.a", "f16"], ["s2.a", "f16"], [
    "e",
    "f32",
  ]]);
  // Read by a node with an f32 input: stem (reads x) and s1 (reads the kept stem); s2 and e read f16.
  assert.deepEqual([...f32Weights(graph, dtypes)].sort(), ["s1.b", "s1.w", "stem.w"]);
  // Without a kept activation, only the first layer's.
  assert.deepEqual([...f32Weights(graph, graphDtypes(graph, "f16"))], ["stem.w"]);
  // At f32 every weight reads f32.
  assert.equal(f32Weights(graph, graphDtypes(graph, "f32", keep)).size, 5);
  assert.equal(largestActivationBytes(graph, "f16", keep), 1024);
});

Deno.test("checkPrecision() refuses f16 without shader-f16, naming the adapter and its features", () => {
  checkPrecision("f16", new Set(["shader-f16"]), "lavapipe");
  checkPrecision("f32", new Set(), "llvmpipe");
  assert.throws(
    () => checkPrecision("f16", new Set(["timestamp-query"]), "llvmpipe (LLVM 15.0.6, 256 bits)"),
    {
      name: "RangeError",
      message: 'Cannot use precision "f16" on adapter "llvmpipe (LLVM 15.0.6, 256 bits)": expected the ' +
        '"shader-f16" feature, got timestamp-query',
    },
  );
  assert.throws(() => checkPrecision("f8", new Set(), "x"), {
    name: "RangeError",
    message: 'Cannot use precision "f8": expected one of f32, f16',
  });
});
