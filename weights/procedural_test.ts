import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { proceduralSource, proceduralValues } from "./procedural.ts";

/** The formula of testdata/FIXTURES_README.md written out step by step, for one element. */
function referenceValue(seed: string, name: string, i: number, a: number, b: number): number {
  let h = 0x811c9dc5n;
  for (const byte of new TextEncoder().encode(`${seed}/${name}`)) {
    h = ((h ^ BigInt(byte)) * 0x01000193n) % 2n ** 32n;
  }
  let x = (h + BigInt(i) * 0x9e3779b9n) % 2n ** 32n;
  x ^= x >> 16n;
  x = (x * 0x85ebca6bn) % 2n ** 32n;
  x ^= x >> 13n;
  x = (x * 0xc2b2ae35n) % 2n ** 32n;
  x ^= x >> 16n;
  const v = Number(x) / 2 ** 32 * 2 - 1;
  return Math.fround(a + b * v);
}

Deno.test("proceduralValues() follows the README formula element by element", () => {
  const rules = [[0, 1], [1, 0.25], [0, 0.25], [1, 0.5], [0, Math.sqrt(3 / 27)]] as const;
  for (const [a, b] of rules) {
    const values = proceduralValues("fixture/ünïcode", "layer1.0.conv1.weight", 300, { a, b });
    for (const i of [0, 1, 2, 17, 299]) {
      assert.equal(
        values[i],
        referenceValue("fixture/ünïcode", "layer1.0.conv1.weight", i, a, b),
        `${a}+${b}v [${i}]`,
      );
    }
  }
  assert.equal(proceduralValues("s", "x", 0, { a: 0, b: 1 }).length, 0);
  assert.throws(() => proceduralValues("s", "x", -1, { a: 0, b: 1 }), RangeError);
  assert.ok(proceduralValues("s", "k", 100_000, { a: 0, b: 1 }).every((v) => v >= -1 && v <= 1));
  assert.ok(proceduralValues("s", "g", 1000, { a: 1, b: 0.25 }).every((v) => v >= 0.75 && v <= 1.25));
});

Deno.test("proceduralSource() streams its tensors like a safetensors file, HWIO in place and int64 zeros", async () => {
  const source = proceduralSource(
    [
      { name: "k_oihw", hashName: "k", shape: [3, 2, 2, 2], rule: { a: 0, b: 1 } },
      { name: "k_hwio", hashName: "k", shape: [3, 2, 2, 2], layout: "HWIO", rule: { a: 0, b: 1 } },
      { name: "g", shape: [5], storedShape: [1, 1, 1, 5], rule: { a: 1, b: 0.25 } },
      { name: "steps", shape: [] },
    ],
    "s",
    { preset: "derm" },
  );
  assert.equal(source.file, "procedural:s");
  assert.deepEqual(source.metadata, { preset: "derm", seed: "s" });
  assert.deepEqual([...source.tensors.values()].map((e) => [e.name, e.dtype, e.shape, e.end - e.begin]), [
    ["k_oihw", "F32", [3, 2, 2, 2], 96],
    ["k_hwio", "F32", [2, 2, 2, 3], 96],
    ["g", "F32", [1, 1, 1, 5], 20],
    ["steps", "I64", [], 8],
  ]);
  const got = new Map<string, Uint8Array>();
  let previous = -1;
  for await (const { entry, bytes } of source.stream()) {
    assert.ok(entry.begin > previous);
    previous = entry.begin;
    assert.equal(bytes.length, entry.end - entry.begin);
    got.set(entry.name, bytes.slice());
  }
  const oihw = new Float32Array(got.get("k_oihw")!.buffer);
  const hwio = new Float32Array(got.get("k_hwio")!.buffer);
  for (let o = 0; o < 3; o++) {
    for (let i = 0; i < 2; i++) {
      for (let y = 0; y < 2; y++) {
        for (let x = 0; x < 2; x++) {
          assert.equal(hwio[((y * 2 + x) * 2 + i) * 3 + o], oihw[((o * 2 + i) * 2 + y) * 2 + x]);
        }
      }
    }
  }
  assert.deepEqual([...got.get("steps")!], [0, 0, 0, 0, 0, 0, 0, 0]);
  const names: string[] = [];
  for await (const { entry } of source.stream(new Set(["g"]))) names.push(entry.name);
  assert.deepEqual(names, ["g"]);
  assert.throws(() => source.stream(new Set(["nope"])), WeightsError);
  source.close();
  assert.throws(() => source.stream(), WeightsError);
  assert.throws(
    () => proceduralSource([{ name: "a", shape: [1] }, { name: "a", shape: [1] }], "s"),
    TypeError,
  );
});
