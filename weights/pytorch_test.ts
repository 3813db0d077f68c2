import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { readTestdata } from "../tests/_testdata.ts";
import { call, dict, global, op, pickle, type Py, tuple } from "../tests/_pickle_writer.ts";
import { CheckpointBuilder, orderedDict } from "../tests/_torch_checkpoint_writer.ts";
import {
  grogerProcedural,
  sha256,
  tinyVitTensors,
  torchvisionResnetShapes,
} from "../tests/_torch_fixture_checks.ts";
import { writeZip } from "../tests/_zip_writer.ts";
import { decodeToFloat32 } from "./dtypes.ts";
import {
  checkpointStateDict,
  openPytorch,
  type PytorchCheckpoint,
  pytorchFromBytes,
  type PytorchTensorEntry,
  type RandomAccessReader,
  TensorRef,
} from "./pytorch.ts";
import type { TensorSource } from "./safetensors.ts";
import { rejectsWith } from "../tests/_assert.ts";
import { regenerateFixtureCheckpoint } from "../tests/_fixtures.ts";

const FORMATS = ["zip", "legacy"] as const;

function f32(...values: number[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Float32Array(values).buffer);
}

function iota(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

async function readAll(source: TensorSource, wanted?: Set<string>): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const { entry, bytes } of source.stream(wanted)) {
    assert.equal(bytes.length, entry.end - entry.begin, entry.name);
    out.set(entry.name, bytes.slice());
  }
  return out;
}

async function rejects(
  promise: Promise<unknown>,
  pattern: RegExp,
  file: string,
  tensor = "",
): Promise<WeightsError> {
  const caught = await rejectsWith(promise, WeightsError);
  assert.equal(caught.file, file);
  assert.equal(caught.tensor, tensor);
  assert.ok(caught.message.includes(`"${file}"`), caught.message);
  assert.match(caught.message, pattern);
  return caught;
}

/** A reader that records the ranges read. */
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

const sum = (reads: [number, number][]) => reads.reduce((a, [b, e]) => a + (e - b), 0);

Deno.test("pytorchFromBytes() reads the DINO zip fixture: the teacher matches the recorded tensors, the student differs", async () => {
  const file = "tiny-vit-64.pth";
  const checkpoint = await pytorchFromBytes(readTestdata("groeger/tiny-vit-64.pth"), file);
  assert.equal(checkpoint.format, "zip");
  const state = checkpointStateDict(checkpoint.tree, file);
  assert.equal(state.layout, "dino");
  assert.equal(state.from, "teacher");
  assert.deepEqual(state.args, { arch: "vit", seed: 0, epochs: 100, lr: 0.0005 });
  assert.deepEqual(state.ignored, [
    "student",
    "optimizer",
    "epoch",
    "args",
    "dino_loss",
    "teacher/head.mlp.0.weight",
    "teacher/head.last_layer.weight_g",
  ]);
  const recorded = tinyVitTensors();
  assert.deepEqual([...state.tensors.keys()], recorded.map((t) => t.name));
  const source = await checkpoint.source(state.tensors);
  assert.equal(source.metadata.source, "pytorch-zip");
  const teacher = await readAll(source);
  for (const t of recorded) {
    const entry = source.tensors.get(t.name)!;
    assert.equal(entry.dtype, t.dtype, t.name);
    assert.deepEqual(entry.shape, t.shape, t.name);
    assert.equal(await sha256(teacher.get(t.name)! as Uint8Array<ArrayBuffer>), t.sha256, t.name);
  }
  const tree = checkpoint.tree as Map<string, unknown>;
  const student = checkpointStateDict(new Map([["student", tree.get("student")]]), file);
  assert.equal(student.from, "student");
  assert.deepEqual([...student.tensors.keys()], recorded.map((t) => t.name));
  const studentBytes = await readAll(await checkpoint.source(student.tensors));
  for (const t of recorded) assert.notDeepEqual(studentBytes.get(t.name), teacher.get(t.name), t.name);
  await source.close();
});

