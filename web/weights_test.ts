import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import { openWeights } from "../models/registry.ts";
import { regenerateFixtureCheckpoint } from "../tests/_fixtures.ts";
import { readTestdata } from "../tests/_testdata.ts";
import { encodeSafetensors } from "../weights/safetensors_write.ts";
import {
  downloadWeights,
  openPageWeights,
  openWeightsFile,
  WEIGHTS_CACHE,
  weightsFormat,
} from "./weights.ts";

/** The Cache API in memory: what the page's worker gets from `caches`, for tests without a browser. */
class MemoryCache {
  entries = new Map<string, { body: Uint8Array<ArrayBuffer>; headers: Headers }>();
  failPut = false;
  match(url: string): Promise<Response | undefined> {
    const e = this.entries.get(url);
    return Promise.resolve(e ? new Response(e.body.slice(), { headers: e.headers }) : undefined);
  }
  async put(url: string, response: Response): Promise<void> {
    const body = new Uint8Array(await response.arrayBuffer());
    if (this.failPut) throw new DOMException("Quota exceeded", "QuotaExceededError");
    this.entries.set(url, { body, headers: response.headers });
  }
  delete(url: string): Promise<boolean> {
    return Promise.resolve(this.entries.delete(url));
  }
}

class MemoryCaches {
  caches = new Map<string, MemoryCache>();
  open(name: string): Promise<MemoryCache> {
    if (!this.caches.has(name)) this.caches.set(name, new MemoryCache());
    return Promise.resolve(this.caches.get(name)!);
  }
  delete(name: string): Promise<boolean> {
    return Promise.resolve(this.caches.delete(name));
  }
}

