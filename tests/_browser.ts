/**
 * Debian's Chromium, headless, driven by puppeteer-core, for the browser tests, the web bench and the
 * README's screenshot. WebGPU comes from Chromium's SwiftShader adapter (no GPU needed): the flags below
 * turn it on; without them (`webgpu: false`) the browser has no adapter, as most Linux browsers today.
 * Everything that would reach Google's hosts is off, and each browser gets a fresh profile, removed on close.
 * @module
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";

/** The page's `document`, inside `page.evaluate` callbacks (this file is type-checked without DOM types). */
declare const document: any;

/** Where Debian's package puts the browser (`apt-get install chromium`). */
export const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** Whether the browser is installed; `.ci/run` installs it. */
export function chromiumInstalled(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/** Flags that give headless Chromium WebGPU on SwiftShader (its CPU Vulkan), with adapter names shown. */
export const WEBGPU_FLAGS: readonly string[] = [
  "--enable-unsafe-webgpu",
  "--use-webgpu-adapter=swiftshader",
  "--enable-webgpu-developer-features",
];

/** Flags for a closed network and a clean, quiet browser. */
const QUIET_FLAGS: readonly string[] = [
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-domain-reliability",
  "--disable-breakpad",
  "--metrics-recording-only",
  "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
];

/** A launched browser and its profile folder. */
export interface LaunchedBrowser {
  readonly browser: Browser;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

/**
 * Launches headless Chromium.
 *
 * @param options `webgpu` (default true): add {@linkcode WEBGPU_FLAGS}; `viewport`: page size.
 * @returns The browser.
 */
export async function launchChromium(
  options: { webgpu?: boolean; viewport?: { width: number; height: number } } = {},
): Promise<LaunchedBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "derm-webgpu-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...QUIET_FLAGS, ...(options.webgpu === false ? [] : WEBGPU_FLAGS), `--user-data-dir=${profile}`],
    defaultViewport: options.viewport ?? { width: 1280, height: 900 },
    protocolTimeout: 600_000,
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/** Collects a page's console errors and uncaught exceptions, for failure messages. */
export function pageLog(page: Page): string[] {
  const log: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warn") log.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => log.push(`pageerror: ${(e as Error).message ?? e}`));
  return log;
}

/**
 * Waits until the page is idle: model loaded (`ready`) or failed (`error`), and no image pending.
 *
 * @param page The demo page.
 * @param timeout Milliseconds (default 120 s: SwiftShader compiles every pipeline on first use).
 * @returns The final `body[data-state]`.
 */
export async function waitSettled(page: Page, timeout = 120_000): Promise<string> {
  await page.waitForFunction(
    () => {
      const b = document.body.dataset;
      return (b.state === "ready" || b.state === "error") && b.pending === "0";
    },
    { timeout, polling: 100 },
  );
  return await page.evaluate(() => document.body.dataset.state ?? "");
}

/**
 * The bytes behind a download link of the page (`a#ID`), read through its blob: URL.
 *
 * @param page The page.
 * @param id The link's id.
 * @returns The file's bytes.
 */
export async function downloadBytes(page: Page, id: string): Promise<Uint8Array> {
  const base64 = await page.evaluate(async (id: string) => {
    const a = document.getElementById(id);
    if (!a) throw new Error(`no link #${id}`);
    const bytes = new Uint8Array(await (await fetch(a.href)).arrayBuffer());
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }, id);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}
