import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { encodeBundleEntry, encodeBundleHeader, encodeSstable } from "../tests/_savedmodel_writer.ts";
import { ProtoWriter } from "./protobuf.ts";
import { parseBundleEntry, readTensorBundleIndex, shardFileName, tfDtypeName } from "./tensor_bundle.ts";
import { readTestdata } from "../tests/_testdata.ts";

function fixture(path: string): Uint8Array {
  return readTestdata(`savedmodel/arm-openmv-mobilenet/${path}`);
}

const KEY = "computation_module/_var_leaves/0/.ATTRIBUTES/VARIABLE_VALUE";

function index(entries: { key: string; value: Uint8Array }[]): Uint8Array {
  return encodeSstable(entries);
}

function rejects(bytes: Uint8Array, tensor: string, message: RegExp): void {
  assert.throws(
    () => readTensorBundleIndex(bytes, { file: "variables.index" }),
    (e: unknown) => e instanceof WeightsError && e.tensor === tensor && message.test(e.message),
  );
}

Deno.test("readTensorBundleIndex() reads every entry of TensorFlow's index as in expected.json", () => {
  const bytes = fixture("variables/variables.index");
  const expected = JSON.parse(new TextDecoder().decode(fixture("expected.json")));
  const { header, entries } = readTensorBundleIndex(bytes, { file: "variables.index" });
  assert.deepEqual(header, {
    numShards: 1,
    endianness: 0,
    version: { producer: 1, minConsumer: 0, badConsumers: [] },
  });
  assert.equal(entries.size, 317);
  for (const e of expected.entries) {
    const got = entries.get(e.key);
    assert.ok(got, e.key);
    assert.deepEqual(
      [tfDtypeName(got.dtype), got.shape, got.shardId, got.offset, got.size, got.crc32c],
      [e.tf_dtype, e.shape, e.shard_id, e.offset, e.size, e.crc32c_masked],
      e.key,
    );
  }
});

Deno.test("parseBundleEntry() decodes fields and refuses partitioned slices", () => {
  const bytes = encodeBundleEntry({
    dtype: 1,
    shape: [3, 3, 8, 16],
    shardId: 2,
    offset: 2 ** 40,
    size: 4608,
    crc32c: 0xfeedbeef,
  });
  assert.deepEqual(parseBundleEntry("k", bytes), {
    key: "k",
    dtype: 1,
    shape: [3, 3, 8, 16],
    shardId: 2,
    offset: 2 ** 40,
    size: 4608,
    crc32c: 0xfeedbeef,
  });
  const sliced = encodeBundleEntry({
    dtype: 1,
    shape: [2],
    shardId: 0,
    offset: 0,
    size: 8,
    crc32c: 0,
    slices: 2,
  });
  assert.throws(
    () => parseBundleEntry("k", sliced),
    /2 partitioned slices: sliced \(partitioned\) variables are not supported/,
  );
  const unknownRank = new ProtoWriter().varint(1, 1).bytes(2, new ProtoWriter().varint(3, 1).finish())
    .finish();
  assert.throws(() => parseBundleEntry("k", unknownRank), /unknown rank/);
});

Deno.test("readTensorBundleIndex() names the entry that is malformed or inconsistent", () => {
  const header = { key: "", value: encodeBundleHeader(1) };
  const entry = (fields: Partial<Parameters<typeof encodeBundleEntry>[0]>) => ({
    key: KEY,
    value: encodeBundleEntry({
      dtype: 1,
      shape: [2, 3],
      shardId: 0,
      offset: 0,
      size: 24,
      crc32c: 0,
      ...fields,
    }),
  });
  assert.equal(readTensorBundleIndex(index([header, entry({})])).entries.get(KEY)?.size, 24);
  rejects(index([header, entry({ size: 20 })]), KEY, /expected 24 bytes for DT_FLOAT \[2,3\], got 20/);
  rejects(index([header, entry({ shardId: 3 })]), KEY, /shard 3 of 1/);
  rejects(index([header, entry({ slices: 1 })]), KEY, /sliced \(partitioned\) variables are not supported/);
  rejects(index([header, { key: KEY, value: Uint8Array.of(0x0a, 0x09) }]), KEY, /truncated|past the end/);
  rejects(index([entry({})]), "", /no bundle header/);
  const bigEndian = new ProtoWriter().varint(1, 1).varint(2, 1).finish();
  rejects(index([{ key: "", value: bigEndian }, entry({})]), "", /big-endian bundles are not supported/);
  rejects(index([{ key: "", value: encodeBundleHeader(0) }]), "", /claims 0 shards/);
});

Deno.test("shardFileName() pads shard numbers to five digits", () => {
  assert.equal(shardFileName("variables", 0, 1), "variables.data-00000-of-00001");
  assert.equal(shardFileName("variables", 12, 100), "variables.data-00012-of-00100");
});
