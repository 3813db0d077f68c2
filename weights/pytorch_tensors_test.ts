import assert from "node:assert/strict";
import { call, dict, global, persid, tuple } from "../tests/_pickle_writer.ts";
import { CheckpointBuilder, orderedDict } from "../tests/_torch_checkpoint_writer.ts";
import { PickleGlobal, PickleObject } from "./pickle.ts";
import { pytorchFromBytes } from "./pytorch.ts";
import {
  gatherTensor,
  InvalidTensor,
  STORAGE_TYPES,
  storageFromPersistentId,
  StorageRef,
  TensorRef,
  torchConstruct,
} from "./pytorch_tensors.ts";

function storage(numel: number, type = "FloatStorage"): StorageRef {
  return new StorageRef({
    key: "0",
    storageType: type,
    type: STORAGE_TYPES[type],
    numel,
    location: "cpu",
    byteOffset: 0,
  });
}

/** The reference gather: every element by its multi-index, plain loops. */
function gatherReference(
  shape: number[],
  stride: number[],
  offset: number,
  el: number,
  bytes: Uint8Array,
): number[] {
  const out: number[] = [];
  const n = shape.reduce((a, b) => a * b, 1);
  for (let flat = 0; flat < n; flat++) {
    let rest = flat;
    let at = offset;
    for (let d = shape.length - 1; d >= 0; d--) {
      at += (rest % shape[d]) * stride[d];
      rest = Math.floor(rest / shape[d]);
    }
    for (let b = 0; b < el; b++) out.push(bytes[at * el + b]);
  }
  return out;
}

Deno.test("gatherTensor() matches the reference on awkward strided views", () => {
  const cases: [number[], number[], number][] = [
    [[3, 5], [1, 3], 0],
    [[2, 3, 4], [20, 1, 5], 7],
    [[5, 1, 3], [3, 100, 1], 1],
    [[4, 3], [0, 2], 2],
    [[2, 2, 2, 3], [1, 2, 4, 8], 0],
    [[7], [3], 4],
    [[1], [9], 3],
    [[2, 0, 3], [3, 3, 1], 0],
  ];
  for (const el of [1, 2, 4, 8]) {
    const bytes = Uint8Array.from({ length: 64 * el }, (_, i) => (i * 37 + 11) & 0xff);
    for (const [shape, stride, offset] of cases) {
      const t = new TensorRef({
        storage: storage(64),
        type: { torch: "x", bytes: el },
        storageOffset: offset,
        shape,
        stride,
        requiresGrad: false,
      });
      const [begin, end] = t.byteSpan;
      const got = gatherTensor(t, bytes.subarray(begin, end), false);
      assert.deepEqual(
        [...got],
        gatherReference(shape, stride, offset, el, bytes),
        `${shape} ${stride} ${offset} x${el}`,
      );
      const swapped = gatherTensor(t, bytes.subarray(begin, end), true);
      const expected = gatherReference(shape, stride, offset, el, bytes);
      for (let i = 0; i < expected.length; i += el) {
        expected.splice(i, el, ...expected.slice(i, i + el).reverse());
      }
      assert.deepEqual([...swapped], expected, `swapped ${shape} ${stride} x${el}`);
    }
  }
});

Deno.test("TensorRef.contiguous ignores size-1 dimensions, and byteSpan covers first to last element", () => {
  const t = (shape: number[], stride: number[], offset = 0) =>
    new TensorRef({
      storage: storage(100),
      type: STORAGE_TYPES.FloatStorage,
      storageOffset: offset,
      shape,
      stride,
      requiresGrad: false,
    });
  assert.equal(t([2, 3], [3, 1]).contiguous, true);
  assert.equal(t([2, 1, 3], [3, 77, 1]).contiguous, true);
  assert.equal(t([2, 3], [1, 2]).contiguous, false);
  assert.equal(t([], []).contiguous, true);
  assert.deepEqual(t([2, 3], [3, 1], 5).byteSpan, [20, 44]);
  assert.deepEqual(t([2, 3], [1, 2], 1).byteSpan, [4, 28]); // elements 1 to 1 + 1 + 2 * 2
  assert.deepEqual(t([0, 3], [3, 1], 9).byteSpan, [36, 36]);
});

