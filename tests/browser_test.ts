/**
 * The library in a real browser: Debian's Chromium, headless, on its SwiftShader WebGPU adapter, driven by
 * puppeteer-core (`tests/_browser.ts`), loading the page and bundles that `deno task web` serves
 * (`web/serve.ts`, built in memory by `web/build.ts`). The page computes with the same WGSL as Deno, so each
 * row of its `embeddings.npy` download is checked against the fixture's float64 reference within the
 * fixture's own bound; the worker client and the library bundle are used from a page directly; a reload
 * takes the weights from Cache Storage; classifier scores are checked against scikit-learn's; and the
 * messages for a file that is not an image, adapter limits too small and no WebGPU at all are read off the
 * page.
 *
 * SwiftShader compiles the register-tiled convolution (the default `conv2d_tiled`) slowly (a minute or
 * more per device), so one step runs the default kernels and the others pass `&kernels=conv2d_direct`,
 * the baseline variant, which it compiles at once.
 *
 * Chromium comes from `apt-get install chromium` (`.ci/run`); without it the test is skipped, printing why,
 * except under CI, where it fails. `DERM_SKIP_BROWSER=1` skips it (CI's second adapter run: the browser
 * does not use Deno's adapter).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Page } from "puppeteer-core";
import { decodeNpyFloat32 } from "../cli/npy.ts";
import { applyClassifier, parseClassifier } from "../web/classifier.ts";
import { serveWeb, type WebServer } from "../web/serve.ts";
import {
  CHROMIUM,
  chromiumInstalled,
  downloadBytes,
  launchChromium,
  type LaunchedBrowser,
  pageLog,
} from "./_browser.ts";
import {
  caseImagePath,
  embeddingBound,
  fixtureCases,
  groegerBound,
  groegerCases,
  groegerImagePath,
  readGroegerReference,
  readReference,
  regenerateFixtureWeights,
} from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import {
  probeClassifierJson,
  probeEmbeddings,
  type ProbeLabel,
  sklearnProbabilities,
} from "./_probe_classifier.ts";
import { testdataPath } from "./_testdata.ts";

/** Browser globals inside `page.evaluate` callbacks (this file is type-checked without DOM types). */
declare const document: any, DataTransfer: any, DragEvent: any;

const SKIP = Deno.env.get("DERM_SKIP_BROWSER") === "1";
/** SwiftShader is slow and CI's two cores are shared: generous waits. */
const SETTLE_MS = 600_000;

const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface Fixtures {
  server: WebServer;
  /** Requests per path. */
  hits: Map<string, number>;
}

async function startServer(): Promise<Fixtures> {
  const hits = new Map<string, number>();
  const weights = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const name of ["tiny-bit-64", "tiny-derm-96"]) {
    weights.set(
      `/fixtures/bit/${name}.safetensors`,
      await regenerateFixtureWeights(`bit/${name}.safetensors`),
    );
  }
  const server = await serveWeb({
    port: 0,
    routes: async (_request, url) => {
      const path = url.pathname;
      hits.set(path, (hits.get(path) ?? 0) + 1);
      const w = weights.get(path);
      if (w) return new Response(w, { headers: { "content-length": String(w.length) } });
      const label = /^\/fixtures\/classifier\/(benign_malignant|age_group)\.json$/.exec(path)?.[1];
      if (label) return Response.json(probeClassifierJson(label as ProbeLabel));
      const data = /^\/testdata\/((?:images|isic-cc0)\/[A-Za-z0-9_.-]+)$/.exec(path)?.[1];
      if (data) return new Response(await Deno.readFile(testdataPath(data)));
      return undefined;
    },
  });
  return { server, hits };
}

/** Opens the page with a query and waits until the model is loaded or failed. */
async function openPage(
  browser: LaunchedBrowser,
  fixtures: Fixtures,
  query: string,
): Promise<{ page: Page; log: string[] }> {
  const page = await browser.browser.newPage();
  const log = pageLog(page);
  await page.goto(`${fixtures.server.url}${query}`);
  await page.waitForFunction(
    () => document.body.dataset.state === "ready" || document.body.dataset.state === "error",
    { timeout: SETTLE_MS, polling: 200 },
  );
  return { page, log };
}

