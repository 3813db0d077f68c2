import assert from "node:assert/strict";
import { IndexedDbTuningCache } from "./tuning_cache_idb.ts";

Deno.test("IndexedDbTuningCache falls back to memory where there is no IndexedDB (Deno)", async () => {
  const cache = new IndexedDbTuningCache(undefined);
  assert.equal(await cache.get("k"), undefined);
  await cache.set("k", "conv2d_tiled");
  assert.equal(await cache.get("k"), "conv2d_tiled");
});
