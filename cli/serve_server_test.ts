/**
 * startServer() in this process, on the GPU (procedural:tiny-bit and tiny-derm at 64 x 64, the CC0 JPEGs
 * of testdata/isic-cc0): health while loading, the schema and per-instance errors, 64 concurrent
 * requests, limits and timeouts, classifier scores, shutdown with a request in flight.
 */
import assert from "node:assert/strict";
import type { Embedder } from "../engine/embedder.ts";
import { NonFiniteError } from "../engine/errors.ts";
import type { DecodedImage } from "../engine/image_decode.ts";
import { applyClassifier, parseClassifier } from "../models/classifier.ts";
import { createEmbedder } from "../models/registry.ts";
import { probeClassifierJson } from "../tests/_probe_classifier.ts";
import { bytesInstance, fakeGcs, isicJpegs, post, serveGpu } from "../tests/_serve.ts";
import { readTestdata } from "../tests/_testdata.ts";
import { type RunningServer, type ServeOptions, type ServingModel, startServer } from "./serve_server.ts";

const TOKEN = "ya29.serve-test";

function serverTest(name: string, fn: () => Promise<void>) {
  // The device, pipelines and decode workers live for the whole process.
  Deno.test({ name, sanitizeResources: false, sanitizeOps: false, fn });
}

let tinyBit: Promise<Embedder> | undefined;
/** One procedural:tiny-bit embedder at 64 for the tests that do not need the classifier's model. */
function sharedModel(): Promise<Embedder> {
  tinyBit ??= serveGpu().then((gpu) =>
    createEmbedder("procedural:tiny-bit", { gpu, size: 64, preset: "derm", maxBatch: 8 })
  );
  return tinyBit;
}

const references = new Map<string, Float32Array>();
/** embed() of each image (cached by name). */
async function reference(model: Embedder, files: { name: string; bytes: Uint8Array }[], key = "tiny-bit") {
  const missing = files.filter((f) => !references.has(`${key}/${f.name}`));
  if (missing.length > 0) {
    const rows = await model.embed(missing.map((f) => ({ bytes: f.bytes, name: f.name })));
    missing.forEach((f, i) => references.set(`${key}/${f.name}`, rows[i]));
  }
  return files.map((f) => references.get(`${key}/${f.name}`)!);
}

async function withServer(
  options: Partial<ServeOptions>,
  fn: (server: RunningServer) => Promise<void>,
): Promise<void> {
  const server = await startServer({
    load: sharedModel,
    modelName: "procedural:tiny-bit",
    hostname: "127.0.0.1",
    port: 0,
    workers: 1,
    disposeModel: false,
    ...options,
  });
  try {
    await fn(server);
  } finally {
    await server.shutdown();
  }
}

function assertRow(got: unknown, want: Float32Array, what: string) {
  assert.ok(Array.isArray(got), `${what}: no embedding`);
  assert.equal(got.length, want.length, `${what}: embedding length`);
  // Exact: the JSON holds each float32's exact value, and batching does not change rows.
  assert.deepEqual(Float32Array.from(got), want, `${what}: not its image's embedding`);
}

serverTest(
  "startServer() listens before the model loads: health and predict 503, then health 200",
  async () => {
    const gate = Promise.withResolvers<void>();
    await withServer({ load: async () => (await gate.promise, await sharedModel()) }, async (server) => {
      assert.equal(server.state(), "loading");
      const loading = await fetch(`${server.url}/health`);
      assert.equal(loading.status, 503);
      assert.deepEqual(await loading.json(), { status: "loading" });
      const early = await post(`${server.url}/predict`, {
        instances: [bytesInstance(isicJpegs(1)[0].bytes)],
      });
      assert.equal(early.status, 503);
      assert.deepEqual(early.body, { error: { description: "Cannot predict: the model is still loading" } });
      gate.resolve();
      await server.ready;
      const ready = await fetch(`${server.url}/health`);
      assert.equal(ready.status, 200);
      const body = await ready.json();
      assert.equal(body.status, "ready");
      assert.match(body.model, /input 64x64/);
      const head = await fetch(`${server.url}/health`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), "");
    });
  },
);

