/**
 * `deno task serve` as a subprocess, as Vertex AI runs it (procedural:tiny-derm at 64 x 64, the CC0 JPEGs
 * of testdata/isic-cc0): port and routes from the AIP_* variables, health 503 then 200, a predict answered
 * with each image's embedding, SIGTERM while a request is in flight (it is answered, then exit 0), and the
 * exit codes of a bad command line and a classifier of another model.
 */
import assert from "node:assert/strict";
import { createEmbedder } from "../models/registry.ts";
import { probeClassifierJson } from "../tests/_probe_classifier.ts";
import { bytesInstance, isicJpegs, post, serveGpu } from "../tests/_serve.ts";

const SERVE = new URL("./serve.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;
const MODEL = ["--weights", "procedural:tiny-derm", "--size", "64", "--workers", "1", "--tune", "off"];

function serveCommand(args: string[], env: Record<string, string> = {}): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-net", SERVE, ...args],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** A port that was free a moment ago (AIP_HTTP_PORT cannot be 0). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

Deno.test({
  name:
    "serve CLI: AIP_* port and routes, health 503 then 200; SIGTERM answers the request in flight, exits 0",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const files = isicJpegs(8);
    // The reference rows, from the same model in this process.
    const gpu = await serveGpu();
    const model = await createEmbedder("procedural:tiny-derm", {
      gpu,
      size: 64,
      preset: "derm",
      maxBatch: 8,
    });
    let want: Float32Array[];
    try {
      want = await model.embed(files.map((f) => ({ bytes: f.bytes, name: f.name })));
    } finally {
      model.dispose();
    }

    const port = freePort();
    const base = `http://127.0.0.1:${port}`;
    const child = serveCommand([...MODEL, "--host", "127.0.0.1"], {
      AIP_HTTP_PORT: String(port),
      AIP_PREDICT_ROUTE: "/v1/endpoints/derm:predict",
      AIP_HEALTH_ROUTE: "/v1/health",
    }).spawn();
    const stdout = readAll(child.stdout);
    const stderr = readAll(child.stderr);
    try {
      // Health: 503 while the model loads (as long as the server answers before it is loaded), then 200.
      const seen: number[] = [];
      const deadline = performance.now() + 60_000;
      for (;;) {
        const status = await fetch(`${base}/v1/health`).then(
          async (r) => (await r.body?.cancel(), r.status),
          () => 0,
        );
        if (status !== 0 && seen.at(-1) !== status) seen.push(status);
        if (status === 200) break;
        if (performance.now() > deadline) {
          throw new Error(`not ready in 60 s; health ${seen}: ${await stderr}`);
        }
        await new Promise((r) => setTimeout(r, status === 0 ? 20 : 5));
      }
      assert.deepEqual(seen, [503, 200], `health statuses in turn: ${seen}`);
      assert.equal(
        (await fetch(`${base}/health`)).status,
        404,
        "the default route answered beside AIP_HEALTH_ROUTE",
      );

      const route = `${base}/v1/endpoints/derm:predict`;
      const first = await post(route, { instances: [bytesInstance(files[0].bytes)] });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(Float32Array.from(first.body.predictions[0].embedding), want[0]);

      // A request whose body is still arriving when SIGTERM comes: the server has it in flight.
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
      const inFlight = post(route, stream);
      await new Promise((r) => setTimeout(r, 500));
      child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 300));
      rest.resolve();
      const r = await inFlight;
      assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
      assert.equal(r.body.predictions.length, files.length);
      r.body.predictions.forEach((p: { embedding: number[] }, i: number) =>
        assert.deepEqual(Float32Array.from(p.embedding), want[i], `instances[${i}] (${files[i].name})`)
      );
      const status = await child.status;
      const log = await stderr;
      assert.equal(status.code, 0, log);
      assert.match(
        log,
        /listening on http:\/\/127\.0\.0\.1:\d+ \(POST \/v1\/endpoints\/derm:predict, GET \/v1\/health\)/,
      );
      assert.match(log, /SIGTERM: no new requests; finishing 1 request\(s\) in flight/);
      assert.match(log, /stopped: 9 instance\(s\) in \d+ request\(s\)/);
      assert.equal(await stdout, "");
      await assert.rejects(fetch(`${base}/v1/health`), "still listening after exit");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.status;
    }
  },
});

