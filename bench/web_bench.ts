/**
 * Images per second in the browser beside Deno: the demo page in headless Chromium on its SwiftShader
 * WebGPU adapter (`tests/_browser.ts`), and the same embedding worker (`web/worker.ts`) in a Deno worker on
 * Deno's adapter (`DENO_WEBGPU_BACKEND`: `gl` for llvmpipe). Both sides run the same code and WGSL; the
 * figure is the worker's own time for a batch of N files, from the request to the last row (JPEG decode,
 * preprocessing, upload, network, readback), weight loading excluded. A first pass compiles the pipelines
 * (its time is reported apart); then `--passes` passes are timed and their median taken.
 *
 * ```
 * DENO_WEBGPU_BACKEND=gl deno run --config deno.dev.json -A bench/web_bench.ts [--images 32] [--passes 3]
 *   [--models procedural:tiny-bit@64,procedural:vit-t16@224] [--kernels default,conv2d_direct] [--json]
 *   [--profile [--batch 4]]
 * ```
 *
 * `--profile` instead times one forward pass per kernel with timestamp queries, by the same function in
 * both runtimes (`bench/web_profile_entry.ts`, bundled for the page), with the plan's build time (on
 * SwiftShader, mostly shader compilation).
 *
 * A model whose procedural name this build does not know is reported as missing, not measured.
 * @module
 */
import { parseArgs } from "node:util";
import type { Page } from "puppeteer-core";
import { PROCEDURAL_MODELS } from "../models/registry.ts";
import { serveWeb } from "../web/serve.ts";
import { WorkerEmbedder } from "../web/worker_client.ts";
import { launchChromium, pageLog } from "../tests/_browser.ts";
import { type KernelProfile, profileKernels } from "./web_profile_entry.ts";
import { testdataPath } from "../tests/_testdata.ts";

/** The page's `document` inside `page.evaluate` (type-checked without DOM types). */
declare const document: any;

interface Model {
  readonly weights: string;
  readonly size: number;
  readonly preset?: string;
}

/** One runtime's figures for one model and kernel choice. */
export interface WebBenchFigure {
  readonly runtime: "chromium" | "deno";
  readonly adapter: string;
  readonly weights: string;
  readonly size: number;
  readonly kernels: string;
  readonly images: number;
  /** The first pass: pipelines compiled on first use. */
  readonly firstPassMs: number;
  /** Every timed pass. */
  readonly passesMs: number[];
  /** N / median pass. */
  readonly imagesPerSecond: number;
  /** Weight load to ready (procedural weights: generated, then uploaded). */
  readonly loadMs: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function parseModel(spec: string): Model {
  const m = /^(procedural:[a-z0-9-]+(?::[^@]+)?)@(\d+)$/.exec(spec);
  if (!m) throw new TypeError(`Cannot read model "${spec}": expected procedural:NAME[:SEED]@SIZE`);
  const name = m[1].split(":")[1];
  return {
    weights: m[1],
    size: Number(m[2]),
    preset: PROCEDURAL_MODELS[name]?.family === "bit" ? undefined : "imagenet",
  };
}

async function images(n: number): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(testdataPath("isic-cc0"))) {
    if (e.name.endsWith(".jpg")) names.push(e.name);
  }
  return names.sort().slice(0, n).map((f) => testdataPath(`isic-cc0/${f}`));
}