Deno.test("pytorchFromBytes() reads the BYOL legacy fixture as torchvision names with procedural values", async () => {
  const file = "tiny-resnet-64.pth";
  const checkpoint = await pytorchFromBytes(regenerateFixtureCheckpoint("groeger/tiny-resnet-64.pth"), file);
  assert.equal(checkpoint.format, "legacy");
  const state = checkpointStateDict(checkpoint.tree, file);
  assert.equal(state.layout, "byol");
  assert.deepEqual(state.ignored, ["epoch", "config"]);
  assert.equal(state.args, undefined);
  const expected = torchvisionResnetShapes([1, 1, 1, 1], 16);
  assert.deepEqual([...state.tensors].map(([name, t]) => [name, [...t.shape]]), expected);
  const source = await checkpoint.source(state.tensors);
  const checked = [
    "conv1.weight",
    "bn1.weight",
    "bn1.running_var",
    "layer1.0.conv2.weight",
    "layer2.0.bn3.bias",
    "layer4.0.downsample.0.weight",
    "layer4.0.downsample.1.running_mean",
  ];
  const tensors = await readAll(source, new Set([...checked, "layer3.0.bn2.num_batches_tracked"]));
  for (const name of checked) {
    const entry = source.tensors.get(name)!;
    assert.equal(entry.dtype, "F32");
    const got = [...decodeToFloat32(entry, tensors.get(name)!)];
    assert.deepEqual(got, grogerProcedural("fixture/tiny-resnet", name, [...entry.shape]), name);
  }
  assert.equal(source.tensors.get("layer3.0.bn2.num_batches_tracked")!.dtype, "I64");
  assert.deepEqual([...tensors.get("layer3.0.bn2.num_batches_tracked")!], new Array(8).fill(0));
});

Deno.test("openPytorch() reads only the directory and pickles when opening, then only the storages streamed", async () => {
  const vit = readTestdata("groeger/tiny-vit-64.pth");
  const zipReader = countingReader(vit);
  const zip = await openPytorch(zipReader, "vit.pth");
  // The tail (end record and the largest comment: 64 KiB), the central directory, data.pkl and byteorder.
  assert.ok(
    sum(zipReader.reads) < 65_600 + 20_000,
    `read ${sum(zipReader.reads)} bytes of ${vit.length} to open`,
  );
  zipReader.reads.length = 0;
  const cls = zip.tensors.get("teacher/backbone.cls_token")!;
  await readAll(await zip.source(new Map([["cls_token", cls]])));
  assert.ok(sum(zipReader.reads) < 500, JSON.stringify(zipReader.reads));

  const resnet = regenerateFixtureCheckpoint("groeger/tiny-resnet-64.pth");
  const legacyReader = countingReader(resnet);
  const legacy = await openPytorch(legacyReader, "resnet.pth");
  assert.ok(
    sum(legacyReader.reads) < 1.1 * 2 ** 20,
    `read ${sum(legacyReader.reads)} of ${resnet.length} to open`,
  );
  legacyReader.reads.length = 0;
  const w = legacy.tensors.get("state_dict/net.layer4.0.conv3.weight")!;
  const got = await readAll(await legacy.source(new Map([["w", w]])));
  assert.equal(got.get("w")!.length, 2048 * 128 * 4);
  assert.equal(sum(legacyReader.reads), 2048 * 128 * 4);
});

/** Little-endian bytes of every storage dtype, with the dtype it must load as. */
const DTYPE_CASES: [string, string, Uint8Array<ArrayBuffer>][] = [
  ["DoubleStorage", "F64", new Uint8Array(new Float64Array([0.1, -1e300]).buffer)],
  ["FloatStorage", "F32", f32(1.5, -2, 3.25)],
  ["HalfStorage", "F16", new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer)],
  ["BFloat16Storage", "BF16", new Uint8Array(new Uint16Array([0x3f80, 0x4040]).buffer)],
  ["LongStorage", "I64", new Uint8Array(new BigInt64Array([-(2n ** 40n), 5n]).buffer)],
  ["IntStorage", "I32", new Uint8Array(new Int32Array([-7, 100000]).buffer)],
  ["ShortStorage", "I16", new Uint8Array(new Int16Array([-300, 12]).buffer)],
  ["CharStorage", "I8", new Uint8Array(new Int8Array([-128, 127]).buffer)],
  ["ByteStorage", "U8", Uint8Array.of(0, 255)],
  ["BoolStorage", "BOOL", Uint8Array.of(0, 1)],
  ["UntypedStorage", "U8", Uint8Array.of(9, 8, 7)],
];

