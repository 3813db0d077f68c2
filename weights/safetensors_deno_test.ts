import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { decodeToFloat32, type TensorSource } from "./safetensors.ts";
import { openSafetensorsFile } from "./safetensors_deno.ts";
import { encodeSafetensors } from "./safetensors_write.ts";
import { fixtureWeightsFile } from "../tests/_fixtures.ts";
import { withTempDir } from "../tests/_temp.ts";

/** A file with `header` as JSON text, `dataBytes` zero bytes, and optionally a forged header length. */
function rawFile(header: string | object, dataBytes = 0, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

async function assertOpenFails(path: string, tensor: string, pattern: RegExp): Promise<void> {
  await assert.rejects(() => openSafetensorsFile(path), (e: unknown) => {
    assert.ok(e instanceof WeightsError, `expected WeightsError, got ${e}`);
    assert.equal(e.file, path);
    assert.equal(e.tensor, tensor);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test({
  name: "openSafetensorsFile() reads the fixture files tensor by tensor in offset order",
  async fn() {
    for (
      const [name, count, first] of [
        ["tiny-bit-64.safetensors", 43, "stem.conv.weight"],
        ["tiny-derm-96.safetensors", 52, "params.feature_extractor.root_block.conv_root.kernel"],
      ] as const
    ) {
      const path = await fixtureWeightsFile(`bit/${name}`);
      const source = await openSafetensorsFile(path);
      try {
        assert.equal(source.file, path);
        assert.equal(source.tensors.size, count);
        assert.ok(source.metadata.seed.startsWith("fixture/"));
        let previousEnd = -1, names: string[] = [];
        for await (const { entry, bytes } of source.stream()) {
          // The fixtures' tensors are back to back, in offset order, up to the end of the file.
          if (previousEnd >= 0) assert.equal(entry.begin, previousEnd);
          assert.equal(bytes.length, entry.end - entry.begin);
          assert.equal(entry.dtype, "F32");
          previousEnd = entry.end;
          names.push(entry.name);
        }
        assert.equal(names[0], first);
        assert.equal(names.length, count);
        assert.equal(previousEnd, (await Deno.stat(path)).size);
        // Streaming again, a subset.
        names = [];
        for await (const { entry, bytes } of source.stream(new Set([first]))) {
          names.push(entry.name);
          assert.ok(decodeToFloat32(entry, bytes).every((v) => v >= -1 && v < 1));
        }
        assert.deepEqual(names, [first]);
      } finally {
        await source.close();
      }
    }
  },
});

Deno.test("openSafetensorsFile() matches safetensorsFromBytes on a written file and closes idempotently", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/ok.safetensors`;
    const big = new Float32Array(5_000_000).map((_, i) => i);
    await Deno.writeFile(
      path,
      encodeSafetensors([
        { name: "small", dtype: "BF16", shape: [3], data: new Float32Array([1, 2, 3]) },
        { name: "big", dtype: "F32", shape: [5_000_000], data: big },
      ], { preset: "bit" }),
    );
    const source: TensorSource = await openSafetensorsFile(path);
    assert.deepEqual(source.metadata, { preset: "bit" });
    const seen: string[] = [];
    for await (const { entry, bytes } of source.stream()) {
      seen.push(entry.name);
      const values = decodeToFloat32(entry, bytes);
      if (entry.name === "big") assert.deepEqual(values, big);
      else assert.deepEqual([...values], [1, 2, 3]);
    }
    assert.deepEqual(seen, ["small", "big"]);
    assert.throws(
      () => source.stream(new Set(["missing"])),
      (e: unknown) => e instanceof WeightsError && e.tensor === "missing",
    );
    await source.close();
    await source.close();
    assert.throws(() => source.stream(), /the source is closed/);
  });
});

Deno.test("openSafetensorsFile() refuses missing paths, directories and hostile files with WeightsError", async () => {
  await withTempDir(async (dir) => {
    await assertOpenFails(
      `${dir}/nope.safetensors`,
      "",
      /^Cannot open ".*nope.safetensors": file not found$/,
    );
    await assertOpenFails(dir, "", /^Cannot (open|read) ".*": (is a directory|not a regular file)/);
    const t = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
    const good = rawFile({ t }, 8);
    const cases: [string, Uint8Array, string, RegExp][] = [
      ["empty", new Uint8Array(0), "", /expected at least 8 bytes, got 0/],
      ["short-prefix", new Uint8Array(5), "", /expected at least 8 bytes, got 5/],
      ["truncated-header", good.subarray(0, 20), "", /past the end of a 20-byte file/],
      [
        "huge-length",
        rawFile({ t }, 8, 2n ** 60n),
        "",
        /header length 1152921504606846976 exceeds the limit of 104857600/,
      ],
      ["invalid-json", rawFile('{"t": {"dtype": "F32",', 8), "", /malformed header: invalid JSON/],
      ["not-object", rawFile('"just a string"', 8), "", /expected a JSON object, got "just a string"/],
      [
        "out-of-range",
        rawFile({ t: { ...t, data_offsets: [8, 16] } }, 8),
        "t",
        /data_offsets \[8,16\] are past the 8-byte data section/,
      ],
      ["overlap", rawFile({ t, u: { ...t, data_offsets: [4, 12] } }, 12), "u", /overlap "t"/],
      [
        "size-mismatch",
        rawFile({ t: { ...t, shape: [3] } }, 8),
        "t",
        /expected 12 bytes for F32 \[3\], got 8/,
      ],
      [
        "dtype",
        rawFile({ t: { ...t, dtype: "F8_E5M2", shape: [1] } }, 8),
        "t",
        /unsupported dtype "F8_E5M2": expected one of F64, F32/,
      ],
      ["truncated-data", good.subarray(0, good.length - 1), "t", /past the 7-byte data section/],
    ];
    for (const [name, bytes, tensor, pattern] of cases) {
      const path = `${dir}/${name}.safetensors`;
      await Deno.writeFile(path, bytes);
      await assertOpenFails(path, tensor, pattern);
    }
  });
});

Deno.test("openSafetensorsFile() names the tensor when the file shrinks after opening", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/shrinks.safetensors`;
    const bytes = encodeSafetensors([
      { name: "a", dtype: "F32", shape: [4], data: new Float32Array(4) },
      { name: "b", dtype: "F32", shape: [4], data: new Float32Array(4) },
    ]);
    await Deno.writeFile(path, bytes);
    const source = await openSafetensorsFile(path);
    try {
      await Deno.truncate(path, bytes.length - 4);
      await assert.rejects(async () => {
        for await (const _ of source.stream()) { /* read all */ }
      }, (e: unknown) => e instanceof WeightsError && e.tensor === "b" && /file truncated/.test(e.message));
    } finally {
      await source.close();
    }
  });
});
