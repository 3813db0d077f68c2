import assert from "node:assert/strict";
import { deflateSync, zipSync } from "fflate";
import { bitArchitecture } from "../models/bit_arch.ts";
import { WeightsError } from "../engine/errors.ts";
import { adaptBitWeights } from "../models/bit_names.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { bitNpzName, crc32, npzBytesReader, openNpz, parseNpyHeader } from "./npz.ts";
import { openNpzFile } from "./npz_deno.ts";
import { openSafetensorsFile } from "./safetensors_deno.ts";
import { writeSafetensorsFile } from "./safetensors_write_deno.ts";
import type { TensorSource } from "./safetensors.ts";
import { rejectsWith } from "../tests/_assert.ts";

const TINY = bitArchitecture([2, 1], [16, 32], 8);
const SEED = "npz-test";

/** A .npy (version 1.0) of `data` with `descr` and `shape`. */
function npy(descr: string, shape: readonly number[], data: Uint8Array, fortran = false): Uint8Array {
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${descr}', 'fortran_order': ${fortran ? "True" : "False"}, 'shape': ${tuple}, }`;
  const headerLength = Math.ceil((10 + dict.length + 1) / 64) * 64 - 10;
  const out = new Uint8Array(10 + headerLength + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, headerLength, true);
  out.set(new TextEncoder().encode(dict.padEnd(headerLength - 1, " ") + "\n"), 10);
  out.set(data, 10 + headerLength);
  return out;
}

/** The big_transfer key of a Derm name (inverse of `bitNpzName`, for building test archives). */
function bitKey(derm: string): string {
  const fe = derm.replace(/^params\.feature_extractor\./, "");
  if (fe === "root_block.conv_root.kernel") return "resnet/root_block/standardized_conv2d/kernel";
  if (fe === "norm-pre-head.scale") return "resnet/group_norm/gamma";
  if (fe === "norm-pre-head.bias") return "resnet/group_norm/beta";
  const m = /^block(\d+)\.unit(\d+)\.(conv1|conv2|conv3|conv_proj|gn1|gn2|gn3)\.(kernel|scale|bias)$/.exec(
    fe,
  );
  assert.ok(m, derm);
  const [, s, u, part, leaf] = m;
  const prefix = `resnet/block${s}/unit${u}/`;
  if (part === "conv_proj") return `${prefix}a/proj/standardized_conv2d/kernel`;
  const abc = "abc"[Number(part.at(-1)) - 1];
  if (part.startsWith("conv")) return `${prefix}${abc}/standardized_conv2d/kernel`;
  return `${prefix}${abc}/group_norm/${leaf === "scale" ? "gamma" : "beta"}`;
}

/** Every tensor of a source: name -> bytes (copied). */
async function readAll(source: TensorSource): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const { entry, bytes } of source.stream()) out.set(entry.name, bytes.slice());
  return out;
}

/** The procedural tiny model as .npy members keyed by big_transfer names, plus a head; norms stored as [C]. */
async function bitMembers(): Promise<Record<string, Uint8Array>> {
  const derm = bitProceduralSource(TINY, SEED, { naming: "derm" });
  const members: Record<string, Uint8Array> = {};
  for await (const { entry, bytes } of derm.stream()) {
    const shape = /\.(gn\d|norm-pre-head)\./.test(entry.name) ? [entry.shape[3]] : entry.shape;
    members[`${bitKey(entry.name)}.npy`] = npy("<f4", shape, bytes);
  }
  members["resnet/head/conv2d/kernel.npy"] = npy("<f4", [1, 1, 32, 5], new Uint8Array(32 * 5 * 4));
  members["resnet/head/conv2d/bias.npy"] = npy("<f4", [5], new Uint8Array(20));
  return members;
}

async function expectedBytes(): Promise<Map<string, Uint8Array>> {
  return await readAll(bitProceduralSource(TINY, SEED, { naming: "derm" }));
}