for (const format of FORMATS) {
  Deno.test(`openPytorch() loads every storage dtype from the ${format} format`, async () => {
    const b = new CheckpointBuilder(format);
    const entries: [string, Py][] = DTYPE_CASES.map(([type, , data]) => {
      const el =
        { DoubleStorage: 8, LongStorage: 8, FloatStorage: 4, IntStorage: 4 }[type as "DoubleStorage"] ??
          (type.includes("Half") || type.includes("BFloat") || type.includes("Short") ? 2 : 1);
      return [type, b.whole(type, data, [data.length / el])];
    });
    const bytes = b.write(orderedDict(entries));
    const checkpoint = await pytorchFromBytes(bytes, `dtypes.${format}`);
    const { layout, tensors } = checkpointStateDict(checkpoint.tree, checkpoint.file);
    assert.equal(layout, "plain");
    const source = await checkpoint.source(tensors);
    const got = await readAll(source);
    for (const [type, dtype, data] of DTYPE_CASES) {
      assert.equal(source.tensors.get(type)!.dtype, dtype, type);
      assert.deepEqual(got.get(type), data, type);
    }
    assert.deepEqual([...decodeToFloat32(source.tensors.get("DoubleStorage")!, got.get("DoubleStorage")!)], [
      Math.fround(0.1),
      -Infinity,
    ]);
    await source.close();
  });

  Deno.test(`openPytorch() gathers strided views into row-major bytes in the ${format} format`, async () => {
    const b = new CheckpointBuilder(format);
    const storage = b.storage("FloatStorage", f32(...iota(24)));
    const half = b.storage(
      "HalfStorage",
      new Uint8Array(new Uint16Array(iota(12).map((i) => 0x3c00 + i)).buffer),
    );
    const tree = orderedDict({
      transposed: b.tensor(storage, { offset: 2, size: [3, 4], stride: [1, 3] }),
      rows: b.tensor(storage, { offset: 1, size: [2, 3], stride: [5, 1] }),
      expanded: b.tensor(storage, { offset: 4, size: [2, 3], stride: [0, 1] }),
      slice: b.tensor(storage, { offset: 6, size: [2, 2, 2], stride: [8, 2, 1] }),
      scalar: b.tensor(storage, { offset: 23, size: [], stride: [] }),
      empty: b.tensor(storage, { offset: 24, size: [0, 3], stride: [3, 1] }),
      half_t: b.tensor(half, { offset: 1, size: [2, 3], stride: [1, 4] }),
    });
    const checkpoint = await pytorchFromBytes(b.write(tree), "views.pth");
    const source = await checkpoint.source(checkpointStateDict(checkpoint.tree, "views.pth").tensors);
    const got = await readAll(source);
    const floats = (name: string) => [...new Float32Array(got.get(name)!.slice().buffer)];
    assert.deepEqual(floats("transposed"), [2, 5, 8, 11, 3, 6, 9, 12, 4, 7, 10, 13]);
    assert.deepEqual(floats("rows"), [1, 2, 3, 6, 7, 8]);
    assert.deepEqual(floats("expanded"), [4, 5, 6, 4, 5, 6]);
    assert.deepEqual(floats("slice"), [6, 7, 8, 9, 14, 15, 16, 17]);
    assert.deepEqual(floats("scalar"), [23]);
    assert.deepEqual(floats("empty"), []);
    assert.deepEqual([...new Uint16Array(got.get("half_t")!.slice().buffer)].map((h) => h - 0x3c00), [
      1,
      5,
      9,
      2,
      6,
      10,
    ]);
    const t = source.tensors.get("rows") as PytorchTensorEntry;
    assert.equal(t.tensor.contiguous, false);
    assert.equal(t.end - t.begin, 6 * 4);
    assert.equal(t.readEnd - t.begin, (1 + 5 + 2 + 1 - 1) * 4); // elements 1 to 8 of the storage
  });
}

