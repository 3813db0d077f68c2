import assert from "node:assert/strict";
import { crc32c, maskCrc32c, unmaskCrc32c } from "./crc32c.ts";

/** Bit-at-a-time reference, straight from the definition. */
function crc32cBitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

Deno.test('crc32c() gives the standard check value of "123456789"', () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // RFC 3720 (iSCSI) test vectors: 32 zero bytes and 32 0xFF bytes.
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
});

Deno.test("crc32c() matches the bitwise definition at every length and alignment", () => {
  const data = new Uint8Array(300);
  let x = 12345;
  for (let i = 0; i < data.length; i++) data[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  for (let start = 0; start < 9; start++) {
    for (const length of [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 250]) {
      const part = data.subarray(start, start + length);
      assert.equal(crc32c(part), crc32cBitwise(part), `start ${start} length ${length}`);
    }
  }
});

Deno.test("crc32c() continues a previous CRC across pieces", () => {
  const data = new Uint8Array(1000).map((_, i) => (i * 31 + 7) & 0xff);
  const whole = crc32c(data);
  for (const cut of [0, 1, 5, 8, 333, 999, 1000]) {
    assert.equal(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut))), whole, `cut at ${cut}`);
  }
});

Deno.test("maskCrc32c() and unmaskCrc32c() invert each other and match TensorFlow's stored values", () => {
  // From testdata/savedmodel/arm-openmv-mobilenet/expected.json (crc32c_unmasked, crc32c_masked).
  assert.equal(maskCrc32c(3031429917), 2294174775);
  assert.equal(unmaskCrc32c(2294174775), 3031429917);
  assert.equal(maskCrc32c(863218768), 4213395903);
  for (const c of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xdeadbeef]) {
    assert.equal(unmaskCrc32c(maskCrc32c(c)), c);
  }
});
