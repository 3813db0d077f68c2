import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { testdataPath } from "../tests/_testdata.ts";
import { withTempDir } from "../tests/_temp.ts";
import { dict } from "../tests/_pickle_writer.ts";
import { CheckpointBuilder } from "../tests/_torch_checkpoint_writer.ts";
import { sha256, tinyVitTensors, torchvisionResnetShapes } from "../tests/_torch_fixture_checks.ts";
import { checkpointStateDict, pytorchFromBytes } from "./pytorch.ts";
import { openPytorchFile } from "./pytorch_deno.ts";
import type { TensorSource } from "./safetensors.ts";
import { rejectsWith } from "../tests/_assert.ts";
import { fixtureCheckpointFile } from "../tests/_fixtures.ts";

async function readAll(source: TensorSource): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const { entry, bytes } of source.stream()) out.set(entry.name, bytes.slice());
  return out;
}

async function rejects(promise: Promise<unknown>, pattern: RegExp, file: string): Promise<void> {
  const caught = await rejectsWith(promise, WeightsError);
  assert.equal(caught.file, file);
  assert.match(caught.message, pattern);
}

Deno.test("openPytorchFile() reads the DINO zip fixture from disk: the teacher matches the recorded SHA-256", async () => {
  const path = testdataPath("groeger/tiny-vit-64.pth");
  const checkpoint = await openPytorchFile(path);
  const state = checkpointStateDict(checkpoint.tree, checkpoint.file);
  const source = await checkpoint.source(state.tensors);
  try {
    const got = await readAll(source);
    for (const t of tinyVitTensors()) {
      assert.equal(await sha256(got.get(t.name)! as Uint8Array<ArrayBuffer>), t.sha256, t.name);
    }
  } finally {
    await source.close();
  }
});

Deno.test("openPytorchFile() reads the BYOL legacy fixture from disk as it does from bytes", async () => {
  const path = await fixtureCheckpointFile("groeger/tiny-resnet-64.pth");
  const checkpoint = await openPytorchFile(path);
  const state = checkpointStateDict(checkpoint.tree, path);
  assert.equal(state.layout, "byol");
  assert.deepEqual(
    [...state.tensors].map(([n, t]) => [n, [...t.shape]]),
    torchvisionResnetShapes([1, 1, 1, 1], 16),
  );
  const fromDisk = await readAll(await checkpoint.source(state.tensors));
  await checkpoint.close();
  const inMemory = await pytorchFromBytes(await Deno.readFile(path), path);
  const expected = await readAll(await inMemory.source(checkpointStateDict(inMemory.tree, path).tensors));
  assert.deepEqual(fromDisk, expected);
});

Deno.test("openPytorchFile() names the path for a missing file, a folder and a truncated file", async () => {
  await withTempDir(async (dir) => {
    await rejects(
      openPytorchFile(`${dir}/none.pth`),
      /Cannot open ".*none\.pth": file not found/,
      `${dir}/none.pth`,
    );
    await rejects(openPytorchFile(dir), /Cannot open ".*": (not a regular file|is a directory)/, dir);
    const b = new CheckpointBuilder("legacy");
    const bytes = b.write(dict({ w: b.whole("FloatStorage", new Uint8Array(400), [100]) }));
    const cut = `${dir}/cut.pth`;
    await Deno.writeFile(cut, bytes.subarray(0, bytes.length - 10));
    await rejects(openPytorchFile(cut), /truncated: storage "0"/, cut);
    const whole = `${dir}/whole.pth`;
    await Deno.writeFile(whole, bytes);
    const checkpoint = await openPytorchFile(whole);
    const source = await checkpoint.source(checkpoint.tensors);
    await source.close();
    await checkpoint.close(); // closing twice is fine
    assert.throws(() => source.stream(), /the source is closed/);
  });
});