Deno.test("openPytorch() reads torch 2's untyped storages, with the dtype of _rebuild_tensor_v3", async () => {
  const b = new CheckpointBuilder("zip");
  const raw = b.storage(
    "UntypedStorage",
    new Uint8Array(new Uint16Array([0x3c00, 0x4000, 0x4200, 0xbc00]).buffer),
  );
  const tree = dict({
    h: b.tensor(raw, { size: [2, 2], v3dtype: "float16" }),
    bytes: b.tensor(raw, { offset: 2, size: [4] }),
    u16: b.tensor(raw, { size: [4], v3dtype: "uint16" }),
  });
  const checkpoint = await pytorchFromBytes(b.write(tree), "v3.pth");
  const h = checkpoint.tensors.get("h")!;
  assert.equal(h.dtype, "F16");
  assert.equal(h.storage.storageType, "UntypedStorage");
  const source = await checkpoint.source(new Map([["h", h], ["bytes", checkpoint.tensors.get("bytes")!]]));
  const got = await readAll(source);
  assert.deepEqual([...decodeToFloat32(source.tensors.get("h")!, got.get("h")!)], [1, 2, 3, -1]);
  assert.deepEqual([...got.get("bytes")!], [0x00, 0x40, 0x00, 0x42]);
  // uint16 is kept (bounds checked) but refused when loaded.
  assert.equal(checkpoint.tensors.get("u16")!.dtype, undefined);
  await rejects(
    checkpoint.source(new Map([["u16", checkpoint.tensors.get("u16")!]])),
    /unsupported dtype uint16/,
    "v3.pth",
    "u16",
  );
});

Deno.test("openPytorch() reads parameters, a zip64 archive, no byteorder record, and a deflated data.pkl", async () => {
  const make = () => {
    const b = new CheckpointBuilder("zip");
    return {
      b,
      tree: dict({
        w: b.tensor(b.storage("FloatStorage", f32(1, 2, 3, 4)), { size: [2, 2], parameter: true }),
      }),
    };
  };
  for (
    const options of [{ zip: { zip64: true } }, { byteorder: null }, { deflatePickle: true }, {
      prefix: "my model",
    }] as const
  ) {
    const { b, tree } = make();
    const checkpoint = await pytorchFromBytes(b.write(tree, options), "p.pth");
    const w = checkpoint.tensors.get("w")!;
    assert.ok(w instanceof TensorRef);
    assert.equal(w.requiresGrad, false);
    assert.deepEqual([...(await readAll(await checkpoint.source(new Map([["w", w]])))).get("w")!], [
      ...f32(1, 2, 3, 4),
    ]);
  }
});

Deno.test("openPytorch() swaps the storages of a big-endian zip archive, not of a legacy file", async () => {
  const be = new Uint8Array(12);
  [1.5, -3, 0.25].forEach((v, i) => new DataView(be.buffer).setFloat32(4 * i, v, false));
  const b = new CheckpointBuilder("zip");
  const s = b.storage("FloatStorage", be);
  const tree = dict({ w: b.tensor(s, { size: [3] }), t: b.tensor(s, { size: [2], stride: [2] }) });
  const checkpoint = await pytorchFromBytes(b.write(tree, { byteorder: "big" }), "be.pth");
  const got = await readAll(await checkpoint.source(checkpoint.tensors));
  assert.deepEqual(got.get("w"), f32(1.5, -3, 0.25));
  assert.deepEqual(got.get("t"), f32(1.5, 0.25));
  // torch writes legacy storages little-endian whatever sys_info's little_endian says.
  const l = new CheckpointBuilder("legacy");
  const legacy = l.write(dict({ w: l.whole("FloatStorage", f32(1.5, -3), [2]) }), { byteorder: "big" });
  const fromLegacy = await pytorchFromBytes(legacy, "le.pth");
  assert.deepEqual((await readAll(await fromLegacy.source(fromLegacy.tensors))).get("w"), f32(1.5, -3));
});

