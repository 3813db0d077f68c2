import assert from "node:assert/strict";
import { crc32 } from "./crc32.ts";

Deno.test("crc32() gives the check value of CRC-32/ISO-HDLC and continues over chunks", () => {
  const text = new TextEncoder().encode("123456789");
  assert.equal(crc32(text), 0xcbf43926);
  assert.equal(crc32(text.subarray(4), crc32(text.subarray(0, 4))), 0xcbf43926);
  assert.equal(crc32(new Uint8Array()), 0);
  // PNG's IEND chunk: type and no data.
  assert.equal(crc32(new TextEncoder().encode("IEND")), 0xae426082);
});
