/**
 * Micro-batching for `deno task serve`: decoded images from any number of concurrent requests are queued
 * and embedded together, up to `maxBatch` images per GPU submission.
 *
 * - A batch leaves as soon as `maxBatch` images wait, or when the oldest waiting image has waited
 *   `maxWaitMs`, whichever comes first (0: with the images submitted in the same turn of the event loop).
 * - At most `concurrency` batches run at once (default 2, the embedder's batches in flight: one computes
 *   while the previous one is read back); while they run, images keep queueing, so a busy server sends
 *   fuller batches without waiting longer.
 * - Each image has its own outcome: the embed function returns a row or an Error per image (a non-finite
 *   embedding fails only its image, `embed_chunk.ts`); only a thrown error (a lost device) fails every
 *   image of that batch, as a {@linkcode BatchFailure}.
 * - An image whose request has given up (its signal aborted) before its batch leaves is taken out of the
 *   queue and never embedded.
 *
 * The rows are the embedder's for that batch; the embedder's rows do not depend on which other images
 * share the batch (tested: `serve_batcher_test.ts`).
 * @module
 */
import type { DecodedImage } from "../engine/image_decode.ts";

/** Embeds one batch: a row or an Error per image, in order. */
export type EmbedBatch = (images: DecodedImage[]) => Promise<(Float32Array | Error)[]>;

/** Options of {@linkcode MicroBatcher}. */
export interface BatcherOptions {
  /** Most images per batch. */
  readonly maxBatch: number;
  /** Longest an image waits for others before its batch leaves anyway (ms). */
  readonly maxWaitMs: number;
  /** Batches running at once (default 2). */
  readonly concurrency?: number;
}

/** Every image of a batch failed because the embedder did (not because of the image). */
export class BatchFailure extends Error {
  /** Creates it from the embedder's error. */
  constructor(cause: unknown) {
    super(`Cannot embed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = "BatchFailure";
  }
}

/** What the batcher has done, for logs and the bench. */
export interface BatcherStats {
  /** Batches embedded. */
  batches: number;
  /** Images embedded (in those batches). */
  images: number;
  /** Number of batches of each size: `sizes[k]` batches held k images. */
  sizes: number[];
  /** Images dropped from the queue because their request gave up. */
  abandoned: number;
  /** Images waiting now. */
  queued: number;
  /** Batches being embedded now. */
  running: number;
}

interface Item {
  readonly image: DecodedImage;
  readonly queuedAt: number;
  readonly resolve: (row: Float32Array) => void;
  readonly reject: (e: unknown) => void;
  readonly signal?: AbortSignal;
  readonly onAbort?: () => void;
}

/** Gathers images into batches. */
export class MicroBatcher {
  readonly #embed: EmbedBatch;
  readonly #maxBatch: number;
  readonly #maxWaitMs: number;
  readonly #concurrency: number;
  #queue: Item[] = [];
  #running = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;
  #stats: BatcherStats;

  /**
   * @param embed Embeds a batch.
   * @param options Batch size, wait, concurrency.
   * @throws {RangeError} For a batch size below 1, a negative wait or a concurrency below 1.
   */
  constructor(embed: EmbedBatch, options: BatcherOptions) {
    const { maxBatch, maxWaitMs, concurrency = 2 } = options;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) {
      throw new RangeError(`Cannot batch ${maxBatch} images: expected a positive integer`);
    }
    if (!(maxWaitMs >= 0) || !Number.isFinite(maxWaitMs)) {
      throw new RangeError(`Cannot wait ${maxWaitMs} ms for a batch: expected a finite number >= 0`);
    }
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`Cannot run ${concurrency} batches at once: expected a positive integer`);
    }
    this.#embed = embed;
    this.#maxBatch = maxBatch;
    this.#maxWaitMs = maxWaitMs;
    this.#concurrency = concurrency;
    this.#stats = {
      batches: 0,
      images: 0,
      sizes: new Array(maxBatch + 1).fill(0),
      abandoned: 0,
      queued: 0,
      running: 0,
    };
  }

  /** Images waiting for a batch. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Batches being embedded. */
  get running(): number {
    return this.#running;
  }

  /** A copy of the counters. */
  stats(): BatcherStats {
    return {
      ...this.#stats,
      sizes: [...this.#stats.sizes],
      queued: this.#queue.length,
      running: this.#running,
    };
  }

  /**
   * Queues one image.
   *
   * @param image The decoded image.
   * @param signal When it aborts before the image's batch leaves, the image is dropped and the promise
   *   rejects with the signal's reason.
   * @returns Its embedding; rejects with the Error the embed function gave for this image, or a
   *   {@linkcode BatchFailure}.
   */
  submit(image: DecodedImage, signal?: AbortSignal): Promise<Float32Array> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<Float32Array>();
    const onAbort = () => {
      const at = this.#queue.indexOf(item);
      if (at < 0) return; // already in a batch: its result is simply not used
      this.#queue.splice(at, 1);
      this.#stats.abandoned++;
      reject(signal!.reason);
      this.#checkIdle();
    };
    const item: Item = {
      image,
      queuedAt: performance.now(),
      resolve,
      reject,
      signal,
      onAbort: signal ? onAbort : undefined,
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#queue.push(item);
    this.#schedule();
    return promise;
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (this.#queue.length === 0 && this.#running === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  #schedule(): void {
    if (this.#running >= this.#concurrency || this.#queue.length === 0) return;
    if (this.#queue.length >= this.#maxBatch) {
      this.#dispatch();
      return;
    }
    // Never at once for a partial batch: through a timer (0 ms at least), so that the images submitted in
    // this turn of the event loop join it.
    if (this.#timer === undefined) {
      const wait = Math.max(0, this.#queue[0].queuedAt + this.#maxWaitMs - performance.now());
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.#running < this.#concurrency && this.#queue.length > 0) this.#dispatch();
      }, wait);
    }
  }

  #dispatch(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const batch = this.#queue.splice(0, this.#maxBatch);
    for (const item of batch) item.signal?.removeEventListener("abort", item.onAbort!);
    this.#running++;
    this.#stats.batches++;
    this.#stats.images += batch.length;
    this.#stats.sizes[batch.length]++;
    this.#run(batch).finally(() => {
      this.#running--;
      this.#schedule();
      this.#checkIdle();
    });
    // More may be ready (a full batch behind this one, and a free slot).
    this.#schedule();
  }

  async #run(batch: Item[]): Promise<void> {
    let rows: (Float32Array | Error)[];
    try {
      rows = await this.#embed(batch.map((b) => b.image));
      if (rows.length !== batch.length) {
        throw new RangeError(`Cannot use ${rows.length} rows for a batch of ${batch.length} images`);
      }
    } catch (e) {
      const failure = new BatchFailure(e);
      for (const item of batch) item.reject(failure);
      return;
    }
    rows.forEach((row, k) => row instanceof Error ? batch[k].reject(row) : batch[k].resolve(row));
  }

  #checkIdle(): void {
    if (this.#idle && this.#queue.length === 0 && this.#running === 0) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }
}