interface RawMember {
  name: string;
  /** Bytes stored in the archive (already deflated for method 8). */
  payload: Uint8Array;
  method: 0 | 8;
  crc: number;
  /** Declared uncompressed size. */
  size: number;
  /** Declare the size through a zip64 extra field. */
  zip64?: boolean;
}

/** A hand-built zip, for archives no honest writer makes; `alias` adds central entries sharing member 0's data. */
function rawZip(members: RawMember[], alias: string[] = []): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const offsets: number[] = [];
  for (const m of members) {
    const name = enc.encode(m.name);
    const local = new Uint8Array(30 + name.length);
    const v = new DataView(local.buffer);
    v.setUint32(0, 0x04034b50, true);
    v.setUint16(4, 20, true);
    v.setUint16(8, m.method, true);
    v.setUint32(14, m.crc, true);
    v.setUint32(18, m.payload.length, true);
    v.setUint32(22, m.zip64 ? 0xffffffff : m.size, true);
    v.setUint16(26, name.length, true);
    local.set(name, 30);
    offsets.push(offset);
    parts.push(local, m.payload);
    offset += local.length + m.payload.length;
  }
  const centralEntry = (m: RawMember, name: Uint8Array, at: number) => {
    const extra = m.zip64 ? 12 : 0;
    const c = new Uint8Array(46 + name.length + extra);
    const v = new DataView(c.buffer);
    v.setUint32(0, 0x02014b50, true);
    v.setUint16(6, 20, true);
    v.setUint16(10, m.method, true);
    v.setUint32(16, m.crc, true);
    v.setUint32(20, m.payload.length, true);
    v.setUint32(24, m.zip64 ? 0xffffffff : m.size, true);
    v.setUint16(28, name.length, true);
    v.setUint16(30, extra, true);
    v.setUint32(42, at, true);
    c.set(name, 46);
    if (m.zip64) {
      v.setUint16(46 + name.length, 1, true);
      v.setUint16(48 + name.length, 8, true);
      v.setBigUint64(50 + name.length, BigInt(m.size), true);
    }
    return c;
  };
  members.forEach((m, i) => central.push(centralEntry(m, enc.encode(m.name), offsets[i])));
  for (const name of alias) central.push(centralEntry(members[0], enc.encode(name), offsets[0]));
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const eocd = new Uint8Array(22);
  const v = new DataView(eocd.buffer);
  v.setUint32(0, 0x06054b50, true);
  v.setUint16(8, central.length, true);
  v.setUint16(10, central.length, true);
  v.setUint32(12, cdSize, true);
  v.setUint32(16, offset, true);
  const all = [...parts, ...central, eocd];
  const out = new Uint8Array(all.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of all) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function stored(name: string, data: Uint8Array, overrides: Partial<RawMember> = {}): RawMember {
  return { name, payload: data, method: 0, crc: crc32(data), size: data.length, ...overrides };
}

async function rejects(promise: Promise<unknown>, pattern: RegExp): Promise<WeightsError> {
  const caught = await rejectsWith(promise, WeightsError);
  assert.match(caught.message, pattern);
  return caught;
}

async function drain(source: TensorSource): Promise<void> {
  for await (const _ of source.stream()) { /* read everything */ }
}

const KERNEL_KEY = "resnet/root_block/standardized_conv2d/kernel.npy";

