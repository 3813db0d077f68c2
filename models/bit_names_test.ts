import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { BIT_R101X3, BIT_R50X1, type BitArchitecture, bitArchitecture, bitTensorShapes } from "./bit_arch.ts";
import { adaptBitWeights, type BitNaming, dermName, presetFromMetadata, storedShape } from "./bit_names.ts";
import type { TensorEntry } from "../weights/safetensors.ts";
import { openSafetensorsFile } from "../weights/safetensors_deno.ts";
import { fixtureWeightsFile } from "../tests/_fixtures.ts";
import { createHash } from "node:crypto";
import { bitParameterCount } from "./bit_arch.ts";
import { bitProceduralSource, bitValueRule } from "./bit_names.ts";
import { proceduralWeightsRecords } from "../tests/_fixtures.ts";

const R152X4 = bitArchitecture([3, 8, 36, 3], [1024, 2048, 4096, 8192], 256);

/** A header-only listing of `arch` under `naming` (offsets are made up; no data is needed). */
function listing(arch: BitArchitecture, naming: BitNaming, extra: Record<string, number[]> = {}) {
  const tensors = new Map<string, TensorEntry>();
  let at = 0;
  const add = (name: string, shape: number[]) => {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { name, dtype: "F32", shape, begin: at, end: at + bytes });
    at += bytes;
  };
  for (const t of bitTensorShapes(arch)) {
    add(naming === "timm" ? t.name : dermName(t.name), storedShape(t.shape, naming));
  }
  for (const [name, shape] of Object.entries(extra)) add(name, shape);
  return { file: "w.safetensors", tensors, metadata: {} };
}

function assertWeightsError(fn: () => unknown, tensor: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WeightsError, `expected WeightsError, got ${e}`);
    assert.equal(e.file, "w.safetensors");
    assert.equal(e.tensor, tensor);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("dermName() and storedShape() map timm names and shapes to Derm/flax ones", () => {
  assert.equal(dermName("stem.conv.weight"), "params.feature_extractor.root_block.conv_root.kernel");
  assert.equal(
    dermName("stages.0.blocks.0.downsample.conv.weight"),
    "params.feature_extractor.block1.unit01.conv_proj.kernel",
  );
  assert.equal(
    dermName("stages.2.blocks.9.norm1.weight"),
    "params.feature_extractor.block3.unit10.gn1.scale",
  );
  assert.equal(dermName("stages.3.blocks.2.norm3.bias"), "params.feature_extractor.block4.unit03.gn3.bias");
  assert.equal(
    dermName("stages.1.blocks.0.conv2.weight"),
    "params.feature_extractor.block2.unit01.conv2.kernel",
  );
  assert.equal(dermName("norm.weight"), "params.feature_extractor.norm-pre-head.scale");
  assert.equal(dermName("norm.bias"), "params.feature_extractor.norm-pre-head.bias");
  assert.throws(() => dermName("head.fc.weight"), TypeError);
  assert.throws(() => dermName("stages.0.blocks.0.toString"), TypeError);
  assert.deepEqual(storedShape([64, 3, 7, 7], "derm"), [7, 7, 3, 64]);
  assert.deepEqual(storedShape([64], "derm"), [1, 1, 1, 64]);
  assert.deepEqual(storedShape([64, 3, 7, 7], "timm"), [64, 3, 7, 7]);
});

Deno.test("adaptBitWeights() infers R50x1, R101x3 and R152x4 from timm and Derm names", () => {
  for (const arch of [BIT_R50X1, BIT_R101X3, R152X4]) {
    for (const naming of ["timm", "derm"] as const) {
      const adapted = adaptBitWeights(listing(arch, naming));
      assert.equal(adapted.naming, naming);
      assert.deepEqual(adapted.architecture, arch);
      const shapes = bitTensorShapes(arch);
      assert.deepEqual([...adapted.tensors.keys()], shapes.map((t) => t.name));
      assert.deepEqual([...adapted.tensors.values()].map((t) => t.shape), shapes.map((t) => t.shape));
      assert.deepEqual(adapted.ignored, []);
      const stem = adapted.tensors.get("stem.conv.weight")!;
      assert.equal(stem.layout, naming === "timm" ? "OIHW" : "HWIO");
      assert.equal(adapted.tensors.get("norm.bias")!.layout, "vector");
    }
  }
});

Deno.test("adaptBitWeights() ignores classifier-head tensors and lists them", () => {
  const timm = adaptBitWeights(
    listing(BIT_R50X1, "timm", { "head.fc.weight": [1000, 2048, 1, 1], "head.fc.bias": [1000] }),
  );
  assert.deepEqual(timm.ignored, ["head.fc.weight", "head.fc.bias"]);
  const derm = adaptBitWeights(
    listing(BIT_R50X1, "derm", { "params.head.kernel": [2048, 1000], "global_step": [] }),
  );
  assert.deepEqual(derm.ignored, ["params.head.kernel", "global_step"]);
});

