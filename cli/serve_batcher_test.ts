import assert from "node:assert/strict";
import { type DecodedImage, decodeImage } from "../engine/image_decode.ts";
import { createEmbedder } from "../models/registry.ts";
import { isicJpegs, maxRelativeDifference, serveGpu } from "../tests/_serve.ts";
import { embedChunk } from "./embed_chunk.ts";
import { BatchFailure, type EmbedBatch, MicroBatcher } from "./serve_batcher.ts";

/** A 1 x 1 image carrying `id` in its red byte. */
function image(id: number): DecodedImage {
  return { width: 1, height: 1, rgba: new Uint8Array([id, 0, 0, 255]), format: "png" };
}

/**
 * A fake embed: records each batch's ids, resolves after `ms` (or when `gate` opens), row = [id]; id 13
 * gives that image an Error, id 66 makes the whole batch throw.
 */
function fakeEmbed(batches: number[][], options: { ms?: number; gate?: Promise<void> } = {}): EmbedBatch {
  return async (images) => {
    const ids = images.map((im) => im.rgba[0]);
    batches.push(ids);
    if (options.gate) await options.gate;
    if (options.ms) await new Promise((r) => setTimeout(r, options.ms));
    if (ids.includes(66)) throw new Error("device lost");
    return ids.map((id) => id === 13 ? new Error(`image ${id} is not finite`) : Float32Array.of(id));
  };
}