/** Waits until the table has `n` rows, every one done or failed, and the page is ready again. */
async function waitRows(page: Page, n: number): Promise<void> {
  await page.waitForFunction(
    (n: number) => {
      const rows = [...document.querySelectorAll("#results tbody tr")];
      return rows.length === n && document.body.dataset.state === "ready" &&
        rows.every((r: any) => r.dataset.state === "done" || r.dataset.state === "error");
    },
    { timeout: SETTLE_MS, polling: 200 },
    n,
  );
}

async function upload(page: Page, selector: string, paths: string[]): Promise<void> {
  const input = await page.$(selector);
  assert.ok(input, `no ${selector}`);
  await (input as unknown as { uploadFile(...paths: string[]): Promise<void> }).uploadFile(...paths);
}

async function state(page: Page): Promise<string> {
  return await page.evaluate(() => document.body.dataset.state);
}

async function message(page: Page): Promise<{ kind: string; title: string; detail: string; hint: string }> {
  return await page.evaluate(() => {
    const box = document.getElementById("message");
    const text = (s: string) => box.querySelector(s).textContent;
    return {
      kind: box.dataset.kind ?? "",
      title: text(".title"),
      detail: text(".detail"),
      hint: text(".hint"),
    };
  });
}

/** The page's `.npy` rows. */
async function npyRows(page: Page): Promise<{ shape: [number, number]; rows: Float32Array[] }> {
  const { shape, data } = decodeNpyFloat32(await downloadBytes(page, "download-npy"));
  const rows = Array.from({ length: shape[0] }, (_, i) => data.subarray(i * shape[1], (i + 1) * shape[1]));
  return { shape, rows };
}

function checkRow(what: string, row: ArrayLike<number>, want: Float64Array, bound: number): void {
  assert.equal(row.length, want.length, `${what}: length`);
  const error = relativeMaxError(row, want);
  console.log(`${what}: relative error ${error.toExponential(2)} (bound ${bound.toExponential(2)})`);
  assert.ok(error <= bound, `${what}: ${error} over ${bound}`);
}

/** Parses the page's scores.csv (no quoted fields in these names). */
function parseScores(text: string): { classes: string[]; rows: Map<string, number[]> } {
  const [head, ...lines] = text.trim().split("\n");
  const classes = head.split(",").slice(1, -1);
  const rows = new Map<string, number[]>();
  for (const line of lines) {
    const cells = line.split(",");
    rows.set(cells[0], cells.slice(1, 1 + classes.length).map(Number));
  }
  return { classes, rows };
}

Deno.test({
  name: "the page, its worker and the library bundle in headless Chromium (SwiftShader WebGPU)",
  ignore: SKIP,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    if (!chromiumInstalled()) {
      if (Deno.env.get("CI")) {
        throw new Error(`Chromium is not installed at ${CHROMIUM} (apt-get install chromium)`);
      }
      console.warn(`skipped: Chromium is not installed at ${CHROMIUM} (apt-get install chromium)`);
      return;
    }
    const fixtures = await startServer();
    const browser = await launchChromium();
    try {
      await runSteps(t, fixtures, browser);
    } finally {
      await browser.close();
    }
    try {
      await t.step(
        "without WebGPU (a browser started without the flags) the page says what to enable",
        async () => {
          const plain = await launchChromium({ webgpu: false });
          try {
            const { page } = await openPage(plain, fixtures, `?weights=procedural:tiny-bit`);
            assert.equal(await state(page), "error");
            const m = await message(page);
            assert.equal(m.kind, "no-webgpu", JSON.stringify(m));
            assert.equal(m.title, "This browser gives the page no WebGPU");
            assert.match(m.hint, /--enable-unsafe-webgpu/);
            assert.match(m.hint, /chrome:\/\/flags\/#enable-unsafe-webgpu/);
          } finally {
            await plain.close();
          }
        },
      );
    } finally {
      await fixtures.server.close();
    }
  },
});

