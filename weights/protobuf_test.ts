import assert from "node:assert/strict";
import { encodeVarint, ProtoReader, ProtoWriter, WireType } from "./protobuf.ts";

Deno.test("ProtoReader reads what ProtoWriter writes, field by field", () => {
  const inner = new ProtoWriter().string(2, "conv1/kernel").varint(1, 300).finish();
  const bytes = new ProtoWriter()
    .varint(1, 2 ** 40 + 5)
    .bytes(7, inner)
    .fixed32(6, 0xdeadbeef)
    .string(3, "héllo")
    .finish();
  const r = new ProtoReader(bytes);
  const seen: unknown[] = [];
  while (r.next()) {
    if (r.field === 1) seen.push(r.varint());
    else if (r.field === 7) {
      const m = r.message();
      while (m.next()) seen.push(m.field === 2 ? m.string() : m.varint());
    } else if (r.field === 6) seen.push(r.fixed32());
    else seen.push(r.string());
  }
  assert.deepEqual(seen, [2 ** 40 + 5, "conv1/kernel", 300, 0xdeadbeef, "héllo"]);
});

Deno.test("ProtoReader.int64() decodes negative values written as 10-byte varints", () => {
  // -1 as int64: ten bytes ff ff ff ff ff ff ff ff ff 01, after the key of field 1.
  const bytes = Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  const r = new ProtoReader(bytes);
  assert.ok(r.next());
  assert.equal(r.int64(), -1);
  const big = new ProtoReader(new ProtoWriter().varint(1, 448 * 448).finish());
  big.next();
  assert.equal(big.int64(), 448 * 448);
});

Deno.test("ProtoReader reads packed and unpacked repeated varints and skips unknown fields", () => {
  const packed = Uint8Array.from([...encodeVarint(3), ...encodeVarint(1), ...encodeVarint(300)]);
  const bytes = new ProtoWriter().bytes(3, packed).varint(3, 7).fixed32(9, 1).varint(10, 5).finish();
  const r = new ProtoReader(bytes);
  const values: number[] = [];
  while (r.next()) {
    if (r.field === 3) values.push(...r.packedVarints());
    else r.skip();
  }
  assert.deepEqual(values, [3, 1, 300, 7]);
});

Deno.test("ProtoReader throws a SyntaxError naming the offset for truncated and malformed input", () => {
  const cases: [Uint8Array, RegExp][] = [
    [Uint8Array.from([0x08, 0x80]), /truncated varint at offset 1/],
    [Uint8Array.from([0x12, 0x05, 0x61]), /length 5 is past the end of the message at offset 2/],
    [Uint8Array.from([0x0d, 0x01]), /truncated fixed32 at offset 1/],
    [Uint8Array.from([0x0b]), /unsupported wire type 3/],
    [Uint8Array.from([0x00]), /field number 0 at offset 0/],
    [Uint8Array.from([0x08, ...new Array(11).fill(0xff)]), /varint longer than 10 bytes/],
    [Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), /varint above 2\^53/],
  ];
  for (const [bytes, message] of cases) {
    const r = new ProtoReader(bytes, 0);
    assert.throws(() => {
      while (r.next()) r.skip();
    }, (e: unknown) => e instanceof SyntaxError && message.test(e.message));
  }
  // Offsets are absolute when the reader is given a base.
  const r = new ProtoReader(Uint8Array.from([0x08, 0x80]), 1000);
  assert.throws(() => r.next() && r.varint(), /at offset 1001/);
});

Deno.test("ProtoReader refuses a field read with the wrong wire type", () => {
  const r = new ProtoReader(new ProtoWriter().string(1, "x").finish());
  r.next();
  assert.equal(r.wireType, WireType.BYTES);
  assert.throws(() => r.varint(), /field 1: expected wire type 0, got 2/);
});

Deno.test("encodeVarint() writes the minimal little-endian base-128 form", () => {
  assert.deepEqual([...encodeVarint(0)], [0]);
  assert.deepEqual([...encodeVarint(127)], [127]);
  assert.deepEqual([...encodeVarint(300)], [0xac, 0x02]);
  assert.throws(() => encodeVarint(-1), RangeError);
});
