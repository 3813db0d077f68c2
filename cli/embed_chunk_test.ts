import assert from "node:assert/strict";
import { NonFiniteError } from "../engine/errors.ts";
import type { DecodedImage } from "../engine/image_decode.ts";
import { embedChunk } from "./embed_chunk.ts";

/** 1 x 1 images whose red byte is the row's value; red 255 embeds as NaN, as a broken image would. */
function image(red: number): DecodedImage {
  return { width: 1, height: 1, rgba: new Uint8Array([red, 0, 0, 255]), format: "png" };
}

function fakeEmbedder(calls: number[][]) {
  return {
    embed(images: readonly unknown[]): Promise<Float32Array[]> {
      const reds = (images as DecodedImage[]).map((im) => im.rgba[0]);
      calls.push(reds);
      const bad = reds.indexOf(255);
      if (bad >= 0) {
        return Promise.reject(
          new NonFiniteError(bad, "", `Cannot embed image ${bad}: embedding element 0 is NaN`),
        );
      }
      return Promise.resolve(reds.map((r) => Float32Array.of(r, r + 0.5)));
    },
  };
}

Deno.test("embedChunk() fails only the non-finite image when one image of a batch embeds as NaN", async () => {
  const calls: number[][] = [];
  const out = await embedChunk(fakeEmbedder(calls), [image(1), image(255), image(3)]);
  assert.deepEqual(out[0], Float32Array.of(1, 1.5));
  assert.ok(out[1] instanceof Error);
  assert.equal(out[1].message, "embedding is not finite (embedding element 0 is NaN; layer unknown)");
  assert.deepEqual(out[2], Float32Array.of(3, 3.5));
  // The batch once, then each image alone.
  assert.deepEqual(calls, [[1, 255, 3], [1], [255], [3]]);
});

Deno.test("embedChunk() embeds a finite batch once and rethrows errors other than NonFiniteError", async () => {
  const calls: number[][] = [];
  const out = await embedChunk(fakeEmbedder(calls), [image(7), image(8)]);
  assert.deepEqual(out, [Float32Array.of(7, 7.5), Float32Array.of(8, 8.5)]);
  assert.deepEqual(calls, [[7, 8]]);
  const lost = { embed: () => Promise.reject(new Error("device lost")) };
  await assert.rejects(embedChunk(lost, [image(1)]), /device lost/);
});
