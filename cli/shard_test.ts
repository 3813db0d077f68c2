import assert from "node:assert/strict";
import { inputsFingerprint, normalisedPath, parseShard, selectShard, shardOf } from "./shard.ts";

Deno.test("parseShard() reads I/N and refuses anything else", () => {
  assert.deepEqual(parseShard("2/8"), { index: 2, count: 8 });
  assert.deepEqual(parseShard("0/1"), { index: 0, count: 1 });
  for (const bad of ["8/8", "1/0", "-1/3", "1", "a/b", "1/2/3", ""]) {
    assert.throws(() => parseShard(bad), RangeError, bad);
  }
});

Deno.test("shardOf() is the first 8 bytes of SHA-256 of the normalised path mod N", async () => {
  for (const path of ["./data/../data/a.jpg", "x/y.png", "ümlaut.jpg"]) {
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", new TextEncoder().encode(normalisedPath(path))),
    );
    const u64 = new DataView(digest.buffer).getBigUint64(0, false);
    for (const n of [1, 2, 3, 7, 1000]) {
      assert.equal(shardOf(path, n), Number(u64 % BigInt(n)), `${path} ${n}`);
    }
  }
  assert.equal(normalisedPath("./data/../data/a.jpg"), "data/a.jpg");
  assert.equal(normalisedPath("a\\b.png"), "a/b.png");
  assert.equal(shardOf("./a/b.png", 5), shardOf("a/b.png", 5));
});

Deno.test("selectShard() partitions the inputs; adding files moves none of the others", () => {
  const items = Array.from({ length: 3000 }, (_, i) => ({ path: `img/${i}.jpg` }));
  const parts = [0, 1, 2].map((index) => selectShard(items, { index, count: 3 }));
  const positions = parts.flat().map((p) => p.position).sort((a, b) => a - b);
  assert.deepEqual(positions, items.map((_, i) => i));
  for (const p of parts) assert.ok(Math.abs(p.length - 1000) < 100, `a shard of ${p.length}`);
  for (const p of parts) assert.ok(p.every((x, k) => k === 0 || x.position > p[k - 1].position));
  const more = [...items, ...Array.from({ length: 500 }, (_, i) => ({ path: `new/${i}.jpg` }))];
  const shardBefore = new Map(items.map((x) => [x.path, shardOf(x.path, 3)]));
  for (const x of more.slice(0, 3000)) assert.equal(shardOf(x.path, 3), shardBefore.get(x.path));
  assert.deepEqual(selectShard(items).length, 3000);
});

Deno.test("inputsFingerprint() changes with a path, its order or its metadata", () => {
  const a: { path: string; metadata: Record<string, string> }[] = [
    { path: "a.png", metadata: {} },
    { path: "b.png", metadata: { dx: "nevus" } },
  ];
  const f = inputsFingerprint(a);
  assert.match(f, /^[0-9a-f]{64}$/);
  assert.equal(inputsFingerprint([...a]), f);
  assert.notEqual(inputsFingerprint([a[1], a[0]]), f);
  assert.notEqual(inputsFingerprint([a[0], { ...a[1], metadata: { dx: "melanoma" } }]), f);
  assert.notEqual(inputsFingerprint([a[0], { ...a[1], path: "./b.png" }]), f);
});