Deno.test("crc32() matches the standard check value", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("bitNpzName() maps big_transfer keys onto Derm names", () => {
  assert.deepEqual(bitNpzName("resnet/block1/unit01/a/standardized_conv2d/kernel"), {
    name: "params.feature_extractor.block1.unit01.conv1.kernel",
    norm: false,
    head: false,
  });
  assert.equal(
    bitNpzName("resnet/block3/unit10/a/proj/standardized_conv2d/kernel")?.name,
    "params.feature_extractor.block3.unit10.conv_proj.kernel",
  );
  assert.equal(
    bitNpzName("resnet/block2/unit3/b/standardized_conv2d/kernel")?.name,
    "params.feature_extractor.block2.unit03.conv2.kernel",
  );
  assert.deepEqual(bitNpzName("resnet/block4/unit02/c/group_norm/beta"), {
    name: "params.feature_extractor.block4.unit02.gn3.bias",
    norm: true,
    head: false,
  });
  assert.equal(bitNpzName("resnet/group_norm/gamma")?.name, "params.feature_extractor.norm-pre-head.scale");
  assert.equal(bitNpzName("resnet/head/conv2d/kernel")?.head, true);
  assert.equal(bitNpzName("resnet/block1/unit01/b/proj/standardized_conv2d/kernel"), undefined);
  assert.equal(bitNpzName("global_step"), undefined);
});

Deno.test("parseNpyHeader() reads <f4 and <f2, refuses other dtypes and Fortran order", () => {
  const f4 = parseNpyHeader(npy("<f4", [2, 3], new Uint8Array(24)), "x.npy");
  assert.deepEqual([f4.dtype, f4.shape, f4.headerBytes, f4.dataBytes], ["F32", [2, 3], 128, 24]);
  const f2 = parseNpyHeader(npy("<f2", [5], new Uint8Array(10)), "x.npy");
  assert.deepEqual([f2.dtype, f2.shape, f2.dataBytes], ["F16", [5], 10]);
  assert.deepEqual(parseNpyHeader(npy("<f4", [], new Uint8Array(4)), "s.npy").shape, []);
  assert.throws(
    () => parseNpyHeader(npy("<f8", [2], new Uint8Array(16)), "x.npy"),
    /unsupported dtype "<f8"/,
  );
  assert.throws(() => parseNpyHeader(npy(">f4", [2], new Uint8Array(8)), "x.npy"), /unsupported dtype ">f4"/);
  assert.throws(() => parseNpyHeader(npy("<f4", [2, 2], new Uint8Array(16), true), "x.npy"), /Fortran/);
  assert.throws(() => parseNpyHeader(new TextEncoder().encode("PK\x03\x04 not npy"), "x.npy"), /bad magic/);
});

Deno.test("openNpz() exposes a stored BiT .npz under Derm names that adaptBitWeights() accepts, values exact", async () => {
  const members = await bitMembers();
  const bytes = zipSync(Object.fromEntries(Object.entries(members).map(([k, v]) => [k, [v, { level: 0 }]])));
  const source = await openNpz(npzBytesReader(bytes), { file: "tiny.npz" });
  assert.deepEqual(source.metadata, { preset: "bit", source: "bit-npz" });
  const adapted = adaptBitWeights(source);
  assert.equal(adapted.naming, "derm");
  assert.deepEqual(adapted.architecture, TINY);
  assert.deepEqual(adapted.ignored.sort(), ["params.head.conv2d.bias", "params.head.conv2d.kernel"]);
  assert.deepEqual(source.tensors.get("params.feature_extractor.block1.unit01.gn1.scale")?.shape, [
    1,
    1,
    1,
    8,
  ]);
  const got = await readAll(source);
  const want = await expectedBytes();
  for (const [name, bytes] of want) assert.deepEqual(got.get(name), bytes, name);
  // Entries stream in ascending begin order with contiguous virtual offsets.
  const entries = [...source.tensors.values()].sort((a, b) => a.begin - b.begin);
  entries.forEach((e, i) => assert.equal(e.begin, i === 0 ? 0 : entries[i - 1].end));
  await source.close();
});

Deno.test("openNpzFile() reads a deflated .npz one tensor at a time and converts to safetensors exactly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tiny.npz`;
    await Deno.writeFile(path, zipSync(await bitMembers(), { level: 6 }));
    const source = await openNpzFile(path, { dropHead: true });
    const wanted = new Set(["params.feature_extractor.norm-pre-head.bias"]);
    const only = [];
    for await (const chunk of source.stream(wanted)) only.push(chunk.entry.name);
    assert.deepEqual(only, [...wanted]);
    assert.equal(adaptBitWeights(source).ignored.length, 0);
    const out = `${dir}/tiny.safetensors`;
    await writeSafetensorsFile(out, source, { metadata: source.metadata });
    await source.close();
    const written = await openSafetensorsFile(out);
    try {
      assert.equal(written.metadata.source, "bit-npz");
      assert.deepEqual(adaptBitWeights(written).architecture, TINY);
      const got = await readAll(written);
      for (const [name, bytes] of await expectedBytes()) assert.deepEqual(got.get(name), bytes, name);
    } finally {
      await written.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openNpz() keeps float16 arrays as F16", async () => {
  const half = npy("<f2", [7, 7, 3, 4], new Uint8Array(7 * 7 * 3 * 4 * 2).fill(0x3c));
  const source = await openNpz(npzBytesReader(zipSync({ [KERNEL_KEY]: half })));
  const entry = source.tensors.get("params.feature_extractor.root_block.conv_root.kernel");
  assert.equal(entry?.dtype, "F16");
  assert.equal(entry.end - entry.begin, 7 * 7 * 3 * 4 * 2);
});

Deno.test("openNpzFile() names the file when it is missing", async () => {
  const e = await rejects(
    openNpzFile("/nonexistent/x.npz"),
    /Cannot open "\/nonexistent\/x.npz": file not found/,
  );
  assert.equal(e.file, "/nonexistent/x.npz");
});

Deno.test("openNpz() rejects a non-zip and a truncated zip", async () => {
  const notZip = new TextEncoder().encode("this is not a zip archive at all");
  await rejects(openNpz(npzBytesReader(notZip), { file: "x.npz" }), /Cannot read "x.npz": not a zip archive/);
  await rejects(openNpz(npzBytesReader(new Uint8Array(0)), { file: "x.npz" }), /not a zip archive/);
  const bytes = zipSync(await bitMembers());
  for (const cut of [bytes.length - 7, bytes.length >> 1, 100]) {
    await rejects(openNpz(npzBytesReader(bytes.subarray(0, cut)), { file: "cut.npz" }), /not a zip archive/);
  }
  // A central directory that points past the bytes present (data cut from the middle).
  const whole = rawZip([stored(KERNEL_KEY, npy("<f4", [7, 7, 3, 4], new Uint8Array(2352)))]);
  const spliced = new Uint8Array([...whole.subarray(0, 200), ...whole.subarray(1200)]);
  await rejects(openNpz(npzBytesReader(spliced), { file: "spliced.npz" }), /Cannot read "spliced.npz"/);
});

Deno.test("openNpz() stream() rejects an entry whose CRC-32 does not match", async () => {
  const data = npy("<f4", [7, 7, 3, 4], new Uint8Array(2352).fill(1));
  const bytes = rawZip([stored(KERNEL_KEY, data, { crc: crc32(data) ^ 1 })]);
  const source = await openNpz(npzBytesReader(bytes), { file: "crc.npz" });
  const e = await rejects(drain(source), /CRC-32 mismatch in zip entry .*corrupt archive/);
  assert.equal(e.tensor, "params.feature_extractor.root_block.conv_root.kernel");
  // A flipped byte in a deflated archive is caught by the CRC (or the inflater).
  const good = zipSync({ [KERNEL_KEY]: data });
  const bad = good.slice();
  bad[good.length - 22 - (46 + KERNEL_KEY.length) - 4] ^= 0x55; // in the last bytes of the deflate stream
  await rejects(
    (async () => drain(await openNpz(npzBytesReader(bad))))(),
    /CRC-32 mismatch|corrupt|holds|inflates past/,
  );
});

Deno.test("openNpz() stops inflating a zip bomb at its declared size", async () => {
  // Declares a [4] float32 array (144 bytes) but inflates to 32 MiB of zeros.
  const header = npy("<f4", [4], new Uint8Array(16));
  const bomb = new Uint8Array(32 * 2 ** 20);
  bomb.set(header);
  const payload = deflateSync(bomb);
  assert.ok(payload.length < 64 * 1024);
  const bytes = rawZip([{
    name: KERNEL_KEY,
    payload,
    method: 8,
    crc: crc32(header),
    size: header.length,
  }]);
  // Caught while reading the .npy header at open, long before 32 MiB are produced.
  await rejects(
    (async () => drain(await openNpz(npzBytesReader(bytes), { file: "bomb.npz" })))(),
    /Cannot load .* from "bomb.npz": zip entry .* inflates past its declared size of 144 bytes/,
  );
});

Deno.test("openNpz() rejects declared sizes over the cap or that disagree with the .npy shape", async () => {
  const header = npy("<f4", [2 ** 31], new Uint8Array(0));
  const huge = { payload: deflateSync(header), method: 8 as const, crc: 0, zip64: true };
  // 8 GiB + 128 declared through zip64: over the default cap.
  await rejects(
    openNpz(npzBytesReader(rawZip([{ name: KERNEL_KEY, ...huge, size: 2 ** 33 + 128 }])), {
      file: "big.npz",
    }),
    /declared uncompressed size 8589934720 exceeds the limit of 8589934592 bytes/,
  );
  // Under a raised cap, the .npy header must still account for every declared byte.
  const padded = new Uint8Array(2 ** 20);
  padded.set(header);
  const lying = { ...huge, payload: deflateSync(padded), size: 2 ** 20 };
  await rejects(
    openNpz(npzBytesReader(rawZip([{ name: KERNEL_KEY, ...lying }])), {
      maxUncompressedBytes: 2 ** 40,
    }),
    /declares 1048576 bytes, its .npy header needs 8589934720 \(F32 \[2147483648\]\)/,
  );
  const small = npy("<f4", [7, 7, 3, 4], new Uint8Array(2352));
  await rejects(
    openNpz(npzBytesReader(rawZip([stored(KERNEL_KEY, small)])), { maxUncompressedBytes: 1000 }),
    /exceeds the limit of 1000 bytes \(maxUncompressedBytes\)/,
  );
});

Deno.test("openNpz() rejects overlapping entries, unknown keys, bad dtypes and encrypted entries", async () => {
  const data = npy("<f4", [7, 7, 3, 4], new Uint8Array(2352));
  await rejects(
    openNpz(npzBytesReader(rawZip([stored(KERNEL_KEY, data)], ["resnet/group_norm/gamma.npy"]))),
    /overlaps/,
  );
  await rejects(
    openNpz(npzBytesReader(zipSync({ "global_step.npy": npy("<f4", [], new Uint8Array(4)) }))),
    /Cannot load "global_step" from "<bytes>": not a BiT ResNetV2 tensor/,
  );
  const e = await rejects(
    openNpz(npzBytesReader(zipSync({ [KERNEL_KEY]: npy("<f8", [2], new Uint8Array(16)) })), {
      file: "f8.npz",
    }),
    /Cannot load "resnet\/root_block\/standardized_conv2d\/kernel" from "f8.npz": .*unsupported dtype "<f8"/,
  );
  assert.equal(e.file, "f8.npz");
  await rejects(
    openNpz(
      npzBytesReader(zipSync({ "resnet/group_norm/gamma.npy": npy("<f4", [2, 3], new Uint8Array(24)) })),
    ),
    /expected a GroupNorm vector \[C\] or \[1,1,1,C\], got \[2,3\]/,
  );
  const encrypted = rawZip([stored(KERNEL_KEY, data)]);
  const cd = encrypted.length - 22 - (46 + KERNEL_KEY.length);
  encrypted[cd + 8] |= 1;
  await rejects(openNpz(npzBytesReader(encrypted)), /encrypted zip entries are not supported/);
});