async function chromium(
  model: Model,
  kernels: string,
  files: string[],
  passes: number,
): Promise<WebBenchFigure> {
  const server = await serveWeb({ port: 0 });
  const browser = await launchChromium();
  try {
    const page = await browser.browser.newPage();
    const log = pageLog(page);
    const query = new URLSearchParams({ weights: model.weights, size: String(model.size) });
    if (model.preset) query.set("preset", model.preset);
    if (kernels !== "default") query.set("kernels", kernels);
    await page.goto(`${server.url}?${query}`);
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), {
      timeout: 0,
    });
    if (await page.evaluate(() => document.body.dataset.state) === "error") {
      throw new Error(
        `Cannot load ${model.weights} in Chromium: ${await page.evaluate(() =>
          document.getElementById("message").innerText
        )}\n${log.join("\n")}`,
      );
    }
    const status: string = await page.evaluate(() => document.getElementById("model-status").textContent);
    const loadMs = 1000 * Number(/ready in ([\d.]+) s/.exec(status)?.[1] ?? NaN);
    const adapter = / on (.+)\.$/.exec(status)?.[1] ?? "unknown";
    const times: number[] = [];
    for (let pass = 0; pass <= passes; pass++) {
      times.push(await pagePass(page, files, (pass + 1) * files.length));
    }
    return {
      runtime: "chromium",
      adapter,
      weights: model.weights,
      size: model.size,
      kernels,
      images: files.length,
      firstPassMs: times[0],
      passesMs: times.slice(1),
      imagesPerSecond: files.length / (median(times.slice(1)) / 1000),
      loadMs,
    };
  } finally {
    await browser.close();
    await server.close();
  }
}

/** Uploads the files once more and returns the worker's ms for them. */
async function pagePass(page: Page, files: string[], rowsAfter: number): Promise<number> {
  const input = await page.$("#images");
  await (input as unknown as { uploadFile(...p: string[]): Promise<void> }).uploadFile(...files);
  await page.waitForFunction(
    (n: number) =>
      document.querySelectorAll("#results tbody tr").length === n &&
      document.body.dataset.state === "ready" &&
      document.body.dataset.pending === "0",
    { timeout: 0, polling: 200 },
    rowsAfter,
  );
  const run = JSON.parse(await page.evaluate(() => document.body.dataset.lastRun));
  const failed = await page.evaluate(() =>
    document.querySelectorAll('#results tr[data-state="error"]').length
  );
  if (failed > 0) throw new Error(`${failed} images failed in Chromium`);
  return run.ms;
}

async function deno(model: Model, kernels: string, files: string[], passes: number): Promise<WebBenchFigure> {
  const embedder = await WorkerEmbedder.create(new URL("../web/worker.ts", import.meta.url), model.weights, {
    size: model.size,
    preset: model.preset,
    kernels: kernels === "default" ? undefined : [kernels],
  });
  try {
    const bytes = await Promise.all(files.map(async (f) => ({ name: f, bytes: await Deno.readFile(f) })));
    const times: number[] = [];
    for (let pass = 0; pass <= passes; pass++) {
      const { results, ms } = await embedder.embedEach(bytes);
      const failed = results.filter((r) => "error" in r).length;
      if (failed > 0) throw new Error(`${failed} images failed in Deno`);
      times.push(ms);
    }
    return {
      runtime: "deno",
      adapter: embedder.info.adapter,
      weights: model.weights,
      size: model.size,
      kernels,
      images: files.length,
      firstPassMs: times[0],
      passesMs: times.slice(1),
      imagesPerSecond: files.length / (median(times.slice(1)) / 1000),
      loadMs: embedder.info.loadMs,
    };
  } finally {
    embedder.dispose();
  }
}

/** {@linkcode profileKernels} in a Chromium page, bundled for it. */
async function chromiumProfile(model: Model, kernels: string, batch: number): Promise<KernelProfile> {
  const bundle = await Deno.bundle({
    entrypoints: [new URL("./web_profile_entry.ts", import.meta.url).pathname],
    outputDir: "/profile",
    platform: "browser",
    format: "esm",
    write: false,
  });
  if (!bundle.success || !bundle.outputFiles?.[0]) {
    throw new Error(`Cannot bundle the profiler: ${bundle.errors.map((e) => e.text).join("; ")}`);
  }
  const code = bundle.outputFiles[0].contents!;
  const server = await serveWeb({
    port: 0,
    routes: (_r, url) =>
      url.pathname === "/profile.js"
        ? new Response(code.slice(), { headers: { "content-type": "text/javascript" } })
        : undefined,
  });
  const browser = await launchChromium();
  try {
    const page = await browser.browser.newPage();
    await page.goto(server.url);
    return await page.evaluate(
      async (weights: string, size: number, batch: number, kernels: string[]) => {
        const m = await import(new URL("/profile.js", location.href).href);
        return await m.profileKernels(weights, { size, batch, kernels });
      },
      model.weights,
      model.size,
      batch,
      kernels === "default" ? [] : [kernels],
    ) as KernelProfile;
  } finally {
    await browser.close();
    await server.close();
  }
}