Deno.test("storageFromPersistentId() reads zip and legacy ids, views, module ids; the first id of a key wins", () => {
  const seen = new Map<string, StorageRef>();
  const float = new PickleGlobal("torch", "FloatStorage");
  const a = storageFromPersistentId(Object.freeze(["storage", float, "5", "cuda:0", 10]), seen) as StorageRef;
  assert.deepEqual([a.key, a.storageType, a.type.dtype, a.numel, a.location, a.byteLength], [
    "5",
    "FloatStorage",
    "F32",
    10,
    "cuda:0",
    40,
  ]);
  const again = storageFromPersistentId(
    ["storage", new PickleGlobal("torch", "HalfStorage"), "5", "cpu", 20],
    seen,
  );
  assert.equal(again, a);
  const cuda = storageFromPersistentId([
    "storage",
    new PickleGlobal("torch.cuda", "LongStorage"),
    "6",
    "cuda:0",
    2,
    null,
  ], seen) as StorageRef;
  assert.equal(cuda.type.dtype, "I64");
  const view = storageFromPersistentId(
    ["storage", float, "5", "cpu", 10, ["view1", 2, 3]],
    seen,
  ) as StorageRef;
  assert.deepEqual([view.key, view.byteOffset, view.numel], ["5", 8, 3]);
  const cls = new PickleGlobal("torchvision.models.resnet", "ResNet");
  assert.equal(storageFromPersistentId(["module", cls, "resnet.py", "source"], seen), cls);
  assert.throws(() => storageFromPersistentId("3", seen), /expected a persistent id tuple, got a str/);
  assert.throws(
    () =>
      storageFromPersistentId(["storage", new PickleGlobal("torch", "WeirdStorage"), "1", "cpu", 1], seen),
    /unknown storage class "WeirdStorage"/,
  );
  assert.throws(
    () => storageFromPersistentId(["storage", float, "1", "cpu", -1], seen),
    /numel of storage "1" is an int "-1", expected a non-negative int/,
  );
  assert.throws(
    () => storageFromPersistentId(["storage", float, "5", "cpu", 10, ["v2", 8, 3]], seen),
    /view \[8,11\) of storage "5" is past its 10 elements/,
  );
});

Deno.test("torchConstruct() rebuilds tensors and parameters, and leaves other torch globals to placeholders", () => {
  const s = storage(12);
  const v2 = torchConstruct(new PickleGlobal("torch._utils", "_rebuild_tensor_v2"), [
    s,
    2,
    [2, 5],
    [5, 1],
    true,
    new Map(),
  ]);
  assert.ok(v2 instanceof TensorRef);
  assert.deepEqual([v2.storageOffset, [...v2.shape], [...v2.stride], v2.requiresGrad, v2.dtype], [
    2,
    [2, 5],
    [5, 1],
    true,
    "F32",
  ]);
  const param = torchConstruct(new PickleGlobal("torch._utils", "_rebuild_parameter"), [v2, true, new Map()]);
  assert.equal(param, v2);
  const untyped = storage(16, "UntypedStorage");
  const v3 = torchConstruct(new PickleGlobal("torch._utils", "_rebuild_tensor_v3"), [
    untyped,
    0,
    [8],
    [1],
    false,
    new Map(),
    new PickleGlobal("torch", "bfloat16"),
  ]);
  assert.equal((v3 as TensorRef).dtype, "BF16");
  const badDtype = torchConstruct(new PickleGlobal("torch._utils", "_rebuild_tensor_v3"), [
    untyped,
    0,
    [8],
    [1],
    false,
    new Map(),
    "float",
  ]);
  assert.ok(badDtype instanceof InvalidTensor);
  const sub = torchConstruct(new PickleGlobal("torch._tensor", "_rebuild_from_type_v2"), [
    new PickleGlobal("torch._utils", "_rebuild_tensor_v2"),
    new PickleGlobal("my", "Subclass"),
    [s, 0, [3], [1], false, new Map()],
    new Map(),
  ]);
  assert.ok(sub instanceof TensorRef);
  assert.throws(
    () =>
      torchConstruct(new PickleGlobal("torch._tensor", "_rebuild_from_type_v2"), [
        new PickleGlobal("os", "system"),
        null,
        ["id"],
        null,
      ]),
    /refused to call os\.system/,
  );
  assert.deepEqual(torchConstruct(new PickleGlobal("torch", "Size"), [[2, 3]]), [2, 3]);
  assert.equal(torchConstruct(new PickleGlobal("torch", "device"), ["cuda", 0]), undefined);
  assert.equal(torchConstruct(new PickleGlobal("torch._utils", "_rebuild_qtensor"), []), undefined);
  const notStorage = torchConstruct(new PickleGlobal("torch._utils", "_rebuild_tensor_v2"), [
    "x",
    0,
    [1],
    [1],
    false,
    null,
  ]);
  assert.match((notStorage as InvalidTensor).problem, /its storage is a str/);
});

Deno.test("openPytorch() reads a legacy storage view through its root storage", async () => {
  const b = new CheckpointBuilder("legacy");
  b.storage("FloatStorage", new Uint8Array(new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]).buffer), "root");
  const pid = persid(
    tuple("storage", global("torch", "FloatStorage"), "root", "cpu", 8, tuple("view", 2, 4)),
  );
  const t = call(global("torch._utils", "_rebuild_tensor_v2"), [
    pid,
    1,
    tuple(2),
    tuple(2),
    false,
    orderedDict([]),
  ]);
  const checkpoint = await pytorchFromBytes(b.write(dict({ w: t })), "view.pth");
  const source = await checkpoint.source(checkpoint.tensors);
  for await (const { bytes } of source.stream()) {
    assert.deepEqual([...new Float32Array(bytes.slice().buffer)], [3, 5]);
  }
  // The whole-model case: a module id gives an inert class, and the object stays a placeholder.
  const modelPid = persid(tuple("module", global("mymodels", "Net"), "net.py", "class Net: ..."));
  const whole = await pytorchFromBytes(
    new CheckpointBuilder("legacy").write(
      call(global("copyreg", "_reconstructor"), [modelPid, global("builtins", "object"), null]),
    ),
    "whole.pth",
  );
  assert.ok(whole.tree instanceof PickleObject);
  assert.equal(`${(whole.tree as PickleObject).module}.${(whole.tree as PickleObject).name}`, "mymodels.Net");
});
