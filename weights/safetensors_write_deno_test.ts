import assert from "node:assert/strict";
import { writeSafetensorsFile } from "./safetensors_write_deno.ts";
import { openSafetensorsFile } from "./safetensors_deno.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { bitArchitecture } from "../models/bit_arch.ts";
import type { TensorSource } from "./safetensors.ts";

const tiny = bitArchitecture([1, 1, 1, 1], [16, 32, 64, 128], 8);

Deno.test("writeSafetensorsFile() streams a source to a file that reads back identically", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tiny.safetensors`;
    const source = bitProceduralSource(tiny, "write-test", { naming: "derm", preset: "derm" });
    const written = await writeSafetensorsFile(path, source);
    assert.equal(written, (await Deno.stat(path)).size);
    const back = await openSafetensorsFile(path);
    assert.deepEqual(back.metadata, source.metadata);
    assert.deepEqual([...back.tensors.keys()].sort(), [...source.tensors.keys()].sort());
    const want = new Map<string, Uint8Array>();
    for await (const { entry, bytes } of source.stream()) want.set(entry.name, bytes.slice());
    for await (const { entry, bytes } of back.stream()) {
      assert.deepEqual(bytes, want.get(entry.name), entry.name);
    }
    await back.close();
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["tiny.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeSafetensorsFile() leaves no file behind when the source fails midway", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = bitProceduralSource(tiny, "write-test");
    const failing: TensorSource = {
      ...good,
      file: good.file,
      metadata: good.metadata,
      tensors: good.tensors,
      async *stream() {
        let i = 0;
        for await (const chunk of good.stream()) {
          if (i++ === 3) throw new Error("disk unplugged");
          yield chunk;
        }
      },
      close: () => good.close(),
    };
    await assert.rejects(writeSafetensorsFile(`${dir}/x.safetensors`, failing), /disk unplugged/);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
