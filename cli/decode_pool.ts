/**
 * A pool of decode workers (`decode_worker.ts`) for `deno task embed`: each request goes to the worker
 * with the fewest in flight; with 0 workers the jobs run on the main thread.
 * @module
 */
import { decodeJob, type DecodeReply, type DecodeRequest } from "./decode_job.ts";

/** Decodes images on worker threads. */
export class DecodePool {
  #workers: { worker: Worker; pending: Map<number, (r: DecodeReply) => void> }[] = [];
  #next = 0;
  #chain: Promise<unknown> = Promise.resolve();

  /** Starts `workers` Web Workers (0: decode on the calling thread). */
  constructor(workers: number) {
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(new URL("./decode_worker.ts", import.meta.url), { type: "module" });
      const entry = { worker, pending: new Map<number, (r: DecodeReply) => void>() };
      worker.onmessage = (e: MessageEvent<DecodeReply>) => {
        const resolve = entry.pending.get(e.data.id);
        entry.pending.delete(e.data.id);
        resolve?.(e.data);
      };
      worker.onerror = (e) => {
        e.preventDefault();
        for (const [id, resolve] of entry.pending) {
          resolve({
            id,
            hash: "",
            skipped: false,
            error: `decode worker failed: ${e.message}`,
            readMs: 0,
            decodeMs: 0,
          });
        }
        entry.pending.clear();
      };
      this.#workers.push(entry);
    }
  }

  /** Number of worker threads. */
  get size(): number {
    return this.#workers.length;
  }

  /** Reads, hashes and decodes one image; never rejects (failures are in the reply's `error`). */
  decode(request: Omit<DecodeRequest, "id">): Promise<DecodeReply> {
    const id = this.#next++;
    if (this.#workers.length === 0) {
      // One at a time, so that each job's timings are its own.
      const job = this.#chain.then(() => decodeJob({ ...request, id }));
      this.#chain = job;
      return job;
    }
    const entry = this.#workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    return new Promise((resolve) => {
      entry.pending.set(id, resolve);
      entry.worker.postMessage({ ...request, id });
    });
  }

  /** Stops the workers. */
  close(): void {
    for (const { worker } of this.#workers) worker.terminate();
    this.#workers = [];
  }
}
