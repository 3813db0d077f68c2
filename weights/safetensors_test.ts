import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import {
  decodeToFloat32,
  float16BitsToNumber,
  MAX_HEADER_BYTES,
  parseSafetensorsHeader,
  SAFETENSORS_PREFIX_BYTES,
  safetensorsFromBytes,
  safetensorsFromStream,
  safetensorsFromUrl,
  safetensorsHeaderLength,
  type TensorChunk,
  type TensorSource,
} from "./safetensors.ts";
import { encodeSafetensors } from "./safetensors_write.ts";

/** A file with `header` as its JSON text (no padding) and `dataBytes` zero bytes of data. */
function rawFile(header: string | object, dataBytes = 0, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

function sample(): Uint8Array<ArrayBuffer> {
  return encodeSafetensors([
    { name: "b", dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    { name: "a", dtype: "F16", shape: [3], data: new Float32Array([0.5, -2, 65504]) },
    { name: "c", dtype: "BF16", shape: [2], data: new Float32Array([1.5, -3]) },
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  ], { seed: "x", preset: "bit" });
}

async function collect(source: TensorSource, wanted?: ReadonlySet<string>): Promise<TensorChunk[]> {
  const out: TensorChunk[] = [];
  for await (const chunk of source.stream(wanted)) {
    out.push({ entry: chunk.entry, bytes: chunk.bytes.slice() });
  }
  return out;
}

/** A stream delivering `bytes` in chunks of `size` (the last one shorter). */
function chunkedStream(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

function assertWeightsError(
  fn: () => unknown,
  tensor: string,
  pattern: RegExp,
  file = "f.safetensors",
): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WeightsError, `expected WeightsError, got ${e}`);
    assert.equal(e.file, file);
    assert.equal(e.tensor, tensor);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("parseSafetensorsHeader() reads dtypes, shapes, absolute offsets and metadata", () => {
  const bytes = sample();
  const header = parseSafetensorsHeader(bytes, bytes.length, "s");
  assert.equal(header.dataStart % 8, 0);
  assert.equal(
    header.dataStart,
    SAFETENSORS_PREFIX_BYTES + safetensorsHeaderLength(bytes, "s", bytes.length),
  );
  assert.deepEqual(header.metadata, { seed: "x", preset: "bit" });
  assert.deepEqual([...header.tensors.keys()], ["b", "a", "c", "empty"]);
  assert.deepEqual(header.tensors.get("b"), {
    name: "b",
    dtype: "F32",
    shape: [2, 3],
    begin: header.dataStart,
    end: header.dataStart + 24,
  });
  assert.deepEqual(header.tensors.get("a")?.dtype, "F16");
  assert.equal(header.tensors.get("empty")?.begin, header.tensors.get("empty")?.end);
});

Deno.test("parseSafetensorsHeader() refuses hostile and malformed headers with WeightsError", () => {
  const f = "f.safetensors";
  const parse = (bytes: Uint8Array) => () => parseSafetensorsHeader(bytes, bytes.length, f);
  const t = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  assertWeightsError(parse(new Uint8Array(0)), "", /expected at least 8 bytes, got 0/);
  assertWeightsError(parse(new Uint8Array(5)), "", /expected at least 8 bytes, got 5/);
  assertWeightsError(
    parse(rawFile({ t }, 8, 2n ** 60n)),
    "",
    /header length 1152921504606846976 exceeds the limit/,
  );
  assertWeightsError(parse(rawFile({ t }, 8, BigInt(MAX_HEADER_BYTES + 1))), "", /exceeds the limit/);
  assertWeightsError(parse(rawFile({ t }, 8, 1000n)), "", /past the end of a \d+-byte file/);
  assertWeightsError(parse(rawFile("{ not json", 0)), "", /malformed header: invalid JSON/);
  assertWeightsError(parse(rawFile("[1,2]", 0)), "", /expected a JSON object, got an array/);
  assertWeightsError(parse(rawFile("null", 0)), "", /expected a JSON object, got null/);
  const badUtf8 = rawFile('{"a":1}', 0);
  badUtf8[10] = 0xff;
  assertWeightsError(parse(badUtf8), "", /not valid UTF-8/);
  assertWeightsError(
    parse(rawFile({ __metadata__: { a: 1 } })),
    "",
    /__metadata__ "a" is 1, expected a string/,
  );
  assertWeightsError(parse(rawFile({ __metadata__: [] })), "", /expected __metadata__ as a string map/);
  assertWeightsError(parse(rawFile({ t: 5 })), "t", /expected \{dtype, shape, data_offsets\}/);
  assertWeightsError(
    parse(rawFile({ t: { ...t, dtype: "F8_E4M3" } }, 8)),
    "t",
    /unsupported dtype "F8_E4M3": expected one of F64, F32, F16, BF16, I64/,
  );
  assertWeightsError(parse(rawFile({ t: { ...t, dtype: "C64" } }, 8)), "t", /unsupported dtype "C64"/);
  assertWeightsError(
    parse(rawFile({ t: { ...t, shape: [-1] } }, 8)),
    "t",
    /expected shape as non-negative integers/,
  );
  assertWeightsError(parse(rawFile({ t: { ...t, shape: [1.5] } }, 8)), "t", /expected shape/);
  assertWeightsError(parse(rawFile({ t: { ...t, shape: "2" } }, 8)), "t", /expected shape/);
  assertWeightsError(
    parse(rawFile({ t: { ...t, data_offsets: [0] } }, 8)),
    "t",
    /expected data_offsets \[begin,end\]/,
  );
  assertWeightsError(parse(rawFile({ t: { ...t, data_offsets: [8, 0] } }, 8)), "t", /end before they begin/);
  assertWeightsError(
    parse(rawFile({ t: { ...t, data_offsets: [0, 8] } }, 4)),
    "t",
    /past the 4-byte data section/,
  );
  assertWeightsError(
    parse(rawFile({ t: { ...t, data_offsets: [0, 12] } }, 12)),
    "t",
    /expected 8 bytes for F32 \[2\], got 12/,
  );
  assertWeightsError(
    parse(rawFile({ t: { ...t, shape: [2 ** 40, 2 ** 20] }, u: t }, 8)),
    "t",
    /expected \d+ bytes for F32/,
  );
  assertWeightsError(
    parse(rawFile({ t, u: { ...t, data_offsets: [4, 12] } }, 12)),
    "u",
    /bytes \[4,12\] overlap "t" \[0,8\]/,
  );
  assertWeightsError(parse(rawFile({ "": t }, 8)), "", /empty tensor name/);
});

Deno.test("parseSafetensorsHeader() keeps a hostile __proto__ metadata key as a plain key", () => {
  const bytes = rawFile('{"__metadata__":{"__proto__":"x","seed":"s"}}');
  const header = parseSafetensorsHeader(bytes, bytes.length, "f");
  assert.equal(Object.getPrototypeOf(header.metadata), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(header.metadata, "__proto__")?.value, "x");
  assert.equal(header.metadata.seed, "s");
});

Deno.test("parseSafetensorsHeader() allows empty tensors anywhere and gaps between tensors", () => {
  const t = { dtype: "BF16", shape: [4], data_offsets: [0, 8] };
  const bytes = rawFile({
    t,
    z: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
    g: { ...t, data_offsets: [16, 24] },
  }, 32);
  const header = parseSafetensorsHeader(bytes, bytes.length, "f");
  assert.equal(header.tensors.size, 3);
});

Deno.test("safetensorsFromBytes() streams wanted tensors in file offset order", async () => {
  const bytes = sample();
  const source = safetensorsFromBytes(bytes);
  assert.equal(source.file, "<bytes>");
  const all = await collect(source);
  assert.deepEqual(all.map((c) => c.entry.name), ["b", "a", "c", "empty"]);
  const some = await collect(source, new Set(["c", "b"]));
  assert.deepEqual(some.map((c) => c.entry.name), ["b", "c"]);
  assert.deepEqual([...decodeToFloat32(some[0].entry, some[0].bytes)], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...decodeToFloat32(some[1].entry, some[1].bytes)], [1.5, -3]);
  assert.throws(
    () => source.stream(new Set(["nope"])),
    (e: unknown) => e instanceof WeightsError && e.tensor === "nope",
  );
  source.close();
  assert.throws(() => source.stream(), /the source is closed/);
});

Deno.test("safetensorsFromBytes() yields tensors in offset order even when the header lists them otherwise", async () => {
  const data = new Uint8Array(12);
  data.set([1, 0, 0, 0], 0);
  const json = {
    late: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    early: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
  };
  const bytes = rawFile(json, 12);
  bytes.set(data, bytes.length - 12);
  const names = (await collect(safetensorsFromBytes(bytes))).map((c) => c.entry.name);
  assert.deepEqual(names, ["early", "late"]);
});

Deno.test("safetensorsFromStream() reads the header and body from any chunking, once", async () => {
  const bytes = sample();
  const want = await collect(safetensorsFromBytes(bytes));
  for (const size of [1, 3, 8, 13, 1000, bytes.length]) {
    for (const known of [true, false]) {
      const source = await safetensorsFromStream(
        chunkedStream(bytes, size),
        "s",
        known ? bytes.length : undefined,
      );
      assert.deepEqual(source.metadata, { seed: "x", preset: "bit" });
      const got = await collect(source, size === 3 ? new Set(["a", "empty"]) : undefined);
      const expected = size === 3
        ? want.filter((c) => c.entry.name === "a" || c.entry.name === "empty")
        : want;
      assert.deepEqual(got, expected, `chunk ${size}`);
      assert.throws(() => source.stream(), /can be streamed only once/);
      await source.close();
    }
  }
});

Deno.test("safetensorsFromStream() names the tensor when the data is truncated", async () => {
  const bytes = sample();
  const cut = bytes.subarray(0, bytes.length - 3);
  const source = await safetensorsFromStream(chunkedStream(cut, 7), "t.safetensors");
  const names: string[] = [];
  await assert.rejects(
    async () => {
      for await (const { entry } of source.stream()) names.push(entry.name);
    },
    (e: unknown) => {
      assert.ok(e instanceof WeightsError);
      assert.equal(e.tensor, "c");
      assert.match(e.message, /^Cannot load "c" from "t.safetensors": file truncated/);
      return true;
    },
  );
  assert.deepEqual(names, ["b", "a"]);
  // A size claiming more than the stream holds is caught the same way, while streaming.
  const claimed = await safetensorsFromStream(chunkedStream(cut, 7), "t", bytes.length);
  await assert.rejects(() => collect(claimed), (e: unknown) => e instanceof WeightsError && e.tensor === "c");
  // A size too small for the header's offsets is caught before streaming.
  await assert.rejects(
    () => safetensorsFromStream(chunkedStream(bytes, 7), "t", bytes.length - 3),
    (e: unknown) =>
      e instanceof WeightsError && e.tensor === "c" && /past the \d+-byte data section/.test(e.message),
  );
});

Deno.test("safetensorsFromStream() refuses an empty or cut header", async () => {
  await assert.rejects(
    () => safetensorsFromStream(chunkedStream(new Uint8Array(0), 4), "e"),
    (e: unknown) => e instanceof WeightsError && /the file is empty/.test(e.message),
  );
  const bytes = sample();
  await assert.rejects(
    () => safetensorsFromStream(chunkedStream(bytes.subarray(0, 20), 4), "e"),
    /file truncated in the header/,
  );
  await assert.rejects(
    () => safetensorsFromStream(chunkedStream(bytes.subarray(0, 5), 4), "e"),
    /expected at least 8 bytes/,
  );
});

Deno.test("safetensorsFromStream() wraps stream errors in WeightsError", async () => {
  const bytes = sample();
  let sent = false;
  const failing = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(bytes.slice(0, bytes.length - 30));
      } else controller.error(new Error("connection reset"));
    },
  });
  const source = await safetensorsFromStream(failing, "net");
  await assert.rejects(
    () => collect(source),
    (e: unknown) => e instanceof WeightsError && /connection reset/.test(e.message),
  );
});

