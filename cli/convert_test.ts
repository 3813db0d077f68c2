/**
 * `deno task convert` end to end: a real TensorFlow SavedModel, a Derm-Foundation-shaped SavedModel written
 * here from the tiny `derm` fixture weights (converted, then embedded and compared with the float64
 * reference), safetensors re-typing and head stripping, and hostile inputs that must fail clearly and leave
 * no output (nor temporary) file.
 */
import assert from "node:assert/strict";
import { zipSync } from "fflate";
import { convert, CONVERTER_VERSION, float32BytesToFloat16, main } from "./convert.ts";
import { WeightsError } from "../engine/errors.ts";
import { bitArchitecture } from "../models/bit_arch.ts";
import { createBitEmbedder, createEmbedder } from "../models/registry.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { adaptBitWeights } from "../models/bit_names.ts";
import { decodeToFloat32, type TensorSource } from "../weights/safetensors.ts";
import { openSafetensorsFile } from "../weights/safetensors_deno.ts";
import { encodeSafetensors, numberToFloat16Bits, type TensorToWrite } from "../weights/safetensors_write.ts";
import { relativeMaxError } from "../tests/_compare.ts";
import {
  caseImagePath,
  caseWeightsPath,
  embeddingBound,
  fixtureCases,
  readReference,
} from "../tests/_fixtures.ts";
import { gpuTest } from "../tests/_gpu.ts";
import { testdataPath } from "../tests/_testdata.ts";
import { CheckpointBuilder } from "../tests/_torch_checkpoint_writer.ts";
import { dict } from "../tests/_pickle_writer.ts";
import { dermLeafKey, writeDermSavedModel } from "../tests/_savedmodel_writer.ts";
import { withTempDir } from "../tests/_temp.ts";
import { fixtureCheckpointFile } from "../tests/_fixtures.ts";

const MOBILENET = testdataPath("savedmodel/arm-openmv-mobilenet");
const TINY = bitArchitecture([1, 1, 1, 1], [16, 32, 64, 128], 8);

/** Runs `main(args)` with console output captured. */
async function run(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const err: string[] = [], out: string[] = [];
  const { error, log } = console;
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, stderr: err.join("\n"), stdout: out.join("\n") };
  } finally {
    console.error = error;
    console.log = log;
  }
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

async function readAll(source: TensorSource): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const { entry, bytes } of source.stream()) out.set(entry.name, bytes.slice());
  return out;
}

Deno.test("convert turns TensorFlow's MobileNet SavedModel into its 137 model tensors, training state dropped", async () => {
  const expected = JSON.parse(await Deno.readTextFile(`${MOBILENET}/expected.json`));
  const model = expected.entries.filter((e: { kind: string }) => e.kind === "model");
  await withTempDir(async (dir) => {
    const out = `${dir}/mobilenet.safetensors`;
    const { code, stderr } = await run([MOBILENET, "--out", out]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /converted 137 tensors \(219,685 parameters, f32\)/);
    assert.match(stderr, /dropped: .*166 optimizer_slot/);
    const source = await openSafetensorsFile(out);
    try {
      assert.deepEqual(source.metadata, {
        source: `tensorflow-savedmodel:${MOBILENET}`,
        converter: CONVERTER_VERSION,
      });
      assert.deepEqual(
        [...source.tensors.keys()].sort(),
        model.map((e: any) => e.saved_variable.name).sort(),
      );
      const values = await readAll(source);
      for (const e of model) {
        const name = e.saved_variable.name;
        assert.deepEqual(source.tensors.get(name)!.shape, e.shape, name);
        const f = decodeToFloat32(source.tensors.get(name)!, values.get(name)!);
        assert.deepEqual([...f.subarray(0, 4)], e.first4, name);
        const sum = f.reduce((a, b) => a + b, 0);
        const sumAbs = f.reduce((a, b) => a + Math.abs(b), 0);
        assert.ok(Math.abs(sum - e.sum) <= 1e-9 * Math.max(sumAbs, 1), `${name}: sum ${sum} vs ${e.sum}`);
      }
    } finally {
      source.close();
    }
    assert.deepEqual(await listDir(dir), ["mobilenet.safetensors"]);
  });
});