serverTest(
  "startServer() answers every instance in order; a bad one gets its own error, the others are intact",
  async () => {
    const files = isicJpegs(3);
    const model = await sharedModel();
    const [a, b, c] = await reference(model, files);
    const crop = readTestdata("images/isic_0000412_crop64.png");
    const mosaic = readTestdata("images/isic_mosaic_900x600.png");
    // The 64 x 64 crop embeds as NaN here (as a broken image would with real weights); the rest is the model's.
    const nanFor64: ServingModel = {
      maxBatch: model.maxBatch,
      inFlight: model.inFlight,
      embeddingSize: model.embeddingSize,
      facts: model.facts,
      preprocessing: model.preprocessing,
      gpu: model.gpu,
      describe: () => model.describe(),
      dispose: () => {},
      embed: (images) => {
        const k = (images as DecodedImage[]).findIndex((im) => im.width === 64);
        if (k >= 0) {
          return Promise.reject(
            new NonFiniteError(k, "", `Cannot embed image ${k}: embedding element 3 is NaN`),
          );
        }
        return model.embed(images);
      },
    };
    const gcs = await fakeGcs(new Map([["derm-test/isic/c.jpg", files[2].bytes]]), TOKEN);
    try {
      await withServer(
        {
          load: () => Promise.resolve(nanFor64),
          gcsEndpoint: gcs.endpoint,
          maxPixels: 250 * 250,
          maxWaitMs: 100,
        },
        async (server) => {
          await server.ready;
          // Another request at the same time, sharing GPU batches with the bad images: untouched by them.
          const other = post(`${server.url}/predict`, {
            instances: [bytesInstance(files[2].bytes), bytesInstance(files[0].bytes)],
          });
          const r = await post(`${server.url}/predict`, {
            instances: [
              bytesInstance(files[0].bytes),
              { input_bytes: "%%% not base64" },
              bytesInstance(new TextEncoder().encode("not an image")),
              bytesInstance(mosaic),
              { gcs_uri: "gs://derm-test/isic/c.jpg", bearer_token: TOKEN },
              { gcs_uri: "gs://derm-test/isic/missing.jpg", bearer_token: TOKEN },
              { gcs_uri: "gs://derm-test/isic/c.jpg", bearer_token: "expired" },
              { input_bytes: files[1].bytes.toBase64(), gcs_uri: "gs://derm-test/isic/c.jpg" },
              bytesInstance(crop),
              bytesInstance(files[1].bytes),
            ],
          });
          assert.equal(r.status, 200);
          assert.equal(r.headers.get("content-type"), "application/json");
          const o = await other;
          assert.equal(o.status, 200);
          assert.equal(o.body.predictions.length, 2);
          assertRow(o.body.predictions[0].embedding, c, "the other request's instances[0]");
          assertRow(o.body.predictions[1].embedding, a, "the other request's instances[1]");
          const s = server.stats().batches!;
          assert.ok(s.batches < s.images, `the two requests shared no batch: ${JSON.stringify(s.sizes)}`);
          const p = r.body.predictions;
          assert.equal(p.length, 10);
          assertRow(p[0].embedding, a, "instances[0]");
          assert.match(
            p[1].error.description,
            /^Cannot decode "instances\[1\]": expected base64 in "input_bytes"/,
          );
          assert.match(
            p[2].error.description,
            /^Cannot decode "instances\[2\]": unsupported format: expected PNG or JPEG/,
          );
          assert.equal(
            p[3].error.description,
            `Cannot decode "instances[3]": image too large: 900x600 = 540000 pixels, limit 62500`,
          );
          assertRow(p[4].embedding, c, "instances[4] (gcs_uri)");
          assert.match(
            p[5].error.description,
            /^Cannot read "instances\[5\]" from "gs:\/\/derm-test\/isic\/missing\.jpg": expected HTTP 200, got 404/,
          );
          assert.match(p[6].error.description, /got 403 \(access denied with this bearer_token/);
          assert.ok(!JSON.stringify(p[6]).includes("expired"), "the token is echoed");
          assert.match(p[7].error.description, /expected one of "input_bytes" and "gcs_uri", got both/);
          assert.equal(
            p[8].error.description,
            `Cannot embed "instances[8]": embedding is not finite (embedding element 3 is NaN; layer unknown)`,
          );
          assertRow(p[9].embedding, b, "instances[9]");
          for (const [i, x] of p.entries()) {
            assert.deepEqual(
              Object.keys(x),
              "embedding" in x ? ["embedding"] : ["error"],
              `predictions[${i}]`,
            );
          }
          assert.equal(server.stats().instanceErrors, 7);
          assert.deepEqual(
            gcs.requests.map((q) => [q.object, q.authorization]),
            [["isic/c.jpg", `Bearer ${TOKEN}`], ["isic/missing.jpg", `Bearer ${TOKEN}`], [
              "isic/c.jpg",
              "Bearer expired",
            ]],
          );
        },
      );
    } finally {
      await gcs.close();
    }
  },
);

serverTest(
  "startServer() answers 64 concurrent requests, each with its own image, with that image's embedding",
  async () => {
    const files = isicJpegs(64);
    const model = await sharedModel();
    const want = await reference(model, files);
    await withServer({ maxWaitMs: 20 }, async (server) => {
      await server.ready;
      const replies = await Promise.all(
        files.map((f) => post(`${server.url}/predict`, { instances: [bytesInstance(f.bytes)] })),
      );
      replies.forEach((r, i) => {
        assert.equal(r.status, 200, `request ${i}: ${JSON.stringify(r.body).slice(0, 200)}`);
        assert.equal(r.body.predictions.length, 1);
        assertRow(r.body.predictions[0].embedding, want[i], `request ${i} (${files[i].name})`);
      });
      const s = server.stats().batches!;
      console.log(`64 requests in ${s.batches} GPU batches; sizes ${JSON.stringify(s.sizes)}`);
      assert.equal(s.images, 64);
      assert.ok(s.batches < 64, `no micro-batching: ${s.batches} batches for 64 requests`);
      assert.ok(s.sizes.slice(2).some((n) => n > 0), "no batch held more than one request's image");
    });
  },
);

serverTest(
  "startServer() answers malformed requests, other routes and methods, and limits with JSON errors",
  async () => {
    await withServer({ maxBodyBytes: 8192, maxInstances: 3 }, async (server) => {
      await server.ready;
      const url = `${server.url}/predict`;
      const error = (r: { body: { error?: { description?: unknown } } }) => {
        assert.equal(typeof r.body.error?.description, "string", JSON.stringify(r.body));
        return r.body.error!.description as string;
      };
      const malformed = await post(url, '{"instances": [');
      assert.equal(malformed.status, 400);
      assert.match(error(malformed), /^Cannot parse the request body: expected JSON/);
      const schema = await post(url, { instance: [] });
      assert.equal(schema.status, 400);
      assert.equal(
        error(schema),
        `Cannot read the request: expected "instances" to be an array, got nothing`,
      );
      const many = await post(url, { instances: [{}, {}, {}, {}] });
      assert.equal(many.status, 413);
      assert.equal(error(many), "Cannot accept 4 instances: expected at most 3 per request");
      const big = await post(url, { instances: [{ input_bytes: "A".repeat(9000) }] });
      assert.equal(big.status, 413);
      assert.match(error(big), /^Cannot accept a request body of \d+ bytes: expected at most 8192$/);
      // Without a Content-Length (chunked): counted while read.
      const chunks = [
        new TextEncoder().encode('{"instances": [{"input_bytes": "'),
        new Uint8Array(9000).fill(65),
      ];
      const chunked = await post(url, ReadableStream.from(chunks));
      assert.equal(chunked.status, 413);
      assert.equal(error(chunked), "Cannot accept a request body of more than 8192 bytes");
      const notUtf8 = await post(url, new Uint8Array([0x7b, 0xff, 0x7d]));
      assert.equal(notUtf8.status, 400);
      const get = await fetch(url);
      assert.equal(get.status, 405);
      assert.equal(get.headers.get("allow"), "POST");
      assert.match(error({ body: await get.json() }), /^Cannot GET "\/predict": expected POST$/);
      const postHealth = await post(`${server.url}/health`, {});
      assert.equal(postHealth.status, 405);
      const other = await fetch(`${server.url}/v1/models`);
      assert.equal(other.status, 404);
      assert.match(
        error({ body: await other.json() }),
        /^Cannot find "\/v1\/models": expected POST \/predict or GET \/health$/,
      );
      // The server still answers after all that.
      const ok = await post(url, { instances: [bytesInstance(isicJpegs(1)[0].bytes)] });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.predictions[0].embedding.length, 1024);
    });
  },
);