async function profiles(
  models: Model[],
  kernelsList: string[],
  runtimes: string[],
  batch: number,
): Promise<void> {
  console.log(
    `| model | kernels | runtime (adapter) | plan build | run 1, run 2 | GPU ms per kernel (batch ${batch}) |`,
  );
  console.log("|---|---|---|---|---|---|");
  for (const model of models) {
    for (const kernels of kernelsList) {
      for (const runtime of runtimes) {
        console.error(`profile ${runtime} ${model.weights}@${model.size} kernels ${kernels}...`);
        const p = runtime === "chromium"
          ? await chromiumProfile(model, kernels, batch)
          : await profileKernels(model.weights, {
            size: model.size,
            batch,
            kernels: kernels === "default" ? [] : [kernels],
          });
        const per = Object.entries(p.byKernel).sort((a, b) => b[1] - a[1]).map(([k, ms]) =>
          `${k} ${ms.toFixed(0)}`
        )
          .join(", ");
        console.log(
          `| ${model.weights} @ ${model.size} | ${kernels} | ${runtime} (${p.adapter}) | ${
            (p.buildMs / 1000).toFixed(1)
          } s | ${p.runMs.map((m) => m.toFixed(0)).join(", ")} ms | ${per} |`,
        );
      }
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      images: { type: "string", default: "32" },
      passes: { type: "string", default: "3" },
      models: { type: "string", default: "procedural:tiny-bit@64,procedural:vit-t16@224" },
      kernels: { type: "string", default: "default,conv2d_direct" },
      runtimes: { type: "string", default: "chromium,deno" },
      json: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      batch: { type: "string", default: "4" },
    },
  });
  if (values.profile) {
    const known = values.models.split(",").map(parseModel).filter((m) =>
      Object.hasOwn(PROCEDURAL_MODELS, m.weights.split(":")[1])
    );
    await profiles(known, values.kernels.split(","), values.runtimes.split(","), Number(values.batch));
    Deno.exit(0);
  }
  const files = await images(Number(values.images));
  const passes = Number(values.passes);
  const figures: WebBenchFigure[] = [];
  const missing: string[] = [];
  for (const spec of values.models.split(",")) {
    const model = parseModel(spec);
    const name = model.weights.split(":")[1];
    if (!Object.hasOwn(PROCEDURAL_MODELS, name)) {
      missing.push(`${spec}: no procedural model "${name}" in this build`);
      continue;
    }
    for (const kernels of values.kernels.split(",")) {
      for (const runtime of values.runtimes.split(",")) {
        console.error(`${runtime} ${spec} kernels ${kernels}...`);
        const f = runtime === "chromium"
          ? await chromium(model, kernels, files, passes)
          : await deno(model, kernels, files, passes);
        console.error(
          `  ${f.imagesPerSecond.toFixed(2)} images/s (passes ${
            f.passesMs.map((m) => m.toFixed(0)).join(", ")
          } ms; first ${f.firstPassMs.toFixed(0)} ms)`,
        );
        figures.push(f);
      }
    }
  }
  if (values.json) {
    console.log(JSON.stringify({ images: files.length, passes, figures, missing }, null, 2));
  } else {
    console.log(
      `| model | kernels | runtime (adapter) | images/s | timed passes (ms, ${files.length} images) | first pass (compiles) | load |`,
    );
    console.log("|---|---|---|---|---|---|---|");
    for (const f of figures) {
      console.log(
        `| ${f.weights} @ ${f.size} | ${f.kernels} | ${f.runtime} (${f.adapter}) | **${
          f.imagesPerSecond.toFixed(2)
        }** | ${f.passesMs.map((m) => m.toFixed(0)).join(", ")} | ${(f.firstPassMs / 1000).toFixed(1)} s | ${
          (f.loadMs / 1000).toFixed(1)
        } s |`,
      );
    }
    for (const m of missing) console.log(`\nnot measured: ${m}`);
  }
}
