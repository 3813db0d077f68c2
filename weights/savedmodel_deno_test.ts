import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { writeDermSavedModel } from "../tests/_savedmodel_writer.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { bitArchitecture } from "../models/bit_arch.ts";
import { openSavedModel } from "./savedmodel_deno.ts";
import { testdataPath } from "../tests/_testdata.ts";

const MOBILENET = testdataPath("savedmodel/arm-openmv-mobilenet");
const TINY = bitArchitecture([1, 1, 1, 1], [16, 32, 64, 128], 8);

Deno.test("openSavedModel() streams the 137 model tensors of a real SavedModel with the expected values", async () => {
  const expected = JSON.parse(await Deno.readTextFile(`${MOBILENET}/expected.json`));
  const byKey = new Map(expected.entries.map((e: { key: string }) => [e.key, e]));
  const source = await openSavedModel(MOBILENET);
  try {
    assert.equal(source.tensors.size, 137);
    assert.equal(source.dropped.length, 179);
    let elements = 0;
    for await (const { entry, bytes } of source.stream()) {
      const e = byKey.get(source.variables.get(entry.name)!.key) as Record<string, any>;
      assert.equal(e.kind, "model");
      assert.equal(entry.name, e.saved_variable.name);
      assert.deepEqual(entry.shape, e.shape);
      const values = new Float32Array(bytes.slice().buffer);
      assert.deepEqual([...values.subarray(0, 4)], e.first4, entry.name);
      let sum = 0, sumSq = 0, sumAbs = 0;
      for (const v of values) {
        sum += v;
        sumSq += v * v;
        sumAbs += Math.abs(v);
      }
      assert.ok(Math.abs(sum - e.sum) <= 1e-9 * Math.max(sumAbs, 1), `${entry.name} sum ${sum} vs ${e.sum}`);
      assert.ok(Math.abs(sumSq - e.sum_sq) <= 1e-9 * Math.max(sumSq, 1), `${entry.name} sum_sq`);
      elements += values.length;
    }
    assert.equal(elements, 219685);
  } finally {
    source.close();
  }
});

Deno.test("openSavedModel() serves other kinds when asked, leaving out what is not float", async () => {
  const source = await openSavedModel(MOBILENET, {
    kinds: ["model", "optimizer_slot", "optimizer", "metric", "rng_state"],
  });
  try {
    assert.equal(source.tensors.size, 137 + 166 + 4 + 4);
    assert.ok(source.tensors.has("Adam/conv1/kernel/m"));
    assert.deepEqual(
      source.dropped.map((d) => [d.variable.name, d.reason]).sort(),
      [
        ["Adam/iter", "unsupported dtype DT_INT64"],
        ["random_contrast/StateVar", "unsupported dtype DT_INT64"],
        ["random_flip/StateVar", "unsupported dtype DT_INT64"],
        ["random_rotation/StateVar", "unsupported dtype DT_INT64"],
        ["random_zoom/StateVar", "unsupported dtype DT_INT64"],
      ],
    );
    let count = 0;
    for await (const _ of source.stream()) count++;
    assert.equal(count, source.tensors.size);
  } finally {
    source.close();
  }
});

Deno.test("openSavedModel() reads back a Derm-shaped SavedModel bit for bit, by SavedVariable.name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "derm-savedmodel-" });
  try {
    const procedural = bitProceduralSource(TINY, "savedmodel", { naming: "derm" });
    await writeDermSavedModel(dir, procedural, { blockBytes: 1024 });
    const want = new Map<string, Uint8Array>();
    for await (const { entry, bytes } of procedural.stream()) want.set(entry.name, bytes.slice());
    const source = await openSavedModel(dir);
    try {
      assert.deepEqual([...source.tensors.keys()].sort(), [...want.keys()].sort());
      assert.equal(source.graph.tensorflowVersion, "2.17.0");
      for await (const { entry, bytes } of source.stream()) {
        assert.deepEqual(entry.shape, procedural.tensors.get(entry.name)!.shape);
        assert.deepEqual(bytes, want.get(entry.name), entry.name);
      }
    } finally {
      source.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openSavedModel() names the tensor whose CRC32C does not match", async () => {
  const dir = await Deno.makeTempDir({ prefix: "derm-savedmodel-" });
  try {
    const procedural = bitProceduralSource(TINY, "crc", { naming: "derm" });
    const { variables } = await writeDermSavedModel(dir, procedural);
    const shard = `${dir}/variables/variables.data-00000-of-00001`;
    const data = await Deno.readFile(shard);
    data[100] ^= 0x10;
    await Deno.writeFile(shard, data);
    const source = await openSavedModel(dir);
    try {
      const first = [...source.tensors.values()].sort((a, b) => a.begin - b.begin)[0].name;
      assert.ok(variables.some((v) => v.name === first));
      await assert.rejects(
        async () => {
          for await (const _ of source.stream()) { /* read all */ }
        },
        (e: unknown) =>
          e instanceof WeightsError && e.tensor === first &&
          /CRC32C mismatch in ".*variables.data-00000-of-00001" at bytes \[0,\d+\): stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}/
            .test(e.message),
      );
    } finally {
      source.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