const FILE = encodeSafetensors([
  { name: "a", dtype: "F32", shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
  { name: "b", dtype: "F32", shape: [70000], data: new Float32Array(70000).fill(0.5) },
]);

async function withServer(fn: (url: string, hits: () => number) => Promise<void>): Promise<void> {
  let hits = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => {
    hits++;
    return new Response(FILE, { headers: { "content-length": String(FILE.length) } });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/w/model.safetensors`, () => hits);
  } finally {
    await server.shutdown();
  }
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("downloadWeights() downloads once with progress, then reads the cache", async () => {
  await withServer(async (url, hits) => {
    const caches = new MemoryCaches() as unknown as CacheStorage;
    const progress: [number, number][] = [];
    const first = await downloadWeights(url, { caches, onProgress: (d, t) => progress.push([d, t]) });
    assert.equal(first.origin, "network");
    assert.equal(first.notCached, undefined);
    assert.deepEqual(await readAll(first.file.stream()), FILE);
    assert.deepEqual(progress.at(-1), [FILE.length, FILE.length]);
    assert.ok(progress.length >= 1);
    const second = await downloadWeights(url, {
      caches,
      onProgress: () => assert.fail("no download expected"),
    });
    assert.equal(second.origin, "cache");
    assert.equal(second.file.size, FILE.length);
    assert.deepEqual(await readAll(second.file.stream()), FILE);
    assert.equal(hits(), 1);
    assert.ok((caches as unknown as MemoryCaches).caches.has(WEIGHTS_CACHE));
  });
});

Deno.test("downloadWeights() streams without caching when the quota is too small or the cache refuses", async () => {
  await withServer(async (url, hits) => {
    const caches = new MemoryCaches();
    const small = await downloadWeights(url, {
      caches: caches as unknown as CacheStorage,
      freeStorage: () => Promise.resolve(1000),
    });
    assert.equal(small.origin, "network");
    assert.match(small.notCached!, /not enough storage quota/);
    assert.deepEqual(await readAll(small.file.stream()), FILE);
    assert.equal((await caches.open(WEIGHTS_CACHE)).entries.size, 0);

    (await caches.open(WEIGHTS_CACHE)).failPut = true;
    const refused = await downloadWeights(url, { caches: caches as unknown as CacheStorage });
    assert.match(refused.notCached!, /the Cache API refused it \(Quota exceeded\)/);
    assert.deepEqual(await readAll(refused.file.stream()), FILE);
    assert.equal(hits(), 3, "the refused download is fetched again");

    const none = await downloadWeights(url, { caches: null });
    assert.equal(none.notCached, "the Cache API is not available here");
    assert.deepEqual(await readAll(none.file.stream()), FILE);
  });
});

Deno.test("downloadWeights() names the URL when the server answers an error", async () => {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => new Response("no", { status: 404 }),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/missing.safetensors`;
    await assert.rejects(() => downloadWeights(url, { caches: null }), (e: Error) => {
      assert.ok(e instanceof WeightsError);
      assert.match(e.message, /^Cannot download "http:\/\/127\.0\.0\.1:\d+\/missing\.safetensors": .* 404/);
      return true;
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("openPageWeights() opens procedural names, chosen files and URLs", async () => {
  assert.deepEqual(await openPageWeights("procedural:tiny-bit:seed"), {
    input: "procedural:tiny-bit:seed",
    origin: "procedural",
  });
  const progress: number[] = [];
  const chosen = await openPageWeights({ blob: new Blob([FILE]), name: "mine.safetensors" }, {
    onProgress: (d) => progress.push(d),
  });
  assert.equal(chosen.origin, "file");
  const source = chosen.input as Exclude<typeof chosen.input, string>;
  assert.deepEqual([...source.tensors.keys()], ["a", "b"]);
  const chunks = [];
  for await (const c of source.stream()) chunks.push(c);
  assert.deepEqual(Array.from(new Float32Array(chunks[0].bytes.slice().buffer)), [1, 2, 3, 4, 5, 6]);
  assert.equal(progress.at(-1), FILE.length);
  await withServer(async (url) => {
    const fromUrl = await openPageWeights(url, { caches: null });
    assert.equal(fromUrl.origin, "network");
    assert.deepEqual([...(fromUrl.input as Exclude<typeof chosen.input, string>).tensors.keys()], ["a", "b"]);
    await (fromUrl.input as Exclude<typeof chosen.input, string>).close();
  });
});

Deno.test("weightsFormat() reads the format from the name; openWeightsFile() reads checkpoints from a Blob", async () => {
  assert.equal(weightsFormat("derm.safetensors"), "safetensors");
  assert.equal(weightsFormat("https://h/x/ckpt.pth?download=1"), "pytorch");
  assert.equal(weightsFormat("teacher.PT"), "pytorch");
  assert.equal(weightsFormat("run/checkpoint.pth.tar"), "pytorch");
  assert.equal(weightsFormat("weights"), "safetensors");
  // A zip checkpoint (DINO's layout) and a legacy one (a torchvision state dict): the page's Blob reader
  // gives the tensors the command line's byte reader gives.
  const checkpoints: [string, Uint8Array<ArrayBuffer>][] = [
    ["tiny-vit-64.pth", readTestdata("groeger/tiny-vit-64.pth")],
    ["tiny-resnet-64.pth", regenerateFixtureCheckpoint("groeger/tiny-resnet-64.pth")],
  ];
  for (const [name, bytes] of checkpoints) {
    const blob = new Blob([bytes]);
    const page = await openWeightsFile({
      name,
      size: blob.size,
      stream: () => blob.stream(),
      blob: () => Promise.resolve(blob),
    });
    const cli = await openWeights(bytes);
    assert.deepEqual([...page.tensors.keys()], [...cli.tensors.keys()], name);
    assert.deepEqual(page.metadata, cli.metadata, name);
    const want = new Map<string, Uint8Array>();
    for await (const t of cli.stream()) want.set(t.entry.name, t.bytes.slice());
    let n = 0;
    for await (const t of page.stream()) {
      assert.deepEqual(t.bytes.slice(), want.get(t.entry.name), `${name}: ${t.entry.name}`);
      n++;
    }
    assert.equal(n, want.size);
    await page.close();
    await cli.close();
  }
  const truncated = new Blob([readTestdata("groeger/tiny-vit-64.pth").subarray(0, 4000)]);
  await assert.rejects(
    () =>
      openWeightsFile({
        name: "dino.pth",
        stream: () => truncated.stream(),
        blob: () => Promise.resolve(truncated),
      }),
    (e: Error) => {
      assert.ok(e instanceof WeightsError, String(e));
      assert.match(e.message, /dino\.pth/);
      return true;
    },
  );
});