Deno.test("MicroBatcher gathers images submitted together into batches of at most maxBatch", async () => {
  const batches: number[][] = [];
  const b = new MicroBatcher(fakeEmbed(batches), { maxBatch: 4, maxWaitMs: 50, concurrency: 1 });
  const rows = await Promise.all([1, 2, 3, 4, 5, 6].map((id) => b.submit(image(id))));
  assert.deepEqual(rows.map((r) => r[0]), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(batches, [[1, 2, 3, 4], [5, 6]]);
  const s = b.stats();
  assert.equal(s.batches, 2);
  assert.equal(s.images, 6);
  assert.equal(s.sizes[4], 1);
  assert.equal(s.sizes[2], 1);
});

Deno.test("MicroBatcher waits up to maxWaitMs for more images, then sends a partial batch", async () => {
  const batches: number[][] = [];
  const b = new MicroBatcher(fakeEmbed(batches), { maxBatch: 8, maxWaitMs: 120 });
  const t0 = performance.now();
  const first = b.submit(image(1));
  await new Promise((r) => setTimeout(r, 30));
  const second = b.submit(image(2));
  await Promise.all([first, second]);
  const elapsed = performance.now() - t0;
  assert.deepEqual(batches, [[1, 2]]);
  // Measured from the first image's arrival, not the last one's.
  assert.ok(elapsed >= 115 && elapsed < 600, `took ${elapsed} ms`);
  // maxWaitMs 0: the images of one turn of the event loop, without waiting longer.
  const now: number[][] = [];
  const c = new MicroBatcher(fakeEmbed(now), { maxBatch: 8, maxWaitMs: 0 });
  const t1 = performance.now();
  await Promise.all([c.submit(image(3)), c.submit(image(4))]);
  assert.deepEqual(now, [[3, 4]]);
  assert.ok(performance.now() - t1 < 100);
});

Deno.test("MicroBatcher runs at most `concurrency` batches and queues the rest into fuller batches", async () => {
  const batches: number[][] = [];
  const gate = Promise.withResolvers<void>();
  const b = new MicroBatcher(fakeEmbed(batches, { gate: gate.promise }), {
    maxBatch: 3,
    maxWaitMs: 0,
    concurrency: 2,
  });
  const all = [b.submit(image(1)), b.submit(image(2))];
  await new Promise((r) => setTimeout(r, 5));
  all.push(b.submit(image(3)));
  await new Promise((r) => setTimeout(r, 5));
  // Two batches running; these wait for a free slot and then leave together.
  all.push(...[4, 5, 6, 7].map((id) => b.submit(image(id))));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(b.running, 2);
  assert.equal(b.queued, 4);
  gate.resolve();
  await Promise.all(all);
  assert.deepEqual(batches, [[1, 2], [3], [4, 5, 6], [7]]);
  await b.idle();
  assert.equal(b.running + b.queued, 0);
});

Deno.test("MicroBatcher fails only the image whose row is an Error, and a thrown error only its batch", async () => {
  const batches: number[][] = [];
  const b = new MicroBatcher(fakeEmbed(batches), { maxBatch: 3, maxWaitMs: 0, concurrency: 1 });
  const results = await Promise.allSettled([12, 13, 14, 66, 15, 16].map((id) => b.submit(image(id))));
  assert.deepEqual(batches, [[12, 13, 14], [66, 15, 16]]);
  assert.equal(results[0].status, "fulfilled");
  assert.equal((results[1] as PromiseRejectedResult).reason.message, "image 13 is not finite");
  assert.equal(results[2].status, "fulfilled");
  for (const r of results.slice(3)) {
    const reason = (r as PromiseRejectedResult).reason;
    assert.ok(reason instanceof BatchFailure);
    assert.equal(reason.message, "Cannot embed: device lost");
  }
  // The batcher carries on.
  assert.deepEqual(await b.submit(image(17)), Float32Array.of(17));
});

Deno.test("MicroBatcher drops an image whose signal aborts before its batch leaves", async () => {
  const batches: number[][] = [];
  const gate = Promise.withResolvers<void>();
  const b = new MicroBatcher(fakeEmbed(batches, { gate: gate.promise }), {
    maxBatch: 2,
    maxWaitMs: 0,
    concurrency: 1,
  });
  const running = b.submit(image(1));
  await new Promise((r) => setTimeout(r, 5));
  const abort = new AbortController();
  const dropped = b.submit(image(2), abort.signal);
  const kept = b.submit(image(3));
  abort.abort(new Error("request timed out"));
  await assert.rejects(dropped, /request timed out/);
  await assert.rejects(b.submit(image(4), AbortSignal.abort(new Error("already"))), /already/);
  gate.resolve();
  await Promise.all([running, kept]);
  assert.deepEqual(batches, [[1], [3]]);
  assert.equal(b.stats().abandoned, 1);
});

Deno.test("MicroBatcher refuses a batch size below 1 and a negative wait", () => {
  assert.throws(() => new MicroBatcher(fakeEmbed([]), { maxBatch: 0, maxWaitMs: 1 }), RangeError);
  assert.throws(() => new MicroBatcher(fakeEmbed([]), { maxBatch: 1, maxWaitMs: -1 }), RangeError);
  assert.throws(
    () => new MicroBatcher(fakeEmbed([]), { maxBatch: 1, maxWaitMs: 1, concurrency: 0 }),
    RangeError,
  );
});

Deno.test({
  name: "MicroBatcher over a real embedder gives each image the embedding embed() gives it alone",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const gpu = await serveGpu();
    const embedder = await createEmbedder("procedural:tiny-bit", {
      gpu,
      size: 64,
      preset: "derm",
      maxBatch: 4,
    });
    try {
      const images = await Promise.all(isicJpegs(7).map((f) => decodeImage(f.bytes, f.name)));
      const alone: Float32Array[] = [];
      for (const im of images) alone.push((await embedder.embed([im]))[0]);
      const batcher = new MicroBatcher((batch) => embedChunk(embedder, batch), { maxBatch: 4, maxWaitMs: 0 });
      // In reverse order, so that each image shares its batch with others than in any earlier call.
      const order = [6, 5, 4, 3, 2, 1, 0];
      const rows = await Promise.all(order.map((i) => batcher.submit(images[i])));
      assert.deepEqual(batcher.stats().sizes.slice(1), [0, 0, 1, 1]); // batches of 4 and 3
      let worst = 0;
      order.forEach((i, k) => {
        assert.equal(rows[k].length, embedder.embeddingSize);
        worst = Math.max(worst, maxRelativeDifference(rows[k], alone[i]));
      });
      console.log(`batched vs alone: max relative difference ${worst} (${gpu.adapterInfo.description})`);
      assert.ok(worst <= 1e-5, `batched rows differ from single-image rows by ${worst}`);
      // Distinct images have distinct rows (the comparison above is not vacuous).
      assert.ok(maxRelativeDifference(alone[0], alone[1]) > 1e-3);
    } finally {
      embedder.dispose();
    }
  },
});