async function runSteps(t: Deno.TestContext, fixtures: Fixtures, browser: LaunchedBrowser): Promise<void> {
  {
    {
      await t.step(
        "page embeds the tiny-derm-96 cases with the default kernels; each row matches its reference",
        async () => {
          const cases = fixtureCases().filter((c) => c.name.startsWith("tiny-derm-96"));
          const weights = "/fixtures/bit/tiny-derm-96.safetensors";
          const { page, log } = await openPage(browser, fixtures, `?weights=${weights}&preset=derm&size=96`);
          assert.equal(
            await state(page),
            "ready",
            `${JSON.stringify(await message(page))}\n${log.join("\n")}`,
          );
          assert.equal(await page.evaluate(() => document.body.dataset.origin), "network");
          const images = cases.map(caseImagePath);
          await upload(page, "#images", images);
          await waitRows(page, cases.length);
          const { shape, rows } = await npyRows(page);
          assert.deepEqual(shape, [cases.length, 1024]);
          cases.forEach((c, i) => {
            const ref = readReference(c.name);
            checkRow(
              `${c.name} in Chromium`,
              rows[i],
              ref.tensors.get("embedding_f64")!.data,
              embeddingBound(ref.metadata),
            );
          });
          const paths = new TextDecoder().decode(await downloadBytes(page, "download-paths"));
          assert.equal(paths, images.map((p) => basename(p) + "\n").join(""));
          const facts = JSON.parse(new TextDecoder().decode(await downloadBytes(page, "download-json")));
          assert.equal(facts.model, weights);
          assert.equal(facts.preset, "derm");
          assert.equal(facts.input_size, 96);
          assert.deepEqual(
            facts.rows.map((r: { hash: string }) => r.hash),
            images.map((p) => sha256(Deno.readFileSync(p))),
          );
          assert.equal(fixtures.hits.get(weights), 1);
          await page.close();
        },
      );

      await t.step("a reload takes the weights from the browser's cache", async () => {
        const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
        const weights = "/fixtures/bit/tiny-derm-96.safetensors";
        const { page } = await openPage(
          browser,
          fixtures,
          `?weights=${weights}&preset=derm&size=96&kernels=conv2d_direct`,
        );
        assert.equal(await state(page), "ready");
        assert.equal(await page.evaluate(() => document.body.dataset.origin), "cache");
        assert.equal(fixtures.hits.get(weights), 1, "the weights were downloaded again");
        assert.match(
          await page.evaluate(() => document.getElementById("model-status").textContent),
          /from this browser's cache/,
        );
        await upload(page, "#images", [caseImagePath(c)]);
        await waitRows(page, 1);
        const ref = readReference(c.name);
        checkRow(
          `${c.name} from the cache (conv2d_direct)`,
          (await npyRows(page)).rows[0],
          ref.tensors.get("embedding_f64")!.data,
          embeddingBound(ref.metadata),
        );
        await page.close();
      });

      await t.step(
        "a dropped file that is not an image is reported and the others embedded (tiny-bit-64)",
        async () => {
          const c = fixtureCases().find((x) => x.name === "tiny-bit-64")!;
          const { page } = await openPage(
            browser,
            fixtures,
            `?weights=/fixtures/bit/tiny-bit-64.safetensors&preset=bit&size=64&kernels=conv2d_direct`,
          );
          assert.equal(await state(page), "ready");
          const image = `/testdata/images/${basename(caseImagePath(c))}`;
          // Drag-and-drop: a drop event on the zone carrying Files, as a browser builds it from a real drag.
          await page.evaluate(async (image: string) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["a shopping list"], "notes.txt", { type: "text/plain" }));
            transfer.items.add(
              new File([await (await fetch(image)).blob()], "lesion.png", { type: "image/png" }),
            );
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(
              new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }),
            );
          }, image);
          await waitRows(page, 2);
          const rows = await page.evaluate(() =>
            [...document.querySelectorAll("#results tbody tr")].map((r: any) => ({
              state: r.dataset.state,
              kind: r.dataset.kind ?? "",
              text: r.querySelector("td.state").textContent,
            }))
          );
          assert.deepEqual(rows[0], {
            state: "error",
            kind: "not-image",
            text: "notes.txt is not a PNG or JPEG image",
          });
          assert.equal(rows[1].state, "done");
          const { shape, rows: npy } = await npyRows(page);
          assert.deepEqual(shape, [1, 1024]);
          const ref = readReference(c.name);
          checkRow(
            `${c.name} in Chromium (conv2d_direct)`,
            npy[0],
            ref.tensors.get("embedding_f64")!.data,
            embeddingBound(ref.metadata),
          );
          assert.equal(new TextDecoder().decode(await downloadBytes(page, "download-paths")), "lesion.png\n");
          await page.close();
        },
      );

      await t.step(
        "tiny-resnet-64 with &preset=imagenet&size=64&resize=73 matches its reference",
        async () => {
          const c = groegerCases().find((x) => x.name === "tiny-resnet-64")!;
          const { page } = await openPage(
            browser,
            fixtures,
            `?weights=procedural:tiny-resnet:${c.seed}&preset=imagenet&size=${c.size}&resize=${c.resize}&kernels=conv2d_direct`,
          );
          assert.equal(await state(page), "ready");
          await upload(page, "#images", [groegerImagePath(c)]);
          await waitRows(page, 1);
          const ref = readGroegerReference(c.name);
          checkRow(
            `${c.name} in Chromium`,
            (await npyRows(page)).rows[0],
            ref.tensors.get("embedding_f64")!.data,
            groegerBound(ref.metadata),
          );
          await page.close();
        },
      );

      await t.step("worker-client.js and derm-webgpu.js, used from a page, match the reference", async () => {
        const c = fixtureCases().find((x) => x.name === "tiny-bit-64")!;
        const page = await browser.browser.newPage();
        const log = pageLog(page);
        await page.goto(fixtures.server.url);
        const image = `/testdata/images/${basename(caseImagePath(c))}`;
        const [viaWorker, viaLibrary, describe] = await page.evaluate(async (image: string) => {
          const weights = new URL("/fixtures/bit/tiny-bit-64.safetensors", location.href).href;
          const options = { preset: "bit", size: 64, kernels: ["conv2d_direct"] };
          const bytes = new Uint8Array(await (await fetch(image)).arrayBuffer());
          const { WorkerEmbedder } = await import(new URL("/worker-client.js", location.href).href);
          const worker = await WorkerEmbedder.create(new URL("/worker.js", location.href), weights, {
            ...options,
            cache: false,
          });
          const [a] = await worker.embed([{ name: "lesion.png", bytes }]);
          const describe = worker.describe();
          worker.dispose();
          const lib = await import(new URL("/derm-webgpu.js", location.href).href);
          const embedder = await lib.createEmbedder(weights, options);
          const [b] = await embedder.embed([bytes]);
          embedder.dispose();
          return [Array.from(a as Float32Array), Array.from(b as Float32Array), describe];
        }, image).catch((e) => {
          throw new Error(`${e}\n${log.join("\n")}`);
        });
        const ref = readReference(c.name);
        const want = ref.tensors.get("embedding_f64")!.data;
        checkRow(`${c.name} via worker-client.js`, viaWorker as number[], want, embeddingBound(ref.metadata));
        checkRow(
          `${c.name} via derm-webgpu.js on the main thread`,
          viaLibrary as number[],
          want,
          embeddingBound(ref.metadata),
        );
        assert.match(describe as string, /input 64x64/);
        await page.close();
      });

      await t.step(
        "classifier scores are scikit-learn's, from ?classifier= and from a chosen file",
        async () => {
          const probe = probeEmbeddings();
          const pick = (label: ProbeLabel, n: number) => [...sklearnProbabilities(label).keys()].slice(0, n);
          const ageImages = pick("age_group", 3);
          const bmImages = pick("benign_malignant", 6).filter((p) => !ageImages.includes(p)).slice(0, 3);
          const images = [...ageImages, ...bmImages];
          const { page } = await openPage(
            browser,
            fixtures,
            `?weights=procedural:tiny-derm&preset=derm&size=64&kernels=conv2d_direct&classifier=/fixtures/classifier/age_group.json`,
          );
          assert.equal(await state(page), "ready");
          await page.waitForFunction(() => document.body.dataset.classifier === "age_group.json", {
            timeout: 30_000,
          });
          await upload(page, "#images", images.map((p) => testdataPath(`isic-cc0/${p}`)));
          await waitRows(page, images.length);
          const { rows } = await npyRows(page);
          const byName = new Map(images.map((p, i) => [p, rows[i]]));
          for (const p of images) {
            // The page's embeddings are the engine's, as the probe's inputs are (made on Deno's adapter).
            checkRow(`${p} vs the probe's embedding`, byName.get(p)!, probe.get(p)!, 5e-5);
          }
          const check = async (label: ProbeLabel, names: string[]) => {
            const classifier = parseClassifier(probeClassifierJson(label));
            const scores = parseScores(
              new TextDecoder().decode(await downloadBytes(page, "download-scores")),
            );
            assert.deepEqual(scores.classes, classifier.classes);
            const sklearn = sklearnProbabilities(label);
            for (const name of names) {
              const got = scores.rows.get(name)!;
              const row = byName.get(name)!;
              const mine = applyClassifier(classifier, row);
              // How far the logits can move from scikit-learn's, given this row's distance from the probe's.
              const x = probe.get(name)!;
              const shift = Math.max(
                ...classifier.head.weights.map((w) =>
                  w.reduce((s, v, j) => s + Math.abs(v) * Math.abs(row[j] - x[j]), 0)
                ),
              );
              const want = sklearn.get(name)!;
              got.forEach((p, k) => {
                assert.ok(
                  Math.abs(p - mine[k]) <= 1e-12,
                  `${label} ${name} class ${k}: page ${p}, library ${mine[k]}`,
                );
                assert.ok(
                  Math.abs(p - want[k]) <= shift + 1e-12,
                  `${label} ${name} class ${k}: page ${p}, sklearn ${want[k]}, allowed ${shift}`,
                );
              });
              console.log(
                `${label} ${name}: page [${got.map((p) => p.toFixed(6))}], scikit-learn [${
                  want.map((p) => p.toFixed(6))
                }]`,
              );
            }
          };
          await check("age_group", ageImages);
          const file = await Deno.makeTempFile({ suffix: ".json" });
          try {
            await Deno.writeTextFile(file, JSON.stringify(probeClassifierJson("benign_malignant")));
            await upload(page, "#classifier-file", [file]);
            await page.waitForFunction(
              (name: string) => document.body.dataset.classifier === name,
              { timeout: 30_000 },
              basename(file),
            );
            await check("benign_malignant", bmImages);
            const cells = await page.evaluate(() =>
              document.querySelectorAll("#results td.score-cell[data-score]").length
            );
            assert.equal(cells, images.length * 2);
          } finally {
            await Deno.remove(file);
          }
          await page.close();
        },
      );

      await t.step("adapter limits too small for the model: the page says which limit", async () => {
        // At size 4096 one image's largest activation of tiny-bit is 512 MiB, so SwiftShader's 1 GiB
        // maxStorageBufferBindingSize holds 2 images, not the 3 asked for.
        const { page } = await openPage(
          browser,
          fixtures,
          `?weights=procedural:tiny-bit&size=4096&batch=3&kernels=conv2d_direct`,
        );
        assert.equal(await state(page), "error");
        const m = await message(page);
        assert.equal(m.kind, "limits", JSON.stringify(m));
        assert.equal(m.title, "This GPU adapter's limits are too small for the model");
        assert.match(
          m.detail,
          /one image's largest activation is 536870912 bytes and maxStorageBufferBindingSize is 1073741824, so at most 2 fit/,
        );
        assert.match(
          m.hint,
          /"procedural:tiny-bit" at size 4096 needs more than the adapter's maxStorageBufferBindingSize/,
        );
        await page.close();
      });
    }
  }
}