Deno.test("adaptBitWeights() refuses missing, unexpected and wrongly shaped tensors naming them", () => {
  const missing = listing(BIT_R50X1, "timm");
  missing.tensors.delete("stages.2.blocks.3.norm2.bias");
  assertWeightsError(() => adaptBitWeights(missing), "stages.2.blocks.3.norm2.bias", /missing from the file/);

  const missingDerm = listing(BIT_R50X1, "derm");
  missingDerm.tensors.delete("params.feature_extractor.block3.unit04.conv3.kernel");
  assertWeightsError(
    () => adaptBitWeights(missingDerm),
    "params.feature_extractor.block3.unit04.conv3.kernel",
    /missing/,
  );

  const wrong = listing(BIT_R50X1, "timm");
  const stem = wrong.tensors.get("stem.conv.weight")!;
  wrong.tensors.set("stem.conv.weight", { ...stem, shape: [64, 3, 3, 3] });
  assertWeightsError(
    () => adaptBitWeights(wrong),
    "stem.conv.weight",
    /^Cannot load "stem.conv.weight" from "w.safetensors": expected \[64,3,7,7\], got \[64,3,3,3\]$/,
  );

  const wrongDerm = listing(BIT_R50X1, "derm");
  const gn = "params.feature_extractor.block2.unit02.gn1.scale";
  wrongDerm.tensors.set(gn, { ...wrongDerm.tensors.get(gn)!, shape: [512] });
  assertWeightsError(() => adaptBitWeights(wrongDerm), gn, /expected \[1,1,1,512\], got \[512\]/);

  assertWeightsError(
    () => adaptBitWeights(listing(BIT_R50X1, "timm", { "stages.0.blocks.0.extra.weight": [4] })),
    "stages.0.blocks.0.extra.weight",
    /unexpected tensor/,
  );
  assertWeightsError(
    () => adaptBitWeights(listing(BIT_R50X1, "timm", { "fc.weight": [4] })),
    "fc.weight",
    /unexpected/,
  );
  assertWeightsError(
    () => adaptBitWeights(listing(BIT_R50X1, "derm", { "params.feature_extractor.block9.unit01.x": [1] })),
    "params.feature_extractor.block5.unit01.conv3.kernel",
    /missing/,
  );
  assertWeightsError(
    () => adaptBitWeights(listing(BIT_R50X1, "timm", { "stages.99999999.blocks.0.conv1.weight": [1] })),
    "stages.99999999.blocks.0.conv1.weight",
    /unexpected tensor/,
  );
  assertWeightsError(
    () => adaptBitWeights({ file: "w.safetensors", tensors: new Map(), metadata: {} }),
    "",
    /unrecognised tensor names: expected "stem.conv.weight" \(timm\) or "params.feature_extractor.root_block.conv_root.kernel" \(Derm\)/,
  );
  const flat = listing(BIT_R50X1, "timm");
  flat.tensors.set("stem.conv.weight", { ...stem, shape: [64] });
  assertWeightsError(() => adaptBitWeights(flat), "stem.conv.weight", /expected a 4-D tensor, got \[64\]/);
});

Deno.test("presetFromMetadata() prefers a valid preset key, else follows the naming", () => {
  assert.equal(presetFromMetadata({}, "derm"), "derm");
  assert.equal(presetFromMetadata({}, "timm"), "bit");
  assert.equal(presetFromMetadata(undefined, "timm"), "bit");
  assert.equal(presetFromMetadata({ preset: "derm" }, "timm"), "derm");
  assert.equal(presetFromMetadata({ preset: "bit" }, "derm"), "bit");
  assert.equal(presetFromMetadata({ preset: "other" }, "derm"), "derm");
});

Deno.test({
  name: "adaptBitWeights() reads the timm and Derm fixture files",
  async fn() {
    const bit = await openSafetensorsFile(await fixtureWeightsFile("bit/tiny-bit-64.safetensors"));
    const derm = await openSafetensorsFile(await fixtureWeightsFile("bit/tiny-derm-96.safetensors"));
    try {
      const a = adaptBitWeights(bit);
      assert.equal(a.naming, "timm");
      assert.deepEqual(a.architecture, bitArchitecture([1, 1, 1, 1], [128, 256, 512, 1024], 32));
      assert.equal(a.tensors.size, 43);
      assert.equal(presetFromMetadata(bit.metadata, a.naming), "bit");
      const b = adaptBitWeights(derm);
      assert.equal(b.naming, "derm");
      assert.deepEqual(b.architecture, bitArchitecture([2, 1, 1, 1], [128, 256, 512, 1024], 64));
      assert.equal(b.tensors.size, 52);
      assert.equal(presetFromMetadata(derm.metadata, b.naming), "derm");
      const conv = b.tensors.get("stages.0.blocks.1.conv2.weight")!;
      assert.deepEqual(conv, {
        source: derm.tensors.get("params.feature_extractor.block1.unit02.conv2.kernel"),
        layout: "HWIO",
        shape: [32, 32, 3, 3],
      });
    } finally {
      await bit.close();
      await derm.close();
    }
  },
});

Deno.test("bitValueRule() classifies gammas, betas and kernels", () => {
  assert.deepEqual(bitValueRule("norm.weight", [8]), { a: 1, b: 0.25 });
  assert.deepEqual(bitValueRule("stages.0.blocks.0.norm1.bias", [8]), { a: 0, b: 0.25 });
  assert.deepEqual(bitValueRule("stages.0.blocks.0.conv1.weight", [8, 8, 1, 1]), { a: 0, b: 1 });
});

Deno.test("bitProceduralSource() looks like a safetensors file that adaptBitWeights accepts", async () => {
  const arch = bitArchitecture([2, 1], [16, 32], 8);
  for (const naming of ["timm", "derm"] as const) {
    const source = bitProceduralSource(arch, "s", { naming, preset: "derm" });
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
  assert.deepEqual(bitProceduralSource(arch, "t").metadata, { seed: "t" });
});

Deno.test("bitProceduralSource() equals tiny-bit-64 (timm) and tiny-derm-96 (derm) bit for bit", async () => {
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
    const source = bitProceduralSource(arch, seed, { naming });
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
  name: "bitProceduralSource() streams all 381,789,888 values of R101x3 one tensor at a time",
  ignore: Deno.env.get("DERM_SKIP_SLOW") === "1",
  async fn() {
    const start = performance.now();
    let values = 0, tensors = 0, largest = 0;
    for await (const { bytes } of bitProceduralSource(BIT_R101X3, "fixture/r101x3").stream()) {
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