Deno.test("convert writes a Derm-shaped SavedModel with its names, architecture and derm preset", async () => {
  await withTempDir(async (dir) => {
    const procedural = bitProceduralSource(TINY, "convert", { naming: "derm" });
    await writeDermSavedModel(`${dir}/derm`, procedural);
    const result = await convert(`${dir}/derm`, `${dir}/out.safetensors`);
    assert.deepEqual(result.metadata, {
      family: "bit",
      architecture: "BiT units 1/1/1/1 widths 16/32/64/128 stem 8",
      preset: "derm",
      source: `tensorflow-savedmodel:${dir}/derm`,
      converter: CONVERTER_VERSION,
    });
    assert.deepEqual(result.dropped, []);
    const out = await openSafetensorsFile(`${dir}/out.safetensors`);
    try {
      assert.deepEqual(await readAll(out), await readAll(procedural));
    } finally {
      out.close();
    }
  });
});

Deno.test("convert --dtype f16 rounds to nearest even and drops a classifier head from safetensors", async () => {
  await withTempDir(async (dir) => {
    const tensors: TensorToWrite[] = [];
    for await (const { entry, bytes } of bitProceduralSource(TINY, "f16", { naming: "derm" }).stream()) {
      tensors.push({ name: entry.name, dtype: entry.dtype, shape: [...entry.shape], data: bytes.slice() });
    }
    tensors.push({ name: "params.head.kernel", dtype: "F32", shape: [128, 5], data: new Float32Array(640) });
    await Deno.writeFile(`${dir}/in.safetensors`, encodeSafetensors(tensors));
    const { code, stderr } = await run([
      `${dir}/in.safetensors`,
      "--out",
      `${dir}/out.safetensors`,
      "--dtype",
      "f16",
      "--preset",
      "bit",
    ]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /dropped: 1 classifier head/);
    const out = await openSafetensorsFile(`${dir}/out.safetensors`);
    try {
      assert.equal(out.metadata.preset, "bit");
      assert.equal(out.tensors.size, tensors.length - 1);
      const values = await readAll(out);
      for (const t of tensors.slice(0, -1)) {
        const entry = out.tensors.get(t.name)!;
        assert.equal(entry.dtype, "F16");
        const f32 = new Float32Array((t.data as Uint8Array).slice().buffer);
        const bits = new Uint16Array(values.get(t.name)!.slice().buffer);
        assert.deepEqual([...bits], [...f32].map(numberToFloat16Bits), t.name);
      }
    } finally {
      out.close();
    }
  });
});

