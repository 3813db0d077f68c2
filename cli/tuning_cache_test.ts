import assert from "node:assert/strict";
import { FileTuningCache } from "./tuning_cache.ts";
import { withTempDir } from "../tests/_temp.ts";

Deno.test("FileTuningCache keeps choices across instances and survives a corrupt file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sub/tuning.json`;
    const a = new FileTuningCache(path);
    assert.equal(await a.get("k"), undefined);
    await a.set("k", "conv2d_tiled");
    await a.set("j", "conv2d_direct");
    const b = new FileTuningCache(path);
    assert.equal(await b.get("k"), "conv2d_tiled");
    assert.equal(await b.get("j"), "conv2d_direct");
    await Deno.writeTextFile(path, "{ not json");
    const c = new FileTuningCache(path);
    assert.equal(await c.get("k"), undefined);
    await c.set("k", "linear_tiled");
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), { k: "linear_tiled" });
    assert.deepEqual([...Deno.readDirSync(`${dir}/sub`)].map((e) => e.name), ["tuning.json"]);
  });
});
