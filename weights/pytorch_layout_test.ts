import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { dict, float, global, newobj, type Py } from "../tests/_pickle_writer.ts";
import { CheckpointBuilder, orderedDict } from "../tests/_torch_checkpoint_writer.ts";
import { pytorchFromBytes } from "./pytorch.ts";
import { checkpointStateDict } from "./pytorch_layout.ts";
import { TensorRef } from "./pytorch_tensors.ts";

/** Opens a zip checkpoint whose tree `make` builds, tensors made by `t(numel)`. */
async function tree(make: (t: (...shape: number[]) => Py) => Py): Promise<unknown> {
  const b = new CheckpointBuilder("zip");
  const t = (...shape: number[]) =>
    b.whole("FloatStorage", new Uint8Array(4 * shape.reduce((a, c) => a * c, 1)), shape);
  return (await pytorchFromBytes(b.write(make(t)), "layout.pth")).tree;
}

function thrown(fn: () => unknown): WeightsError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof WeightsError, `expected a WeightsError, got ${e}`);
    assert.equal(e.file, "layout.pth");
    return e;
  }
  assert.fail("expected an error");
}

const namespace = (fields: Record<string, Py>) => newobj(global("argparse", "Namespace"), [], dict(fields));

Deno.test("checkpointStateDict() reads DINO/iBOT: the teacher without backbone. and head.*, else the student", async () => {
  const t = await tree((t) =>
    dict({
      student: orderedDict({
        "module.backbone.cls_token": t(1, 1, 4),
        "module.head.last_layer.weight_g": t(2),
      }),
      teacher: orderedDict({
        "backbone.cls_token": t(1, 1, 4),
        "backbone.blocks.0.norm1.weight": t(4),
        "head.mlp.0.weight": t(3),
      }),
      epoch: 10,
      args: namespace({ arch: "vit_small", patch_size: 16 }),
    })
  );
  const state = checkpointStateDict(t, "layout.pth");
  assert.equal(state.layout, "dino");
  assert.equal(state.from, "teacher");
  assert.deepEqual([...state.tensors.keys()], ["cls_token", "blocks.0.norm1.weight"]);
  assert.deepEqual(state.args, { arch: "vit_small", patch_size: 16 });
  assert.deepEqual(state.ignored, ["student", "epoch", "args", "teacher/head.mlp.0.weight"]);
  const studentOnly = await tree((t) =>
    dict({ student: orderedDict({ "module.backbone.pos_embed": t(1, 5, 4) }) })
  );
  const student = checkpointStateDict(studentOnly, "layout.pth");
  assert.deepEqual([student.layout, student.from, [...student.tensors.keys()]], ["dino", "student", [
    "pos_embed",
  ]]);
});

Deno.test("checkpointStateDict() reads MAE: model without decoder_* and mask_token", async () => {
  const t = await tree((t) =>
    dict({
      model: orderedDict({
        cls_token: t(1, 1, 4),
        mask_token: t(1, 1, 4),
        "patch_embed.proj.weight": t(4, 3, 2, 2),
        "decoder_embed.weight": t(2, 4),
        "decoder_blocks.0.norm1.weight": t(2),
        "norm.weight": t(4),
      }),
      optimizer: dict({}),
      args: dict({ mask_ratio: float(0.75) }),
    })
  );
  const state = checkpointStateDict(t, "layout.pth");
  assert.equal(state.layout, "mae");
  assert.deepEqual([...state.tensors.keys()], ["cls_token", "patch_embed.proj.weight", "norm.weight"]);
  assert.deepEqual([...state.tensors.get("patch_embed.proj.weight")!.shape], [4, 3, 2, 2]);
  assert.deepEqual(state.args, { mask_ratio: 0.75 });
  assert.deepEqual(state.ignored, [
    "optimizer",
    "args",
    "model/mask_token",
    "model/decoder_embed.weight",
    "model/decoder_blocks.0.norm1.weight",
  ]);
});

Deno.test("checkpointStateDict() reads BYOL (net. stripped, other keys dropped) and SimCLR (names kept)", async () => {
  const byol = checkpointStateDict(
    await tree((t) =>
      dict({
        state_dict: orderedDict({
          "module.net.conv1.weight": t(4, 3, 7, 7),
          "module.net.bn1.weight": t(4),
          "module.projector.0.weight": t(2, 4),
        }),
        epoch: 3,
      })
    ),
    "layout.pth",
  );
  assert.equal(byol.layout, "byol");
  assert.deepEqual([...byol.tensors.keys()], ["conv1.weight", "bn1.weight"]);
  assert.deepEqual(byol.ignored, ["epoch", "state_dict/module.projector.0.weight"]);
  const simclr = checkpointStateDict(
    await tree((t) =>
      dict({
        state_dict: orderedDict({
          "model.0.weight": t(4, 3, 7, 7),
          "model.1.running_var": t(4),
          "model.4.0.conv1.weight": t(4, 4, 1, 1),
        }),
      })
    ),
    "layout.pth",
  );
  assert.equal(simclr.layout, "simclr");
  assert.deepEqual([...simclr.tensors.keys()], [
    "model.0.weight",
    "model.1.running_var",
    "model.4.0.conv1.weight",
  ]);
  const other = checkpointStateDict(
    await tree((t) => dict({ state_dict: orderedDict({ "fc.weight": t(2, 2) }) })),
    "layout.pth",
  );
  assert.equal(other.layout, "state_dict");
});

Deno.test("checkpointStateDict() reads a plain state dict, strips module. and lists non-tensors", async () => {
  const state = checkpointStateDict(
    await tree((t) =>
      orderedDict({
        "module.conv1.weight": t(4, 3, 7, 7),
        "module.module.bn1.bias": t(4),
        note: "hello",
        step: 7,
      })
    ),
    "layout.pth",
  );
  assert.equal(state.layout, "plain");
  assert.equal(state.from, "");
  assert.deepEqual([...state.tensors.keys()], ["conv1.weight", "bn1.bias"]);
  assert.ok([...state.tensors.values()].every((t) => t instanceof TensorRef));
  assert.deepEqual(state.ignored, ["note", "step"]);
});

Deno.test("checkpointStateDict() refuses trees without a state dict and names that collide", async () => {
  const none = thrown(() => checkpointStateDict(new Map([["epoch", 1]]), "layout.pth"));
  assert.match(none.message, /no state dict found: .* got keys \[epoch\]/);
  const list = thrown(() => checkpointStateDict([1, 2], "layout.pth"));
  assert.match(list.message, /expected a dict of tensors or of state dicts at the top level, got a list/);
  const twice = await tree((t) => orderedDict({ "module.a": t(1), a: t(1) }));
  const collision = thrown(() => checkpointStateDict(twice, "layout.pth"));
  assert.equal(collision.tensor, "a");
  assert.match(collision.message, /"module\.a" and "a" both become "a"/);
});
