import assert from "node:assert/strict";
import { deflateSync } from "fflate";
import { WeightsError } from "../engine/errors.ts";
import { readTestdata } from "../tests/_testdata.ts";
import { writeZip, type ZipMember } from "../tests/_zip_writer.ts";
import { bytesReader, MAX_DEFLATE_RATIO, openZip, type RandomAccessReader } from "./zip.ts";
import { rejectsWith } from "../tests/_assert.ts";

const enc = new TextEncoder();

function seeded(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function rejects(promise: Promise<unknown>, pattern: RegExp, file = "t.zip"): Promise<WeightsError> {
  const caught = await rejectsWith(promise, WeightsError);
  assert.equal(caught.file, file);
  assert.match(caught.message, pattern);
  assert.ok(caught.message.startsWith(`Cannot read "${file}"`), caught.message);
  return caught;
}

/** A reader that records every range read. */
function countingReader(bytes: Uint8Array): RandomAccessReader & { reads: [number, number][] } {
  const reads: [number, number][] = [];
  return {
    size: bytes.length,
    reads,
    read(begin: number, end: number) {
      reads.push([begin, end]);
      return Promise.resolve(bytes.subarray(begin, Math.min(end, bytes.length)));
    },
  };
}

const MEMBERS: ZipMember[] = [
  { name: "archive/data.pkl", data: enc.encode("pickle bytes") },
  { name: "archive/data/0", data: seeded(1000, 3) },
  { name: "archive/notes.txt", data: enc.encode("ab".repeat(5000)), deflate: true },
  { name: "archive/empty", data: new Uint8Array(0) },
];

for (const zip64 of [false, true]) {
  Deno.test(`openZip() reads stored and deflated entries at their aligned offsets when zip64 is ${zip64}`, async () => {
    const layout = writeZip(MEMBERS, { zip64, comment: "a comment" });
    const zip = await openZip(bytesReader(layout.bytes), { file: "t.zip" });
    assert.deepEqual([...zip.entries.keys()], MEMBERS.map((m) => m.name));
    for (const [i, m] of MEMBERS.entries()) {
      const entry = zip.entries.get(m.name)!;
      assert.equal(entry.size, m.data.length);
      assert.equal(entry.method, m.deflate ? 8 : 0);
      assert.equal(await zip.dataOffset(entry), layout.dataOffsets[i]);
      if (!m.deflate) assert.equal(layout.dataOffsets[i] % 64, 0);
      assert.deepEqual(await zip.read(entry), m.data);
    }
    await zip.close();
  });
}

Deno.test("openZip() reads only the end records and the central directory until an entry is read", async () => {
  const layout = writeZip([...MEMBERS, { name: "archive/data/1", data: seeded(200_000) }]);
  const reader = countingReader(layout.bytes);
  const zip = await openZip(reader, { file: "t.zip" });
  // The tail read (end record and the largest comment) and the central directory, nothing before.
  assert.ok(reader.reads.every(([b]) => b >= layout.dataOffsets[4] + 100_000), JSON.stringify(reader.reads));
  reader.reads.length = 0;
  await zip.read(zip.entries.get("archive/data/0")!);
  const data = layout.dataOffsets[1];
  assert.deepEqual(reader.reads.at(-1), [data, data + 1000]);
  assert.ok(reader.reads.every(([b, e]) => b >= layout.localOffsets[1] && e <= data + 1000));
});

Deno.test("openZip() reads the torch.save archive of the tiny ViT fixture", async () => {
  const bytes = readTestdata("groeger/tiny-vit-64.pth");
  const zip = await openZip(bytesReader(bytes), { file: "tiny-vit-64.pth" });
  const pkl = zip.entries.get("tiny-vit-64/data.pkl")!;
  assert.equal(pkl.size, 9877);
  const pickle = await zip.read(pkl);
  assert.deepEqual([pickle[0], pickle[1], pickle.at(-1)], [0x80, 2, 0x2e]); // PROTO 2 ... STOP
  assert.equal(new TextDecoder().decode(await zip.read(zip.entries.get("tiny-vit-64/version")!)).trim(), "3");
  for (const entry of zip.entries.values()) {
    if (!entry.name.startsWith("tiny-vit-64/data/")) continue;
    assert.equal(entry.method, 0);
    assert.equal((await zip.dataOffset(entry)) % 64, 0, entry.name);
    assert.equal((await zip.read(entry)).length, entry.size);
  }
});

Deno.test("openZip() refuses a truncated archive", async () => {
  const { bytes, cdOffset } = writeZip(MEMBERS);
  await rejects(
    openZip(bytesReader(bytes.subarray(0, bytes.length - 5)), { file: "t.zip" }),
    /no end of central/,
  );
  await rejects(
    openZip(bytesReader(bytes.subarray(0, cdOffset + 10)), { file: "t.zip" }),
    /no end of central/,
  );
  await rejects(openZip(bytesReader(new Uint8Array(0)), { file: "t.zip" }), /too short/);
});

Deno.test("openZip() refuses a central directory that points outside the file", async () => {
  const layout = writeZip(MEMBERS);
  const bytes = layout.bytes.slice();
  new DataView(bytes.buffer).setUint32(layout.eocdOffset + 16, bytes.length + 100, true);
  await rejects(
    openZip(bytesReader(bytes), { file: "t.zip" }),
    /central directory \[\d+,\d+\) is outside the file/,
  );
  const huge = layout.bytes.slice();
  new DataView(huge.buffer).setUint32(layout.eocdOffset + 12, 0xfffffff0, true);
  await rejects(openZip(bytesReader(huge), { file: "t.zip" }), /outside the file/);
  const z64 = writeZip(MEMBERS, { zip64: true });
  const far = z64.bytes.slice();
  // The zip64 record's central directory offset, 56 + 20 + 22 bytes before the end.
  new DataView(far.buffer).setBigUint64(far.length - 22 - 20 - 56 + 48, 2n ** 62n, true);
  await rejects(openZip(bytesReader(far), { file: "t.zip" }), /outside the file/);
});

Deno.test("openZip() refuses an entry whose data runs past the central directory or overlaps another", async () => {
  const layout = writeZip(MEMBERS);
  const past = layout.bytes.slice();
  const cdEntry1 = layout.cdOffset + 46 + "archive/data.pkl".length;
  new DataView(past.buffer).setUint32(cdEntry1 + 42, layout.cdOffset - 10, true);
  await rejects(
    openZip(bytesReader(past), { file: "t.zip" }),
    /runs past the start of the central directory/,
  );
  const shared = layout.bytes.slice();
  new DataView(shared.buffer).setUint32(cdEntry1 + 42, 0, true);
  await rejects(openZip(bytesReader(shared), { file: "t.zip" }), /overlaps/);
});

Deno.test("ZipArchive.read() refuses a CRC mismatch and a local header of another name", async () => {
  const bad = writeZip([{ name: "a", data: seeded(100), crc: 1234 }]);
  const zip = await openZip(bytesReader(bad.bytes), { file: "t.zip" });
  await rejects(zip.read(zip.entries.get("a")!), /"a" is corrupt: CRC-32 0x[0-9a-f]{8}, expected 0x000004d2/);
  const renamed = writeZip([{ name: "abc", data: seeded(100) }]);
  renamed.bytes[30] = "x".charCodeAt(0);
  const zip2 = await openZip(bytesReader(renamed.bytes), { file: "t.zip" });
  await rejects(zip2.read(zip2.entries.get("abc")!), /local header at byte 0 names "xbc", not "abc"/);
});

Deno.test("ZipArchive.read() stops a deflate bomb at its declared size", async () => {
  const zeros = new Uint8Array(8 * 2 ** 20); // 8 MiB of zeros deflate to ~8 KB
  const lying = writeZip([{ name: "bomb", data: zeros, deflate: true, declaredSize: 1000 }]);
  const zip = await openZip(bytesReader(lying.bytes), { file: "t.zip" });
  await rejects(zip.read(zip.entries.get("bomb")!), /"bomb" inflates to more than its declared 1000 bytes/);

  const compressed = deflateSync(zeros).length;
  const claim = writeZip([{ name: "bomb", data: zeros, deflate: true, declaredSize: compressed * 2000 }]);
  const zip2 = await openZip(bytesReader(claim.bytes), { file: "t.zip" });
  await rejects(zip2.read(zip2.entries.get("bomb")!), new RegExp(`possible ratio of ${MAX_DEFLATE_RATIO}:1`));

  const honest = writeZip([{ name: "bomb", data: zeros, deflate: true }]);
  const zip3 = await openZip(bytesReader(honest.bytes), { file: "t.zip", maxInflatedBytes: 2 ** 20 });
  await rejects(
    zip3.read(zip3.entries.get("bomb")!),
    /claims 8388608 bytes inflated, over the limit of 1048576/,
  );

  const short = writeZip([{ name: "s", data: seeded(5000), deflate: true, declaredSize: 6000 }]);
  const zip4 = await openZip(bytesReader(short.bytes), { file: "t.zip" });
  await rejects(zip4.read(zip4.entries.get("s")!), /inflates to 5000 bytes, expected 6000/);
});

Deno.test("ZipArchive.read() refuses a truncated deflate stream", async () => {
  const layout = writeZip([{ name: "d", data: seeded(20000), deflate: true }]);
  const bytes = layout.bytes.slice();
  // Corrupt the stream's middle: inflating fails or the CRC does.
  bytes.fill(0xff, layout.dataOffsets[0] + 10, layout.dataOffsets[0] + 200);
  const zip = await openZip(bytesReader(bytes), { file: "t.zip" });
  await rejects(zip.read(zip.entries.get("d")!), /"d" is corrupt|inflates to/);
});

Deno.test("openZip() refuses unsupported methods, encryption, and duplicate names", async () => {
  const layout = writeZip([{ name: "a", data: seeded(10) }]);
  const method = layout.bytes.slice();
  new DataView(method.buffer).setUint16(layout.cdOffset + 10, 12, true);
  await rejects(openZip(bytesReader(method), { file: "t.zip" }), /compression method 12/);
  const encrypted = layout.bytes.slice();
  new DataView(encrypted.buffer).setUint16(layout.cdOffset + 8, 0x0801, true);
  await rejects(openZip(bytesReader(encrypted), { file: "t.zip" }), /encrypted/);
  const dup = writeZip([{ name: "a", data: seeded(10) }, { name: "a", data: seeded(10) }]);
  await rejects(openZip(bytesReader(dup.bytes), { file: "t.zip" }), /holds "a" twice/);
});
