/**
 * One GPU batch of decoded images through an embedder, with a failure per image rather than per batch
 * when an embedding is not finite: `deno task embed` and `deno task serve` both embed this way.
 * @module
 */
import type { Embedder } from "../engine/embedder.ts";
import { NonFiniteError } from "../engine/errors.ts";
import type { DecodedImage } from "../engine/image_decode.ts";

/**
 * Embeds a batch; when one image's embedding is not finite, embeds the batch's images one by one so that
 * only the bad ones fail. Returns a row or an error per image.
 *
 * @param embedder What embeds (only its `embed` is used).
 * @param images The decoded images (at most the embedder's `maxBatch` for one GPU submission).
 * @returns One embedding or one Error ("embedding is not finite ...") per image, in order.
 * @throws Whatever `embed` throws other than {@linkcode NonFiniteError} (a lost device, a disposed embedder).
 */
export async function embedChunk(
  embedder: Pick<Embedder, "embed">,
  images: DecodedImage[],
): Promise<(Float32Array | Error)[]> {
  try {
    return await embedder.embed(images);
  } catch (e) {
    if (!(e instanceof NonFiniteError)) throw e;
  }
  const out: (Float32Array | Error)[] = [];
  for (const image of images) {
    try {
      out.push((await embedder.embed([image]))[0]);
    } catch (e) {
      if (!(e instanceof NonFiniteError)) throw e;
      const layer = e.layer ? `first at ${e.layer}` : "layer unknown";
      out.push(
        new Error(
          `embedding is not finite (${e.message.replace(/^Cannot embed image \d+: /, "")}; ${layer})`,
        ),
      );
    }
  }
  return out;
}
