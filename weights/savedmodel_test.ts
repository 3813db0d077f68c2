import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { BIT_R101X3, bitParameterCount } from "../models/bit_arch.ts";
import { encodeDermSavedModelPb } from "../tests/_savedmodel_writer.ts";
import { adaptBitWeights } from "../models/bit_names.ts";
import { ProtoWriter } from "./protobuf.ts";
import type { TensorEntry } from "./safetensors.ts";
import { escapeLocalName, readSavedModel } from "./savedmodel.ts";
import { readTestdata, readTestdataText } from "../tests/_testdata.ts";

function fixtureText(path: string): string {
  return readTestdataText(`savedmodel/${path}`);
}

interface DermVariable {
  name: string;
  checkpoint_key: string;
  shape: number[];
  tf_dtype: string;
}

Deno.test("readSavedModel() gives TensorFlow's checkpoint key, name and kind of all 316 variables", () => {
  const text = fixtureText("arm-openmv-mobilenet/expected.json");
  const expected = JSON.parse(text);
  const graph = readSavedModel(readTestdata("savedmodel/arm-openmv-mobilenet/saved_model.pb"));
  assert.deepEqual(
    [graph.schemaVersion, graph.tags, graph.tensorflowVersion, graph.nodes],
    [1, ["serve"], "2.8.2", 1492],
  );
  const byKey = new Map(graph.variables.map((v) => [v.key, v]));
  const want = expected.entries.filter((e: { kind: string }) => e.kind !== "object_graph");
  assert.equal(graph.variables.length, want.length);
  for (const e of want) {
    const v = byKey.get(e.key);
    assert.ok(v, `no variable with key ${e.key}`);
    assert.deepEqual([v.name, v.nodeId, v.kind, v.trainable], [
      e.saved_variable.name,
      e.saved_variable.node_id,
      e.kind,
      e.saved_variable.trainable,
    ], e.key);
    if (e.kind === "optimizer_slot") {
      assert.deepEqual(v.slot, {
        name: e.saved_variable.slot_name,
        ofNodeId: e.saved_variable.slot_for_node_id,
      });
    }
  }
  const model = graph.variables.filter((v) => v.kind === "model");
  assert.deepEqual(model.map((v) => v.name), expected.summary.model_variable_names_in_variables_order);
  assert.equal(model.reduce((n, v) => n + v.shape!.reduce((a, b) => a * b, 1), 0), 219685);
});

Deno.test("readSavedModel() reproduces Derm Foundation's 304 checkpoint keys, which map onto R101x3 exactly", () => {
  const text = fixtureText("derm-foundation-variables.json");
  const derm: DermVariable[] = JSON.parse(text);
  assert.equal(derm.length, 304);
  const graph = readSavedModel(
    encodeDermSavedModelPb(derm.map((v) => ({ name: v.name, dtype: 1, shape: v.shape }))),
  );
  assert.deepEqual(graph.variables.map((v) => v.key), derm.map((v) => v.checkpoint_key));
  assert.deepEqual(graph.variables.map((v) => v.name), derm.map((v) => v.name));
  assert.ok(graph.variables.every((v) => v.kind === "model" && v.dtype === 1));
  // The recorded list itself onto the engine: 304 tensors, 381,789,888 parameters, nothing left over.
  const tensors = new Map<string, TensorEntry>();
  let offset = 0;
  for (const v of derm) {
    const bytes = v.shape.reduce((a, b) => a * b, 1) * 4;
    tensors.set(v.name, { name: v.name, dtype: "F32", shape: v.shape, begin: offset, end: offset + bytes });
    offset += bytes;
  }
  const adapted = adaptBitWeights({ file: "derm-foundation", tensors });
  assert.equal(adapted.naming, "derm");
  assert.deepEqual(adapted.architecture, BIT_R101X3);
  assert.equal(adapted.tensors.size, 304);
  assert.deepEqual(adapted.ignored, []);
  assert.equal(bitParameterCount(adapted.architecture), 381_789_888);
  assert.equal(offset, 1_527_159_552);
});

Deno.test("escapeLocalName() escapes dots and slashes as TensorFlow does", () => {
  assert.equal(escapeLocalName("layer-0"), "layer-0");
  assert.equal(escapeLocalName("a.b/c"), "a..b.Sc");
});

Deno.test("readSavedModel() fails with the file and offset on malformed or TF1 input", () => {
  const fails = (bytes: Uint8Array, message: RegExp) =>
    assert.throws(
      () => readSavedModel(bytes, { file: "saved_model.pb" }),
      (e: unknown) => e instanceof WeightsError && e.file === "saved_model.pb" && message.test(e.message),
    );
  const good = encodeDermSavedModelPb([{ name: "w", dtype: 1, shape: [2] }]);
  fails(
    good.subarray(0, good.length - 3),
    /Cannot read "saved_model.pb": malformed SavedModel protobuf: .* at offset \d+/,
  );
  fails(new Uint8Array(0), /no meta graph/);
  const tf1 = new ProtoWriter().varint(1, 1).bytes(2, new ProtoWriter().bytes(1, new Uint8Array(0)).finish())
    .finish();
  fails(tf1, /no object graph: only TensorFlow 2 SavedModels are supported/);
  const dangling = new ProtoWriter().bytes(1, new ProtoWriter().varint(1, 9).string(2, "x").finish())
    .finish();
  const graph = new ProtoWriter().bytes(1, dangling).finish();
  const pb = new ProtoWriter().bytes(2, new ProtoWriter().bytes(7, graph).finish()).finish();
  fails(pb, /a child of node 0 refers to node 9, but the object graph has 1 nodes/);
});