Deno.test("serve CLI: a bad command line exits 2, a classifier of another model exits 1, naming what is wrong", async () => {
  const run = async (args: string[], env: Record<string, string> = {}) => {
    const out = await serveCommand(args, env).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  };
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^deno task serve:/);
  const noWeights = await run([]);
  assert.equal(noWeights.code, 2);
  assert.match(noWeights.stderr, /error: --weights \(or DERM_WEIGHTS\) or --model is required/);
  const badPort = await run(["--weights", "procedural:tiny-derm"], { AIP_HTTP_PORT: "eighty" });
  assert.equal(badPort.code, 2);
  assert.match(badPort.stderr, /AIP_HTTP_PORT must be an integer from 1 to 65535, got "eighty"/);

  // Trained on 96 x 96 embeddings, served at 64: refused once the model is loaded, before any prediction.
  const dir = await Deno.makeTempDir();
  try {
    const c = probeClassifierJson("benign_malignant") as { embedding: Record<string, unknown> };
    const file = `${dir}/classifier.json`;
    await Deno.writeTextFile(file, JSON.stringify({ ...c, embedding: { ...c.embedding, input_size: 96 } }));
    const other = await run([...MODEL, "--host", "127.0.0.1", "--port", "0", "--classifier", file]);
    assert.equal(other.code, 1, other.stderr);
    assert.match(
      other.stderr,
      /Cannot serve classifier ".*classifier\.json" with model "procedural:tiny-derm": it was trained on another model's embeddings \(input_size: expected 96, got 64\)/,
    );
    const missing = await run([...MODEL, "--classifier", `${dir}/none.json`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Cannot read classifier ".*none\.json"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve CLI: deploy/serve.Dockerfile copies every module the server loads, pins CI's Deno, runs serve", async () => {
  const dockerfile = await Deno.readTextFile(`${ROOT}deploy/serve.Dockerfile`);
  const version = /deno@(\d+\.\d+\.\d+)/.exec(await Deno.readTextFile(`${ROOT}.ci/run`))![1];
  assert.match(
    dockerfile,
    new RegExp(`^FROM denoland/deno:bin-${version.replaceAll(".", "\\.")} AS deno$`, "m"),
  );
  const copied: string[] = [];
  for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of m[1].split(/\s+/)) {
      await Deno.stat(`${ROOT}${source}`);
      copied.push(source);
    }
  }
  // Cached at build time: the server, the decode worker and the weight loaders (imported dynamically).
  const cached = /RUN deno cache --frozen ([^&]+)/.exec(dockerfile)![1].split(/[\s\\]+/).filter((t) =>
    t !== ""
  );
  for (
    const entry of [
      "cli/serve.ts",
      "cli/decode_worker.ts",
      "weights/safetensors_deno.ts",
      "weights/pytorch_deno.ts",
    ]
  ) {
    assert.ok(cached.includes(entry), `${entry} is not cached`);
  }
  // Every local module of their graphs is inside what the image copies.
  const local: string[] = [];
  for (const entry of cached) {
    const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", entry], cwd: ROOT })
      .output();
    assert.equal(info.code, 0, new TextDecoder().decode(info.stderr));
    const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as { modules: { specifier: string }[] };
    for (const { specifier } of graph.modules) {
      if (specifier.startsWith("file://")) local.push(new URL(specifier).pathname.slice(ROOT.length));
    }
  }
  assert.ok(local.length > 50, `only ${local.length} local modules`);
  for (const file of new Set(local)) {
    assert.ok(
      copied.some((c) => file === c || file.startsWith(`${c}/`)),
      `${file} is not copied into the image`,
    );
  }
  assert.match(dockerfile, /mesa-vulkan-drivers/);
  assert.match(dockerfile, /DENO_WEBGPU_BACKEND=vulkan/);
  assert.match(dockerfile, /NVIDIA_DRIVER_CAPABILITIES=[^\n]*graphics/);
  assert.match(dockerfile, /^EXPOSE 8080$/m);
  assert.match(dockerfile, /^CMD \["deno", "task", "serve", "--host", "0\.0\.0\.0"\]$/m);
  const task = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.serve as string;
  assert.match(task, /^deno run [^;&|]* cli\/serve\.ts$/);
});
