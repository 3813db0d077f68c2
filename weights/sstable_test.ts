import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { encodeSstable } from "../tests/_savedmodel_writer.ts";
import { crc32c, maskCrc32c } from "./crc32c.ts";
import { readSstable } from "./sstable.ts";
import { readTestdata } from "../tests/_testdata.ts";

function fixture(path: string): Uint8Array {
  return readTestdata(`savedmodel/arm-openmv-mobilenet/${path}`);
}

function entries(n: number): { key: string; value: Uint8Array }[] {
  return Array.from({ length: n }, (_, i) => ({
    key: `computation_module/_var_leaves/${i}/.ATTRIBUTES/VARIABLE_VALUE`,
    value: new Uint8Array(10 + (i % 7)).fill(i & 0xff),
  }));
}

function rejects(bytes: Uint8Array, message: RegExp): void {
  assert.throws(
    () => readSstable(bytes, { file: "variables.index" }),
    (e: unknown) => e instanceof WeightsError && e.file === "variables.index" && message.test(e.message),
  );
}

Deno.test("readSstable() reads TensorFlow's variables.index as the fixture describes it", () => {
  const bytes = fixture("variables/variables.index");
  const expected = JSON.parse(new TextDecoder().decode(fixture("expected.json")));
  const table = readSstable(bytes, { file: "variables.index" });
  const { footer, data_blocks: blocks } = expected.sstable;
  assert.deepEqual(table.footer.metaindex, { offset: footer.metaindex[0], size: footer.metaindex[1] });
  assert.deepEqual(table.footer.index, { offset: footer.index[0], size: footer.index[1] });
  assert.equal(table.metaindex.length, 0);
  assert.deepEqual(
    table.blocks,
    blocks.map((b: Record<string, number>) => ({
      offset: b.offset,
      size: b.size,
      entries: b.entries,
      restarts: b.restarts,
      compression: 0,
    })),
  );
  assert.equal(table.entries[0].key, "");
  const keys = expected.entries.map((e: { key: string }) => e.key).sort((a: string, b: string) =>
    a < b ? -1 : 1
  );
  assert.deepEqual(table.entries.slice(1).map((e) => e.key), keys);
});

Deno.test("readSstable() reads back what encodeSstable() writes, across many data blocks", () => {
  const want = entries(300);
  const bytes = encodeSstable(want, { blockBytes: 500 });
  const table = readSstable(bytes);
  assert.ok(table.blocks.length > 10, `${table.blocks.length} blocks`);
  const sorted = [...want].sort((a, b) => (a.key < b.key ? -1 : 1));
  assert.deepEqual(table.entries.map((e) => e.key), sorted.map((e) => e.key));
  assert.deepEqual(table.entries.map((e) => [...e.value]), sorted.map((e) => [...e.value]));
  assert.equal(table.blocks.reduce((n, b) => n + b.entries, 0), 300);
  assert.deepEqual(readSstable(encodeSstable([])).entries, []);
});

Deno.test("readSstable() refuses short, truncated and foreign files, naming the offset", () => {
  const bytes = encodeSstable(entries(40));
  rejects(bytes.subarray(0, 20), /truncated table: 20 bytes, shorter than the 48-byte footer/);
  rejects(bytes.subarray(0, bytes.length - 1), /bad magic/);
  rejects(new Uint8Array(100), /not an SSTable/);
  // The footer kept, the blocks cut: the index handle points past the data.
  const cut = new Uint8Array(200);
  cut.set(bytes.subarray(bytes.length - 48), 200 - 48);
  rejects(cut, /truncated block at offset \d+: metaindex block needs bytes up to \d+, the data ends at 152/);
});

Deno.test("readSstable() reports a block CRC mismatch and refuses compressed blocks", () => {
  const bytes = encodeSstable(entries(40));
  const flipped = bytes.slice();
  flipped[5] ^= 0x01;
  rejects(flipped, /CRC32C mismatch in data block at offset 0: stored 0x[0-9a-f]+, computed 0x[0-9a-f]+/);
  rejects(
    encodeSstable(entries(3), { compression: 1 }),
    /data block at offset 0 is compressed \(type 1, snappy\)/,
  );
});

Deno.test("readSstable() refuses a malformed block even when its CRC is right", () => {
  // A data block whose only entry claims 5 shared key bytes with no previous key, trailer CRC recomputed.
  const block = Uint8Array.from([5, 1, 0, 0x61, 0, 0, 0, 0, 1, 0, 0, 0]);
  const trailer = new Uint8Array(5);
  new DataView(trailer.buffer).setUint32(1, maskCrc32c(crc32c(Uint8Array.of(0), crc32c(block))), true);
  const good = encodeSstable([{ key: "a", value: new Uint8Array(0) }]);
  // Replace the good table's first data block (same size) with the bad one.
  const bad = good.slice();
  bad.set(block, 0);
  bad.set(trailer, block.length);
  rejects(bad, /malformed entry at offset 0: shares 5 key bytes, previous key has 0/);
});