serverTest(
  "startServer() answers 504 with a JSON error when a request takes longer than the timeout",
  async () => {
    const files = isicJpegs(24);
    const model = await sharedModel();
    // Each batch takes 1 s more than the model needs, without blocking the event loop.
    const slow: ServingModel = {
      maxBatch: model.maxBatch,
      inFlight: model.inFlight,
      embeddingSize: model.embeddingSize,
      facts: model.facts,
      preprocessing: model.preprocessing,
      gpu: model.gpu,
      describe: () => model.describe(),
      dispose: () => {},
      embed: async (images) => (await new Promise((r) => setTimeout(r, 1000)), await model.embed(images)),
    };
    await withServer({ load: () => Promise.resolve(slow), timeoutMs: 500, maxWaitMs: 0 }, async (server) => {
      await server.ready;
      const t0 = performance.now();
      const r = await post(`${server.url}/predict`, { instances: files.map((f) => bytesInstance(f.bytes)) });
      const ms = performance.now() - t0;
      assert.equal(r.status, 504);
      assert.equal(r.headers.get("content-type"), "application/json");
      assert.match(r.body.error.description, /^Cannot answer within 500 ms: 0 of 24 instances were done$/);
      assert.ok(ms < 1000, `the 504 took ${ms} ms`);
      // The images of the timed-out request still queued are dropped, not embedded.
      const deadline = performance.now() + 20_000;
      let s = server.stats().batches!;
      while (
        (s.queued > 0 || s.running > 0 || performance.now() - t0 < 1500) && performance.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 20));
        s = server.stats().batches!;
      }
      console.log(
        `timed out: ${s.images} of 24 embedded in ${s.batches} batches, ${s.abandoned} dropped from the queue`,
      );
      assert.equal(s.queued + s.running, 0);
      assert.ok(s.abandoned > 0 && s.images < 24, `${s.images} embedded, ${s.abandoned} dropped`);
      assert.equal((await fetch(`${server.url}/health`)).status, 200);
    });
  },
);