Deno.test("safetensorsFromUrl() streams a data: URL and an HTTP response with content-length", async () => {
  const bytes = sample();
  const want = await collect(safetensorsFromBytes(bytes));
  const dataUrl = `data:application/octet-stream;base64,${btoa(String.fromCharCode(...bytes))}`;
  assert.deepEqual(await collect(await safetensorsFromUrl(dataUrl)), want);

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    if (new URL(request.url).pathname === "/w.safetensors") {
      return new Response(bytes, { headers: { "content-length": String(bytes.length) } });
    }
    return new Response("no", { status: 404, statusText: "Not Found" });
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const source = await safetensorsFromUrl(new URL("/w.safetensors", base));
    assert.equal(source.file, `${base}/w.safetensors`);
    assert.deepEqual(await collect(source), want);
    await assert.rejects(
      () => safetensorsFromUrl(`${base}/missing`),
      (e: unknown) =>
        e instanceof WeightsError && e.file === `${base}/missing` && /got 404 Not Found/.test(e.message),
    );
  } finally {
    await server.shutdown();
  }
  await assert.rejects(
    () => safetensorsFromUrl("http://127.0.0.1:1/x"),
    (e: unknown) => e instanceof WeightsError && e.cause !== undefined,
  );
});

Deno.test("decodeToFloat32() decodes F16 (subnormal, inf, NaN) and BF16 from unaligned bytes", () => {
  assert.equal(float16BitsToNumber(0x3c00), 1);
  assert.equal(float16BitsToNumber(0xc000), -2);
  assert.equal(float16BitsToNumber(0x7bff), 65504);
  assert.equal(float16BitsToNumber(0x0001), 2 ** -24);
  assert.equal(float16BitsToNumber(0x03ff), 1023 * 2 ** -24);
  assert.equal(float16BitsToNumber(0x7c00), Infinity);
  assert.equal(float16BitsToNumber(0xfc00), -Infinity);
  assert.ok(Number.isNaN(float16BitsToNumber(0x7e00)));
  assert.ok(Object.is(float16BitsToNumber(0x8000), -0));
  const f16 = new Uint8Array([0, 0x00, 0x3c, 0x01, 0x80, 0xff, 0x7b]).subarray(1);
  const entry = { name: "h", dtype: "F16" as const, shape: [3], begin: 0, end: 6 };
  assert.deepEqual([...decodeToFloat32(entry, f16)], [1, -(2 ** -24), 65504]);
  const bf16 = new Uint8Array([9, 0xc0, 0x3f, 0x40, 0xc0]).subarray(1);
  assert.deepEqual([...decodeToFloat32({ ...entry, dtype: "BF16", shape: [2] }, bf16)], [1.5, -3]);
  const f32 = new Uint8Array(9).subarray(1);
  new DataView(f32.buffer, 1).setFloat32(4, -0.75, true);
  assert.deepEqual([...decodeToFloat32({ ...entry, dtype: "F32", shape: [2] }, f32)], [0, -0.75]);
  assert.throws(() => decodeToFloat32(entry, new Uint8Array(4)), TypeError);
});
