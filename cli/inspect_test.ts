/** `deno task inspect`: fixture weights, a header-only R101x3 (sparse data section), an .npz, errors. */
import assert from "node:assert/strict";
import { zipSync } from "fflate";
import { main } from "./inspect.ts";
import { BIT_R101X3, bitArchitecture } from "../models/bit_arch.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { fixtureCases, fixtureWeightsFile } from "../tests/_fixtures.ts";
import { withTempDir } from "../tests/_temp.ts";
import { testdataPath } from "../tests/_testdata.ts";
import { RESNET50, resnetProceduralSource, resnetTensorShapes } from "../models/resnet.ts";
import { encodeSafetensors, type TensorToWrite } from "../weights/safetensors_write.ts";
import { fixtureCheckpointFile } from "../tests/_fixtures.ts";

/** Runs `main(args)` capturing stdout and stderr. */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const log = console.log, error = console.error;
  const out: string[] = [], err: string[] = [];
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/**
 * A safetensors file with the R101x3 Derm header (plus a head tensor) whose data section is a hole: the
 * file is extended with `truncate`, so its 1.5 GB take no disk on sparse-capable file systems.
 */
async function headerOnlyR101x3(path: string): Promise<void> {
  const header: Record<string, unknown> = {
    __metadata__: { preset: "derm", source: "savedmodel", converter: "derm-webgpu convert 0.1.0" },
  };
  let offset = 0;
  const tensors = [...bitProceduralSource(BIT_R101X3, "header-only", { naming: "derm" }).tensors.values()];
  for (const t of tensors) {
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.end - t.begin] };
    offset += t.end - t.begin;
  }
  header["params.head.dense.kernel"] = {
    dtype: "F32",
    shape: [6144, 2],
    data_offsets: [offset, offset + 49152],
  };
  offset += 49152;
  const json = new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(8 + json.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);
  prefix.set(json, 8);
  await Deno.writeFile(path, prefix);
  await Deno.truncate(path, prefix.length + offset);
}

Deno.test("inspect main() prints --help documenting every flag", async () => {
  const { code, out } = await run(["--help"]);
  assert.equal(code, 0);
  for (const flag of ["--json", "--help"]) assert.ok(out.includes(flag), flag);
  assert.equal((await run([])).code, 2);
  assert.equal((await run(["--bogus", "x"])).code, 2);
});