/** A .npy (version 1.0, little-endian float32, C order). */
function npyFloat32(shape: readonly number[], data: Uint8Array): Uint8Array {
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${tuple}, }`;
  const headerLength = Math.ceil((10 + dict.length + 1) / 64) * 64 - 10;
  const out = new Uint8Array(10 + headerLength + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, headerLength, true);
  out.set(new TextEncoder().encode(dict.padEnd(headerLength - 1, " ") + "\n"), 10);
  out.set(data, 10 + headerLength);
  return out;
}

/** big_transfer's .npz key for a Derm name. */
function bigTransferKey(derm: string): string {
  const fe = derm.replace("params.feature_extractor.", "");
  if (fe === "root_block.conv_root.kernel") return "resnet/root_block/standardized_conv2d/kernel";
  if (fe.startsWith("norm-pre-head.")) return `resnet/group_norm/${fe.endsWith("scale") ? "gamma" : "beta"}`;
  const [block, unit, part, leaf] = fe.split(".");
  const prefix = `resnet/${block}/${unit}/`;
  if (part === "conv_proj") return `${prefix}a/proj/standardized_conv2d/kernel`;
  const abc = "abc"[Number(part.at(-1)) - 1];
  if (part.startsWith("conv")) return `${prefix}${abc}/standardized_conv2d/kernel`;
  return `${prefix}${abc}/group_norm/${leaf === "scale" ? "gamma" : "beta"}`;
}

Deno.test("convert reads a BiT .npz (big_transfer names) into Derm names with the bit preset, head dropped", async () => {
  await withTempDir(async (dir) => {
    const procedural = bitProceduralSource(TINY, "npz", { naming: "derm" });
    const members: Record<string, Uint8Array> = {};
    for await (const { entry, bytes } of procedural.stream()) {
      const shape = entry.shape.length === 4 && entry.shape[0] === 1 && entry.shape[2] === 1
        ? [entry.shape[3]]
        : entry.shape;
      members[`${bigTransferKey(entry.name)}.npy`] = npyFloat32(shape, bytes);
    }
    members["resnet/head/conv2d/kernel.npy"] = npyFloat32([1, 1, 128, 5], new Uint8Array(128 * 5 * 4));
    await Deno.writeFile(`${dir}/BiT-tiny.npz`, zipSync(members, { level: 0 }));
    const result = await convert(`${dir}/BiT-tiny.npz`, `${dir}/out.safetensors`);
    assert.equal(result.metadata.preset, "bit");
    assert.equal(result.metadata.source, `npz:${dir}/BiT-tiny.npz`);
    const out = await openSafetensorsFile(`${dir}/out.safetensors`);
    try {
      assert.equal(adaptBitWeights(out).ignored.length, 0);
      assert.deepEqual(await readAll(out), await readAll(procedural));
    } finally {
      out.close();
    }
    assert.deepEqual(await listDir(dir), ["BiT-tiny.npz", "out.safetensors"]);
  });
});

Deno.test("float32BytesToFloat16() agrees with numberToFloat16Bits() on edge and random values", () => {
  const values = [
    0,
    -0,
    1,
    -1,
    65504,
    65519,
    65520,
    1e9,
    -1e9,
    Infinity,
    -Infinity,
    NaN,
    2 ** -14,
    2 ** -24,
    2 ** -25,
    2 ** -25 * 1.5,
    3 * 2 ** -26,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    6.1e-5,
    1e-8,
    0.1,
    1 / 3,
  ];
  let x = 1;
  for (let i = 0; i < 20000; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    values.push(new Float32Array(new Uint32Array([x]).buffer)[0]);
  }
  const f32 = new Float32Array(values);
  const bytes = new Uint8Array(f32.length * 4 + 1).subarray(1); // unaligned on purpose
  bytes.set(new Uint8Array(f32.buffer));
  const got = new Uint16Array(float32BytesToFloat16(bytes).buffer);
  for (let i = 0; i < f32.length; i++) {
    const want = numberToFloat16Bits(f32[i]);
    if (got[i] !== want) {
      assert.fail(`value ${f32[i]}: got 0x${got[i].toString(16)}, want 0x${want.toString(16)}`);
    }
  }
});

Deno.test("convert prints usage errors with exit code 2 and help with 0", async () => {
  assert.equal((await run(["--help"])).code, 0);
  assert.match((await run(["--help"])).stdout, /deno task convert SRC --out OUT.safetensors/);
  assert.equal((await run(["src"])).code, 2);
  assert.equal((await run(["src", "--out", "x.safetensors", "--dtype", "bf16"])).code, 2);
  assert.equal((await run(["src", "--out", "x.safetensors", "--preset", "timm"])).code, 2);
  assert.equal((await run(["a", "b", "--out", "x.safetensors"])).code, 2);
});

/** Writes a small Derm-shaped SavedModel, lets `spoil` damage it, converts, and checks the failure. */
async function hostile(
  spoil: (dir: string) => Promise<string | void>,
  message: RegExp,
  options: Parameters<typeof writeDermSavedModel>[2] = {},
): Promise<void> {
  await withTempDir(async (dir) => {
    await writeDermSavedModel(
      `${dir}/model`,
      bitProceduralSource(TINY, "hostile", { naming: "derm" }),
      options,
    );
    const src = (await spoil(`${dir}/model`)) ?? `${dir}/model`;
    await Deno.mkdir(`${dir}/out`);
    const out = `${dir}/out/model.safetensors`;
    await assert.rejects(() => convert(src, out), (e: unknown) => {
      assert.ok(e instanceof WeightsError, String(e));
      assert.match(e.message, message);
      return true;
    });
    const { code, stderr } = await run([src, "--out", out]);
    assert.equal(code, 1);
    assert.match(stderr, message);
    assert.deepEqual(await listDir(`${dir}/out`), [], "no output or temporary file is left");
  });
}

Deno.test("convert fails clearly on a truncated index and leaves no file", async () => {
  await hostile(async (dir) => {
    const path = `${dir}/variables/variables.index`;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 100));
  }, /Cannot read ".*variables.index": not an SSTable \(truncated or another format\)/);
  await hostile(async (dir) => {
    const path = `${dir}/variables/variables.index`;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, 10));
  }, /truncated table: 10 bytes/);
});

Deno.test("convert fails on a flipped data byte (CRC32C) after writing part of the output, and leaves no file", async () => {
  await hostile(
    async (dir) => {
      const path = `${dir}/variables/variables.data-00000-of-00001`;
      const bytes = await Deno.readFile(path);
      bytes[bytes.length - 200] ^= 0x80; // a late tensor: earlier ones are already written to the temp file
      await Deno.writeFile(path, bytes);
    },
    /CRC32C mismatch in ".*variables.data-00000-of-00001" at bytes \[\d+,\d+\): stored 0x[0-9a-f]{8}, computed/,
  );
});

Deno.test("convert fails on a missing shard and on an entry claiming terabytes past the shard", async () => {
  await hostile(
    (dir) => Deno.remove(`${dir}/variables/variables.data-00000-of-00001`),
    /Cannot open ".*variables.data-00000-of-00001": file not found \(data shard 0 of 1 of/,
  );
  await hostile(
    () => Promise.resolve(),
    /bytes \[4398046511104,\d+\) are past the end of the \d+-byte shard/,
    {
      editEntry: (key, e) => (key === dermLeafKey(3) ? { ...e, offset: 2 ** 42 } : e),
    },
  );
  await hostile(() => Promise.resolve(), /expected \d+ bytes for DT_FLOAT \[[\d,]+\], got 2199023255552/, {
    editEntry: (key, e) => (key === dermLeafKey(5) ? { ...e, size: 2 ** 41 } : e),
  });
});

Deno.test("convert refuses a SRC that is not a SavedModel directory or a known file", async () => {
  await hostile(async (dir) => {
    await Deno.writeTextFile(`${dir}/weights.h5`, "hello");
    return `${dir}/weights.h5`;
  }, /expected a SavedModel directory, a .safetensors, a .npz or a PyTorch checkpoint/);
  // A .bin is read as a PyTorch checkpoint (Hugging Face's pytorch_model.bin), and this one is none.
  await hostile(async (dir) => {
    await Deno.writeTextFile(`${dir}/weights.bin`, "hello");
    return `${dir}/weights.bin`;
  }, /not a PyTorch checkpoint \(neither a zip archive nor the legacy format\)/);
  await hostile(async (dir) => {
    await Deno.remove(`${dir}/saved_model.pb`);
  }, /Cannot open ".*saved_model.pb": file not found \(a SavedModel directory holds saved_model.pb\)/);
  await hostile((dir) => Promise.resolve(`${dir}/nothing-here`), /Cannot open ".*nothing-here": not found/);
  await hostile(async (dir) => {
    await Deno.writeFile(`${dir}/saved_model.pb`, Uint8Array.of(0x12, 0xff, 0xff, 0xff, 0x0f));
  }, /malformed SavedModel protobuf: field 2: length \d+ is past the end of the message at offset 5/);
});

const dermCase = fixtureCases().find((c) => c.name === "tiny-derm-96")!;

gpuTest(
  "convert: tiny-derm-96 as a Derm-shaped SavedModel converts, embeds and matches the reference",
  async (gpu) => {
    await withTempDir(async (dir) => {
      const weights = await openSafetensorsFile((await caseWeightsPath(dermCase))!);
      try {
        await writeDermSavedModel(`${dir}/derm-foundation`, weights);
      } finally {
        weights.close();
      }
      const { code, stderr } = await run([`${dir}/derm-foundation`, "--out", `${dir}/derm.safetensors`]);
      assert.equal(code, 0, stderr);
      const ref = readReference(dermCase.name);
      const embedder = await createBitEmbedder(`${dir}/derm.safetensors`, { gpu, preset: "derm", size: 96 });
      try {
        const bytes = await Deno.readFile(caseImagePath(dermCase));
        const [row] = await embedder.embed([{ bytes, name: dermCase.image }]);
        const error = relativeMaxError(row, ref.tensors.get("embedding_f64")!.data);
        const bound = embeddingBound(ref.metadata);
        console.log(
          `tiny-derm-96 via SavedModel: error ${error.toExponential(2)}, bound ${bound.toExponential(2)}`,
        );
        assert.ok(error <= bound, `error ${error} over ${bound}`);
      } finally {
        embedder.dispose();
      }
    });
  },
);

gpuTest(
  "convert: tiny-resnet-64.pth (BYOL, legacy) becomes torchvision-named safetensors that embed the same",
  async (gpu) => {
    await withTempDir(async (dir) => {
      const pth = await fixtureCheckpointFile("groeger/tiny-resnet-64.pth");
      const result = await convert(pth, `${dir}/r.safetensors`);
      assert.equal(result.metadata.family, "resnet");
      assert.equal(result.metadata.preset, "imagenet");
      assert.equal(result.metadata.source, `pytorch-byol:${pth}`);
      assert.equal(result.tensors, 85);
      assert.equal(result.dropped.filter((d) => d.reason === "training state").length, 17);
      const out = await openSafetensorsFile(`${dir}/r.safetensors`);
      try {
        assert.ok(out.tensors.has("layer1.0.conv1.weight") && out.tensors.has("bn1.running_var"));
        assert.ok(
          ![...out.tensors.keys()].some((n) => n.startsWith("net.") || n.endsWith("num_batches_tracked")),
        );
      } finally {
        await out.close();
      }
      const image = {
        bytes: await Deno.readFile(new URL("../samples/ISIC_0000101.jpg", import.meta.url)),
        name: "s",
      };
      const rows: Float32Array[] = [];
      for (const weights of [pth, `${dir}/r.safetensors`]) {
        const embedder = await createEmbedder(weights, { gpu, size: 64, resize: 73 });
        try {
          rows.push((await embedder.embed([image]))[0]);
        } finally {
          embedder.dispose();
        }
      }
      assert.deepEqual(rows[1], rows[0]);
    });
  },
);

Deno.test("convert refuses a hostile checkpoint and leaves no file", async () => {
  await withTempDir(async (dir) => {
    const b = new CheckpointBuilder("zip");
    const s = b.storage("FloatStorage", new Uint8Array(8));
    // A tensor claiming four floats of a two-float storage.
    await Deno.writeFile(`${dir}/big.pth`, b.write(dict({ "conv1.weight": b.tensor(s, { size: [4] }) })));
    const { code, stderr } = await run([`${dir}/big.pth`, "--out", `${dir}/o.safetensors`]);
    assert.equal(code, 1);
    assert.match(stderr, /big\.pth/);
    assert.deepEqual(await listDir(dir), ["big.pth"]);
  });
});
