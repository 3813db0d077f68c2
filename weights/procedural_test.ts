import assert from "node:assert/strict";
import { BIT_R101X3, bitArchitecture, bitParameterCount } from "../models/bit_arch.ts";
import { WeightsError } from "../engine/errors.ts";
import { adaptBitWeights } from "./bit_names.ts";
import { proceduralKind, proceduralSource, proceduralValues } from "./procedural.ts";
import { createHash } from "node:crypto";
import { proceduralWeightsRecords } from "../tests/_fixtures.ts";

/** The formula of testdata/FIXTURES_README.md written out step by step, for one element. */
function referenceValue(seed: string, name: string, i: number, kind: string): number {
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
  return Math.fround(kind === "weight" ? 1 + 0.25 * v : kind === "bias" ? 0.25 * v : v);
}

Deno.test("proceduralValues() follows the README formula element by element", () => {
  for (
    const [name, kind] of [["stem.conv.weight", "kernel"], ["norm.weight", "weight"], [
      "norm.bias",
      "bias",
    ]] as const
  ) {
    const values = proceduralValues("fixture/ünïcode", name, 300, kind);
    for (const i of [0, 1, 2, 17, 299]) {
      assert.equal(values[i], referenceValue("fixture/ünïcode", name, i, kind), `${name}[${i}]`);
    }
  }
  assert.equal(proceduralValues("s", "x", 0, "kernel").length, 0);
  assert.throws(() => proceduralValues("s", "x", -1, "kernel"), RangeError);
  const k = proceduralValues("s", "k", 100_000, "kernel");
  assert.ok(k.every((v) => v >= -1 && v <= 1));
  assert.ok(proceduralValues("s", "g", 1000, "weight").every((v) => v >= 0.75 && v <= 1.25));
});

Deno.test("proceduralKind() classifies gammas, betas and kernels", () => {
  assert.equal(proceduralKind("norm.weight", [8]), "weight");
  assert.equal(proceduralKind("stages.0.blocks.0.norm1.bias", [8]), "bias");
  assert.equal(proceduralKind("stages.0.blocks.0.conv1.weight", [8, 8, 1, 1]), "kernel");
});

Deno.test("proceduralSource() looks like a safetensors file that adaptBitWeights accepts", async () => {
  const arch = bitArchitecture([2, 1], [16, 32], 8);
  for (const naming of ["timm", "derm"] as const) {
    const source = proceduralSource(arch, "s", { naming, preset: "derm" });
    assert.equal(source.file, "procedural:s");
    assert.deepEqual(source.metadata, { seed: "s", preset: "derm" });
    const adapted = adaptBitWeights(source);
    assert.equal(adapted.naming, naming);
    assert.deepEqual(adapted.architecture, arch);
    let previous = -1;
    for await (const { entry, bytes } of source.stream()) {
      assert.ok(entry.begin > previous);
      previous = entry.begin;
      assert.equal(bytes.length, entry.end - entry.begin);
    }
    assert.throws(() => source.stream(new Set(["nope"])), WeightsError);
    source.close();
    assert.throws(() => source.stream(), WeightsError);
  }
  assert.deepEqual(proceduralSource(arch, "t").metadata, { seed: "t" });
});

Deno.test("proceduralSource() equals tiny-bit-64 (timm) and tiny-derm-96 (derm) bit for bit", async () => {
  // The SHA-256 of every tensor of the original fixture files, recorded in testdata/procedural_weights.json.
  const records = proceduralWeightsRecords();
  const cases = [
    ["bit/tiny-bit-64.safetensors", "fixture/tiny-bit", "timm", [1, 1, 1, 1], 32, 43],
    ["bit/tiny-derm-96.safetensors", "fixture/tiny-derm", "derm", [2, 1, 1, 1], 64, 52],
  ] as const;
  for (const [file, seed, naming, layers, stem, count] of cases) {
    const record = records[file];
    assert.equal(record.metadata.seed, seed);
    const arch = bitArchitecture(layers, [128, 256, 512, 1024], stem);
    const source = proceduralSource(arch, seed, { naming });
    const got: { name: string; shape: readonly number[]; sha256: string }[] = [];
    for await (const { entry, bytes } of source.stream()) {
      got.push({
        name: entry.name,
        shape: entry.shape,
        sha256: createHash("sha256").update(bytes).digest("hex"),
      });
    }
    assert.equal(got.length, count);
    assert.deepEqual(got, record.tensors.map(({ name, shape, sha256 }) => ({ name, shape, sha256 })), file);
  }
});

Deno.test({
  name: "proceduralSource() streams all 381,789,888 values of R101x3 one tensor at a time",
  ignore: Deno.env.get("DERM_SKIP_SLOW") === "1",
  async fn() {
    const start = performance.now();
    let values = 0, tensors = 0, largest = 0;
    for await (const { bytes } of proceduralSource(BIT_R101X3, "fixture/r101x3").stream()) {
      values += bytes.length / 4;
      largest = Math.max(largest, bytes.length);
      tensors++;
    }
    const seconds = (performance.now() - start) / 1000;
    assert.equal(tensors, 304);
    assert.equal(values, bitParameterCount(BIT_R101X3));
    assert.equal(largest, 1536 * 1536 * 9 * 4);
    console.log(`R101x3 procedural weights: ${values} values in ${seconds.toFixed(2)} s`);
  },
});