Deno.test("inspect main() reports R101x3 from a header-only file: 304 tensors, 381,789,888 parameters", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/r101x3.safetensors`;
    await headerOnlyR101x3(path);
    const text = await run([path]);
    assert.equal(text.code, 0, text.err);
    assert.match(
      text.out,
      /architecture +BiT ResNetV2 R101x3 \(depth 101, width 3\): stem 7x7\/2 conv -> 192/,
    );
    assert.match(text.out, /stage 3 +23 units, 3072 channels \(bottleneck 768, stride 2\)/);
    assert.match(text.out, /parameters +381,789,888 in 304 tensors/);
    assert.match(text.out, /preset +derm \(from the metadata\)/);
    assert.match(text.out, /dtypes +F32 \(304\)/);
    assert.match(text.out, /naming +derm/);
    assert.match(text.out, /params\.head\.dense\.kernel F32 \[6144,2\]/);
    assert.match(text.out, /converter: derm-webgpu convert 0\.1\.0/);
    const json = await run(["--json", path]);
    assert.equal(json.code, 0);
    const report = JSON.parse(json.out);
    assert.equal(report.parameters, 381_789_888);
    assert.equal(report.tensors, 304);
    assert.deepEqual(report.architecture.stages.map((s: { units: number }) => s.units), [3, 4, 23, 3]);
    assert.deepEqual(report.architecture.stages.map((s: { channels: number }) => s.channels), [
      768,
      1536,
      3072,
      6144,
    ]);
    assert.equal(report.architecture.name, "R101x3");
    assert.deepEqual(report.dtypes, { F32: 304 });
    assert.equal(report.family, "bit");
    assert.equal(report.embeddingSize, 6144);
    assert.deepEqual(report.ignored, [
      { name: "params.head.dense.kernel", dtype: "F32", shape: [6144, 2], reason: "classifier head" },
    ]);
    assert.equal(report.metadata.source, "savedmodel");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const name of ["tiny-derm-96", "tiny-bit-64"]) {
  Deno.test(`inspect main() describes the fixture ${name}.safetensors`, async () => {
    const path = await fixtureWeightsFile(`bit/${name}.safetensors`);
    const c = fixtureCases().find((x) => x.name === name)!;
    const { code, out, err } = await run(["--json", path]);
    assert.equal(code, 0, err);
    const report = JSON.parse(out);
    assert.equal(report.naming, c.naming);
    assert.equal(report.preset, c.preset);
    assert.equal(report.architecture.stemChannels, c.stem_chs);
    assert.deepEqual(report.architecture.stages.map((s: { units: number }) => s.units), c.layers);
    assert.deepEqual(report.architecture.stages.map((s: { channels: number }) => s.channels), c.channels);
  });
}

Deno.test("inspect main() reads a BiT .npz (source bit-npz, head ignored)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A one-unit BiT in big_transfer's keys (zero data: inspect reads headers only); values are the npz tests' job.
    const arch = bitArchitecture([1], [16], 8);
    const members: Record<string, Uint8Array> = {};
    const npy = (shape: number[], n: number) => {
      const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")},), }`;
      const len = 118;
      const out = new Uint8Array(10 + len + n * 4);
      out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, len, 0]);
      out.set(new TextEncoder().encode(dict.padEnd(len - 1, " ") + "\n"), 10);
      return out;
    };
    const u = "resnet/block1/unit01/";
    members["resnet/root_block/standardized_conv2d/kernel.npy"] = npy([7, 7, 3, 8], 7 * 7 * 3 * 8);
    members[`${u}a/proj/standardized_conv2d/kernel.npy`] = npy([1, 1, 8, 16], 128);
    members[`${u}a/group_norm/gamma.npy`] = npy([8], 8);
    members[`${u}a/group_norm/beta.npy`] = npy([8], 8);
    members[`${u}a/standardized_conv2d/kernel.npy`] = npy([1, 1, 8, 4], 32);
    members[`${u}b/group_norm/gamma.npy`] = npy([4], 4);
    members[`${u}b/group_norm/beta.npy`] = npy([4], 4);
    members[`${u}b/standardized_conv2d/kernel.npy`] = npy([3, 3, 4, 4], 144);
    members[`${u}c/group_norm/gamma.npy`] = npy([4], 4);
    members[`${u}c/group_norm/beta.npy`] = npy([4], 4);
    members[`${u}c/standardized_conv2d/kernel.npy`] = npy([1, 1, 4, 16], 64);
    members["resnet/group_norm/gamma.npy"] = npy([16], 16);
    members["resnet/group_norm/beta.npy"] = npy([16], 16);
    members["resnet/head/conv2d/bias.npy"] = npy([3], 3);
    const path = `${dir}/tiny.npz`;
    await Deno.writeFile(path, zipSync(members));
    const { code, out, err } = await run(["--json", path]);
    assert.equal(code, 0, err);
    const report = JSON.parse(out);
    assert.equal(report.preset, "bit");
    assert.equal(report.presetFrom, "metadata");
    assert.equal(report.metadata.source, "bit-npz");
    assert.equal(report.naming, "derm");
    assert.equal(report.architecture.stemChannels, arch.stemChannels);
    assert.deepEqual(report.ignored.map((t: { name: string }) => t.name), ["params.head.conv2d.bias"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspect main() fails with exit code 1 naming a missing or invalid file", async () => {
  const missing = await run(["/nonexistent/model.safetensors"]);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /Cannot open "\/nonexistent\/model.safetensors": file not found/);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.safetensors`, "not safetensors");
    const bad = await run([`${dir}/bad.safetensors`]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /Cannot read ".*bad.safetensors": malformed header/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspect main() describes a torchvision ResNet-50 file: family, layers, the head and BN counters ignored", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/resnet50.safetensors`;
    const source = resnetProceduralSource(RESNET50, "inspect");
    const tensors: TensorToWrite[] = [];
    for await (const { entry, bytes } of source.stream()) {
      tensors.push({ name: entry.name, dtype: entry.dtype, shape: [...entry.shape], data: bytes.slice() });
    }
    tensors.push({ name: "fc.weight", dtype: "F32", shape: [3, 2048], data: new Float32Array(6144) });
    await Deno.writeFile(path, encodeSafetensors(tensors));
    const { code, out, err } = await run(["--json", path]);
    assert.equal(code, 0, err);
    const report = JSON.parse(out);
    assert.equal(report.family, "resnet");
    assert.equal(report.architecture.name, "ResNet-50");
    assert.deepEqual(report.architecture.layers, [3, 4, 6, 3]);
    assert.equal(report.embeddingSize, 2048);
    assert.equal(report.preset, "imagenet");
    assert.equal(report.presetFrom, "family");
    // conv and BatchNorm tensors: 53 convs, each with a 4-vector BatchNorm.
    assert.equal(report.tensors, 53 * 5);
    const want = resnetTensorShapes(RESNET50).filter((t) => !t.name.endsWith("num_batches_tracked"))
      .reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    assert.equal(report.parameters, want);
    assert.equal(report.ignored.filter((t: { reason: string }) => t.reason === "training state").length, 53);
    assert.deepEqual(report.ignored.filter((t: { reason: string }) => t.reason === "classifier head"), [
      { name: "fc.weight", dtype: "F32", shape: [3, 2048], reason: "classifier head" },
    ]);
    const text = await run([path]);
    assert.match(text.out, /family {8}resnet/);
    assert.match(text.out, /torchvision ResNet-50/);
    assert.match(text.out, /layer 3 +6 blocks, 1024 channels/);
  });
});

Deno.test("inspect main() describes the fixtures' checkpoints: DINO teacher (zip) and BYOL (legacy)", async () => {
  const vit = await run(["--json", "--vit-heads", "3", testdataPath("groeger/tiny-vit-64.pth")]);
  assert.equal(vit.code, 0, vit.err);
  const v = JSON.parse(vit.out);
  assert.equal(v.family, "vit");
  assert.equal(v.metadata.layout, "dino");
  assert.equal(v.metadata.from, "teacher");
  assert.deepEqual([v.architecture.dim, v.architecture.depth, v.architecture.heads], [48, 3, 3]);
  assert.equal(v.architecture.headsFrom, "option");
  assert.equal(v.embeddingSize, 3 * 48);
  const resnet = await run(["--json", await fixtureCheckpointFile("groeger/tiny-resnet-64.pth")]);
  assert.equal(resnet.code, 0, resnet.err);
  const r = JSON.parse(resnet.out);
  assert.equal(r.family, "resnet");
  assert.equal(r.metadata.layout, "byol");
  assert.deepEqual(r.architecture.layers, [1, 1, 1, 1]);
  assert.equal(r.architecture.widthPerGroup, 16);
  // Without --vit-heads: D = 48 is no multiple of 64 and the checkpoint states no heads.
  const unknown = await run([testdataPath("groeger/tiny-vit-64.pth")]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /cannot tell the attention heads.*--vit-heads/);
});
