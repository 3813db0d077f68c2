/**
 * The embedder in a Web Worker, seen from the page: {@linkcode WorkerEmbedder} has the `Embedder`'s
 * `embed()`, `describe()`, `facts`, `embeddingSize`, `maxBatch` and `dispose()`, and runs decoding and the
 * GPU work in the worker (`web/worker.ts`) so the page never blocks. `embedEach()` also reports each image's
 * progress and gives a result or an error per image.
 *
 * This module is browser compatible (and works in Deno, whose workers have WebGPU too).
 * @module
 */
import type { ModelFacts } from "../engine/model.ts";
import {
  deserializeError,
  type ImageState,
  type LoadOptions,
  type LoadPhase,
  type ReadyInfo,
  type WeightsSpec,
  type WorkerReply,
  type WorkerRequest,
} from "./protocol.ts";

/** Options of {@linkcode WorkerEmbedder.create}. */
export interface WorkerEmbedderOptions extends LoadOptions {
  /** Loading progress: `download` bytes (or bytes of a chosen file), then `upload` bytes to the GPU. */
  readonly onLoadProgress?: (phase: LoadPhase, done: number, total: number) => void;
}

/** An image for {@linkcode WorkerEmbedder.embedEach}: encoded PNG/JPEG bytes and a name for messages. */
export interface NamedImage {
  readonly name: string;
  readonly bytes: Uint8Array | ArrayBuffer;
}

/** One image's outcome: its embedding, or why it has none. */
export type ImageResult = { readonly embedding: Float32Array } | { readonly error: Error };

/** Callbacks of {@linkcode WorkerEmbedder.embedEach}. */
export interface EmbedEachCallbacks {
  /** An image was decoded, or submitted to the GPU. */
  readonly onState?: (index: number, state: ImageState) => void;
  /** An image is finished. */
  readonly onResult?: (index: number, result: ImageResult) => void;
}

interface Pending {
  readonly onReply: (reply: WorkerReply) => void;
  readonly reject: (error: Error) => void;
}

/** The embedder in a worker. Create with {@linkcode WorkerEmbedder.create}. */
export class WorkerEmbedder {
  #worker: Worker;
  #owned: boolean;
  #pending = new Map<number, Pending>();
  #next = 1;
  #info?: ReadyInfo;
  #broken?: Error;

  private constructor(worker: Worker, owned: boolean) {
    this.#worker = worker;
    this.#owned = owned;
    worker.addEventListener("message", (event) => {
      const reply = (event as MessageEvent<WorkerReply>).data;
      this.#pending.get(reply.id)?.onReply(reply);
    });
    worker.addEventListener("error", (event) => {
      const e = event as ErrorEvent;
      e.preventDefault?.();
      this.#fail(new Error(`Cannot run the embedding worker: ${e.message || "it failed to start"}`));
    });
    worker.addEventListener("messageerror", () => {
      this.#fail(new Error("Cannot run the embedding worker: a message could not be read"));
    });
  }

  /**
   * Starts a worker (or uses one) and loads weights in it.
   *
   * @param worker The worker script's URL (`worker.js` of the web build, or `web/worker.ts` in Deno), or a
   *   running worker (not terminated by `dispose`).
   * @param weights `procedural:NAME[:SEED]`, an absolute URL of a .safetensors file, or a chosen file.
   * @param options Preset, size, resize, batch, cache, progress.
   * @returns The embedder, once the weights are on the GPU.
   * @throws {WebGpuUnavailableError | WeightsError | RangeError | TypeError} As `createEmbedder` does.
   * @example
   * ```ts
   * const embedder = await WorkerEmbedder.create(new URL("./worker.js", import.meta.url), "procedural:tiny-bit");
   * const [row] = await embedder.embed([{ name: "a.png", bytes }]);
   * embedder.dispose();
   * ```
   */
  static async create(
    worker: Worker | URL | string,
    weights: WeightsSpec,
    options: WorkerEmbedderOptions = {},
  ): Promise<WorkerEmbedder> {
    const owned = !(worker instanceof Worker);
    const w = worker instanceof Worker ? worker : new Worker(worker, { type: "module" });
    const embedder = new WorkerEmbedder(w, owned);
    try {
      await embedder.load(weights, options);
    } catch (e) {
      embedder.dispose();
      throw e;
    }
    return embedder;
  }

