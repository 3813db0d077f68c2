/**
 * The embedding worker's entry: `new Worker(new URL("./worker.js", import.meta.url), { type: "module" })`
 * in a page (the bundle `deno task web` serves), or `new Worker(new URL("./web/worker.ts", ...), { type:
 * "module" })` in Deno. It answers the requests of `web/protocol.ts` with `web/worker_service.ts`; the page
 * side is `web/worker_client.ts`. The JPEG decoder's wasm is fetched beside this script.
 *
 * This module is browser compatible.
 * @module
 */
import { EmbeddingService } from "./worker_service.ts";
import type { WorkerRequest } from "./protocol.ts";

/** The part of a worker's global scope used here (typed without the webworker lib). */
interface WorkerScope {
  postMessage(message: unknown, transfer: Transferable[]): void;
  addEventListener(type: "message", listener: (event: MessageEvent<WorkerRequest>) => void): void;
}

const scope = globalThis as unknown as WorkerScope;
const service = new EmbeddingService((reply, transfer) => scope.postMessage(reply, transfer ?? []));
scope.addEventListener("message", (event) => void service.submit(event.data));
