/**
 * The README's screenshot of the demo page: headless Chromium on SwiftShader (`tests/_browser.ts`), the
 * page as `deno task web` serves it, `procedural:tiny-derm` at size 64 with scikit-learn's benign/malignant
 * probe of the fixtures as `classifier.json` (`tests/_probe_classifier.ts`), and 16 of the CC0 thumbnails
 * of `testdata/isic-cc0/`. Procedural weights: the scores mean nothing, the page is what is shown.
 *
 * ```
 * deno run --config deno.dev.json -A tests/_web_screenshot.ts [OUT.png]   # default web/screenshot.png
 * ```
 * @module
 */
import { serveWeb } from "../web/serve.ts";
import { launchChromium, waitSettled } from "./_browser.ts";
import { probeClassifierJson, sklearnProbabilities } from "./_probe_classifier.ts";
import { testdataPath } from "./_testdata.ts";

/** The page's `document` inside `page.evaluate` (type-checked without DOM types). */
declare const document: any;

const out = Deno.args[0] ?? new URL("../web/screenshot.png", import.meta.url).pathname;
const server = await serveWeb({
  port: 0,
  routes: (_request, url) =>
    url.pathname === "/classifier.json" ? Response.json(probeClassifierJson("benign_malignant")) : undefined,
});
const browser = await launchChromium({ viewport: { width: 1280, height: 800 } });
try {
  const page = await browser.browser.newPage();
  // conv2d_direct: SwiftShader compiles it at once (the default variant takes it a minute); same numbers.
  await page.goto(
    `${server.url}?weights=procedural:tiny-derm&size=64&kernels=conv2d_direct&classifier=/classifier.json`,
  );
  if (await waitSettled(page) !== "ready") throw new Error("the model did not load");
  const images = [...sklearnProbabilities("benign_malignant").keys()].slice(0, 16);
  const input = await page.$("#images");
  await (input as unknown as { uploadFile(...p: string[]): Promise<void> }).uploadFile(
    ...images.map((f) => testdataPath(`isic-cc0/${f}`)),
  );
  await page.waitForFunction(
    (n: number) =>
      document.querySelectorAll("#results tbody tr[data-state=done]").length === n &&
      document.body.dataset.state === "ready",
    { timeout: 0, polling: 200 },
    images.length,
  );
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.close();
}