Deno.test("TensorSource.stream() yields wanted tensors in file order, checks names, and stops when closed", async () => {
  const b = new CheckpointBuilder("zip");
  const tree = orderedDict({
    c: b.whole("FloatStorage", f32(3), [1]),
    a: b.whole("FloatStorage", f32(1, 1), [2]),
    b: b.whole("FloatStorage", f32(2, 2, 2), [3]),
  });
  const checkpoint = await pytorchFromBytes(b.write(tree), "s.pth");
  const chosen = new Map([["first", checkpoint.tensors.get("c")!], ["third", checkpoint.tensors.get("b")!]]);
  const source = await checkpoint.source(chosen, { metadata: { layout: "plain" } });
  assert.deepEqual(source.metadata, { source: "pytorch-zip", layout: "plain" });
  const names: string[] = [];
  for await (const { entry } of source.stream()) names.push(entry.name);
  assert.deepEqual(names, ["first", "third"]);
  assert.throws(
    () => source.stream(new Set(["a"])),
    /Cannot load "a" from "s\.pth": no such tensor in the source/,
  );
  const foreign = (await pytorchFromBytes(b.write(tree), "other.pth")).tensors.get("a")!;
  await rejects(
    checkpoint.source(new Map([["x", foreign]])),
    /not a tensor of this checkpoint/,
    "s.pth",
    "x",
  );
  await source.close();
  assert.throws(() => source.stream(), /the source is closed/);
});

/** A plain-layout checkpoint of one tensor `w` over a 4-float storage, with the view given. */
function oneTensor(
  format: "zip" | "legacy",
  view: Parameters<CheckpointBuilder["tensor"]>[1],
  numel?: number,
) {
  const b = new CheckpointBuilder(format);
  const s = b.storage("FloatStorage", f32(1, 2, 3, 4), "0", numel);
  return b.write(dict({ w: b.tensor(s, view) }));
}

for (const format of FORMATS) {
  Deno.test(`openPytorch() refuses tensors outside their storage, naming them, in the ${format} format`, async () => {
    const file = `bad.${format}`;
    const open = (view: Parameters<CheckpointBuilder["tensor"]>[1], numel?: number) =>
      pytorchFromBytes(oneTensor(format, view, numel), file);
    await rejects(
      open({ size: [5] }),
      /float32 \[5\] with stride \[1\] and offset 0 reads bytes \[0,20\) of storage "0", which holds 16/,
      file,
      "w",
    );
    await rejects(open({ size: [2], offset: 3 }), /reads bytes \[12,20\)/, file, "w");
    await rejects(open({ size: [2, 2], stride: [3, 1] }), /reads bytes \[0,20\)/, file, "w");
    await rejects(open({ size: [-1] }), /malformed tensor: size \[-1\] has a negative entry/, file, "w");
    await rejects(open({ size: [2], stride: [-1] }), /stride \[-1\] has a negative entry/, file, "w");
    await rejects(open({ size: [2], offset: -1 }), /storage offset -1 is not a non-negative int/, file, "w");
    await rejects(open({ size: [2], stride: [2n ** 62n] }), /overflow/, file, "w");
    await rejects(open({ size: [1], offset: 2 ** 53 + 8 }), /overflow/, file, "w");
    await rejects(open({ size: [2 ** 31, 2 ** 31, 2 ** 31] }), /overflow/, file, "w");
    await rejects(open({ size: [2, 2], stride: [1] }), /differ in length/, file, "w");
    if (format === "zip") {
      await rejects(
        open({ size: [4] }, 100),
        /storage "0" claims 400 bytes \(100 x float32\), the file holds 16/,
        file,
        "w",
      );
    } else {
      await rejects(open({ size: [4] }, 100), /truncated: storage "0" \[\d+,\d+\) is past the end/, file);
      const b = new CheckpointBuilder(format);
      const s = b.storage("FloatStorage", f32(1, 2, 3, 4));
      const miscounted = b.write(dict({ w: b.tensor(s, { size: [4] }) }), { legacyCounts: { "0": 3 } });
      await rejects(
        pytorchFromBytes(miscounted, file),
        /storage "0" at byte \d+ holds 3 elements, its tensors say 4/,
        file,
      );
    }
  });
}

