/**
 * The worker path in Deno (whose workers have WebGPU too): `web/worker.ts` in a Deno Worker, driven by
 * `WorkerEmbedder`, against the float64 reference of a fixture case; per-image errors; load errors keep
 * their class across the worker boundary. The page's worker is the same code, bundled
 * (`tests/browser_test.ts` runs it in Chromium).
 */
import assert from "node:assert/strict";
import { ImageError, WeightsError } from "../engine/errors.ts";
import { WorkerEmbedder } from "./worker_client.ts";
import {
  caseImagePath,
  embeddingBound,
  fixtureCases,
  readReference,
  regenerateFixtureWeights,
} from "../tests/_fixtures.ts";
import { relativeMaxError } from "../tests/_compare.ts";
import { testGpu } from "../tests/_gpu.ts";

const WORKER = new URL("./worker.ts", import.meta.url);

/** Runs `fn` when this process has a WebGPU adapter (skips, printing why, unless under CI). */
function workerTest(name: string, fn: () => Promise<void>) {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const gpu = await testGpu();
      if (typeof gpu === "string") {
        if (Deno.env.get("CI")) throw new Error(`No WebGPU adapter under CI: ${gpu}`);
        console.warn(`skipped "${name}": ${gpu}`);
        return;
      }
      await fn();
    },
  });
}

async function withWeightsServer(
  bytes: Uint8Array<ArrayBuffer>,
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (req) =>
      new URL(req.url).pathname === "/tiny-bit-64.safetensors"
        ? new Response(bytes, { headers: { "content-length": String(bytes.length) } })
        : new Response("not found", { status: 404 }),
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/`);
  } finally {
    await server.shutdown();
  }
}

workerTest("WorkerEmbedder in a Deno worker matches the reference and reports each image", async () => {
  const c = fixtureCases().find((x) => x.name === "tiny-bit-64")!;
  const ref = readReference(c.name);
  const want = ref.tensors.get("embedding_f64")!.data;
  const bound = embeddingBound(ref.metadata);
  await withWeightsServer(await regenerateFixtureWeights("bit/tiny-bit-64.safetensors"), async (base) => {
    const phases = new Set<string>();
    const embedder = await WorkerEmbedder.create(WORKER, `${base}tiny-bit-64.safetensors`, {
      preset: c.preset,
      size: c.size,
      cache: false,
      onLoadProgress: (phase) => phases.add(phase),
    });
    try {
      assert.deepEqual([...phases].sort(), ["download", "upload"]);
      assert.equal(embedder.embeddingSize, want.length);
      assert.equal(embedder.facts.preset, "bit");
      assert.equal(embedder.info.origin, "network");
      assert.match(embedder.describe(), /input 64x64/);
      const image = await Deno.readFile(caseImagePath(c));
      const states: string[] = [];
      const { results } = await embedder.embedEach(
        [{ name: "a.png", bytes: image }, {
          name: "notes.txt",
          bytes: new TextEncoder().encode("not an image"),
        }, {
          name: "b.png",
          bytes: image,
        }],
        { onState: (i, s) => states.push(`${i}:${s}`) },
      );
      assert.ok("error" in results[1] && results[1].error instanceof ImageError);
      assert.equal((results[1] as { error: ImageError }).error.file, "notes.txt");
      for (const i of [0, 2]) {
        const row = (results[i] as { embedding: Float32Array }).embedding;
        const error = relativeMaxError(row, want);
        console.log(
          `${c.name} in a Deno worker, image ${i}: relative error ${error.toExponential(2)} (bound ${
            bound.toExponential(2)
          })`,
        );
        assert.ok(error <= bound, `${error} over ${bound}`);
      }
      assert.deepEqual(states.filter((s) => s.endsWith("decoded")), ["0:decoded", "2:decoded"]);
      assert.deepEqual(states.filter((s) => s.endsWith("embedding")), ["0:embedding", "2:embedding"]);
      await assert.rejects(
        () => embedder.embed([{ name: "notes.txt", bytes: new Uint8Array(3) }]),
        ImageError,
      );
      const [again] = await embedder.embed([{ name: "a.png", bytes: image }]);
      assert.deepEqual(again, (results[0] as { embedding: Float32Array }).embedding);
    } finally {
      embedder.dispose();
    }
    await assert.rejects(() => embedder.embed([{ name: "a.png", bytes: new Uint8Array(1) }]), TypeError);
  });
});

workerTest("WorkerEmbedder.create() rejects with the worker's error class", async () => {
  await withWeightsServer(new Uint8Array(0), async (base) => {
    await assert.rejects(
      () => WorkerEmbedder.create(WORKER, `${base}missing.safetensors`, { cache: false }),
      (e: Error) => e instanceof WeightsError && /404/.test(e.message),
    );
  });
  await assert.rejects(
    () => WorkerEmbedder.create(WORKER, "procedural:no-such-model"),
    (e: Error) => e instanceof TypeError && /unknown architecture "no-such-model"/.test(e.message),
  );
});
