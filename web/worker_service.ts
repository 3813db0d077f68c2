/**
 * What the embedding worker does with each request (`web/protocol.ts`): load a model (weights from
 * `web/weights.ts`, then `createEmbedder`), embed images (decoded one by one, each reported, then embedded
 * in batches of `maxBatch` while the next batch decodes), dispose. Requests run one at a time, in order.
 *
 * An image that cannot be decoded, or whose embedding is not finite, is reported alone (`image-error`) and
 * the others go on; any other failure (device lost, out of memory) ends the request with `error`.
 *
 * Kept apart from the entry (`web/worker.ts`) so that it runs, and is tested, without a Worker.
 *
 * This module is browser compatible.
 * @module
 */
import type { Embedder } from "../engine/embedder.ts";
import { NonFiniteError } from "../engine/errors.ts";
import { type DecodedImage, decodeImage } from "../engine/image_decode.ts";
import { createEmbedder } from "../models/registry.ts";
import {
  type EmbedRequest,
  type LoadPhase,
  type LoadRequest,
  serializeError,
  type WorkerReply,
  type WorkerRequest,
} from "./protocol.ts";
import { openPageWeights } from "./weights.ts";

/** Sends a reply, transferring the listed buffers. */
export type Post = (reply: WorkerReply, transfer?: Transferable[]) => void;

/** Least time between two progress replies of one phase, so a 1.5 GB download is not 20,000 messages. */
const PROGRESS_INTERVAL_MS = 100;

/** Serves the requests of one page. */
export class EmbeddingService {
  #post: Post;
  #caches: CacheStorage | null;
  #embedder?: Embedder;
  #queue: Promise<void> = Promise.resolve();

  /**
   * @param post Where replies go (`postMessage` in a worker).
   * @param options `caches`: the Cache API for downloads (default `globalThis.caches`; null for none).
   */
  constructor(post: Post, options: { caches?: CacheStorage | null } = {}) {
    this.#post = post;
    this.#caches = options.caches === undefined
      ? (globalThis as { caches?: CacheStorage }).caches ?? null
      : options.caches;
  }

  /** Queues a request; resolves when it has been answered. */
  submit(request: WorkerRequest): Promise<void> {
    const run = this.#queue.then(() => this.#handle(request));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #handle(request: WorkerRequest): Promise<void> {
    try {
      switch (request.type) {
        case "load":
          return await this.#load(request);
        case "embed":
          return await this.#embed(request);
        case "dispose":
          this.#dispose();
          this.#post({ type: "disposed", id: request.id });
          return;
        default:
          throw new TypeError(`Cannot handle request: unknown type "${(request as { type: string }).type}"`);
      }
    } catch (e) {
      this.#post({ type: "error", id: request.id, error: serializeError(e) });
    }
  }

  #dispose(): void {
    this.#embedder?.dispose();
    this.#embedder = undefined;
  }

  #progress(id: number, phase: LoadPhase): (done: number, total: number) => void {
    let last = -Infinity;
    return (done, total) => {
      const now = performance.now();
      if (now - last < PROGRESS_INTERVAL_MS && done !== total) return;
      last = now;
      this.#post({ type: "progress", id, phase, done, total });
    };
  }

  async #load(request: LoadRequest): Promise<void> {
    const t0 = performance.now();
    this.#dispose();
    const o = request.options;
    const weights = await openPageWeights(request.weights, {
      caches: o.cache === false ? null : this.#caches,
      onProgress: this.#progress(request.id, "download"),
    });
    const embedder = await createEmbedder(weights.input, {
      preset: o.preset,
      size: o.size,
      resize: o.resize,
      maxBatch: o.maxBatch,
      kernels: o.kernels,
      onLoadProgress: this.#progress(request.id, "upload"),
    });
    this.#embedder = embedder;
    this.#post({
      type: "ready",
      id: request.id,
      info: {
        facts: embedder.facts,
        description: embedder.describe(),
        adapter: embedder.gpu.adapterInfo.description,
        maxBatch: embedder.maxBatch,
        origin: weights.origin,
        notCached: weights.notCached,
        loadMs: performance.now() - t0,
      },
    });
  }

  async #embed(request: EmbedRequest): Promise<void> {
    const embedder = this.#embedder;
    if (!embedder) throw new TypeError("Cannot embed: no model is loaded");
    const t0 = performance.now();
    const { id, images } = request;
    let batch: { index: number; image: DecodedImage }[] = [];
    let inflight: Promise<void> | undefined;
    let fatal: unknown;
    const submit = (items: { index: number; image: DecodedImage }[]) => {
      for (const { index } of items) this.#post({ type: "image", id, index, state: "embedding" });
      inflight = this.#embedBatch(embedder, id, items).catch((e) => {
        fatal ??= e;
      });
    };
    for (const [index, item] of images.entries()) {
      if (fatal !== undefined) break;
      try {
        const image = await decodeImage(new Uint8Array(item.bytes), item.name);
        batch.push({ index, image });
        this.#post({ type: "image", id, index, state: "decoded" });
      } catch (e) {
        this.#post({ type: "image-error", id, index, error: serializeError(e) });
      }
      if (batch.length === embedder.maxBatch) {
        // The previous batch runs on the GPU while this one was decoded.
        await inflight;
        if (fatal === undefined) submit(batch);
        batch = [];
      }
    }
    await inflight;
    if (fatal === undefined && batch.length > 0) {
      submit(batch);
      await inflight;
    }
    if (fatal !== undefined) throw fatal;
    this.#post({ type: "done", id, ms: performance.now() - t0, images: images.length });
  }

  /** Embeds one batch; an image with a non-finite embedding is reported and the rest embedded again. */
  async #embedBatch(
    embedder: Embedder,
    id: number,
    items: { index: number; image: DecodedImage }[],
  ): Promise<void> {
    let rest = items;
    while (rest.length > 0) {
      let rows: Float32Array[];
      try {
        rows = await embedder.embed(rest.map((x) => x.image));
      } catch (e) {
        if (e instanceof NonFiniteError && e.image >= 0 && e.image < rest.length) {
          this.#post({ type: "image-error", id, index: rest[e.image].index, error: serializeError(e) });
          rest = rest.filter((_, k) => k !== e.image);
          continue;
        }
        throw e;
      }
      rows.forEach((embedding, k) => {
        this.#post({ type: "row", id, index: rest[k].index, embedding }, [embedding.buffer as ArrayBuffer]);
      });
      return;
    }
  }
}