Deno.test("openPytorch() refuses a tensor whose storage is not in the archive", async () => {
  const b = new CheckpointBuilder("zip");
  const tree = dict({ w: b.tensor({ key: "7", type: "FloatStorage", data: f32(1) }, { size: [1] }) });
  await rejects(pytorchFromBytes(b.write(tree), "m.pth"), /its storage "7" is not in the file/, "m.pth", "w");
});

Deno.test("openPytorch() refuses system globals in a checkpoint, running nothing", async () => {
  for (const format of FORMATS) {
    const b = new CheckpointBuilder(format);
    const s = b.storage("FloatStorage", f32(1));
    const system = b.write(
      dict({ w: b.tensor(s, { size: [1] }), x: call(global("os", "system"), ["touch /tmp/x"]) }),
    );
    await rejects(pytorchFromBytes(system, "os.pth"), /refused to call os\.system/, "os.pth");
    const evil = b.write(orderedDict({ w: call(global("builtins", "eval"), ["__import__('os')"]) }));
    await rejects(pytorchFromBytes(evil, "eval.pth"), /refused to call builtins\.eval/, "eval.pth");
    const hidden = b.write(dict({
      w: call(global("torch._tensor", "_rebuild_from_type_v2"), [
        global("os", "system"),
        global("torch", "Tensor"),
        tuple("id"),
        dict({}),
      ]),
    }));
    await rejects(pytorchFromBytes(hidden, "hidden.pth"), /refused to call os\.system/, "hidden.pth");
  }
});

Deno.test("openPytorch() refuses hostile pickles: deep nesting, huge memo index, 4 GB string, unknown opcode", async () => {
  const n = 100_000;
  const nested = new Uint8Array(2 * n + 2).fill(0x61);
  nested.set([0x80, 2]);
  nested.fill(0x5d, 2, n + 2);
  nested[nested.length - 1] = 0x2e;
  const cases: [Uint8Array, RegExp][] = [
    [nested, /containers nest deeper than the limit of 1000/],
    [op(0x80, 2, 0x7d, 0x72, 0xff, 0xff, 0xff, 0xff, 0x2e), /memo index 4294967295 is outside/],
    [op(0x80, 2, 0x58, 0xff, 0xff, 0xff, 0xff, 0x2e), /string of 4294967295 bytes is past the end/],
    [op(0x80, 2, 0x7d, 0xf0, 0x2e), /unknown opcode 0xf0/],
  ];
  for (const format of FORMATS) {
    for (const [bytes, pattern] of cases) {
      const file = `hostile.${format}`;
      const e = await rejects(
        pytorchFromBytes(new CheckpointBuilder(format).write(null, { pickle: bytes }), file),
        pattern,
        file,
      );
      assert.match(e.message, format === "zip" ? /pickle "archive\/data\.pkl"/ : /pickle "object"/);
    }
  }
});

Deno.test("openPytorch() refuses truncated files", async () => {
  const b = new CheckpointBuilder("zip");
  const tree = dict({ w: b.whole("FloatStorage", f32(...iota(100)), [100]) });
  const zip = b.write(tree);
  await rejects(
    pytorchFromBytes(zip.subarray(0, zip.length - 30), "t.pth"),
    /no end of central directory/,
    "t.pth",
  );
  await rejects(pytorchFromBytes(zip.subarray(0, 300), "t.pth"), /no end of central directory/, "t.pth");

  const l = new CheckpointBuilder("legacy");
  const legacy = l.write(dict({ w: l.whole("FloatStorage", f32(...iota(100)), [100]) }));
  await rejects(
    pytorchFromBytes(legacy.subarray(0, legacy.length - 1), "l.pth"),
    /truncated: storage "0" \[\d+,\d+\) is past the end/,
    "l.pth",
  );
  await rejects(
    pytorchFromBytes(legacy.subarray(0, legacy.length - 405), "l.pth"),
    /truncated: the header of storage "0"/,
    "l.pth",
  );
  const e = await rejects(pytorchFromBytes(legacy.subarray(0, 60), "l.pth"), /truncated/, "l.pth");
  assert.match(e.message, /pickle "(sys_info|object)"/);
  await rejects(pytorchFromBytes(new Uint8Array(0), "e.pth"), /the file is empty/, "e.pth");
});

