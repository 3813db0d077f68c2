import assert from "node:assert/strict";
import * as arrow from "apache-arrow";
import { arrowSchemaBase64 } from "./arrow_schema.ts";

/** The schema apache-arrow reads from our message (followed by the end-of-stream marker). */
function readSchema(base64: string): arrow.Schema {
  const message = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const stream = new Uint8Array(message.length + 8);
  stream.set(message);
  new DataView(stream.buffer).setUint32(message.length, 0xffffffff, true);
  return arrow.tableFromIPC(stream).schema;
}

Deno.test("arrowSchemaBase64() is an IPC Schema message apache-arrow reads as the embed columns", () => {
  const schema = readSchema(arrowSchemaBase64(["site", "metadata_path", "é ünïcode"], 6144));
  assert.deepEqual(
    schema.fields.map((f) => [f.name, String(f.type), f.nullable]),
    [
      ["path", "Utf8", false],
      ["hash", "Utf8", false],
      ["position", "Int64", false],
      ["site", "Utf8", true],
      ["metadata_path", "Utf8", true],
      ["é ünïcode", "Utf8", true],
      ["embedding", "FixedSizeList[6144]<Float32>", false],
    ],
  );
  const list = schema.fields[6].type as arrow.FixedSizeList;
  assert.equal(list.children[0].name, "element");
  assert.equal(list.children[0].nullable, false);
  assert.equal(readSchema(arrowSchemaBase64([], 1)).fields.length, 4);
});

Deno.test("arrowSchemaBase64() frames the message as Arrow does: marker, 8-byte padded length", () => {
  const bytes = Uint8Array.from(atob(arrowSchemaBase64(["a"], 3)), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint32(0, true), 0xffffffff);
  assert.equal(view.getInt32(4, true), bytes.length - 8);
  assert.equal(bytes.length % 8, 0);
  assert.throws(() => arrowSchemaBase64([], 0), RangeError);
});