  /** What the loaded model is (facts, description, adapter, batch, where the weights came from). */
  get info(): ReadyInfo {
    if (!this.#info) throw new TypeError("Cannot describe the model: none is loaded");
    return this.#info;
  }

  /** Model facts, as `Embedder.facts`. */
  get facts(): ModelFacts {
    return this.info.facts;
  }

  /** Floats per embedding. */
  get embeddingSize(): number {
    return this.info.facts.embeddingSize;
  }

  /** Most images per GPU submission. */
  get maxBatch(): number {
    return this.info.maxBatch;
  }

  /** One line about the model, as `Embedder.describe()`. */
  describe(): string {
    return this.info.description;
  }

  #fail(error: Error): void {
    this.#broken ??= error;
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
  }

  #request<T>(
    make: (id: number) => WorkerRequest,
    onReply: (reply: WorkerReply, resolve: (value: T) => void) => void,
    transfer: Transferable[] = [],
  ): Promise<T> {
    if (this.#broken) return Promise.reject(this.#broken);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const finish = () => this.#pending.delete(id);
      this.#pending.set(id, {
        reject,
        onReply: (reply) => {
          if (reply.type === "error") {
            finish();
            reject(deserializeError(reply.error));
            return;
          }
          onReply(reply, (value) => {
            finish();
            resolve(value);
          });
        },
      });
      this.#worker.postMessage(make(id), transfer);
    });
  }

  /**
   * Loads other weights in the same worker (the previous model is freed first).
   *
   * @param weights As {@linkcode WorkerEmbedder.create}.
   * @param options As {@linkcode WorkerEmbedder.create}.
   * @returns What was loaded.
   */
  async load(weights: WeightsSpec, options: WorkerEmbedderOptions = {}): Promise<ReadyInfo> {
    const { onLoadProgress, ...load } = options;
    this.#info = undefined;
    this.#info = await this.#request<ReadyInfo>(
      (id) => ({ type: "load", id, weights, options: load }),
      (reply, resolve) => {
        if (reply.type === "progress") onLoadProgress?.(reply.phase, reply.done, reply.total);
        else if (reply.type === "ready") resolve(reply.info);
      },
    );
    return this.#info;
  }

  /**
   * Embeds images, reporting each one: an embedding or an error per image, in input order. The images'
   * bytes are copied to the worker.
   *
   * @param images Encoded PNG/JPEG files with names.
   * @param callbacks Per-image progress and results.
   * @returns The results and the worker's time from request to last row, in ms.
   * @throws {DeviceLostError | GpuError} When the GPU fails (not for a bad image).
   */
  embedEach(
    images: readonly NamedImage[],
    callbacks: EmbedEachCallbacks = {},
  ): Promise<{ results: ImageResult[]; ms: number }> {
    if (!this.#info) return Promise.reject(new TypeError("Cannot embed: no model is loaded"));
    const items = images.map((image) => {
      const b = image.bytes instanceof Uint8Array ? image.bytes : new Uint8Array(image.bytes);
      return { name: image.name, bytes: b.slice().buffer as ArrayBuffer };
    });
    const results: ImageResult[] = new Array(images.length);
    return this.#request(
      (id) => ({ type: "embed", id, images: items }),
      (reply, resolve) => {
        switch (reply.type) {
          case "image":
            callbacks.onState?.(reply.index, reply.state);
            break;
          case "row":
            results[reply.index] = { embedding: reply.embedding };
            callbacks.onResult?.(reply.index, results[reply.index]);
            break;
          case "image-error":
            results[reply.index] = { error: deserializeError(reply.error) };
            callbacks.onResult?.(reply.index, results[reply.index]);
            break;
          case "done":
            resolve({ results, ms: reply.ms });
            break;
        }
      },
      items.map((i) => i.bytes),
    );
  }

  /**
   * Embeds images as `Embedder.embed` does: one row per image, in input order.
   *
   * @param images Encoded PNG/JPEG files with names.
   * @returns One Float32Array per image.
   * @throws {ImageError | NonFiniteError} For the first image that failed.
   */
  async embed(images: readonly NamedImage[]): Promise<Float32Array[]> {
    const { results } = await this.embedEach(images);
    return results.map((r) => {
      if ("error" in r) throw r.error;
      return r.embedding;
    });
  }

  /** Frees the model and its device; terminates the worker when `create` started it. */
  dispose(): void {
    this.#info = undefined;
    if (this.#broken) {
      if (this.#owned) this.#worker.terminate();
      return;
    }
    const done = this.#request<void>(
      (id) => ({ type: "dispose", id }),
      (reply, resolve) => reply.type === "disposed" && resolve(),
    );
    this.#broken = new TypeError("Cannot use the embedder: it was disposed");
    void done.catch(() => {}).finally(() => {
      if (this.#owned) this.#worker.terminate();
    });
  }
}