Deno.test("openPytorch() refuses a central directory outside the file and a deflate bomb", async () => {
  const b = new CheckpointBuilder("zip");
  const bytes = b.write(dict({ w: b.whole("FloatStorage", f32(1), [1]) })).slice();
  const eocd = bytes.length - 22;
  new DataView(bytes.buffer).setUint32(eocd + 16, bytes.length * 2, true);
  await rejects(
    pytorchFromBytes(bytes, "cd.pth"),
    /central directory \[\d+,\d+\) is outside the file/,
    "cd.pth",
  );

  const bomb = writeZip([{
    name: "archive/data.pkl",
    data: new Uint8Array(8 * 2 ** 20),
    deflate: true,
    declaredSize: 100,
  }]);
  await rejects(
    pytorchFromBytes(bomb.bytes, "bomb.pth"),
    /"archive\/data\.pkl" inflates to more than its declared 100 bytes/,
    "bomb.pth",
  );
});

Deno.test("TensorSource.stream() reports a corrupt storage naming the tensor", async () => {
  const b = new CheckpointBuilder("zip");
  const tree = dict({ w: b.whole("FloatStorage", f32(1, 2), [2]) });
  const layout = writeZip([
    { name: "archive/data.pkl", data: pickle(tree) },
    { name: "archive/data/0", data: f32(1, 2), crc: 42 },
  ]);
  const checkpoint = await pytorchFromBytes(layout.bytes, "crc.pth");
  const source = await checkpoint.source(checkpoint.tensors);
  await rejects(
    readAll(source),
    /Cannot load "w" from "crc\.pth": "archive\/data\/0" is corrupt: CRC-32/,
    "crc.pth",
    "w",
  );
});

Deno.test("openPytorch() refuses other formats and malformed legacy files", async () => {
  const tar = new Uint8Array(1024);
  tar.set(new TextEncoder().encode("ustar"), 257);
  await rejects(pytorchFromBytes(tar, "old.pth"), /tar format/, "old.pth");
  await rejects(
    pytorchFromBytes(new TextEncoder().encode("hello world\n"), "x.txt"),
    /not a PyTorch checkpoint/,
    "x.txt",
  );
  await rejects(pytorchFromBytes(pickle(dict({ a: 1 })), "p.pkl"), /not torch's magic number/, "p.pkl");
  const script = writeZip([{ name: "m/data.pkl", data: pickle(null) }, {
    name: "m/constants.pkl",
    data: pickle(null),
  }]);
  await rejects(pytorchFromBytes(script.bytes, "s.pt"), /TorchScript archive/, "s.pt");
  const flat = writeZip([{ name: "data.pkl", data: pickle(null) }]);
  await rejects(pytorchFromBytes(flat.bytes, "f.pt"), /expected entries under a folder/, "f.pt");
  const odd = writeZip([{ name: "a/data.pkl", data: pickle(null) }, {
    name: "a/byteorder",
    data: new TextEncoder().encode("middle"),
  }]);
  await rejects(pytorchFromBytes(odd.bytes, "o.pt"), /expected "little" or "big"/, "o.pt");
  // A legacy file listing a storage no tensor uses.
  const l = new CheckpointBuilder("legacy");
  l.storage("FloatStorage", f32(1), "orphan");
  await rejects(
    pytorchFromBytes(l.write(dict({})), "k.pth"),
    /storage "orphan" is listed but no tensor uses it/,
    "k.pth",
  );
});

Deno.test("PytorchCheckpoint.tensors lists every tensor of the tree by path", async () => {
  const b = new CheckpointBuilder("zip");
  const shared = b.whole("FloatStorage", f32(1), [1]);
  const tree = dict({
    model: orderedDict({ "a.weight": shared }),
    ema: [shared, b.whole("FloatStorage", f32(2), [1])],
    opt: dict([[0, dict({ momentum_buffer: b.whole("FloatStorage", f32(3), [1]) })]]),
  });
  const checkpoint: PytorchCheckpoint = await pytorchFromBytes(b.write(tree), "paths.pth");
  assert.deepEqual([...checkpoint.tensors.keys()], ["model/a.weight", "ema/1", "opt/0/momentum_buffer"]);
});