serverTest(
  "startServer() adds classifier scores equal to applyClassifier's, per head for several heads",
  async () => {
    const gpu = await serveGpu();
    const derm = await createEmbedder("procedural:tiny-derm", { gpu, size: 64, preset: "derm", maxBatch: 4 });
    try {
      const files = isicJpegs(3);
      const want = await reference(derm, files, "tiny-derm");
      const one = parseClassifier(probeClassifierJson("benign_malignant"), "bm.json");
      const two = parseClassifier(
        {
          ...probeClassifierJson("benign_malignant"),
          heads: [one.heads[0], ...parseClassifier(probeClassifierJson("age_group")).heads],
        },
        "two.json",
      );
      for (const classifier of [one, two]) {
        await withServer(
          {
            load: () => Promise.resolve(derm),
            modelName: "procedural:tiny-derm",
            classifier: { classifier, name: "c.json" },
          },
          async (server) => {
            await server.ready;
            const r = await post(`${server.url}/predict`, {
              instances: [...files.map((f) => bytesInstance(f.bytes)), {}],
            });
            assert.equal(r.status, 200);
            const heads = applyClassifier(classifier, want);
            files.forEach((_, i) => {
              const p = r.body.predictions[i];
              assertRow(p.embedding, want[i], `instances[${i}]`);
              const table = (h: number) =>
                Object.fromEntries(heads[h].classes.map((c, k) => [c, heads[h].probabilities[i][k]]));
              assert.deepEqual(p.scores, table(0), `instances[${i}] scores`);
              if (classifier.heads.length === 1) assert.equal(p.scores_by_head, undefined);
              else {
                assert.deepEqual(Object.keys(p.scores_by_head), ["benign_malignant", "age_group"]);
                assert.deepEqual(p.scores_by_head.age_group, table(1));
                assert.deepEqual(p.scores_by_head.benign_malignant, table(0));
              }
            });
            assert.deepEqual(Object.keys(r.body.predictions[3]), ["error"]);
          },
        );
      }
      // Another model's classifier (trained at 96 x 96) is refused at startup.
      const other = parseClassifier(
        { ...probeClassifierJson("benign_malignant"), embedding: { ...one.embedding, input_size: 96 } },
        "other.json",
      );
      await withServer(
        {
          load: () => Promise.resolve(derm),
          modelName: "procedural:tiny-derm",
          classifier: { classifier: other, name: "other.json" },
        },
        async (server) => {
          await assert.rejects(
            server.ready,
            (e: Error) =>
              e instanceof TypeError &&
              e.message ===
                `Cannot serve classifier "other.json" with model "procedural:tiny-derm": it was trained on another ` +
                  `model's embeddings (input_size: expected 96, got 64)`,
          );
          assert.equal(server.state(), "failed");
          const health = await fetch(`${server.url}/health`);
          assert.equal(health.status, 503);
          assert.equal((await health.json()).status, "failed");
          const p = await post(`${server.url}/predict`, { instances: [bytesInstance(files[0].bytes)] });
          assert.equal(p.status, 503);
          assert.match(
            p.body.error.description,
            /^Cannot predict: the model failed to load \(Cannot serve classifier/,
          );
        },
      );
    } finally {
      derm.dispose();
    }
  },
);

serverTest(
  "RunningServer.shutdown() answers 503 to new requests, finishes the one in flight (body still arriving), then closes",
  async () => {
    const files = isicJpegs(6);
    const model = await sharedModel();
    const want = await reference(model, files);
    const server = await startServer({
      load: sharedModel,
      modelName: "procedural:tiny-bit",
      hostname: "127.0.0.1",
      port: 0,
      workers: 1,
      disposeModel: false,
    });
    await server.ready;
    // The request's body arrives in two parts, the second only after shutdown() has begun.
    const body = new TextEncoder().encode(
      JSON.stringify({ instances: files.map((f) => bytesInstance(f.bytes)) }),
    );
    const rest = Promise.withResolvers<void>();
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(body.slice(0, 100));
        await rest.promise;
        controller.enqueue(body.slice(100));
        controller.close();
      },
    });
    const inFlight = post(`${server.url}/predict`, stream);
    while (server.stats().inFlight === 0) await new Promise((r) => setTimeout(r, 5));
    const stopped = server.shutdown();
    assert.equal(server.state(), "stopping");
    const late = await post(`${server.url}/predict`, { instances: [bytesInstance(files[0].bytes)] });
    assert.equal(late.status, 503);
    assert.deepEqual(late.body, { error: { description: "Cannot predict: the server is stopping" } });
    assert.equal((await fetch(`${server.url}/health`)).status, 503);
    rest.resolve();
    const r = await inFlight;
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 200));
    r.body.predictions.forEach((p: { embedding: number[] }, i: number) =>
      assertRow(p.embedding, want[i], `instances[${i}]`)
    );
    await stopped;
    await server.finished;
    assert.equal(server.state(), "stopped");
    await assert.rejects(fetch(`${server.url}/health`));
  },
);

serverTest("startServer() refuses bad routes and limits before listening", async () => {
  await assert.rejects(
    startServer({ load: sharedModel, modelName: "m", predictRoute: "predict", port: 0 }),
    /Cannot serve route "predict": expected a path from \//,
  );
  await assert.rejects(
    startServer({ load: sharedModel, modelName: "m", predictRoute: "/x", healthRoute: "/x", port: 0 }),
    /both are "\/x"/,
  );
  await assert.rejects(
    startServer({ load: sharedModel, modelName: "m", maxInstances: 0, port: 0 }),
    /Cannot use maxInstances 0: expected a positive integer/,
  );
});

serverTest("(cleanup) the shared embedder is disposed", async () => {
  (await sharedModel()).dispose();
});
